"""Sessions (verifier/sessions.py): opening one, and each store behaviour on memory and on a real Redis."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis

from did_registry.identity.crypto import (
    Ed25519PrivateKey,
    X25519PrivateKey,
    X25519PublicKey,
    hkdf_sha256,
    random_bytes,
)
from did_registry.identity.multikey import decode_x25519_public_key
from did_registry.identity.timestamps import parse_timestamp
from tests.services import free_port
from tests.verifier.conftest import Clocked, FakeClock
from verifier.errors import ConfigurationError, StoreUnavailable
from verifier.sessions import (
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionStore,
    open_session,
)
from wallet.errors import InvalidSharedSecret
from wallet.session_keys import session_key

Store = Clocked[MemorySessionStore | RedisSessionStore]
LIFETIME = 300.0
SHORT = 0.3
DEVICE = "did:trellis:test:device-a"
OTHER = "did:trellis:test:device-b"


def make_session(did: str = DEVICE, *, now: float, ttl: float = LIFETIME, **changes: object) -> Session:
    """A session of ``did`` opened at ``now`` for ``ttl`` seconds, with a random id and key."""
    fields: dict[str, object] = {
        "id": base64.urlsafe_b64encode(random_bytes(16)).rstrip(b"=").decode(),
        "did": did,
        "key": random_bytes(32),
        "key_id": f"{did}#key-1",
        "audience": "https://service.example",
        "created": now,
        "expires_at": now + ttl,
        "credential_id": "urn:uuid:3978344f-8596-4c3a-a978-8fcaba3903c5",
        "height": 42,
    }
    fields.update(changes)
    return Session(**fields)  # type: ignore[arg-type]


# --- open_session ---------------------------------------------------------------------------------------


def open_for_device(
    now: float = FakeClock().now, ttl: float = 600
) -> tuple[Session, dict[str, str], X25519PrivateKey]:
    """Open a session for a new device; return it, the offer, and the device's X25519 private key."""
    device = Ed25519PrivateKey.generate().to_x25519()
    session, offer = open_session(
        did=DEVICE,
        key_id=f"{DEVICE}#key-1",
        audience="https://service.example",
        device_key_agreement=device.public_key,
        ttl=ttl,
        now=now,
        credential_id="urn:uuid:1",
        height=7,
    )
    return session, offer, device


def test_device_derives_the_same_session_key() -> None:
    """The device, from its private key and the offer, computes the verifier's MAC key."""
    session, offer, device = open_for_device()
    verifier_key = decode_x25519_public_key(offer["verifier_key"])
    assert session_key(device, verifier_key, offer["session_id"]) == session.key


def test_session_key_is_hkdf_of_the_x25519_secret() -> None:
    """The key is HKDF-SHA256(X25519 secret, salt trellis/session/v1, info session id), computed here apart."""
    session, offer, device = open_for_device()
    shared = device.exchange(decode_x25519_public_key(offer["verifier_key"]))
    expected = hkdf_sha256(shared, salt=b"trellis/session/v1", info=session.id.encode(), size=32)
    assert session.key == expected


def test_each_session_has_a_fresh_id_and_key() -> None:
    """Two sessions for the same device share neither id, verifier key nor MAC key."""
    device = X25519PrivateKey.generate().public_key
    opened = [
        open_session(did=DEVICE, key_id="k", audience="a", device_key_agreement=device, ttl=60, now=0)
        for _ in range(2)
    ]
    (first, first_offer), (second, second_offer) = opened
    assert first.id != second.id
    assert first.key != second.key
    assert first_offer["verifier_key"] != second_offer["verifier_key"]


def test_session_id_is_16_random_bytes_in_base64url() -> None:
    """The id is 22 base64url characters without padding, decoding to 16 bytes."""
    session, offer, _ = open_for_device()
    assert offer["session_id"] == session.id
    assert len(session.id) == 22
    assert len(base64.urlsafe_b64decode(session.id + "==")) == 16
    assert set(session.id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_offer_holds_exactly_id_key_and_expiry() -> None:
    """The offer has the session id, the verifier's X25519 Multikey (z6LS…) and the expiry."""
    _, offer, _ = open_for_device()
    assert set(offer) == {"session_id", "verifier_key", "expires"}
    assert offer["verifier_key"].startswith("z6LS")


def test_session_records_what_was_checked() -> None:
    """The session keeps the device, its key, the audience, the credential and the ledger height."""
    now = FakeClock().now
    session, _, _ = open_for_device(now=now)
    assert (session.did, session.key_id, session.audience) == (
        DEVICE,
        f"{DEVICE}#key-1",
        "https://service.example",
    )
    assert (session.credential_id, session.height, session.created) == ("urn:uuid:1", 7, now)


def test_offer_expiry_is_when_the_session_ends() -> None:
    """``expires`` is RFC 3339 UTC and names the session's ``expires_at``, cut to a whole second."""
    session, offer, _ = open_for_device(now=1_800_000_000.75, ttl=600)
    assert offer["expires"] == "2027-01-15T08:10:00Z"
    assert session.expires_at == 1_800_000_600.0
    assert parse_timestamp(offer["expires"]) == datetime.fromtimestamp(session.expires_at, UTC)


@pytest.mark.parametrize("ttl", [0, -5, 0.5, float("inf"), float("nan"), True])
def test_ttl_must_be_at_least_a_second(ttl: float) -> None:
    """A session lifetime under one second (or not a finite number) is a configuration error."""
    with pytest.raises(ConfigurationError, match="ttl"):
        open_for_device(ttl=ttl)


def test_low_order_device_key_is_refused() -> None:
    """A device key of low order would give a zero secret: refused, no session opened."""
    with pytest.raises(InvalidSharedSecret):
        open_session(
            did=DEVICE,
            key_id="k",
            audience="a",
            device_key_agreement=X25519PublicKey(bytes(32)),  # the point of order 1
            ttl=60,
            now=0,
        )


# --- Session ----------------------------------------------------------------------------------------------


def test_session_json_round_trips() -> None:
    """to_json and from_json give back an equal session, with and without a credential id."""
    for session in (make_session(now=1.5), make_session(now=2.0, credential_id=None, height=0)):
        assert Session.from_json(session.to_json()) == session


def test_session_repr_hides_the_key() -> None:
    """The secret key never shows in a repr (logs, tracebacks)."""
    session = make_session(now=0, key=b"\xab" * 32)
    assert "ab" * 4 not in repr(session)
    assert "key=" not in repr(session).replace("key_id=", "")


def test_session_key_must_be_32_bytes() -> None:
    """A key of another length is refused."""
    with pytest.raises(ValueError, match="32 bytes"):
        make_session(now=0, key=b"short")


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b"{}", b'{"id": 1}', b'{"id":"\\u00e9"}', b"\xff"],
)
def test_malformed_session_json_is_refused(data: bytes) -> None:
    """from_json refuses anything that is not a whole session, with ValueError."""
    with pytest.raises(ValueError, match="not a stored session"):
        Session.from_json(data)


def test_session_json_with_wrong_types_is_refused() -> None:
    """A field of the wrong type (height as text, a boolean expiry) is refused."""
    good = make_session(now=0).to_json().decode()
    for bad in (
        good.replace('"height":42', '"height":"42"'),
        good.replace('"expires_at":300.0', '"expires_at":true'),
    ):
        assert bad != good
        with pytest.raises(ValueError, match="not a stored session"):
            Session.from_json(bad)


def test_stores_satisfy_the_protocol() -> None:
    """Both stores type-check as a SessionStore (mypy checks these assignments)."""
    stores: list[SessionStore] = [MemorySessionStore(), RedisSessionStore("redis://127.0.0.1:1/0")]
    assert len(stores) == 2


# --- stores -----------------------------------------------------------------------------------------------


def test_put_then_get_returns_the_session(session_store: Store) -> None:
    """A stored session comes back equal, key included."""
    session = make_session(now=session_store.now())
    session_store.store.put(session)
    assert session_store.store.get(session.id) == session


def test_session_without_credential_round_trips(session_store: Store) -> None:
    """A session with no credential id and height 0 comes back equal."""
    session = make_session(now=session_store.now(), credential_id=None, height=0)
    session_store.store.put(session)
    assert session_store.store.get(session.id) == session


def test_get_of_unknown_session_is_none(session_store: Store) -> None:
    """An id never stored gives None."""
    assert session_store.store.get("AAAAAAAAAAAAAAAAAAAAAA") is None


def test_session_expires(session_store: Store) -> None:
    """After ``expires_at`` the session is gone and no longer counted."""
    store = session_store.store
    session = make_session(now=session_store.now(), ttl=SHORT)
    store.put(session)
    assert store.count() == 1
    session_store.advance(SHORT + 0.2)
    assert store.get(session.id) is None
    assert store.count() == 0


def test_expired_session_is_not_kept(session_store: Store) -> None:
    """Putting a session whose expiry has passed keeps nothing."""
    session = make_session(now=session_store.now() - 10, ttl=5)
    session_store.store.put(session)
    assert session_store.store.get(session.id) is None
    assert session_store.store.count() == 0


def test_put_replaces_a_session_with_the_same_id(session_store: Store) -> None:
    """Putting under an existing id keeps the newer session only."""
    store = session_store.store
    first = make_session(now=session_store.now())
    second = dataclasses.replace(first, height=43, credential_id=None)
    store.put(first)
    store.put(second)
    assert store.get(first.id) == second
    assert store.count() == 1


def test_end_ends_one_session(session_store: Store) -> None:
    """end returns True for a live session, which is then gone; a second end returns False."""
    store = session_store.store
    ended, kept = make_session(now=session_store.now()), make_session(now=session_store.now())
    store.put(ended)
    store.put(kept)
    assert store.end(ended.id) is True
    assert store.get(ended.id) is None
    assert store.end(ended.id) is False
    assert store.get(kept.id) == kept
    assert store.count() == 1


def test_end_of_unknown_session_is_false(session_store: Store) -> None:
    """Ending an id never stored returns False."""
    assert session_store.store.end("AAAAAAAAAAAAAAAAAAAAAA") is False


def test_end_of_expired_session_is_false(session_store: Store) -> None:
    """Ending a session that already expired returns False."""
    store = session_store.store
    session = make_session(now=session_store.now(), ttl=SHORT)
    store.put(session)
    session_store.advance(SHORT + 0.2)
    assert store.end(session.id) is False


def test_end_device_ends_every_session_of_that_device_only(session_store: Store) -> None:
    """end_device ends each session of the DID, returns how many, and leaves other devices alone."""
    store, now = session_store.store, session_store.now()
    mine = [make_session(DEVICE, now=now) for _ in range(3)]
    theirs = make_session(OTHER, now=now)
    for session in [*mine, theirs]:
        store.put(session)
    assert store.end_device(DEVICE) == 3
    assert all(store.get(session.id) is None for session in mine)
    assert store.get(theirs.id) == theirs
    assert store.count() == 1
    assert store.end_device(DEVICE) == 0


def test_end_device_counts_only_live_sessions(session_store: Store) -> None:
    """Sessions already expired or ended are not counted by end_device."""
    store, now = session_store.store, session_store.now()
    expiring, ended, live = (make_session(now=now, ttl=SHORT), make_session(now=now), make_session(now=now))
    for session in (expiring, ended, live):
        store.put(session)
    store.end(ended.id)
    session_store.advance(SHORT + 0.2)
    assert store.end_device(DEVICE) == 1
    assert store.get(live.id) is None


def test_end_device_of_unknown_device_is_zero(session_store: Store) -> None:
    """A DID with no sessions: nothing ended."""
    assert session_store.store.end_device("did:trellis:test:nobody") == 0


def test_device_can_open_new_sessions_after_end_device(session_store: Store) -> None:
    """end_device is not a ban: a session opened afterwards lives (the check that opens it decides)."""
    store = session_store.store
    store.put(make_session(now=session_store.now()))
    store.end_device(DEVICE)
    fresh = make_session(now=session_store.now())
    store.put(fresh)
    assert store.get(fresh.id) == fresh
    assert store.end_device(DEVICE) == 1


def test_count_counts_live_sessions(session_store: Store) -> None:
    """count is the number of sessions neither ended nor expired."""
    store, now = session_store.store, session_store.now()
    sessions = [make_session(f"did:trellis:test:d{n}", now=now) for n in range(5)]
    for session in sessions:
        store.put(session)
    assert store.count() == 5
    store.end(sessions[0].id)
    store.end_device(sessions[1].did)
    assert store.count() == 3


def test_concurrent_end_device_ends_each_session_once(session_store: Store) -> None:
    """Threads racing to end a device's sessions: together they end each exactly once."""
    store, now = session_store.store, session_store.now()
    for _ in range(10):
        store.put(make_session(now=now))
    barrier, totals, lock = threading.Barrier(8), [], threading.Lock()

    def end() -> None:
        barrier.wait()
        ended = store.end_device(DEVICE)
        with lock:
            totals.append(ended)

    workers = [threading.Thread(target=end) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(totals) == [0] * 7 + [10]


# --- the memory store's bound -------------------------------------------------------------------------------


def test_full_memory_session_store_raises_store_unavailable() -> None:
    """With max_sessions live sessions, another put raises StoreUnavailable naming the bound."""
    clock = FakeClock()
    store = MemorySessionStore(max_sessions=2, clock=clock)
    store.put(make_session(now=clock.now))
    store.put(make_session(now=clock.now, ttl=10))
    with pytest.raises(StoreUnavailable, match="max_sessions=2"):
        store.put(make_session(now=clock.now))
    clock.advance(11)
    store.put(make_session(now=clock.now))
    assert store.count() == 2


@pytest.mark.parametrize("bound", [0, -1, True, 2.5])
def test_max_sessions_must_be_a_positive_integer(bound: object) -> None:
    """A bound that is not a positive integer is a configuration error."""
    with pytest.raises(ConfigurationError, match="max_sessions"):
        MemorySessionStore(max_sessions=bound)  # type: ignore[arg-type]


# --- Redis specifics -----------------------------------------------------------------------------------------


def test_redis_session_expires_at_expires_at(redis_prefix: tuple[str, str]) -> None:
    """The session hash expires at ``expires_at`` (PEXPIREAT), and holds the key as is."""
    url, prefix = redis_prefix
    store = RedisSessionStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    session = make_session(now=FakeClock().now)
    store.put(session)
    assert client.pexpiretime(f"{prefix}session:{session.id}") == 1_800_000_300_000
    stored: object = client.hget(f"{prefix}session:{session.id}", "key")
    assert stored == session.key
    client.close()


def test_redis_device_index_lives_as_long_as_its_last_session(redis_prefix: tuple[str, str]) -> None:
    """The per-device index expires with its longest session, whichever order they come in."""
    url, prefix = redis_prefix
    store = RedisSessionStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    now = FakeClock().now
    for ttl in (100, 300, 200):
        store.put(make_session(now=now, ttl=ttl))
    assert client.pexpiretime(f"{prefix}device-sessions:{DEVICE}") == 1_800_000_300_000
    client.close()


def test_malformed_session_in_redis_is_store_unavailable(redis_prefix: tuple[str, str]) -> None:
    """A session hash that does not parse makes get raise StoreUnavailable, not answer."""
    url, prefix = redis_prefix
    client = redis.Redis.from_url(url)
    client.hset(f"{prefix}session:broken", mapping={"did": DEVICE, "height": "tall"})
    with pytest.raises(StoreUnavailable, match="malformed"):
        RedisSessionStore(url, prefix=prefix).get("broken")
    client.close()


@pytest.mark.parametrize("operation", ["put", "get", "end", "end_device", "count"])
def test_unreachable_redis_raises_store_unavailable(operation: str) -> None:
    """Nothing listens on the port: every operation raises StoreUnavailable."""
    store = RedisSessionStore(f"redis://127.0.0.1:{free_port()}/0")
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: store.put(make_session(now=FakeClock().now)),
        "get": lambda: store.get("x"),
        "end": lambda: store.end("x"),
        "end_device": lambda: store.end_device(DEVICE),
        "count": store.count,
    }
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        calls[operation]()

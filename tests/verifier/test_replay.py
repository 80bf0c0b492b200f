"""Single-use values (verifier/replay.py): each behaviour on the memory store and on a real Redis."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tests.services import RedisServer, free_port
from tests.verifier.conftest import Clocked, FakeClock
from verifier.errors import ConfigurationError, StoreUnavailable
from verifier.replay import MemoryNonceStore, NonceStore, RedisNonceStore

Store = Clocked[MemoryNonceStore | RedisNonceStore]
R = TypeVar("R")
LIFETIME = 300.0  # seconds a record lives in tests that do not wait for it to expire
SHORT = 0.3  # seconds, for tests that wait (real time on Redis)


def race(threads: int, action: Callable[[], R]) -> list[R]:
    """Run ``action`` in ``threads`` threads released at once; return every result."""
    barrier = threading.Barrier(threads)
    results: list[R] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        result = action()
        with lock:
            results.append(result)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len(results) == threads
    return results


def test_stores_satisfy_the_protocol() -> None:
    """Both stores type-check as a NonceStore (mypy checks these assignments)."""
    stores: list[NonceStore] = [MemoryNonceStore(), RedisNonceStore("redis://127.0.0.1:1/0")]
    assert len(stores) == 2


# --- use ---------------------------------------------------------------------------------------------


def test_first_use_is_accepted_and_second_refused(nonce_store: Store) -> None:
    """A value is accepted once, then refused while its record lives."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    assert store.use("http-signature", "n-1", expires) is True
    assert store.use("http-signature", "n-1", expires) is False
    assert store.use("http-signature", "n-1", expires + 100) is False


def test_distinct_values_are_independent(nonce_store: Store) -> None:
    """Recording one value does not refuse another."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    assert store.use("http-signature", "n-1", expires)
    assert store.use("http-signature", "n-2", expires)


def test_namespaces_are_separate(nonce_store: Store) -> None:
    """The same value may be used once in each namespace."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    assert store.use("http-signature", "n-1", expires)
    assert store.use("challenge", "n-1", expires)


def test_values_that_look_like_key_separators_do_not_collide(nonce_store: Store) -> None:
    """``a`` + ``b:c`` and ``a:b`` + ``c`` cannot meet, since namespaces may not hold ':'."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    assert store.use("a", "b:c", expires)
    with pytest.raises(ConfigurationError, match="namespace"):
        store.use("a:b", "c", expires)


def test_expired_record_is_forgotten(nonce_store: Store) -> None:
    """Once ``expires_at`` has passed, the value is accepted again."""
    store = nonce_store.store
    assert store.use("http-signature", "n-1", nonce_store.now() + SHORT)
    nonce_store.advance(SHORT + 0.2)
    assert store.use("http-signature", "n-1", nonce_store.now() + LIFETIME)


def test_value_already_expired_is_refused(nonce_store: Store) -> None:
    """A value whose ``expires_at`` is already past is refused, and not recorded, every time."""
    store, past = nonce_store.store, nonce_store.now() - 1
    assert store.use("http-signature", "n-1", past) is False
    assert store.use("http-signature", "n-1", past) is False
    assert store.use("http-signature", "n-1", nonce_store.now() + LIFETIME) is True


def test_concurrent_use_has_exactly_one_winner(nonce_store: Store) -> None:
    """Threads racing to use one value: exactly one is told it was the first."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    results = race(16, lambda: store.use("http-signature", "contested", expires))
    assert sorted(results) == [False] * 15 + [True]


@pytest.mark.parametrize("namespace", ["", "a:b", "with space", "x" * 65, "ünïcode"])
def test_bad_namespace_is_a_configuration_error(nonce_store: Store, namespace: str) -> None:
    """Namespaces are short program-chosen names; anything else is a configuration error."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    with pytest.raises(ConfigurationError, match="namespace"):
        store.use(namespace, "n-1", expires)
    with pytest.raises(ConfigurationError, match="namespace"):
        store.put(namespace, "n-1", b"data", expires)
    with pytest.raises(ConfigurationError, match="namespace"):
        store.take(namespace, "n-1")


@pytest.mark.parametrize("expires_at", [float("nan"), float("inf"), float("-inf"), True, "soon"])
def test_expiry_must_be_a_finite_time(nonce_store: Store, expires_at: object) -> None:
    """An expiry that is not a finite number is refused: a record kept forever would never make room."""
    store = nonce_store.store
    with pytest.raises(ConfigurationError, match="expires_at"):
        store.use("http-signature", "n-1", expires_at)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="expires_at"):
        store.put("challenge", "c-1", b"data", expires_at)  # type: ignore[arg-type]


# --- put and take ------------------------------------------------------------------------------------


def test_take_returns_the_data_exactly_once(nonce_store: Store) -> None:
    """An issued challenge is handed out once, then it is gone."""
    store = nonce_store.store
    store.put("challenge", "c-1", b"audience=example.org", nonce_store.now() + LIFETIME)
    assert store.take("challenge", "c-1") == b"audience=example.org"
    assert store.take("challenge", "c-1") is None


def test_take_of_unknown_value_is_none(nonce_store: Store) -> None:
    """Nothing was issued under the value: take gives None."""
    assert nonce_store.store.take("challenge", "never-issued") is None


def test_take_after_expiry_is_none(nonce_store: Store) -> None:
    """A challenge not answered before it expires cannot be taken."""
    store = nonce_store.store
    store.put("challenge", "c-1", b"data", nonce_store.now() + SHORT)
    nonce_store.advance(SHORT + 0.2)
    assert store.take("challenge", "c-1") is None


def test_put_already_expired_is_not_held(nonce_store: Store) -> None:
    """A challenge whose expiry is past is not held."""
    store = nonce_store.store
    store.put("challenge", "c-1", b"data", nonce_store.now() - 1)
    assert store.take("challenge", "c-1") is None


def test_put_replaces_the_data(nonce_store: Store) -> None:
    """Putting under a value twice keeps the second data."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    store.put("challenge", "c-1", b"first", expires)
    store.put("challenge", "c-1", b"second", expires)
    assert store.take("challenge", "c-1") == b"second"
    assert store.take("challenge", "c-1") is None


def test_issued_and_used_values_are_separate(nonce_store: Store) -> None:
    """Using a value neither creates nor consumes an issued challenge of the same value."""
    store, expires = nonce_store.store, nonce_store.now() + LIFETIME
    assert store.use("challenge", "c-1", expires)
    assert store.take("challenge", "c-1") is None
    store.put("challenge", "c-2", b"data", expires)
    assert store.use("challenge", "c-2", expires)
    assert store.take("challenge", "c-2") == b"data"


def test_binary_data_round_trips(nonce_store: Store) -> None:
    """Every byte value survives put and take."""
    data = bytes(range(256))
    nonce_store.store.put("challenge", "c-1", data, nonce_store.now() + LIFETIME)
    assert nonce_store.store.take("challenge", "c-1") == data


def test_concurrent_take_has_exactly_one_winner(nonce_store: Store) -> None:
    """Threads racing to take one challenge: exactly one gets its data."""
    store = nonce_store.store
    store.put("challenge", "contested", b"data", nonce_store.now() + LIFETIME)
    results = race(16, lambda: store.take("challenge", "contested"))
    assert sorted(results, key=lambda r: r is not None) == [None] * 15 + [b"data"]


@given(st.text(max_size=40))
def test_any_value_is_single_use(value: str) -> None:
    """Whatever string a device sends as a nonce, it is accepted once."""
    store = MemoryNonceStore(clock=FakeClock())
    assert store.use("http-signature", value, FakeClock().now + LIFETIME)
    assert not store.use("http-signature", value, FakeClock().now + LIFETIME)


# --- the memory store's bound --------------------------------------------------------------------------


def test_full_memory_store_refuses_rather_than_forget() -> None:
    """With max_entries unexpired records held, a new one raises StoreUnavailable naming the bound."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=3, clock=clock)
    for n in range(3):
        assert store.use("http-signature", f"n-{n}", clock.now + LIFETIME)
    with pytest.raises(StoreUnavailable, match="max_entries=3"):
        store.use("http-signature", "n-3", clock.now + LIFETIME)
    assert store.use("http-signature", "n-0", clock.now + LIFETIME) is False  # nothing was forgotten


def test_full_memory_store_makes_room_as_records_expire() -> None:
    """Expired records are purged, so a full store accepts again once one has expired."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=2, clock=clock)
    assert store.use("http-signature", "short", clock.now + 10)
    assert store.use("http-signature", "long", clock.now + LIFETIME)
    clock.advance(11)
    assert store.use("http-signature", "new", clock.now + LIFETIME)
    assert len(store) == 2


def test_issued_challenges_count_towards_the_bound() -> None:
    """Held challenges take room like nonces; taking one frees it."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=1, clock=clock)
    store.put("challenge", "c-1", b"data", clock.now + LIFETIME)
    with pytest.raises(StoreUnavailable, match="max_entries=1"):
        store.put("challenge", "c-2", b"data", clock.now + LIFETIME)
    assert store.take("challenge", "c-1") == b"data"
    store.put("challenge", "c-2", b"data", clock.now + LIFETIME)
    assert store.take("challenge", "c-2") == b"data"


def test_replacing_a_challenge_in_a_full_store_is_allowed() -> None:
    """Putting again under a held value does not need more room."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=1, clock=clock)
    store.put("challenge", "c-1", b"first", clock.now + LIFETIME)
    store.put("challenge", "c-1", b"second", clock.now + LIFETIME)
    assert store.take("challenge", "c-1") == b"second"


def test_many_put_take_cycles_keep_working_within_the_bound() -> None:
    """Challenges taken long before they expire never exhaust a small store."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=2, clock=clock)
    for n in range(5000):
        store.put("challenge", f"c-{n}", b"data", clock.now + LIFETIME)
        assert store.take("challenge", f"c-{n}") == b"data"
        clock.advance(0.001)
    assert len(store) == 0


def test_an_expired_record_whose_second_is_not_over_is_no_longer_a_use() -> None:
    """Records are dropped a whole second at a time; one that expired earlier in the second under way
    is still held, but a new use of its value is accepted."""
    clock = FakeClock(1000.0)
    store = MemoryNonceStore(clock=clock)
    assert store.use("http-signature", "n", 1000.5)
    clock.advance(0.7)  # 1000.7: expired, its second (1000) not over
    assert len(store) == 1
    assert store.use("http-signature", "n", 1300.0)
    assert not store.use("http-signature", "n", 1300.0)


def test_a_full_store_makes_room_from_the_second_under_way() -> None:
    """At the bound, records expired earlier in the current second are dropped to make room."""
    clock = FakeClock(1000.0)
    store = MemoryNonceStore(max_entries=2, clock=clock)
    assert store.use("http-signature", "short", 1000.5)
    store.put("challenge", "c", b"data", 1000.6)
    clock.advance(0.7)
    assert store.use("http-signature", "new", 1300.0)
    store.put("challenge", "d", b"data", 1300.0)
    with pytest.raises(StoreUnavailable, match="max_entries=2"):
        store.use("http-signature", "more", 1300.0)


class _CountingDict(dict):  # type: ignore[type-arg]
    """A dict that counts look-ups by ``get``."""

    gets = 0

    def get(self, key: object, default: object = None) -> object:
        self.gets += 1
        return super().get(key, default)


def test_a_full_store_does_not_walk_the_second_under_way_on_every_refusal() -> None:
    """A signer can make all its records expire in one second; at the bound, each refused use then
    looks at what expired since the last call, not at every record of that second again."""
    clock = FakeClock(1300.1)
    store = MemoryNonceStore(max_entries=5000, clock=clock)
    for n in range(5000):
        assert store.use("http-signature", f"n-{n}", 1300.5 + n * 1e-5)
    counting = _CountingDict(store._expiry)
    store._expiry = counting
    for n in range(300):
        with pytest.raises(StoreUnavailable):
            store.use("http-signature", f"more-{n}", 1400.0)
    assert counting.gets < 2 * 5000 + 300 * 4  # one pass to order the second, then a few per call
    clock.now = 1300.5 + 99.5e-5  # the first hundred have expired
    for n in range(100):
        assert store.use("http-signature", f"later-{n}", 1400.0)
    with pytest.raises(StoreUnavailable):
        store.use("http-signature", "one-too-many", 1400.0)
    assert store.use("http-signature", "n-4999", 1400.0) is False  # nothing unexpired was forgotten


def test_put_of_data_that_is_not_bytes_changes_nothing() -> None:
    """A put that fails on its data leaves the record held before it, with its own expiry."""
    clock = FakeClock(1000.0)
    store = MemoryNonceStore(clock=clock)
    store.put("challenge", "c", b"old", 1001.0)
    with pytest.raises(TypeError):
        store.put("challenge", "c", "text", 2000.0)  # type: ignore[arg-type]
    clock.advance(50)
    assert store.take("challenge", "c") is None  # b"old" expired at 1001, as it was put


def test_the_memory_store_agrees_with_a_plain_model_of_the_contract() -> None:
    """A seeded random run of uses, puts, takes and clock steps (within and across seconds) gives the
    answers a dictionary of (expiry, data) that forgets nothing early would give, and what the store
    lists stays bounded by what it holds."""
    rng = random.Random(20261124)
    clock = FakeClock(5000.0)
    store = MemoryNonceStore(clock=clock)
    model: dict[tuple[str, str], tuple[float, bytes]] = {}
    for step in range(30_000):
        op, value = rng.random(), f"v{rng.randrange(400)}"
        expires_at = clock.now + rng.choice([0.05, 0.4, 1.0, 2.5, 30.0]) * rng.random()
        if op < 0.45:
            held = model.get(("used", value))
            expected = expires_at > clock.now and (held is None or held[0] <= clock.now)
            assert store.use("http-signature", value, expires_at) is expected, step
            if expected:
                model[("used", value)] = (expires_at, b"")
        elif op < 0.7:
            store.put("challenge", value, value.encode(), expires_at)
            if expires_at > clock.now:
                model[("issued", value)] = (expires_at, value.encode())
        elif op < 0.9:
            held = model.pop(("issued", value), None)
            expected_data = held[1] if held is not None and held[0] > clock.now else None
            assert store.take("challenge", value) == expected_data, step
        else:
            clock.advance(rng.choice([0.01, 0.3, 1.0, 4.0]))
        assert store._listed <= 2 * len(store) + 1024 + 1


@pytest.mark.parametrize("bound", [0, -1, True, 1.5])
def test_max_entries_must_be_a_positive_integer(bound: object) -> None:
    """A bound that is not a positive integer is a configuration error."""
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryNonceStore(max_entries=bound)  # type: ignore[arg-type]


# --- Redis specifics -----------------------------------------------------------------------------------


def test_redis_record_expires_at_expires_at(redis_prefix: tuple[str, str]) -> None:
    """``use`` sets the key's expiry to ``expires_at`` (PXAT), whole milliseconds rounded up."""
    url, prefix = redis_prefix
    store = RedisNonceStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    expires = FakeClock().now + 0.0004  # far ahead, with a sub-millisecond part
    assert store.use("http-signature", "n-1", expires)
    assert client.pexpiretime(f"{prefix}used:http-signature:n-1") == 1_800_000_000_001
    client.close()


@pytest.mark.parametrize("operation", ["use", "put", "take"])
def test_unreachable_redis_raises_store_unavailable(operation: str) -> None:
    """Nothing listens on the port: every operation raises StoreUnavailable."""
    store = RedisNonceStore(f"redis://127.0.0.1:{free_port()}/0")
    expires = FakeClock().now + LIFETIME
    calls: dict[str, Callable[[], object]] = {
        "use": lambda: store.use("http-signature", "n-1", expires),
        "put": lambda: store.put("challenge", "c-1", b"data", expires),
        "take": lambda: store.take("challenge", "c-1"),
    }
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        calls[operation]()


def test_full_redis_raises_store_unavailable() -> None:
    """A Redis at its maxmemory (noeviction) refuses the write, reported as StoreUnavailable."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
        store = RedisNonceStore(client)
        with pytest.raises(StoreUnavailable, match="OutOfMemoryError"):
            store.use("http-signature", "n-1", FakeClock().now + LIFETIME)
        client.close()


def test_redis_client_with_text_replies_is_refused(redis_url: str) -> None:
    """A client made with decode_responses=True would turn data into text: a configuration error."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisNonceStore(client)
    client.close()


def test_redis_store_accepts_a_client(redis_prefix: tuple[str, str]) -> None:
    """A ready-made client is used as given."""
    url, prefix = redis_prefix
    client = redis.Redis.from_url(url)
    store = RedisNonceStore(client, prefix=prefix)
    assert store.use("http-signature", "n-1", FakeClock().now + LIFETIME)
    assert client.exists(f"{prefix}used:http-signature:n-1") == 1
    client.close()


@pytest.mark.parametrize("target", ["not a url", "http://127.0.0.1/", 42])
def test_bad_redis_target_is_a_configuration_error(target: object) -> None:
    """Neither a redis:// URL nor a client: a configuration error."""
    with pytest.raises(ConfigurationError, match=r"[Rr]edis"):
        RedisNonceStore(target)  # type: ignore[arg-type]


def test_redis_keeps_values_with_lone_surrogates_apart(redis_prefix: tuple[str, str]) -> None:
    """A nonce decoded from hostile JSON may hold a lone surrogate; it is still recorded once."""
    url, prefix = redis_prefix
    store = RedisNonceStore(url, prefix=prefix)
    expires = FakeClock().now + LIFETIME
    assert store.use("challenge", "\ud800", expires)
    assert not store.use("challenge", "\ud800", expires)
    assert store.use("challenge", "\ud801", expires)


def test_peek_reads_what_is_held_and_leaves_it(nonce_store: Store) -> None:
    store = nonce_store.store
    store.put("session", "s-1", b"note", nonce_store.now() + LIFETIME)
    assert store.peek("session", "s-1") == b"note"
    assert store.peek("session", "s-1") == b"note"
    assert store.take("session", "s-1") == b"note"
    assert store.peek("session", "s-1") is None
    assert store.peek("session", "never-held") is None

"""The ledger cache under requests that prove nothing: forged signatures naming DIDs that are not on
the ledger, forged key ids naming enrolled DIDs, credentials naming any issuer, and more DIDs than the
cache may hold. Each costs a bounded number of ledger reads and a bounded number of entries, and no
honest device's remembered decisions."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document
from tests.did_registry.ledger.conftest import new_actor
from tests.verifier.conftest_ledger import AUDIENCE, Clock, Device, Ledger, ledger  # noqa: F401
from tests.verifier.test_ledger_view import rotate, warm
from tests.verifier.test_verifier_signed import refusal, signed
from verifier import Reason, Refused, Verifier
from verifier._ledger_view import REREADS_PER_SECOND
from verifier.ledger_cache import ABSENT_FOR, ISSUERS_KEPT, Changes, LedgerCache, LedgerSource
from verifier.testing import StaticLedger
from wallet.credential import build_credential, issue_credential
from wallet.device_client import CREDENTIAL_HEADER, SIGNED_COMPONENTS, encode_device_credential
from wallet.http_signatures import HttpRequest, sign_request
from wallet.rotation import rotated_document

URL = "https://service.example/readings"


class CountingSource:
    """A ledger source that counts the ``did:`` and ``trust:`` records read through it."""

    def __init__(self, inner: LedgerSource) -> None:
        self.inner = inner
        self.did_reads = 0
        self.issuer_reads = 0

    def fetch(self, keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
        """Count, then read through."""
        self.did_reads += sum(1 for k in keys if k.startswith("did:"))
        self.issuer_reads += sum(1 for k in keys if k.startswith("trust:"))
        return self.inner.fetch(keys, min_height)


def counted(verifier: Verifier) -> CountingSource:
    """Count the reads of ``verifier``'s one network from now on."""
    (cache,) = verifier.caches.values()
    assert cache.source is not None
    counting = CountingSource(cache.source)
    cache.source = counting
    return counting


class Fleet:
    """A static ledger with an accredited issuer and its revocation list; a settable clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.ledger = StaticLedger("testnet")
        self.issuer_key = Ed25519PrivateKey.generate()
        self.issuer = self.ledger.add_issuer(self.issuer_key)
        self.status_url = self.ledger.create_status_list(self.issuer, "devices")
        self.next_index = 0

    def verifier(self, **bounds: int) -> Verifier:
        """A verifier of the ledger whose cache has the given bounds (``max_dids``, ...)."""
        verifier = Verifier([], clock=self.clock, follow=False)
        cache = LedgerCache(self.ledger.network, self.ledger, clock=self.clock, live=True, **bounds)
        cache.confirm(self.ledger.height)
        verifier._attach(cache)
        self.ledger._caches.append(cache)  # told of every change, as a followed cache of its blocks
        return verifier

    def enrol(self) -> tuple[Ed25519PrivateKey, str, str]:
        """A new device on the ledger: its key, DID and ``Device-Credential`` header."""
        key = Ed25519PrivateKey.generate()
        did = self.ledger.add_device(key)
        index, self.next_index = self.next_index, self.next_index + 1
        now = datetime.fromtimestamp(self.clock(), UTC)
        status = {"id": f"{self.status_url}#{index}", "type": "BitstringStatusListEntry",
                  "statusPurpose": "revocation", "statusListIndex": str(index),
                  "statusListCredential": self.status_url}  # fmt: skip
        document = build_credential(
            issuer=self.issuer,
            subject={"id": did},
            types=["DeviceCredential"],
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=365),
            status=status,
        )
        credential = issue_credential(document, self.issuer_key, f"{self.issuer}#key-1", created=now)
        return key, did, encode_device_credential(credential)

    def request(self, key: Ed25519PrivateKey, keyid: str, header: str | None = None) -> HttpRequest:
        """A POST signed by ``key`` under ``keyid`` (with ``header`` as its credential), fresh nonce."""
        headers = {"content-type": "application/json"}
        if header is not None:
            headers[CREDENTIAL_HEADER] = header
        body = b'{"celsius": 21.5}'
        request = HttpRequest("POST", URL, headers, body)
        now = int(self.clock())
        added = sign_request(
            request, key=key, keyid=keyid, components=SIGNED_COMPONENTS, created=now,
            expires=now + 60, nonce=secrets.token_urlsafe(16),
        )  # fmt: skip
        return HttpRequest("POST", URL, {**request.headers, **added}, body)

    def forged(self, keyid: str) -> HttpRequest:
        """A request naming ``keyid``, signed with a key nobody enrolled."""
        return self.request(Ed25519PrivateKey.generate(), keyid)


def reason(verifier: Verifier, request: HttpRequest) -> Reason:
    """Why ``request`` is refused."""
    with pytest.raises(Refused) as refused:
        verifier.authenticate_request(request)
    return refused.value.reason


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """A static ledger with an accredited issuer."""
    yield Fleet()


# -- finding 2: DIDs that are not on the ledger ---------------------------------------------------


def test_requests_naming_one_unknown_did_cost_one_ledger_read(ledger: Ledger) -> None:  # noqa: F811
    """1,000 requests naming the same DID, which is not on the ledger, are each refused did_not_found,
    and the DID is read from the ledger once."""
    stranger = new_actor()  # never created
    device = Device(stranger, ledger.credential(stranger.did, 0), 0)
    with ledger.verifier() as verifier:
        counting = counted(verifier)
        for _ in range(1000):
            assert refusal(verifier, signed(ledger, device)) is Reason.DID_NOT_FOUND
        assert counting.did_reads == 1


def test_a_did_created_after_it_was_found_absent_is_found(ledger: Ledger) -> None:  # noqa: F811
    """A DID remembered as absent is dropped by the block that creates it: once the cache applies that
    block, the device is let in (no stale absence)."""
    actor = new_actor()
    device = Device(actor, ledger.credential(actor.did, 0), 0)
    with ledger.verifier() as verifier:
        assert refusal(verifier, signed(ledger, device)) is Reason.DID_NOT_FOUND  # absent, remembered
        ledger.commit(actor.txn("did.create", {"document": actor.document()}, ledger.issuer))
        verifier.caches["testnet"].catch_up()  # the header stream's work: the block names the DID
        assert verifier.authenticate_request(signed(ledger, device), AUDIENCE).did == actor.did


def test_a_device_found_absent_while_its_creation_was_pending_is_found_a_second_later(
    ledger: Ledger,  # noqa: F811
) -> None:
    """A device asking while its creation is pending is refused did_not_found; once the creation
    commits, it is let in a second later (ABSENT_FOR) although the cache, not following the network,
    has not applied the block (the absence was remembered until the cache applied it: up to the
    staleness limit, 30 s)."""
    actor = new_actor()
    device = Device(actor, ledger.credential(actor.did, 0), 0)
    with ledger.verifier() as verifier:
        assert refusal(verifier, signed(ledger, device)) is Reason.DID_NOT_FOUND
        ledger.commit(actor.txn("did.create", {"document": actor.document()}, ledger.issuer))
        assert refusal(verifier, signed(ledger, device)) is Reason.DID_NOT_FOUND  # within the second
        ledger.clock.advance(ABSENT_FOR)
        assert verifier.authenticate_request(signed(ledger, device), AUDIENCE).did == actor.did


def test_dids_proven_absent_are_remembered_up_to_the_bound(fleet: Fleet) -> None:
    """With room for 50 absent DIDs, 200 distinct unknown DIDs leave at most 50 remembered: the 50 asked
    for last cost no read again, the first asked for does."""
    verifier = fleet.verifier(max_absent=50)
    cache = verifier.caches["testnet"]
    counting = counted(verifier)
    unknown = [fleet.ledger.did_for(Ed25519PrivateKey.generate()) for _ in range(200)]
    for did in unknown:
        assert cache.dids([did]) == [None]
        assert cache.held()["absent"] <= 50
    reads = counting.did_reads
    assert cache.dids(unknown[-50:]) == [None] * 50 and counting.did_reads == reads
    assert cache.dids(unknown[:1]) == [None] and counting.did_reads == reads + 1


def test_dids_proven_absent_are_forgotten_when_anything_may_have_changed(fleet: Fleet) -> None:
    """A cache that was told anything may have changed (it skipped blocks) reads a DID it had proven
    absent again."""
    verifier = fleet.verifier()
    cache = verifier.caches["testnet"]
    counting = counted(verifier)
    did = fleet.ledger.did_for(Ed25519PrivateKey.generate())
    assert cache.dids([did]) == [None] and cache.dids([did]) == [None]
    assert counting.did_reads == 1
    cache.invalidate(Changes(fleet.ledger.height, everything=True))
    assert cache.dids([did]) == [None] and counting.did_reads == 2


# -- finding 3: forged key ids naming enrolled DIDs -----------------------------------------------


def test_forged_key_ids_leave_the_generation_unchanged(fleet: Fleet) -> None:
    """A forged key id makes the verifier read the DID again; the entry read says what the cached one
    says, so the generation (and every decision remembered at it) stands."""
    devices = [fleet.enrol() for _ in range(10)]
    verifier = fleet.verifier()
    for key, did, header in devices:
        verifier.authenticate_request(fleet.request(key, f"{did}#key-1", header))
    generation = verifier.ledger.generation()
    for _, did, _ in devices:
        assert reason(verifier, fleet.forged(f"{did}#nope")) is Reason.KEY_NOT_AUTHORIZED
    assert verifier.ledger.rereads == 10
    assert verifier.ledger.generation() == generation


def test_forged_key_ids_across_many_dids_cost_at_most_the_budget_in_reads(fleet: Fleet) -> None:
    """300 forged key ids naming 300 cached, enrolled DIDs within one second cost at most
    REREADS_PER_SECOND ledger reads (the rest refused from the cached entries); a second later the
    budget has refilled."""
    dids = [fleet.ledger.add_device(Ed25519PrivateKey.generate()) for _ in range(301)]
    verifier = fleet.verifier()
    verifier.caches["testnet"].dids(dids)
    counting = counted(verifier)
    for did in dids[:300]:
        assert reason(verifier, fleet.forged(f"{did}#nope")) is Reason.KEY_NOT_AUTHORIZED
    assert counting.did_reads == REREADS_PER_SECOND
    fleet.clock.advance(1.0)
    assert reason(verifier, fleet.forged(f"{dids[300]}#nope")) is Reason.KEY_NOT_AUTHORIZED
    assert counting.did_reads == REREADS_PER_SECOND + 1


def test_a_forged_key_id_for_an_uncached_did_costs_one_read(fleet: Fleet) -> None:
    """A forged key id naming an enrolled DID not yet cached reads it once: the read that finds it is
    as fresh as a re-read would be."""
    did = fleet.ledger.add_device(Ed25519PrivateKey.generate())
    verifier = fleet.verifier()
    counting = counted(verifier)
    assert reason(verifier, fleet.forged(f"{did}#nope")) is Reason.KEY_NOT_AUTHORIZED
    assert counting.did_reads == 1


def test_a_rotated_key_is_let_in_once_the_budget_refills(ledger: Ledger) -> None:  # noqa: F811
    """A key added by a block the cache has not applied is found by a re-read; while forged key ids
    have spent the budget it is refused key_not_authorized, and once the budget refills it is let in,
    the different entry moving the generation on."""
    device, others = ledger.enrol(), [ledger.enrol() for _ in range(2)]
    with ledger.verifier() as verifier:
        warm(ledger, verifier, device)
        verifier.caches["testnet"].dids([other.did for other in others])
        verifier.ledger.reread_rate = 2
        new_key, new_method = rotate(ledger, device)
        for other in others:  # the budget spent
            forged = signed(ledger, other, key=Ed25519PrivateKey.generate(), keyid=f"{other.did}#nope")
            assert refusal(verifier, forged) is Reason.KEY_NOT_AUTHORIZED
        rotated = signed(ledger, device, key=new_key, keyid=new_method)
        assert refusal(verifier, rotated) is Reason.KEY_NOT_AUTHORIZED
        generation = verifier.ledger.generation()
        ledger.clock.advance(0.5)  # one re-read more
        result = verifier.authenticate_request(
            signed(ledger, device, key=new_key, keyid=new_method), AUDIENCE
        )
        assert result.key_id == new_method
        assert verifier.ledger.generation() > generation


# -- finding 7: issuers ---------------------------------------------------------------------------


def test_fresh_issuers_leave_at_most_the_bound_held(fleet: Fleet) -> None:
    """10,000 issuers nobody heard of, asked for once each, leave at most ISSUERS_KEPT entries; the
    real issuer, asked for between them, stays held (read once)."""
    verifier = fleet.verifier()
    cache = verifier.caches["testnet"]
    counting = counted(verifier)
    for number in range(10_000):
        found = cache.issuer(fleet.ledger.did_for(Ed25519PrivateKey.generate()))
        assert not found.types and not found.issuer_role
        if number % 100 == 0:
            assert cache.issuer(fleet.issuer).issuer_role
    assert cache.held()["issuers"] <= ISSUERS_KEPT
    assert counting.issuer_reads == 10_000 + 1


# -- finding 8: DID entries -----------------------------------------------------------------------


def test_the_cache_never_holds_more_than_max_dids(fleet: Fleet) -> None:
    """Reading 1,000 DIDs one by one into a cache bounded at 100 leaves it holding 100 at most, always;
    the DID read last is still held."""
    dids = [fleet.ledger.add_device(Ed25519PrivateKey.generate()) for _ in range(1000)]
    verifier = fleet.verifier(max_dids=100)
    cache = verifier.caches["testnet"]
    for did in dids:
        assert cache.dids([did])[0] is not None
        assert len(cache) <= 100
    assert cache.cached_did(dids[-1]) is not None


def test_a_device_used_often_outlives_those_read_once(fleet: Fleet) -> None:
    """A device that authenticates between the DIDs forged requests pull in stays cached, however many
    are pulled in: it (and its credential's issuer) cost one ledger read in all."""
    key, did, header = fleet.enrol()
    victims = [fleet.ledger.add_device(Ed25519PrivateKey.generate()) for _ in range(300)]
    verifier = fleet.verifier(max_dids=40)
    counting = counted(verifier)
    for number, victim in enumerate(victims):
        assert reason(verifier, fleet.forged(f"{victim}#key-1")) is Reason.BAD_SIGNATURE
        if number % 10 == 0:
            assert verifier.authenticate_request(fleet.request(key, f"{did}#key-1", header)).did == did
    assert counting.did_reads == 300 + 1 + 1  # the victims, the device and its credential's issuer


def test_an_evicted_device_authenticates_again(fleet: Fleet) -> None:
    """A device whose entry was forgotten to make room is read again and let in, and forgetting it
    moved no generation."""
    key, did, header = fleet.enrol()
    others = [fleet.enrol() for _ in range(30)]
    verifier = fleet.verifier(max_dids=10)
    cache = verifier.caches["testnet"]
    counting = counted(verifier)
    assert verifier.authenticate_request(fleet.request(key, f"{did}#key-1", header)).did == did
    generation = verifier.ledger.generation()
    for other_key, other, other_header in others:
        verifier.authenticate_request(fleet.request(other_key, f"{other}#key-1", other_header))
    assert cache.cached_did(did) is None
    assert verifier.ledger.generation() == generation
    assert verifier.authenticate_request(fleet.request(key, f"{did}#key-1", header)).did == did
    assert counting.did_reads == 1 + 1 + 30 + 1  # the device, the issuer, the others, the device again


def test_an_evicted_device_s_old_key_is_refused_after_its_rotation(fleet: Fleet) -> None:
    """The decision remembered for a device does not outlive its entry: evicted, then its key rotated
    on the ledger, the device is refused with the old key and let in with the new one."""
    key, did, header = fleet.enrol()
    others = [fleet.ledger.add_device(Ed25519PrivateKey.generate()) for _ in range(30)]
    verifier = fleet.verifier(max_dids=10)
    assert verifier.authenticate_request(fleet.request(key, f"{did}#key-1", header)).did == did
    verifier.caches["testnet"].dids(others)  # the device's entry forgotten
    new = Ed25519PrivateKey.generate()
    document = rotated_document(
        initial_document(did, key.public_key).to_json(), "key-1", new.public_key, "key-2"
    )
    fleet.ledger.update(did, document)
    assert reason(verifier, fleet.request(key, f"{did}#key-1", header)) is Reason.KEY_NOT_AUTHORIZED
    assert verifier.authenticate_request(fleet.request(new, f"{did}#key-2", header)).did == did


def test_dids_a_block_dropped_are_tracked_up_to_the_bound(fleet: Fleet) -> None:
    """DIDs a block dropped from the cache are tracked for the next snapshot no more than max_dids at a
    time: 50 cached DIDs each updated leave at most 10 tracked in a cache bounded at 10."""
    keys = [Ed25519PrivateKey.generate() for _ in range(50)]
    dids = [fleet.ledger.add_device(key) for key in keys]
    verifier = fleet.verifier(max_dids=10)
    cache = verifier.caches["testnet"]
    for did, key in zip(dids, keys, strict=True):
        cache.dids([did])
        fleet.ledger.update(did, initial_document(did, key.public_key))
    assert len(cache.keys()) <= 2 * 10 + 2 * 10  # entries held and dropped, two state keys each

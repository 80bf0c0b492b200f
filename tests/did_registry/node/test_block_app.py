"""The engines' view of the ledger: requests parsed once, blocks validated and committed from their bytes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.txn import Transaction
from did_registry.node.block_app import LedgerBlockApp, request_bytes
from did_registry.node.service import NodeService
from tests.did_registry.ledger.conftest import Actor, make_genesis, new_actor

_TIME = "2026-01-02T00:00:00Z"


@dataclass
class Pair:
    """Two nodes of one single-validator network: one proposes, the other validates."""

    proposer: LedgerBlockApp
    validator: LedgerBlockApp
    key: Ed25519PrivateKey
    trustee: Actor

    def creates(self, count: int) -> list[bytes]:
        """Requests creating ``count`` new DIDs, endorsed by the trustee."""
        out = []
        for _ in range(count):
            device = new_actor()
            txn = device.txn("did.create", {"document": device.document()}, self.trustee)
            out.append(request_bytes(txn))
        return out

    def certificate(self, height: int, block: bytes) -> CommitCertificate:
        """The validator's commit certificate for ``block``."""
        digest = self.proposer.digest(block)
        return CommitCertificate(height, digest.hex(), {"node-1": CommitCertificate.sign(digest, self.key)})


@pytest.fixture
def pair() -> Pair:
    """A proposer and a validator over memory stores, at height 0."""
    trustee, key = new_actor(), Ed25519PrivateKey.generate()
    genesis = make_genesis(trustee, key)

    def node() -> LedgerBlockApp:
        app = LedgerApplication(MemoryLedgerStore(), genesis)
        return LedgerBlockApp(NodeService(app, validator_id="node-1", validator_key=key))

    return Pair(node(), node(), key, trustee)


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every request :meth:`Transaction.from_bytes` parses from now on."""
    parsed: list[bytes] = []
    original = Transaction.from_bytes.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Transaction], raw: bytes) -> Transaction:
        parsed.append(raw)
        result: Transaction = original(cls, raw)
        return result

    monkeypatch.setattr(Transaction, "from_bytes", classmethod(counting))
    return parsed


def test_requests_checked_into_the_pool_are_not_parsed_again_in_their_block(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validator parses each request once: when it checks it, not again when the block holding it
    is validated and committed."""
    requests = pair.creates(3)
    block = pair.proposer.propose(1, requests, _TIME)
    assert block is not None
    parsed = _counting_parses(monkeypatch)
    assert all(pair.validator.check(r) for r in requests)
    assert pair.validator.validate(1, block) == pair.proposer.digest(block)
    pair.validator.commit(1, block, pair.certificate(1, block))
    assert sorted(parsed) == sorted(requests)
    assert pair.validator.service.app.height == 1


def test_block_of_unseen_requests_is_parsed_and_validated(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block whose requests the validator never saw is parsed from its bytes and gives the proposer's digest."""
    requests = pair.creates(2)
    block = pair.proposer.propose(1, requests, _TIME)
    assert block is not None
    parsed = _counting_parses(monkeypatch)
    assert pair.validator.validate(1, block) == pair.proposer.digest(block)
    assert sorted(parsed) == sorted(requests)


def test_request_not_in_canonical_form_is_refused_every_time(pair: Pair) -> None:
    """The same transaction with its members in another order is refused, however often it is offered
    (its canonical form is what a block holds)."""
    (request,) = pair.creates(1)
    spaced = request.replace(b'","', b'", "', 1)
    assert spaced != request
    assert not pair.validator.check(spaced)
    assert not pair.validator.check(spaced)
    assert pair.validator.check(request)


def test_check_many_answers_as_check_does(pair: Pair) -> None:
    """A forwarded batch checked at once gets the answers each request gets alone: new requests pass,
    a committed one, a malformed one and a non-canonical one do not."""
    committed = pair.creates(1)
    block = pair.proposer.propose(1, committed, _TIME)
    assert block is not None
    assert pair.validator.validate(1, block) == pair.proposer.digest(block)
    pair.validator.commit(1, block, pair.certificate(1, block))
    fresh = pair.creates(2)
    spaced = fresh[0].replace(b'{"body":', b'{ "body":', 1)
    batch = [fresh[0], committed[0], b"not json", spaced, fresh[1]]
    assert pair.validator.check_many(batch) == [True, False, False, False, True]
    assert [pair.proposer.check(r) for r in batch] == [True, True, False, False, True]  # not committed there


def test_an_empty_block_is_built_when_asked_for_and_validated_elsewhere(pair: Pair) -> None:
    """No requests at all (a block falling due, docs/consensus.md § Freshness): an empty block, which
    another validator accepts and commits."""
    block = pair.proposer.propose(1, [], _TIME)
    assert block is not None and pair.proposer.requests(block) == []
    assert pair.validator.validate(1, block) == pair.proposer.digest(block)
    pair.validator.commit(1, block, pair.certificate(1, block))
    assert pair.validator.service.app.height == 1


def test_requests_that_are_all_refused_make_no_block(pair: Pair) -> None:
    """Requests were offered but none can go in: no block (an empty one is only for a block due)."""
    assert pair.proposer.propose(1, [b"not json"], _TIME) is None


@pytest.mark.parametrize(
    ("offset", "timely"),
    [(15.0, True), (16.0, False), (0.0, True), (-30.0, True), (-31.0, False), (-3600.0, False)],
)
def test_a_fresh_proposal_is_timely_only_when_dated_near_the_validator_s_clock(
    pair: Pair, offset: float, timely: bool
) -> None:
    """Readers judge freshness by certified block times, so a validator votes for a fresh proposal only
    when it is dated at most MAX_TIME_AHEAD after and MAX_TIME_BEHIND before its clock; validate itself
    reads no clock (a block re-issued after a view change is validated, not timed)."""
    block = pair.proposer.propose(1, pair.creates(1), _TIME)
    assert block is not None
    pair.validator.clock = lambda: parse_timestamp(_TIME).timestamp() - offset
    assert pair.validator.timely(block) is timely
    assert pair.validator.validate(1, block) == pair.proposer.digest(block)


def test_bytes_that_are_no_block_are_not_timely(pair: Pair) -> None:
    assert pair.validator.timely(b"\x00\x00\x00\x02{}") is False


def test_parsed_requests_are_kept_within_their_bytes(pair: Pair) -> None:
    """The memo of parsed requests holds at most its bytes (peers choose the size of what they
    forward): past them the oldest are parsed again when next needed."""
    from did_registry.bounded_cache import WeightedCache

    pair.validator._parsed = WeightedCache(100, max_weight=2 * 1700)
    requests = pair.creates(3)
    assert all(1100 < len(r) <= 1700 for r in requests)
    for request in requests:
        pair.validator.parse(request)
    assert [r in pair.validator._parsed for r in requests] == [False, True, True]
    assert pair.validator._parsed.weight <= 2 * 1700


def test_forwarded_requests_are_remembered_by_digest_not_kept_whole(pair: Pair) -> None:
    """A peer forwarding form-valid junk (no signature, a made-up submitter, 200 KB bodies): each is
    admitted on its form once, and the node remembers that by a 32-byte digest a request, not the
    request (it kept every request whole until 200,000 of them: 534 MiB in 16 s from one byzantine
    peer; the parse memo beside it is bounded in bytes)."""
    network = pair.proposer.service.app.genesis.network
    junk = [
        Transaction.build(
            "did.update", network=network, submitter=f"did:junk:{n}", nonce=1, body={"pad": "a" * 200_000}
        ).leaf
        for n in range(50)
    ]
    assert all(pair.validator.check(request) for request in junk)  # on their form only, at first
    remembered = pair.validator._glanced
    assert len(remembered) == 50 and sum(len(key) for key in remembered) == 50 * 32

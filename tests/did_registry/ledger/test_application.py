"""The application: it re-checks its stored head when it starts, and the headers it validates."""

from __future__ import annotations

from dataclasses import replace

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import InvalidBlock, LedgerApplication
from did_registry.ledger.block import Block, CommitCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage import MemoryLedgerStore
from tests.did_registry.ledger.conftest import Network, make_genesis, new_actor


def test_restart_resumes_at_the_head(net: Network) -> None:
    """A new application on the same store resumes at the same height and root."""
    net.onboard("issuer")
    again = LedgerApplication(net.app.store, net.app.genesis)
    assert again.head == net.app.head


def test_forged_head_certificate_is_refused_at_start(net: Network) -> None:
    """A stored head whose certificate is not the validators' stops the node from starting."""
    net.onboard()
    store = net.app.store
    block, _ = store.block(net.app.height)  # type: ignore[misc]
    forged = CommitCertificate(
        block.header.height,
        block.header.hash.hex(),
        {"node-1": CommitCertificate.sign(block.header.hash, Ed25519PrivateKey.generate())},
    )
    store._blocks[-1] = (block, forged)  # type: ignore[attr-defined]
    with pytest.raises(InvalidBlock, match=r"signature"):
        LedgerApplication(store, net.app.genesis)


def test_other_genesis_is_refused(net: Network) -> None:
    """A store holding another network's chain is refused."""
    other = make_genesis(new_actor(), Ed25519PrivateKey.generate())
    with pytest.raises(InvalidBlock, match="genesis"):
        LedgerApplication(net.app.store, other)


def _proposed_with(net: Network, **header: str) -> Block:
    """An empty block proposed on the head, its header then given ``header``'s fields."""
    block = net.app.propose([], time="2026-01-02T00:00:00Z", proposer="node-1").block
    return Block(replace(block.header, **header), block.txns)


@pytest.mark.parametrize(
    "time",
    ["2026-01-02T00:00:00-11:00", "2026-01-02T00:00:00.5Z", "2026-01-02T00:00:00." + "0" * 6000 + "Z"],
)
def test_a_block_time_not_in_utc_whole_seconds_is_refused(net: Network, time: str) -> None:
    """Block times are written one way, UTC whole seconds: a zone offset could sort after its
    successors as text, and thousands of sub-second digits were more than PostgreSQL can index."""
    with pytest.raises(InvalidBlock, match="UTC whole seconds"):
        net.app.validate(_proposed_with(net, time=time))


@pytest.mark.parametrize("proposer", ["mallory", "node-1\x00", "n" * 5000])
def test_a_block_proposed_by_no_validator_is_refused(net: Network, proposer: str) -> None:
    """The proposer a header names must be a validator (a NUL in it halted PostgreSQL nodes)."""
    with pytest.raises(InvalidBlock, match="no validator"):
        net.app.validate(_proposed_with(net, proposer=proposer))


def test_a_proposal_is_never_before_a_head_time_written_with_a_zone(net: Network) -> None:
    """After a head whose time names a zone (11:00:01Z written as 00:00:01-11:00), a proposal from a
    clock at 10:00Z takes the head's instant, in UTC, and a validator accepts it."""
    data = {**net.app.genesis.to_json(), "time": "2026-01-02T00:00:01-11:00"}
    genesis = Genesis.from_json(data)
    proposer, validator = (LedgerApplication(MemoryLedgerStore(), genesis) for _ in range(2))
    block = proposer.propose([], time="2026-01-02T10:00:00Z", proposer="node-1").block
    assert block.header.time == "2026-01-02T11:00:01Z"
    assert validator.validate(block).block.header == block.header

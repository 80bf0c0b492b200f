"""The application re-checks its stored head when it starts."""

from __future__ import annotations

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import InvalidBlock, LedgerApplication
from did_registry.ledger.block import CommitCertificate
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

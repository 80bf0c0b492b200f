"""Quarantine reports filed at once by the same reporter each get a nonce of their own: none is
refused as a replay, and every device reported ends up quarantined."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from did_registry.ledger.txn import Transaction
from tests.did_registry.ledger.conftest import Actor, new_actor
from tests.verifier.conftest_ledger import NETWORK, Ledger, ledger  # noqa: F401
from verifier import Verifier
from verifier._report import ReportNonces


@pytest.fixture
def reporter(ledger: Ledger) -> Actor:  # noqa: F811
    """An actor holding the reporter role."""
    actor = new_actor()
    ledger.commit(actor.txn("did.create", {"document": actor.document()}, ledger.node.trustee))
    ledger.commit(ledger.node.trustee.txn("role.grant", {"did": actor.did, "role": "reporter"}))
    return actor


@pytest.fixture
def verifier(ledger: Ledger) -> Iterator[Verifier]:  # noqa: F811
    """A verifier of the fixture's network (no background thread)."""
    made = ledger.verifier()
    yield made
    made.close()


def test_nonces_handed_out_before_any_is_committed_differ() -> None:
    """Two nonces asked for against the same proven nonce are the next two."""
    nonces = ReportNonces()
    assert [nonces.next("testnet", "did:trellis:testnet:r", 4) for _ in range(2)] == [5, 6]


def test_a_nonce_is_above_a_higher_proven_one() -> None:
    """Once the ledger proves a higher nonce (another process reported), the next is above it."""
    nonces = ReportNonces()
    nonces.next("testnet", "did:trellis:testnet:r", 4)
    assert nonces.next("testnet", "did:trellis:testnet:r", 9) == 10


def test_a_report_filed_while_another_is_pending_is_committed_and_so_is_the_other(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
    reporter: Actor,
) -> None:
    """The second report is filed after the first took its nonce and before it was submitted: both
    are committed, and both devices are quarantined."""
    first, second = ledger.enrol(), ledger.enrol()
    client = verifier.client(NETWORK)
    submit_and_wait = client.submit_and_wait
    nonces: list[int] = []

    def meanwhile(txns: Transaction, timeout: float = 30.0) -> list[dict[str, Any]]:
        nonces.append(txns.nonce)
        if len(nonces) == 1:  # the first report, built but not submitted yet: file the second now
            verifier.report(second.did, b"second", reporter.key, reporter.did, description="second")
        return submit_and_wait(txns, timeout)

    client.submit_and_wait = meanwhile  # type: ignore[method-assign,assignment]
    verifier.report(first.did, b"first", reporter.key, reporter.did, description="first")
    for device in (first, second):
        quarantined, _ = ledger.client.prove(f"quarantine:{device.did}")
        assert quarantined is not None, device.did
    assert len(set(nonces)) == len(nonces)


def test_a_report_whose_nonce_another_process_used_is_filed_again_with_a_fresh_one(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
    reporter: Actor,
) -> None:
    """Another process of the service (a verifier of its own) reports in between: the ledger answers
    replay for the nonce, and the report is built again with a fresh one."""
    first, second = ledger.enrol(), ledger.enrol()
    other = ledger.verifier()
    client = verifier.client(NETWORK)
    submit_and_wait = client.submit_and_wait
    filed = []

    def meanwhile(txns: Transaction, timeout: float = 30.0) -> list[dict[str, Any]]:
        if not filed:
            filed.append(other.report(second.did, b"second", reporter.key, reporter.did, description="other"))
        return submit_and_wait(txns, timeout)

    client.submit_and_wait = meanwhile  # type: ignore[method-assign,assignment]
    try:
        verifier.report(first.did, b"first", reporter.key, reporter.did, description="first")
    finally:
        other.close()
    quarantined, _ = ledger.client.prove(f"quarantine:{first.did}")
    assert quarantined is not None

"""A batch submitted to a node is checked ahead (documents parsed, signatures verified) a chunk at a
time, in order, and no further than the first chunk where a check fails: a batch doomed by its first
transaction costs checking a chunk, not every transaction of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from did_registry.ledger import application
from did_registry.ledger.txn import Transaction
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import Node


def _creations(node: Node, count: int) -> list[Transaction]:
    """``count`` did.create transactions endorsed by the trustee."""
    out = []
    for _ in range(count):
        actor = new_actor()
        out.append(actor.txn("did.create", {"document": actor.document()}, node.trustee))
    return out


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[Transaction]:
    """The transactions checked ahead from now on."""
    seen: list[Transaction] = []
    check = application.preverify

    def counting(view: Any, txn: Transaction) -> bool:
        seen.append(txn)
        return check(view, txn)

    monkeypatch.setattr(application, "preverify", counting)
    return seen


def test_a_batch_whose_first_signature_is_forged_is_checked_no_further_than_a_chunk(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 creations, the first signed with another transaction's signature: refused
    bad_signature after checking at most 256 of them ahead (all 1,000 were parsed and verified)."""
    txns = _creations(node, 1000)
    txns[0] = replace(txns[0], signatures=txns[1].signatures)
    seen = _counted(monkeypatch)
    response = node.submit(*txns)
    assert response.status_code == 401 and response.get_json()["code"] == "bad_signature"
    assert len(seen) <= 256


def test_a_sound_batch_is_checked_ahead_whole(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose transactions all check is checked ahead whole, then admitted."""
    txns = _creations(node, 600)
    seen = _counted(monkeypatch)
    assert node.submit(*txns).status_code == 202
    assert len(seen) == 600

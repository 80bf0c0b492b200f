"""Helpers for the SQL ledger store tests: a varied chain, a recording store, whole-store snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.storage.base import Commit
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.storage.models import TABLES
from did_registry.ledger.storage.sql import SQLLedgerStore
from did_registry.ledger.txn import Transaction
from tests.did_registry.ledger.conftest import Actor, Network, new_actor


class RecordingStore(MemoryLedgerStore):
    """A memory store that keeps every commit it was given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[Commit] = []

    def append(self, commit: Commit) -> None:
        """Apply and remember ``commit``."""
        super().append(commit)
        self.commits.append(commit)

    def state(self) -> dict[str, bytes]:
        """The head state, folded from the recorded commits."""
        state: dict[str, bytes] = {}
        for commit in self.commits:
            for key, value in commit.changes.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state


def certify(net: Network, executed_header: Any) -> CommitCertificate:
    """The single validator's certificate for a header."""
    return CommitCertificate(
        executed_header.height,
        executed_header.hash.hex(),
        {"node-1": CommitCertificate.sign(executed_header.hash, net.validator_key)},
    )


def run_at(net: Network, time: str, *txns: Transaction) -> None:
    """Propose, certify and commit a block of ``txns`` at block time ``time``; all must be accepted."""
    executed = net.app.propose(list(txns), time=time, proposer="node-1")
    assert not executed.rejected, [str(e) for _, e in executed.rejected]
    net.app.commit(executed, certify(net, executed.block.header))


@dataclass
class Cast:
    """Who the driven chain made."""

    issuer: Actor
    reporter: Actor
    devices: list[Actor] = field(default_factory=list)


def drive(net: Network) -> Cast:
    """Commit a chain of every kind of write: creates, updates, deactivation, deletes, lists, days."""
    issuer, reporter = net.onboard("issuer"), net.onboard("reporter")
    devices = [new_actor() for _ in range(6)]
    net.accept(*[d.txn("did.create", {"document": d.document()}, issuer) for d in devices])
    builder = DIDDocumentBuilder(devices[0].did)
    builder.add_verification_method(
        Ed25519PrivateKey.generate().public_key,
        fragment="key-2",
        relationships=("authentication", "capabilityInvocation"),
    )
    net.accept(
        devices[0].txn("did.update", {"document": builder.to_json()}), devices[1].txn("did.deactivate", {})
    )
    net.accept(
        issuer.txn("status_list.create", {"list": "rev-1", "purpose": "revocation"}),
        issuer.txn("status_list.create", {"list": "sus-1", "purpose": "suspension"}),
    )
    run_at(net, "2026-01-02T08:00:00Z", issuer.txn("status_list.update", {"list": "rev-1", "set": [1, 5, 9]}))
    run_at(
        net,
        "2026-01-02T09:30:00Z",
        issuer.txn("status_list.update", {"list": "sus-1", "set": [2, 3]}),
        issuer.txn("status_list.update", {"list": "rev-1", "set": [10]}),
    )
    run_at(net, "2026-01-03T10:00:00Z", issuer.txn("status_list.update", {"list": "sus-1", "clear": [2]}))
    net.accept(net.trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
    evidence = {"hash": "ab" * 32, "description": "tampered housing"}
    net.accept(reporter.txn("quarantine.report", {"did": devices[2].did, "evidence": evidence}))
    net.accept(issuer.txn("quarantine.clear", {"did": devices[2].did}))  # deletes the quarantine key
    net.accept(net.trustee.txn("trust.withdraw", {"issuer": issuer.did}))  # deletes the trust key
    net.accept(net.trustee.txn("role.revoke", {"did": reporter.did, "role": "reporter"}))  # and the role
    net.run(devices[1].txn("did.update", {"document": devices[1].document()}))  # rejected: empty block
    return Cast(issuer, reporter, devices)


def snapshot(store: SQLLedgerStore) -> dict[str, Any]:
    """Everything the store holds: every table's rows, and what the protocol reads return."""
    with store.engine.connect() as conn:
        tables = {t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr) for t in TABLES}
    height = store.height()
    blocks = [store.block(h) for h in range(height + 1)] if height is not None else []
    return {"height": height, "genesis": store.genesis(), "tables": tables, "blocks": blocks}

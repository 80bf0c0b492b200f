"""A one-validator ledger in memory, with identities that sign transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.application import Executed, LedgerApplication
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage.base import LedgerStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.txn import Transaction, TxnRejected

NETWORK = "testnet"
GENESIS_TIME = "2026-01-01T00:00:00Z"


@dataclass
class Actor:
    """A did:trellis identity with its key and its own nonce counter."""

    key: Ed25519PrivateKey
    did: str
    nonces: count = field(default_factory=lambda: count(1))

    @property
    def method(self) -> str:
        """Its signing verification method."""
        return f"{self.did}#key-1"

    def document(self) -> dict[str, Any]:
        """Its initial DID document."""
        return initial_document(self.did, self.key.public_key).to_json()

    def txn(
        self, txn_type: str, body: dict[str, Any], *cosigners: Actor, nonce: int | None = None
    ) -> Transaction:
        """A transaction submitted and signed by this actor (and co-signed by ``cosigners``)."""
        txn = Transaction.build(
            txn_type, network=NETWORK, submitter=self.did, nonce=nonce or next(self.nonces), body=body
        )
        txn = txn.signed(self.key, self.method)
        for other in cosigners:
            txn = txn.signed(other.key, other.method)
        return txn


def new_actor() -> Actor:
    """A fresh identity (not yet on the ledger)."""
    key = Ed25519PrivateKey.generate()
    return Actor(key, str(trellis_did(NETWORK, key.public_key)))


def creates(trustee: Actor, count: int) -> list[Transaction]:
    """``count`` did.create transactions of new identities, endorsed by ``trustee``."""
    txns = []
    for _ in range(count):
        actor = new_actor()
        txns.append(actor.txn("did.create", {"document": actor.document()}, trustee))
    return txns


@dataclass
class Network:
    """One validator, one trustee, an in-memory store."""

    app: LedgerApplication
    validator_key: Ed25519PrivateKey
    trustee: Actor
    clock: count = field(default_factory=lambda: count(1))

    def run(self, *txns: Transaction) -> Executed:
        """Propose a block of ``txns``, certify and commit it; return what was executed."""
        time = f"2026-01-01T00:{next(self.clock) % 60:02d}:00Z"
        executed = self.app.propose(list(txns), time=max(time, self.app.head.time), proposer="node-1")
        header = executed.block.header
        certificate = CommitCertificate(
            header.height,
            header.hash.hex(),
            {"node-1": CommitCertificate.sign(header.hash, self.validator_key)},
        )
        self.app.commit(executed, certificate)
        return executed

    def accept(self, *txns: Transaction) -> Executed:
        """Run ``txns`` and require every one to be accepted."""
        executed = self.run(*txns)
        assert not executed.rejected, [str(e) for _, e in executed.rejected]
        return executed

    def reject(self, txn: Transaction) -> TxnRejected:
        """Run ``txn`` and require it to be rejected; return the rejection."""
        executed = self.run(txn)
        assert len(executed.rejected) == 1, "transaction was accepted"
        return executed.rejected[0][1]

    def onboard(self, role: str | None = None, endorser: Actor | None = None) -> Actor:
        """Create a DID endorsed by ``endorser`` (the trustee) and grant it ``role``."""
        actor = new_actor()
        self.accept(actor.txn("did.create", {"document": actor.document()}, endorser or self.trustee))
        if role:
            self.accept(self.trustee.txn("role.grant", {"did": actor.did, "role": role}))
        return actor


def make_genesis(trustee: Actor, validator_key: Ed25519PrivateKey, **rules: int) -> Genesis:
    """A solo-engine genesis with one trustee and one validator."""
    return Genesis.from_json(
        {
            "network": NETWORK,
            "time": GENESIS_TIME,
            "consensus": {"engine": "solo"},
            "rules": rules,
            "trustees": [trustee.document()],
            "validators": [
                {
                    "id": "node-1",
                    "public_key": encode_ed25519_public_key(validator_key.public_key),
                    "address": "127.0.0.1:7001",
                }
            ],
        }
    )


def network_on(
    store: LedgerStore, trustee: Actor | None = None, validator_key: Ed25519PrivateKey | None = None
) -> Network:
    """A single-validator network keeping its chain in ``store`` (new identities unless given)."""
    trustee = trustee or new_actor()
    validator_key = validator_key or Ed25519PrivateKey.generate()
    app = LedgerApplication(store, make_genesis(trustee, validator_key))
    return Network(app, validator_key, trustee)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty SQL ledger database: a SQLite file, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def net() -> Network:
    """A fresh single-validator network."""
    trustee, validator_key = new_actor(), Ed25519PrivateKey.generate()
    app = LedgerApplication(MemoryLedgerStore(), make_genesis(trustee, validator_key))
    return Network(app, validator_key, trustee)

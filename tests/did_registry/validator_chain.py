"""A chain of four validators whose set changes, committed by hand with real certificates, served by a node.

Blocks are made by :class:`~did_registry.ledger.application.LedgerApplication` and certified by a
quorum of the set in force at their height (the keys of every validator that ever joined are kept,
by public key), so the node serves exactly what a PBFT network would have committed; readers reach
it through a WSGI transport.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.identity.timestamps import format_timestamp, parse_timestamp
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.storage.base import LedgerStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.txn import Transaction
from did_registry.node.api import create_app
from did_registry.node.service import NodeService
from tests.did_registry.ledger.conftest import GENESIS_TIME, NETWORK, new_actor

__all__ = ["SetChangeChain"]


class SetChangeChain:
    """Validators ``v1``..``vN`` in genesis, one trustee; blocks one minute apart."""

    def __init__(
        self, n: int = 4, clock: Callable[[], datetime] | None = None, store: LedgerStore | None = None
    ) -> None:
        """``clock``: what dates each block (never before its parent); one minute after the parent by
        default. ``store``: where the chain is kept (memory by default)."""
        self.clock = clock
        self.trustee = new_actor()
        first = {f"v{i}": Ed25519PrivateKey.generate() for i in range(1, n + 1)}
        self.keys = {encode_ed25519_public_key(key.public_key): key for key in first.values()}
        self.genesis = Genesis.from_json(
            {
                "network": NETWORK,
                "time": GENESIS_TIME,
                "consensus": {"engine": "pbft"},
                "rules": {},
                "trustees": [self.trustee.document()],
                "validators": [
                    {
                        "id": name,
                        "public_key": encode_ed25519_public_key(key.public_key),
                        "address": f"127.0.0.1:{7000 + i}",
                    }
                    for i, (name, key) in enumerate(first.items(), start=1)
                ],
            }
        )
        self.app = LedgerApplication(MemoryLedgerStore() if store is None else store, self.genesis)
        self.service = NodeService(self.app, validator_id="v1", validator_key=first["v1"])
        self.wsgi = create_app(self.service, heartbeat_s=0.2)
        self.http = self.wsgi.test_client()

    @property
    def height(self) -> int:
        """The last committed height."""
        return self.app.height

    def header(self, height: int) -> BlockHeader:
        """A committed header."""
        found = self.app.store.block(height)
        assert found is not None
        return found[0].header

    def block(self, *txns: Transaction, signers: dict[str, Ed25519PrivateKey] | None = None) -> BlockHeader:
        """Commit one block of ``txns`` (all must be accepted), certified by a quorum of the set in force
        at its height (or by ``signers``, id to key, whatever the set)."""
        parent = parse_timestamp(self.app.head.time)
        time = format_timestamp(
            parent + timedelta(minutes=1) if self.clock is None else max(parent, self.clock())
        )
        validators = self.app.validators()
        executed = self.app.propose(list(txns), time=time, proposer=validators.validators[0].id)
        assert not executed.rejected, executed.rejected
        header = executed.block.header
        if signers is None:
            signers = {v.id: self.keys[v.public_key] for v in validators.validators[: validators.quorum]}
        certificate = CommitCertificate(
            header.height,
            header.hash.hex(),
            {name: CommitCertificate.sign(header.hash, key) for name, key in signers.items()},
        )
        self.service.commit(executed, certificate, list(txns))
        return header

    def proof(self) -> StateProof:
        """The head's ``validators`` record proven against the head (what a node serves as the change
        after the head, when one falls due at the next block)."""
        header, certificate = self.service.head
        value = json.loads(self.app.store.get("validators") or b"null")
        return StateProof("validators", value, header, certificate, self.app.state_map().prove(b"validators"))

    def empty_blocks(self, count: int) -> None:
        """Commit ``count`` empty blocks."""
        for _ in range(count):
            self.block()

    def _change(self, action: str, change: dict[str, Any], effective: int) -> Transaction:
        return self.trustee.txn(f"validator.{action}", {**change, "effective_height": effective})

    def add(self, name: str, effective: int) -> Transaction:
        """A ``validator.add`` of a new validator ``name`` (its key kept) effective at ``effective``."""
        key = Ed25519PrivateKey.generate()
        public = encode_ed25519_public_key(key.public_key)
        self.keys[public] = key
        validator = {"id": name, "public_key": public, "address": "127.0.0.1:7100"}
        return self._change("add", {"validator": validator}, effective)

    def remove(self, name: str, effective: int) -> Transaction:
        """A ``validator.remove`` of ``name`` effective at ``effective``."""
        return self._change("remove", {"id": name}, effective)

    def rotate(self, name: str, effective: int) -> Transaction:
        """A ``validator.rotate_key`` of ``name`` to a new key (kept) effective at ``effective``."""
        key = Ed25519PrivateKey.generate()
        public = encode_ed25519_public_key(key.public_key)
        self.keys[public] = key
        return self._change("rotate_key", {"id": name, "public_key": public}, effective)

    def client(self, transport: httpx.BaseTransport | None = None, **options: Any) -> LedgerClient:
        """A client anchored in this chain's genesis whose only node serves the chain."""
        return LedgerClient(
            "http://node-1",
            self.genesis,
            transport=transport or httpx.WSGITransport(app=self.wsgi),
            **options,
        )

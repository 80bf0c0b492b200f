"""A one-validator node in memory behind the Flask test client, with a clock that ticks a minute a block."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.block import BlockHeader
from did_registry.ledger.storage.base import LedgerStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.txn import Transaction
from did_registry.node.api import create_app
from did_registry.node.service import NodeService
from tests.did_registry.ledger.conftest import GENESIS_TIME, Actor, make_genesis, new_actor

PROBLEM_JSON = "application/problem+json"
RESOLUTION_TYPE = 'application/ld+json;profile="https://w3id.org/did-resolution"'
EPOCH = datetime.fromisoformat(GENESIS_TIME)


def block_time(height: int) -> str:
    """The time the fixture's clock gives block ``height``."""
    return (EPOCH + timedelta(minutes=height)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Node:
    """A node service, its API and the network's trustee."""

    service: NodeService
    app: Flask
    client: FlaskClient
    trustee: Actor
    validator_key: Ed25519PrivateKey

    def submit(self, *txns: Transaction) -> Any:
        """POST the transactions as a batch; return the response."""
        return self.client.post("/txns", json=[t.to_json() for t in txns])

    def commit(self, *txns: Transaction) -> BlockHeader:
        """Submit ``txns`` and commit them in one block; every one must be accepted."""
        response = self.submit(*txns)
        assert response.status_code == 202, response.get_json()
        header = self.service.produce_block()
        if header is None:  # a running block producer took them first: wait for its block
            statuses = self.service.wait_for([t.id for t in txns], 10)
            assert all(s.status == "committed" for s in statuses), statuses
            found = self.service.app.store.block(statuses[0].height or 0)
            assert found is not None
            header = found[0].header
        for txn in txns:
            assert self.service.status(txn.id).status == "committed", self.service.status(txn.id)
        return header

    def onboard(self, role: str | None = None) -> Actor:
        """A new DID endorsed by the trustee, granted ``role``."""
        actor = new_actor()
        self.commit(actor.txn("did.create", {"document": actor.document()}, self.trustee))
        if role:
            self.commit(self.trustee.txn("role.grant", {"did": actor.did, "role": role}))
        return actor


def make_node(
    store: LedgerStore | None = None, clock: Callable[[], datetime] | None = None, **service_options: Any
) -> Node:
    """A fresh node (memory store by default) whose clock gives block ``h`` genesis time + ``h`` minutes,
    unless a ``clock`` is given."""
    trustee, validator_key = new_actor(), Ed25519PrivateKey.generate()
    genesis = make_genesis(trustee, validator_key)
    application = LedgerApplication(MemoryLedgerStore() if store is None else store, genesis)
    minutes = count(1)
    service = NodeService(
        application,
        validator_id="node-1",
        validator_key=validator_key,
        clock=clock or (lambda: (EPOCH + timedelta(minutes=next(minutes))).astimezone(UTC)),
        **service_options,
    )
    app = create_app(service, heartbeat_s=0.2)
    return Node(service, app, app.test_client(), trustee, validator_key)


@pytest.fixture
def node() -> Iterator[Node]:
    """A fresh node (stopped afterwards)."""
    made = make_node()
    yield made
    made.service.stop()

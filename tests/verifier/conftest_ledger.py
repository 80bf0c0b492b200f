"""A real ledger node in process for verifier tests: an accredited issuer, status lists, enrolled devices.

Import explicitly (``from tests.verifier.conftest_ledger import ...``): ``tests/verifier/conftest.py``
belongs to the replay and session tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient
from tests.did_registry.ledger.conftest import NETWORK, Actor, new_actor
from tests.did_registry.node.conftest import Node, make_node
from verifier import NetworkTrust, Policy, Verifier
from wallet.credential import build_credential, issue_credential
from wallet.presentation import build_presentation, sign_presentation

REVOCATION, SUSPENSION = "rev-1", "sus-1"
AUDIENCE = "https://service.example"


class Clock:
    """A settable clock (Unix seconds), starting at the real time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on."""
        self.now += seconds


@dataclass
class Device:
    """An enrolled device: its identity, credential and status index."""

    actor: Actor
    credential: dict[str, Any]
    index: int

    @property
    def did(self) -> str:
        """Its DID."""
        return self.actor.did


@dataclass
class Ledger:
    """A running node, a client, the trustee, and one accredited issuer with two status lists."""

    node: Node
    client: LedgerClient
    issuer: Actor
    clock: Clock = field(default_factory=Clock)

    @property
    def genesis(self) -> Any:
        """The network's genesis."""
        return self.node.service.app.genesis

    def transport(self) -> httpx.BaseTransport:
        """An in-process transport to the node."""
        return httpx.WSGITransport(app=self.node.app)

    def trust(self) -> NetworkTrust:
        """The verifier's trust in this network."""
        return NetworkTrust(NETWORK, ("http://node-1",), self.genesis, transport=self.transport())

    def commit(self, *txns: Any) -> None:
        """Submit and wait for every transaction to be committed."""
        self.client.submit_and_wait(list(txns), 10)

    def freshness_block(self) -> None:
        """Commit the empty block an idle network commits every freshness interval, dated now by the
        test clock (the node dates its blocks by it: see :func:`ledger_node`)."""
        self.node.service.produce_block(empty=True)

    def verifier(self, policy: Policy | None = None, **options: Any) -> Verifier:
        """A verifier trusting this network (not following the header stream unless asked)."""
        options.setdefault("follow", False)
        options.setdefault("clock", self.clock)
        return Verifier([self.trust()], policy, **options)

    def enrol(self, *, types: tuple[str, ...] = ("DeviceCredential",), **claims: Any) -> Device:
        """A new device on the ledger with a credential from the issuer."""
        actor = new_actor()
        self.commit(actor.txn("did.create", {"document": actor.document()}, self.issuer))
        index = secrets.randbelow(131_072)
        return Device(actor, self.credential(actor.did, index, types=types, **claims), index)

    def credential(
        self,
        subject: str,
        index: int,
        *,
        types: tuple[str, ...] = ("DeviceCredential",),
        issuer: Actor | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> dict[str, Any]:
        """A credential about ``subject`` with revocation and suspension entries at ``index``."""
        issuer = issuer or self.issuer
        now = datetime.fromtimestamp(self.clock(), UTC)
        entries = [
            {
                "id": f"http://node-1/status-lists/{issuer.did}/{name}/credential#{index}",
                "type": "BitstringStatusListEntry",
                "statusPurpose": purpose,
                "statusListIndex": str(index),
                "statusListCredential": f"http://node-1/status-lists/{issuer.did}/{name}/credential",
            }
            for name, purpose in ((REVOCATION, "revocation"), (SUSPENSION, "suspension"))
        ]
        document = build_credential(
            issuer=issuer.did,
            subject={"id": subject, "model": "TH-1"},
            types=types,
            credential_id=f"urn:uuid:{secrets.token_hex(8)}",
            valid_from=valid_from or now - timedelta(minutes=1),
            valid_until=valid_until or now + timedelta(days=365),
            status=entries,
        )
        return issue_credential(document, issuer.key, issuer.method, created=now)

    def present(
        self,
        device: Device,
        challenge: dict[str, Any],
        *,
        key: Any = None,
        method: str | None = None,
        credentials: list[dict[str, Any]] | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        """The device's answer to ``challenge``."""
        presentation = build_presentation(
            holder=device.did, credentials=[device.credential] if credentials is None else credentials
        )
        return sign_presentation(
            presentation,
            key or device.actor.key,
            method or device.actor.method,
            challenge=challenge["nonce"],
            domain=domain or challenge["audience"],
            created=datetime.fromtimestamp(self.clock(), UTC),
        )

    def revoke(self, device: Device, list_name: str = REVOCATION) -> None:
        """Set the device's bit in ``list_name``."""
        self.commit(self.issuer.txn("status_list.update", {"list": list_name, "set": [device.index]}))

    def reinstate(self, device: Device) -> None:
        """Clear the device's suspension bit."""
        self.commit(self.issuer.txn("status_list.update", {"list": SUSPENSION, "clear": [device.index]}))


def onboard_issuer(trustee: Actor, client: LedgerClient, types: list[str] | None = None) -> Actor:
    """A new issuer, endorsed by ``trustee``: DID, issuer role, accreditation, a revocation and a suspension list."""
    issuer = new_actor()

    def commit(*txns: Any) -> None:
        client.submit_and_wait(list(txns), 10)

    commit(issuer.txn("did.create", {"document": issuer.document()}, trustee))
    commit(trustee.txn("role.grant", {"did": issuer.did, "role": "issuer"}))
    commit(trustee.txn("trust.accredit", {"issuer": issuer.did, "types": types or ["DeviceCredential"]}))
    commit(
        issuer.txn("status_list.create", {"list": REVOCATION, "purpose": "revocation"}),
        issuer.txn("status_list.create", {"list": SUSPENSION, "purpose": "suspension"}),
    )
    return issuer


def ledger_node(clock: Clock, **options: Any) -> Node:
    """A one-validator node (not started) that dates its blocks by ``clock``, the test's clock, which
    the verifiers in the test read too: a block is as old as it looks to them."""
    return make_node(clock=lambda: datetime.fromtimestamp(clock(), UTC), **options)


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """A running one-validator node with an accredited issuer."""
    clock = Clock()
    node = ledger_node(clock, block_interval=0.005)
    node.service.start()
    client = LedgerClient(
        "http://node-1", node.service.app.genesis, transport=httpx.WSGITransport(app=node.app)
    )
    try:
        yield Ledger(node, client, onboard_issuer(node.trustee, client), clock)
    finally:
        client.close()
        node.service.stop()

"""A portal app wired to a real in-process ledger node served on loopback, for setup and enrolment tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2.profiles import CHEAPEST
from flask import Flask
from sqlmodel import func, select

from did_registry.client import LedgerClient
from did_registry.node.server import NodeServer
from tests.did_registry.node.conftest import Node, make_node
from tests.web.support import db, portal
from wallet.keystore import KDF_TESTING, Keystore
from web.app import create_app
from web.config import PortalConfig
from web.enrolment_records import DeviceRow, ProvisioningTokenRow
from web.organisation import Organisation, Signer

ORG_PASSPHRASE = "organisation pass phrase"
TRUSTEE_PASSPHRASE = "trustee pass phrase"
PORTAL_URL = "http://portal.test"


@dataclass
class LedgerPortal:
    """A portal app, the node it talks to, and a client of that node."""

    app: Flask
    node: Node
    server: NodeServer
    client: LedgerClient

    @property
    def organisation(self) -> Organisation:
        """The portal's organisation."""
        return portal(self.app).services.organisation

    def trustee_keystore(self, passphrase: str = TRUSTEE_PASSPHRASE) -> bytes:
        """The network trustee's keystore file contents (as ``trellis network init`` writes one)."""
        trustee = self.node.trustee
        return Keystore.new(trustee.key, metadata={"did": trustee.did}, params=KDF_TESTING).encrypt(
            passphrase
        )

    def set_up(self) -> None:
        """Set the organisation up directly, signed by the trustee."""
        trustee = self.node.trustee
        assert self.organisation.setup(self.client, Signer(trustee.did, trustee.key, trustee.method)).complete

    def height(self) -> int:
        """The ledger's height."""
        return self.client.head().height

    def counts(self) -> tuple[int, int, int]:
        """Tokens, used or claimed tokens, devices: what a refusal must leave alone."""
        with db(self.app) as session:
            tokens = session.exec(select(func.count()).select_from(ProvisioningTokenRow)).one()
            used = session.exec(
                select(func.count()).where(ProvisioningTokenRow.status.in_(["used", "claimed"]))  # type: ignore[attr-defined]
            ).one()
            devices = session.exec(select(func.count()).select_from(DeviceRow)).one()
        return tokens, used, devices


@contextmanager
def ledger_portal(folder: Path, *, node_urls: tuple[str, ...] | None = None) -> Iterator[LedgerPortal]:
    """A node served on loopback port 0 and a portal configured for it (``node_urls`` overrides its URL)."""
    node = make_node(block_interval=0.005)
    server = NodeServer(node.service, app=node.app)
    server.start()
    genesis = folder / "genesis.json"
    genesis.write_text(json.dumps(node.service.app.genesis.to_json()), encoding="utf-8")
    config = PortalConfig(
        instance_path=folder / "instance",
        password_parameters=CHEAPEST,
        node_urls=node_urls or (server.url,),
        genesis_path=genesis,
        organisation_passphrase=ORG_PASSPHRASE,
        portal_url=PORTAL_URL,
    )
    app = create_app(config)
    services = portal(app).services
    # the organisation's keystore at the cheapest Argon2id cost (the portal's default is moderate)
    services._organisation = Organisation.in_instance(
        config.instance_path, ORG_PASSPHRASE, params=KDF_TESTING
    )
    client = LedgerClient([server.url], node.service.app.genesis)
    try:
        yield LedgerPortal(app, node, server, client)
    finally:
        client.close()
        services.close()
        portal(app).engine.dispose()
        server.stop()

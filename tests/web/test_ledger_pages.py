"""The ledger pages against a served node, and every ledger-reading page without a (reachable) ledger."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask

from tests.web.support import Browser, db, portal
from tests.web.test_devices_pages import Network, connected, enrol, start_network
from web.app import create_app
from web.config import PortalConfig
from web.enrolment_records import DeviceRow
from web.models import Role

Signed = Callable[[Role], Browser]
LEDGER_PAGES = (
    "/ledger/blocks",
    "/ledger/blocks/1",
    "/ledger/validators",
    "/ledger/trust",
    "/ledger/quarantine",
)
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest) -> PortalConfig:
    """Connected to the served network when the test asks for ``network``; not connected otherwise."""
    base = PortalConfig(instance_path=tmp_path / "instance", password_parameters=CHEAPEST)
    if "network" in request.fixturenames:
        return connected(base, request.getfixturevalue("network"))
    if "unreachable" in request.fixturenames:
        return replace(base, node_urls=(UNREACHABLE,))
    return base


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """A served node with the organisation of the test's instance folder set up."""
    yield from start_network(tmp_path)


@pytest.fixture
def unreachable() -> str:
    """A node URL nothing answers at."""
    return UNREACHABLE


@pytest.fixture
def app(config: PortalConfig) -> Iterator[Flask]:
    """A portal app; its ledger client and database engine are closed afterwards."""
    made = create_app(config)
    yield made
    portal(made).services.close()
    portal(made).engine.dispose()


def add_device(app: Flask, did: str = "did:trellis:testnet:offline") -> str:
    """A device row written straight into the database (no ledger needed)."""
    with db(app) as session:
        session.add(
            DeviceRow(did=did, model="TH-1", firmware="1", attributes="{}", token_hash="t", credential_id="urn:c",
                      credential=json.dumps({"id": "urn:c", "type": ["VerifiableCredential"]}), status_index=3,
                      revocation_list="x/l-revocation", suspension_list="x/l-suspension",
                      enrolled_at=datetime.now(UTC))
        )  # fmt: skip
        session.commit()
    return did


# -- with a ledger -----------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(Role))
def test_blocks_page_lists_recent_blocks_newest_first(app: Flask, network: Network, signed_in: Signed,
                                                      role: Role) -> None:  # fmt: skip
    """Heights descend from the head; each row names the proposer and the certificate's signers."""
    page = signed_in(role).get("/ledger/blocks")
    assert page.status_code == 200, page.text
    heights = [int(h) for h in re.findall(r'href="/ledger/blocks/(\d+)"', page.text)]
    head = network.server.service.app.height
    assert heights[0] == head and heights == sorted(heights, reverse=True)
    assert "node-1" in page.text


def test_blocks_pager_goes_to_older_blocks(app: Flask, network: Network, signed_in: Signed) -> None:
    """``?before=<h>`` shows blocks below ``h`` only."""
    page = signed_in(Role.AUDITOR).get("/ledger/blocks?before=3")
    heights = [int(h) for h in re.findall(r'href="/ledger/blocks/(\d+)"', page.text)]
    assert heights == [2, 1, 0]


def test_block_page_shows_header_certificate_and_transactions(app: Flask, network: Network,
                                                              signed_in: Signed) -> None:  # fmt: skip
    """Block 1 carries the reporter's did.create, signed by node-1; an unknown height is a 404."""
    browser = signed_in(Role.OPERATOR)
    page = browser.get("/ledger/blocks/1")
    assert page.status_code == 200
    assert "did.create" in page.text and network.reporter.did in page.text
    assert "signed by 1 validator" in page.text and "state_root" in page.text
    assert browser.get("/ledger/blocks/999999").status_code == 404


def test_block_pages_say_the_portal_verified_each_certificate(app: Flask, network: Network,
                                                              signed_in: Signed) -> None:  # fmt: skip
    """The portal checks each block's certificate against its trust anchor (and the detail page the
    transactions against the header) rather than taking the node's word."""
    browser = signed_in(Role.AUDITOR)
    assert (
        "verified: 1 signatures of the trusted validators, transactions match the header"
        in browser.get("/ledger/blocks/1").text
    )
    listing = browser.get("/ledger/blocks").text
    assert listing.count(">verified<") == network.server.service.app.height + 1  # genesis too


def test_a_block_a_node_altered_is_flagged_not_verified(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that serves a block whose transactions were swapped, or a forged signature, is caught."""
    from web.ledger_pages import NodeReader

    real_get = NodeReader.get

    def lying_get(self: NodeReader, path: str, params: object = None) -> object:
        answer = real_get(self, path, params)  # type: ignore[arg-type]
        if path == "/blocks/1" and isinstance(answer, dict):
            answer["block"]["txns"] = []
        if path == "/blocks" and isinstance(answer, dict):
            for item in answer["blocks"]:
                for signature in (item.get("certificate") or {}).get("signatures", []):
                    signature["signature"] = "A" * len(signature["signature"])
        return answer

    monkeypatch.setattr(NodeReader, "get", lying_get)
    browser = signed_in(Role.AUDITOR)
    assert "NOT VERIFIED" in browser.get("/ledger/blocks/1").text
    assert "NOT VERIFIED" in browser.get("/ledger/blocks").text


def test_validators_page_shows_each_node_health(app: Flask, network: Network, signed_in: Signed) -> None:
    """The node is reachable with its height; the validator set is shown."""
    page = signed_in(Role.AUDITOR).get("/ledger/validators")
    assert page.status_code == 200
    assert network.url in page.text and "<td>yes</td>" in page.text
    validators = network.server.service.app.genesis.validators
    assert validators and all(v["public_key"] in page.text for v in validators)
    assert f"<td>{network.server.service.app.height}</td>" in page.text


def test_trust_page_lists_the_organisation(app: Flask, network: Network, signed_in: Signed) -> None:
    """The organisation set up on the ledger is accredited for DeviceCredential."""
    page = signed_in(Role.AUDITOR).get("/ledger/trust")
    organisation = portal(app).services.organisation.did
    assert page.status_code == 200 and organisation is not None
    assert organisation in page.text and "DeviceCredential" in page.text


def test_quarantine_report_shows_on_both_pages(app: Flask, network: Network, signed_in: Signed) -> None:
    """A reporter's quarantine report appears on /ledger/quarantine and on the device's page."""
    [did] = enrol(app)
    evidence = {"hash": hashlib.sha256(b"capture").hexdigest(), "description": "beaconing to a botnet"}
    with network.client() as client:
        client.submit_and_wait(
            [network.reporter.txn("quarantine.report", {"did": did, "evidence": evidence})]
        )
    browser = signed_in(Role.AUDITOR)
    listing = browser.get("/ledger/quarantine").text
    assert did in listing and evidence["hash"] in listing and "beaconing to a botnet" in listing
    assert network.reporter.did in listing
    device = browser.get(f"/devices/{did}").text
    assert "Quarantined at height" in device and "beaconing to a botnet" in device


# -- without a ledger --------------------------------------------------------------------------
@pytest.mark.parametrize("path", LEDGER_PAGES)
def test_ledger_pages_say_when_no_node_is_configured(app: Flask, signed_in: Signed, path: str) -> None:
    """Not configured: 503 with the reason on the page, not a 500."""
    page = signed_in(Role.AUDITOR).get(path)
    assert page.status_code == 503 and "no ledger nodes are configured" in page.text


@pytest.mark.parametrize("path", LEDGER_PAGES)
def test_ledger_pages_say_when_no_node_answers(app: Flask, unreachable: str, signed_in: Signed,
                                               path: str) -> None:  # fmt: skip
    """Unreachable: 503 naming the node that did not answer."""
    page = signed_in(Role.AUDITOR).get(path)
    assert page.status_code == 503 and "no ledger node answered" in page.text and unreachable in page.text


def test_validators_page_marks_an_unreachable_node(app: Flask, unreachable: str, signed_in: Signed) -> None:
    """The node's row says it is not reachable."""
    page = signed_in(Role.AUDITOR).get("/ledger/validators")
    assert unreachable in page.text and "no:" in page.text


def test_device_pages_render_without_a_ledger(app: Flask, signed_in: Signed) -> None:
    """The list and the device page render; the ledger sections say it cannot be read."""
    did = add_device(app)
    browser = signed_in(Role.OPERATOR)
    assert did in browser.get("/devices").text
    page = browser.get(f"/devices/{did}")
    assert page.status_code == 200 and "The ledger cannot be read" in page.text
    assert "TRELLIS_WEB_NODES" in page.text


def test_device_change_without_a_ledger_is_a_503_and_changes_nothing(app: Flask, signed_in: Signed) -> None:
    """Suspending needs the ledger: a 503 page naming what to configure; the device stays active."""
    did = add_device(app)
    page = signed_in(Role.OPERATOR).post(f"/devices/{did}/suspend")
    assert page.status_code == 503 and "TRELLIS_WEB_NODES" in page.text
    with db(app) as session:
        row = session.get(DeviceRow, did)
    assert row is not None and row.status == "active"

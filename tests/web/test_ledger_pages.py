"""The ledger pages against a served node, and every ledger-reading page without a (reachable) ledger."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask

from tests.did_registry.ledger.conftest import new_actor
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


# -- empty blocks (the freshness blocks of an idle network) ------------------------------------
BLOCK_LINK = re.compile(r'href="/ledger/blocks/(\d+)"')


def listed(page: str) -> list[int]:
    """The heights a block list shows, in page order."""
    return [int(h) for h in BLOCK_LINK.findall(page)]


def commit_empty(network: Network, count: int) -> list[int]:
    """Commit ``count`` empty blocks, as an idle network's freshness does; their heights."""
    return [network.server.service.produce_block(empty=True).height for _ in range(count)]  # type: ignore[union-attr]


def commit_a_transaction(network: Network) -> int:
    """Commit a block with one transaction (a new DID); its height."""
    actor = new_actor()
    with network.client() as client:
        client.submit_and_wait([actor.txn("did.create", {"document": actor.document()}, network.trustee)])
    return network.server.service.app.height


def heights_with_transactions(network: Network) -> list[int]:
    """Every height whose block carries transactions, newest first, and genesis (always listed)."""
    store, head = network.server.service.app.store, network.server.service.app.height
    with_txns = [h for h in range(1, head + 1) if store.block(h)[0].header.txn_count]  # type: ignore[index]
    return [*reversed(with_txns), 0]


def test_blocks_page_leaves_out_empty_blocks_and_says_how_many(app: Flask, network: Network,
                                                               signed_in: Signed) -> None:  # fmt: skip
    """By default only blocks with transactions are listed; the page counts the empty ones it left out."""
    empty = commit_empty(network, 3)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks")
    assert page.status_code == 200
    assert listed(page.text) == heights_with_transactions(network)
    assert not set(empty) & set(listed(page.text))
    skipped = empty[-1] + 1 - len(heights_with_transactions(network))  # 3, and any freshness block
    assert f"Blocks 0 to {empty[-1]}: {skipped} empty blocks (no transactions" in page.text


def test_blocks_page_lists_empty_blocks_with_empty_show(
    app: Flask, network: Network, signed_in: Signed
) -> None:
    """``?empty=show`` lists every block, empty ones too, each checked by the portal."""
    empty = commit_empty(network, 3)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks?empty=show")
    assert listed(page.text)[:3] == list(reversed(empty))
    assert page.text.count(">verified<") == len(listed(page.text))
    assert "left out" not in page.text


def test_left_out_count_links_to_the_same_range_with_empty_blocks(app: Flask, network: Network,
                                                                  signed_in: Signed) -> None:  # fmt: skip
    """The "show empty blocks" link keeps the page's ``before``; the pager keeps ``empty=show``."""
    empty = commit_empty(network, 2)
    browser = signed_in(Role.AUDITOR)
    hidden = browser.get(f"/ledger/blocks?before={empty[-1]}").text
    assert f'href="/ledger/blocks?before={empty[-1]}&amp;empty=show">Show empty blocks</a>' in hidden
    shown = browser.get(f"/ledger/blocks?before={empty[-1]}&empty=show").text
    assert listed(shown)[0] == empty[0]
    assert 'href="/ledger/blocks?empty=show">Newest blocks</a>' in shown


def test_blocks_page_reaches_an_older_block_across_a_long_run_of_empty_blocks(
    app: Flask, network: Network, signed_in: Signed
) -> None:
    """150 empty blocks (more than one node read) between two blocks with transactions: one page
    lists both, and the count covers the whole run."""
    below = heights_with_transactions(network)[0]
    commit_empty(network, 150)
    above = commit_a_transaction(network)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks").text
    assert listed(page)[:2] == [above, below]
    skipped = above + 1 - len(heights_with_transactions(network))
    assert skipped >= 150 and f"Blocks 0 to {above}: {skipped} empty blocks" in page


def test_blocks_page_reads_at_most_its_bound_and_offers_to_continue(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SCAN_LIMIT`` headers without a block with transactions, the page stops and links to
    ``before=`` the lowest height it read."""
    from web import ledger_pages

    monkeypatch.setattr(ledger_pages, "SCAN_LIMIT", 50)
    reads: list[object] = []
    real_get = ledger_pages.NodeReader.get

    def counting_get(self: ledger_pages.NodeReader, path: str, params: object = None) -> object:
        reads.append(params)
        return real_get(self, path, params)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger_pages.NodeReader, "get", counting_get)
    empty = commit_empty(network, 120)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks").text
    lowest = empty[-1] - 49
    assert listed(page) == []
    assert (
        f"Blocks {lowest} to {empty[-1]}: 50 empty blocks" in page
        and "stopped after reading 50 blocks" in page
    )
    assert f'href="/ledger/blocks?before={lowest}" rel="next">Continue with blocks below {lowest}</a>' in page
    assert len(reads) == 2  # the head, then one read of 50 headers


def test_following_older_links_lists_each_block_with_transactions_once(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small pages, reads and bounds: the pager's links, followed to the end, list every block with
    transactions exactly once, newest first, and stop at genesis."""
    from web import ledger_pages

    monkeypatch.setattr(ledger_pages, "BLOCK_PAGE", 2)
    monkeypatch.setattr(ledger_pages, "SCAN_CHUNK", 7)
    monkeypatch.setattr(ledger_pages, "SCAN_LIMIT", 30)
    commit_empty(network, 45)
    commit_a_transaction(network)
    commit_empty(network, 5)
    commit_a_transaction(network)
    commit_empty(network, 3)
    browser, path, seen, pages = signed_in(Role.AUDITOR), "/ledger/blocks", [], 0
    while path and pages < 100:
        page = browser.get(path).text
        seen += listed(page)
        pages += 1
        found = re.search(r'href="(/ledger/blocks\?before=\d+)" rel="next"', page)
        path = found.group(1) if found else ""
    assert seen == heights_with_transactions(network)


def test_an_unknown_empty_value_is_a_400(app: Flask, network: Network, signed_in: Signed) -> None:
    """``?empty=`` takes ``hide`` or ``show``; anything else is refused, naming both."""
    page = signed_in(Role.AUDITOR).get("/ledger/blocks?empty=yes")
    assert page.status_code == 400 and "&#39;hide&#39;" in page.text and "&#39;show&#39;" in page.text


def test_a_node_answer_missing_a_block_is_not_taken_for_the_range(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With empty blocks left out a dropped block would vanish unseen: an answer without every height
    asked for is a 503 saying so."""
    from web.ledger_pages import NodeReader

    real_get = NodeReader.get

    def dropping_get(self: NodeReader, path: str, params: object = None) -> object:
        answer = real_get(self, path, params)  # type: ignore[arg-type]
        if path == "/blocks" and isinstance(answer, dict):
            del answer["blocks"][1]
        return answer

    monkeypatch.setattr(NodeReader, "get", dropping_get)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks")
    assert page.status_code == 503 and "did not list each of them" in page.text


# -- a node's headers are not taken on trust ---------------------------------------------------
def test_a_block_whose_header_a_node_rewrote_to_empty_is_listed_not_verified(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node rewriting a block's ``txn_count`` to 0 cannot hide it: the default view checks each
    header before leaving it out, and lists the block with the check's NOT VERIFIED reason."""
    from web.ledger_pages import NodeReader

    target = commit_a_transaction(network)
    commit_empty(network, 2)
    real_get = NodeReader.get

    def hiding_get(self: NodeReader, path: str, params: object = None) -> object:
        answer = real_get(self, path, params)  # type: ignore[arg-type]
        if path == "/blocks" and isinstance(answer, dict):
            for item in answer["blocks"]:
                if item["header"]["height"] == target:
                    item["header"]["txn_count"] = 0
        return answer

    monkeypatch.setattr(NodeReader, "get", hiding_get)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks")
    assert page.status_code == 200, page.text
    assert target in listed(page.text)
    row = page.text.split(f'href="/ledger/blocks/{target}"', 1)[1].split("</tr>", 1)[0]
    assert "NOT VERIFIED" in row and "device-status revoked" in row
    assert "1 block whose header says it has no transactions failed the portal's check" in page.text
    assert "were not checked" not in page.text


def test_left_out_blocks_are_said_to_be_unchecked_without_a_ledger_client(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the portal cannot check certificates (no ledger client: here no organisation passphrase),
    empty blocks are still left out as the node's headers say, and the page says they were not checked."""
    services = portal(app).services
    monkeypatch.setattr(services, "config", replace(services.config, organisation_passphrase=None))
    commit_empty(network, 2)
    page = signed_in(Role.AUDITOR).get("/ledger/blocks")
    assert page.status_code == 200, page.text
    assert listed(page.text) == heights_with_transactions(network)
    assert "The empty blocks left out were not checked by the portal (not checked: " in page.text
    assert "TRELLIS_WEB_ORG_PASSPHRASE" in page.text


def test_each_left_out_block_is_checked_and_150_stay_fast(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every header left out has its certificate checked (through the portal's ledger client) first;
    150 of them cost well under a second, and a second look at the same page hits the client's cache."""
    from did_registry.client import LedgerClient

    commit_empty(network, 150)
    checked: list[int] = []
    real_verify = LedgerClient.verify_header

    def counting_verify(self: LedgerClient, header: Any, certificate: Any) -> None:
        checked.append(header.height)
        real_verify(self, header, certificate)

    monkeypatch.setattr(LedgerClient, "verify_header", counting_verify)
    browser = signed_in(Role.AUDITOR)
    started = time.perf_counter()
    page = browser.get("/ledger/blocks").text
    elapsed = time.perf_counter() - started
    head = network.server.service.app.height
    assert set(checked) == set(range(head + 1))  # every header read, left out or listed
    assert ">verified<" in page and "NOT VERIFIED" not in page and "were not checked" not in page
    assert elapsed < 3.0, f"{elapsed:.2f} s for {head + 1} headers"
    started = time.perf_counter()
    browser.get("/ledger/blocks")
    assert time.perf_counter() - started < 3.0


# -- hostile head answers ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "head",
    [
        {"block": {"header": {"height": "x"}}},
        {"nope": 1},
        {"block": {"header": {"height": 1.5}}},
        {"block": {"header": {"height": True}}},
        {"block": {"header": {"height": -1}}},
        {"block": {"header": {"height": 10**30}}},
        {"block": []},
        [],
        "head",
        None,
    ],
)
def test_a_head_answer_without_a_height_is_a_503_saying_so(
    app: Flask, network: Network, signed_in: Signed, monkeypatch: pytest.MonkeyPatch, head: object
) -> None:
    """A ``/blocks/head`` answer that names no whole, non-negative height is the node failing (503 with
    the reason), not a 500; ``[]`` or a 404 is not taken for height 0."""
    from web.ledger_pages import NodeReader

    real_get = NodeReader.get

    def hostile_get(self: NodeReader, path: str, params: object = None) -> object:
        return head if path == "/blocks/head" else real_get(self, path, params)  # type: ignore[arg-type]

    monkeypatch.setattr(NodeReader, "get", hostile_get)
    browser = signed_in(Role.AUDITOR)
    for query in ("", "?empty=show"):
        page = browser.get("/ledger/blocks" + query)
        assert page.status_code == 503, (query, page.status_code)
        assert "/blocks/head answer does not name the head block&#39;s height" in page.text
        assert listed(page.text) == []


def test_a_node_answer_nested_too_deeply_is_that_node_failing(tmp_path: Path) -> None:
    """JSON nested past the parser's recursion limit raises RecursionError when read: the node failed,
    the next is asked, and with none left the reader raises NodesUnavailable (a 503), not a 500."""
    from web.ledger_pages import NodeReader, NodesUnavailable

    deep = b"[" * 100_000 + b"]" * 100_000

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = deep if self.path.startswith("/deep") else b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(NodesUnavailable, match=r"no ledger node answered: .*recursion depth"):
            NodeReader([url]).get("/deep")
        assert NodeReader([url + "/deep", url]).get("") == {"ok": True}
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("page", "path", "answer"),
    [
        ("/ledger/trust", "/trust-registry", []),
        ("/ledger/trust", "/trust-registry", {"issuers": "x"}),
        ("/ledger/trust", "/trust-registry", {"issuers": [1]}),
        ("/ledger/quarantine", "/quarantine", {"entries": [], "next": 5}),
        ("/ledger/blocks/1", "/blocks/1", []),
        ("/ledger/blocks/1", "/blocks/1", {"block": "x"}),
    ],
)
def test_a_ledger_page_whose_node_answer_has_the_wrong_shape_is_a_503(
    app: Flask,
    network: Network,
    signed_in: Signed,
    monkeypatch: pytest.MonkeyPatch,
    page: str,
    path: str,
    answer: object,
) -> None:
    """The trust registry, quarantine and block pages treat an answer of the wrong shape as the node
    failing (503), not as a 500."""
    from web.ledger_pages import NodeReader

    real_get = NodeReader.get

    def hostile_get(self: NodeReader, asked: str, params: object = None) -> object:
        return answer if asked == path else real_get(self, asked, params)  # type: ignore[arg-type]

    monkeypatch.setattr(NodeReader, "get", hostile_get)
    assert signed_in(Role.AUDITOR).get(page).status_code == 503

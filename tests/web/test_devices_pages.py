"""The device pages and API against a real ledger node served on loopback: reads, actions, refusals."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2.profiles import CHEAPEST
from flask import Flask
from sqlmodel import col, select

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.status_list import BitstringStatusList
from did_registry.node.server import NodeServer
from tests.did_registry.ledger.conftest import Actor, new_actor
from tests.did_registry.node.conftest import make_node
from tests.web.support import Browser, db, portal
from tests.web.test_status_heights import Lagging
from wallet.enroll import enrolment_transaction
from wallet.keystore import KDF_TESTING
from web import audit
from web.app import create_app
from web.config import PortalConfig
from web.devices_pages import ACTIONS, DeviceQuery, device_page
from web.enrolment_records import DeviceProfile, DeviceRow
from web.models import AuditEntry, Role
from web.organisation import Organisation, Signer

PASSPHRASE = "portal pass phrase"


@dataclass
class Network:
    """A one-validator node served over HTTP on loopback, its genesis file and a reporter."""

    server: NodeServer
    genesis_path: Path
    trustee: Actor
    reporter: Actor

    @property
    def url(self) -> str:
        """The node's base URL."""
        return self.server.url

    def client(self) -> LedgerClient:
        """A proving client of the network."""
        return LedgerClient(self.url, self.server.service.app.genesis)


def start_network(folder: Path) -> Iterator[Network]:
    """Serve a node with a reporter on the ledger and the organisation of ``folder/instance`` set up."""
    node = make_node(block_interval=0.005)
    server = NodeServer(node.service, app=node.app)
    server.start()
    genesis_path = folder / "genesis.json"
    genesis_path.write_text(json.dumps(node.service.app.genesis.to_json()), encoding="utf-8")
    reporter, trustee = new_actor(), node.trustee
    try:
        with LedgerClient(server.url, node.service.app.genesis) as client:
            client.submit_and_wait([reporter.txn("did.create", {"document": reporter.document()}, trustee)])
            client.submit_and_wait([trustee.txn("role.grant", {"did": reporter.did, "role": "reporter"})])
            organisation = Organisation.in_instance(folder / "instance", PASSPHRASE, params=KDF_TESTING)
            assert organisation.setup(client, Signer(trustee.did, trustee.key, trustee.method)).complete
        yield Network(server, genesis_path, trustee, reporter)
    finally:
        server.stop()


def connected(config: PortalConfig, network: Network) -> PortalConfig:
    """``config`` connected to ``network``."""
    return replace(
        config,
        node_urls=(network.url,),
        genesis_path=network.genesis_path,
        organisation_passphrase=PASSPHRASE,
    )


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """A served node with the organisation of the test's instance folder set up."""
    yield from start_network(tmp_path)


@pytest.fixture
def config(tmp_path: Path, network: Network) -> PortalConfig:
    """A portal configuration connected to the network."""
    base = PortalConfig(instance_path=tmp_path / "instance", password_parameters=CHEAPEST)
    return connected(base, network)


@pytest.fixture
def app(config: PortalConfig) -> Iterator[Flask]:
    """A portal app connected to the network; its ledger client and database engine are closed afterwards."""
    made = create_app(config)
    yield made
    portal(made).services.close()
    portal(made).engine.dispose()


def enrol(app: Flask, count: int = 1, model: str = "TH-1") -> list[str]:
    """Enrol ``count`` fresh devices of ``model`` through the portal's enrolment service; their DIDs."""
    enrolment = portal(app).services.enrolment
    network = enrolment.ledger.genesis.network
    dids = []
    for token in enrolment.create_tokens(DeviceProfile(model, "2.4.1"), count=count):
        assert token.token is not None
        txn = enrolment_transaction(network, Ed25519PrivateKey.generate())
        dids.append(enrolment.enrol(token.token, txn.to_json()).did)
    return dids


def status_of(app: Flask, did: str) -> str:
    """A device's status in the portal database."""
    with db(app) as session:
        row = session.get(DeviceRow, did)
    assert row is not None
    return row.status


def bit(app: Flask, did: str, purpose: str) -> int:
    """The device's bit in its ``purpose`` status list, as the ledger proves it."""
    with db(app) as session:
        row = session.get(DeviceRow, did)
    assert row is not None
    url = row.revocation_list if purpose == "revocation" else row.suspension_list
    issuer = portal(app).services.organisation.did
    value, _ = portal(app).services.ledger.prove(f"status:{issuer}:{url.rpartition('/')[2]}")
    return BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"])).get(row.status_index)


def device_audit(app: Flask) -> list[tuple[str, str | None, str | None]]:
    """The device audit entries as (action, target, txn), oldest first."""
    with db(app) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
    return [(r.action, r.target, r.txn_id) for r in rows if r.action.startswith("device.")]


Signed = Callable[[Role], Browser]


# -- reading -----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(Role))
def test_every_role_lists_and_opens_devices(app: Flask, signed_in: Signed, role: Role) -> None:
    """The list shows the enrolled device; its page shows the proven document, history and bits."""
    [did] = enrol(app)
    browser = signed_in(role)
    listing = browser.get("/devices")
    assert listing.status_code == 200 and did in listing.text
    page = browser.get(f"/devices/{did}")
    assert page.status_code == 200, page.text
    assert "proven against the certified block" in page.text
    assert "did.create" in page.text  # the history from the node
    assert "No quarantine report is in force" in page.text
    assert "Recent authentications" in page.text


def test_search_and_filters_narrow_the_list(app: Flask, signed_in: Signed) -> None:
    """DID substring, model and status filters each narrow the list."""
    first, second = enrol(app, 2, model="TH-1")
    [other] = enrol(app, model="GW-9")
    browser = signed_in(Role.AUDITOR)
    by_model = browser.get("/devices?model=GW-9").text
    assert other in by_model and first not in by_model
    by_text = browser.get(f"/devices?q={first[-12:]}").text
    assert first in by_text and second not in by_text and other not in by_text
    portal(app).services.enrolment.suspend(second)
    suspended = browser.get("/devices?status=suspended").text
    assert second in suspended and first not in suspended
    past = browser.get("/devices?enrolled_from=2000-01-01&enrolled_to=2000-12-31")
    assert past.status_code == 200 and first not in past.text
    today = datetime.now(UTC).date().isoformat()
    current = browser.get(f"/devices?enrolled_from={today}&enrolled_to={today}")
    assert current.status_code == 200 and first in current.text and other in current.text


def test_keyset_paging_visits_every_device_once(app: Flask, signed_in: Signed) -> None:
    """Following the cursor through pages of two yields every device exactly once, newest first."""
    dids = set(enrol(app, 5))
    seen: list[str] = []
    after: str | None = None
    with db(app) as session:
        while True:
            rows, after = device_page(session, DeviceQuery(), after, limit=2)
            seen.extend(r.did for r in rows)
            if after is None:
                break
    assert sorted(seen) == sorted(dids) and len(seen) == 5
    assert signed_in(Role.OPERATOR).get("/devices?after=not-a-cursor").status_code == 400


def test_bad_filter_is_refused_with_the_field(app: Flask, signed_in: Signed) -> None:
    """A malformed date comes back 400 with the reason next to the field."""
    page = signed_in(Role.OPERATOR).get("/devices?enrolled_from=yesterday")
    assert page.status_code == 400 and "YYYY-MM-DD" in page.text


# -- one device's actions ----------------------------------------------------------------------
def test_suspend_confirm_then_post_flips_the_bit_and_audits_the_txn(app: Flask, signed_in: Signed) -> None:
    """GET shows the confirmation and changes nothing; POST suspends on the ledger and audits the txn."""
    [did] = enrol(app)
    browser = signed_in(Role.OPERATOR)
    confirm = browser.get(f"/devices/{did}/suspend")
    assert confirm.status_code == 200 and "Suspend the device" in confirm.text
    assert status_of(app, did) == "active" and bit(app, did, "suspension") == 0
    done = browser.post(f"/devices/{did}/suspend")
    assert done.status_code == 302
    assert status_of(app, did) == "suspended" and bit(app, did, "suspension") == 1
    [(action, target, txn)] = device_audit(app)
    assert (action, target) == ("device.suspend", did) and txn is not None
    proven, _ = portal(app).services.ledger.txn_proof(txn)
    assert proven.type == "status_list.update" and proven.body.get("set")
    browser.post(f"/devices/{did}/reinstate")
    assert status_of(app, did) == "active" and bit(app, did, "suspension") == 0


def test_revoke_then_reinstate_is_refused_and_changes_nothing(app: Flask, signed_in: Signed) -> None:
    """After revocation the reinstate confirmation and POST answer 409; bits, status and audit stay."""
    [did] = enrol(app)
    browser = signed_in(Role.ADMIN)
    assert browser.post(f"/devices/{did}/revoke").status_code == 302
    assert bit(app, did, "revocation") == 1 and status_of(app, did) == "revoked"
    before = (device_audit(app), portal(app).services.ledger.head().height)
    page = browser.get(f"/devices/{did}/reinstate")
    assert page.status_code == 409 and "Revocation is final" in page.text
    refused = browser.post(f"/devices/{did}/reinstate")
    assert refused.status_code == 409 and "Revocation is final" in refused.text
    assert (device_audit(app), portal(app).services.ledger.head().height) == before
    assert status_of(app, did) == "revoked" and bit(app, did, "revocation") == 1


def test_the_change_banner_is_told_once_and_never_from_the_url(app: Flask, signed_in: Signed) -> None:
    """After a change the device page says so once, with its transaction; a crafted link carrying
    ``done`` and ``txn`` announces nothing (it printed any text as if the portal had said it)."""
    [did] = enrol(app)
    browser = signed_in(Role.OPERATOR)
    crafted = browser.get(f"/devices/{did}?done=revoked by the security team&txn=0000")
    assert crafted.status_code == 200 and "The device was" not in crafted.text
    assert browser.post(f"/devices/{did}/suspend").status_code == 302
    told = browser.get(f"/devices/{did}").text
    assert "The device was suspended, in ledger transaction" in told
    assert "The device was" not in browser.get(f"/devices/{did}").text


def test_auditor_cannot_change_devices(app: Flask, signed_in: Signed) -> None:
    """An auditor gets 403 on the confirmation page and on the POST; nothing changes."""
    [did] = enrol(app)
    browser = signed_in(Role.AUDITOR)
    assert browser.get(f"/devices/{did}/revoke").status_code == 403
    assert browser.post(f"/devices/{did}/revoke").status_code == 403
    assert browser.post("/devices/bulk/revoke").status_code == 403
    assert status_of(app, did) == "active" and device_audit(app) == []


def test_a_post_without_csrf_token_is_refused(app: Flask, signed_in: Signed) -> None:
    """Without the CSRF token the POST is refused (400) before anything changes."""
    [did] = enrol(app)
    response = signed_in(Role.OPERATOR).post(f"/devices/{did}/suspend", csrf=False)
    assert response.status_code == 400
    assert status_of(app, did) == "active" and bit(app, did, "suspension") == 0


def test_unknown_device_and_action_are_404(app: Flask, signed_in: Signed) -> None:
    """An unknown DID or action is a 404 page."""
    browser = signed_in(Role.OPERATOR)
    assert browser.get("/devices/did:trellis:testnet:nothing").status_code == 404
    [did] = enrol(app)
    assert browser.get(f"/devices/{did}/explode").status_code == 404


# -- bulk --------------------------------------------------------------------------------------
def test_bulk_suspend_of_a_filter(app: Flask, signed_in: Signed) -> None:
    """The confirmation counts the filter's devices; the POST suspends exactly those."""
    chosen = enrol(app, 3, model="TH-1")
    [other] = enrol(app, model="GW-9")
    browser = signed_in(Role.OPERATOR)
    confirm = browser.get("/devices/bulk/suspend?model=TH-1")
    assert confirm.status_code == 200 and "<strong>3</strong> device(s)" in confirm.text
    assert all(status_of(app, d) == "active" for d in chosen)
    done = browser.post("/devices/bulk/suspend", {"model": "TH-1", "targets": _targets_of(confirm.text)})
    assert done.status_code == 200 and "3 device(s) suspended" in done.text
    assert all(status_of(app, d) == "suspended" and bit(app, d, "suspension") == 1 for d in chosen)
    assert status_of(app, other) == "active"
    audited = device_audit(app)
    assert sorted(str(t) for _, t, _ in audited) == sorted(chosen)
    assert all(a == "device.suspend" and txn for a, _, txn in audited)


def _targets_of(page: str) -> str:
    """The digest of the confirmed devices a bulk confirmation page posts back."""
    found = re.search(r'name="targets" value="([0-9a-f]{64})"', page)
    assert found is not None
    return found.group(1)


def test_bulk_revoke_acts_only_on_the_devices_confirmed(app: Flask, signed_in: Signed) -> None:
    """A device of the filter enrolled after the confirmation page was shown: the POST is refused
    (409) and nothing changes, since revocation is final and the operator confirmed two devices."""
    chosen = enrol(app, 2, model="TH-1")
    browser = signed_in(Role.ADMIN)
    confirm = browser.get("/devices/bulk/revoke?model=TH-1")
    assert "<strong>2</strong> device(s)" in confirm.text
    [late] = enrol(app, model="TH-1")
    refused = browser.post("/devices/bulk/revoke", {"model": "TH-1", "targets": _targets_of(confirm.text)})
    assert refused.status_code == 409 and "changed" in refused.text and "<strong>3</strong>" in refused.text
    assert [status_of(app, d) for d in [*chosen, late]] == ["active"] * 3 and device_audit(app) == []


def test_bulk_over_the_cap_is_refused(app: Flask, signed_in: Signed, monkeypatch: pytest.MonkeyPatch) -> None:
    """More matching devices than the cap: the confirmation says so and the POST changes nothing."""
    dids = enrol(app, 2)
    monkeypatch.setattr("web.devices_pages.BULK_CAP", 1)
    browser = signed_in(Role.ADMIN)
    assert "Too many devices" in browser.get("/devices/bulk/revoke").text
    assert browser.post("/devices/bulk/revoke", {}).status_code == 409
    assert [status_of(app, d) for d in dids] == ["active", "active"] and device_audit(app) == []


# -- API ---------------------------------------------------------------------------------------
def test_api_lists_reads_and_revokes(app: Flask, token_of: Callable[[Role], str]) -> None:
    """The API lists with filters, reads one device, revokes it with the txn id and refuses reinstating."""
    dids = enrol(app, 2)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    page = client.get("/api/v1/devices?limit=1", headers=headers).get_json()
    assert len(page["devices"]) == 1 and page["next"]
    query = {"limit": 1, "after": page["next"]}
    rest = client.get("/api/v1/devices", query_string=query, headers=headers).get_json()
    assert {page["devices"][0]["did"], rest["devices"][0]["did"]} == set(dids)
    one = client.get(f"/api/v1/devices/{dids[0]}", headers=headers).get_json()
    assert one["credential"]["id"] == one["credential_id"]
    revoked = client.post(f"/api/v1/devices/{dids[0]}/revoke", headers=headers)
    body: dict[str, Any] = revoked.get_json()
    assert revoked.status_code == 200 and body["status"] == "revoked" and body["txn"]
    again = client.post(f"/api/v1/devices/{dids[0]}/reinstate", headers=headers)
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    assert "revocation is final" in again.get_json()["detail"]
    assert bit(app, dids[0], "revocation") == 1


def test_api_refuses_auditor_changes_and_bad_input(app: Flask, token_of: Callable[[Role], str]) -> None:
    """An auditor's change is a 403 problem; a bad filter a 400 problem; an unknown device a 404."""
    [did] = enrol(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_of(Role.AUDITOR)}"}
    refused = client.post(f"/api/v1/devices/{did}/suspend", headers=headers)
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    assert status_of(app, did) == "active"
    bad = client.get("/api/v1/devices?status=lost", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "status"
    assert client.get("/api/v1/devices/did:trellis:testnet:none", headers=headers).status_code == 404
    assert client.get("/api/v1/devices").status_code == 401


def test_a_suspension_racing_a_revocation_never_undoes_it(
    app: Flask, token_of: Callable[[Role], str]
) -> None:
    """Suspend and revoke posted at the same moment: whichever comes second, the device ends revoked in
    the portal as on the ledger, and a suspension answered 200 came before the revocation."""
    headers = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    for did in enrol(app, 5):
        answers: dict[str, int] = {}
        start = threading.Barrier(2)

        def post(
            action: str, did: str = did, answers: dict[str, int] = answers, start: threading.Barrier = start
        ) -> None:
            client = app.test_client()
            start.wait()
            answers[action] = client.post(f"/api/v1/devices/{did}/{action}", headers=headers).status_code

        threads = [threading.Thread(target=post, args=(action,)) for action in ("suspend", "revoke")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert answers["revoke"] == 200 and answers["suspend"] in (200, 409)
        assert status_of(app, did) == "revoked" and bit(app, did, "revocation") == 1


# -- a change the portal failed to record ------------------------------------------------------
def _time_out_once(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next wait for a commit ends as a timeout does: the transaction admitted, still pending."""
    ledger = portal(app).services.ledger
    real, calls = ledger.wait, []

    def slow(ids: Any, timeout: float = 30.0) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return [{"id": i, "status": "pending"} for i in ids]
        return real(ids, timeout)

    monkeypatch.setattr(ledger, "wait", slow)


def _settle(app: Flask, did: str, purpose: str, want: int) -> None:
    """Wait until the ledger has committed the pending change of the device's bit."""
    for _ in range(500):
        if bit(app, did, purpose) == want:
            return
        time.sleep(0.02)
    raise AssertionError("the pending change never committed")


def _audit_rows(app: Flask) -> list[AuditEntry]:
    with db(app) as session:
        return [
            r
            for r in session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
            if r.action.startswith("device.")
        ]


def test_api_revocation_whose_audit_fails_is_a_503_and_the_retry_records_and_audits_it(
    app: Flask, token_of: Callable[[Role], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit entry is written in the transaction of the device's new status: when it fails the API
    says the ledger committed the change (503 ``status_not_recorded``, not a 500), nothing is recorded,
    and the retry records the revocation (its transaction sent again) with its audit entry, which says
    the ledger showed it made already."""
    [did] = enrol(app)
    headers = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    real, failed = audit.record, list[str]()

    def flaky(action: str, *args: Any, **kwargs: Any) -> Any:
        if action == "device.revoke" and not failed:
            failed.append(action)
            raise RuntimeError("database is locked (audit insert)")
        return real(action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", flaky)
    client = app.test_client()
    first = client.post(f"/api/v1/devices/{did}/revoke", headers=headers)
    problem = first.get_json()
    assert first.status_code == 503 and first.mimetype == "application/problem+json", first.text
    assert problem["code"] == "status_not_recorded" and "the ledger committed the change" in problem["detail"]
    assert status_of(app, did) == "active" and bit(app, did, "revocation") == 1 and device_audit(app) == []
    again = client.post(f"/api/v1/devices/{did}/revoke", headers=headers)
    assert again.status_code == 200 and again.get_json()["status"] == "revoked", again.text
    assert status_of(app, did) == "revoked"
    txn = again.get_json()["txn"]  # sent again: a change asked for always is (it changes nothing there)
    [entry] = _audit_rows(app)
    assert txn and (entry.action, entry.target, entry.txn_id, entry.actor) == (
        "device.revoke",
        did,
        txn,
        "operator",
    )
    assert json.loads(entry.detail)["found_on_ledger"]["portal_status"] == "active"


def test_the_device_page_records_a_suspension_the_ledger_made_after_a_timeout(
    app: Flask, signed_in: Signed, token_of: Callable[[Role], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suspension's answer timed out (503) and the ledger committed it later: the device's page
    shows it suspended, offers to reinstate it, and the audit log says the portal found it there."""
    [did] = enrol(app)
    _time_out_once(app, monkeypatch)
    headers = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    timed_out = app.test_client().post(f"/api/v1/devices/{did}/suspend", headers=headers)
    assert timed_out.status_code == 503 and timed_out.get_json()["code"] == "ledger_unavailable"
    assert "may still make the change" in timed_out.get_json()["detail"]
    _settle(app, did, "suspension", 1)
    assert status_of(app, did) == "active"
    page = signed_in(Role.AUDITOR).get(f"/devices/{did}")
    assert page.status_code == 200 and status_of(app, did) == "suspended"
    assert '<span class="device-status suspended">suspended</span>' in page.text
    [entry] = _audit_rows(app)
    assert (entry.action, entry.target, entry.txn_id, entry.actor) == ("device.suspend", did, None, "portal")
    assert signed_in(Role.OPERATOR).get(f"/devices/{did}/reinstate").status_code == 200


def test_reinstating_a_suspension_the_ledger_made_after_a_timeout_is_allowed(
    app: Flask, signed_in: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Straight to the reinstate confirmation after a timed-out suspension that committed: it is offered
    (not refused as 'active'), and the POST reinstates the device on the ledger."""
    [did] = enrol(app)
    browser = signed_in(Role.OPERATOR)
    _time_out_once(app, monkeypatch)
    assert browser.post(f"/devices/{did}/suspend").status_code == 503
    _settle(app, did, "suspension", 1)
    confirm = browser.get(f"/devices/{did}/reinstate")
    assert confirm.status_code == 200, confirm.text
    assert browser.post(f"/devices/{did}/reinstate").status_code == 302
    assert status_of(app, did) == "active" and bit(app, did, "suspension") == 0
    assert [(a, t) for a, t, _ in device_audit(app)] == [("device.suspend", did), ("device.reinstate", did)]


def test_a_device_page_read_through_a_lagging_node_never_takes_a_suspension_back(
    app: Flask, signed_in: Signed, network: Network
) -> None:
    """A portal process that has seen nothing yet, whose first node is behind the block of a recorded
    suspension (the up-to-date node slow to give its head): the device's page shows the suspension and
    leaves the record as it is (it used to read the lagging node's bits, take the record back to active
    and audit that as found on the ledger by 'portal')."""
    [did] = enrol(app)
    services = portal(app).services
    issuer = services.organisation.did
    lists = [f"status:{issuer}:1-revocation", f"status:{issuer}:1-suspension"]
    router = Lagging(httpx.HTTPTransport(), network.url)
    router.capture(lists, [*lists, f"quarantine:{did}"], single=[f"did:{did}"])  # it shows: active
    services.enrolment.change("suspend", [did], allowed=ACTIONS["suspend"])
    assert status_of(app, did) == "suspended"
    genesis = services.ledger.genesis
    services.close()  # another process: a client that has seen no block, the lagging node first
    services._ledger = LedgerClient(["http://node-stale", network.url], genesis, transport=router)
    services._enrolment = None
    router.slow_head = 2.5
    try:
        page = signed_in(Role.AUDITOR).get(f"/devices/{did}")
    finally:
        router.slow_head = 0.0
        services.close()
        router.close()  # the client's transport does not close what it wraps
    assert page.status_code == 200 and status_of(app, did) == "suspended"
    assert '<span class="device-status suspended">suspended</span>' in page.text
    assert [(a, t) for a, t, _ in device_audit(app)] == []  # the suspension was made here without audit

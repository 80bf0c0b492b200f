"""The enrolment API: devices enrol with wallet.enroll against the portal and a real ledger; token API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import select

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.web.ledger_support import PORTAL_URL, LedgerPortal, ledger_portal
from tests.web.support import audit_actions, db, fail_third_submit, portal
from wallet.enroll import EnrollmentError, enroll, enrolment_transaction
from wallet.keystore import KDF_TESTING
from web.enrol_api import ENROL_MAX_FAILURES
from web.enrolment_records import ProvisioningTokenRow
from web.models import Role

PROFILE = {"model": "TH-1", "firmware": "2.4.1", "attributes": {"site": "depot-7"}}
WALLET_PASSPHRASE = "device wallet passphrase"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerPortal]:
    """A portal whose organisation is set up on a running node."""
    with ledger_portal(tmp_path) as made:
        made.set_up()
        yield made


@pytest.fixture
def app(ledger: LedgerPortal) -> Flask:
    """The ledger-backed portal app (replaces the plain app of conftest)."""
    return ledger.app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client without cookies (API calls)."""
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of an API token."""
    return {"Authorization": f"Bearer {token}"}


def new_tokens(client: FlaskClient, api_token: str, **changes: Any) -> list[dict[str, Any]]:
    """Create tokens through the API; their JSON."""
    response = client.post("/api/v1/tokens", json={**PROFILE, **changes}, headers=bearer(api_token))
    assert response.status_code == 201, response.get_json()
    tokens: list[dict[str, Any]] = response.get_json()["tokens"]
    return tokens


def device_http(app: Flask) -> httpx.Client:
    """The device's HTTP client: the portal through WSGI, the ledger nodes over loopback."""
    return httpx.Client(mounts={PORTAL_URL: httpx.WSGITransport(app=app)}, timeout=30)


def enrol_request(client: FlaskClient, token: str, network: str) -> Any:
    """POST a fresh device's enrolment with ``token``."""
    txn = enrolment_transaction(network, Ed25519PrivateKey.generate())
    return client.post("/api/v1/enrol", json={"token": token, "txn": txn.to_json()})


# -- the device side, end to end ------------------------------------------------------------
def test_device_enrols_end_to_end(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str], tmp_path: Path
) -> None:
    """wallet.enroll posts to the portal; the device holds a verified credential and its DID is on the ledger."""
    made = new_tokens(client, token_of(Role.OPERATOR))[0]
    payload = json.dumps(made["payload"], separators=(",", ":"))
    with device_http(ledger.app) as http:
        wallet = enroll(
            payload, tmp_path / "device", WALLET_PASSPHRASE, http=http, params=KDF_TESTING, allow_http=True
        )
    credential = wallet.device_credential()
    assert credential["credentialSubject"]["id"] == wallet.did
    assert credential["credentialSubject"]["site"] == "depot-7"
    record, _ = ledger.client.resolve_record(wallet.did)
    assert record is not None
    assert ledger.counts() == (1, 1, 1)
    assert ("device", "device.enrol", wallet.did) in audit_actions(ledger.app)


def test_reused_token_is_refused_with_nothing_changed(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str], tmp_path: Path
) -> None:
    """A second device with a used token gets 409 token_used; wallet.enroll raises and no DID is added."""
    made = new_tokens(client, token_of(Role.OPERATOR))[0]
    payload = json.dumps(made["payload"])
    with device_http(ledger.app) as http:
        enroll(payload, tmp_path / "first", WALLET_PASSPHRASE, http=http, params=KDF_TESTING, allow_http=True)
        before, height = ledger.counts(), ledger.height()
        with pytest.raises(EnrollmentError, match="used"):
            enroll(
                payload,
                tmp_path / "second",
                WALLET_PASSPHRASE,
                http=http,
                params=KDF_TESTING,
                allow_http=True,
            )
    response = enrol_request(client, made["token"], ledger.client.genesis.network)
    assert response.status_code == 409 and response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "token_used"
    assert ledger.counts() == before and ledger.height() == height


def test_forged_token_is_refused(ledger: LedgerPortal, client: FlaskClient) -> None:
    """A token never issued gets 403 unknown_token; nothing changes."""
    height = ledger.height()
    response = enrol_request(client, "A" * 43, ledger.client.genesis.network)
    assert response.status_code == 403 and response.get_json()["code"] == "unknown_token"
    assert ledger.counts() == (0, 0, 0) and ledger.height() == height


def test_expired_token_is_refused(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """A token past its expiry gets 410 token_expired; nothing changes."""
    made = new_tokens(client, token_of(Role.OPERATOR), validity_hours=1)[0]
    with db(ledger.app) as session:
        row = session.exec(select(ProvisioningTokenRow)).one()
        row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        session.add(row)
        session.commit()
    height = ledger.height()
    response = enrol_request(client, made["token"], ledger.client.genesis.network)
    assert response.status_code == 410 and response.get_json()["code"] == "token_expired"
    assert ledger.counts() == (1, 0, 0) and ledger.height() == height


def test_transaction_of_another_network_is_refused(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """A did.create for another network gets 400 invalid_request; the token stays issued."""
    made = new_tokens(client, token_of(Role.OPERATOR))[0]
    response = enrol_request(client, made["token"], "elsewhere")
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_request"
    assert ledger.counts() == (1, 0, 0)


@pytest.mark.parametrize(
    ("body", "status"),
    [({"token": "x"}, 400), ({"token": 1, "txn": {}}, 400), ([1], 400), ("not json", 415)],
)
def test_malformed_enrolment_is_refused(client: FlaskClient, body: Any, status: int) -> None:
    """A body without a token string and a txn object is a 400 problem; non-JSON is 415."""
    if isinstance(body, str):
        response = client.post("/api/v1/enrol", data=body, content_type="text/plain")
    else:
        response = client.post("/api/v1/enrol", json=body)
    assert response.status_code == status and response.mimetype == "application/problem+json"


def test_refused_enrolments_are_rate_limited(ledger: LedgerPortal, client: FlaskClient) -> None:
    """After the allowed refusals from one address, it gets 429 with Retry-After."""
    network = ledger.client.genesis.network
    for _ in range(ENROL_MAX_FAILURES):
        assert enrol_request(client, "B" * 43, network).status_code == 403
    limited = enrol_request(client, "B" * 43, network)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert limited.get_json()["code"] == "too_many_requests"


def test_refusals_sent_together_are_checked_no_more_than_the_limit(
    ledger: LedgerPortal, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twice the allowed number of forged tokens posted at the same moment from one address: at most
    ``ENROL_MAX_FAILURES`` are checked (403), the others are refused unchecked (429). Each check takes
    50 ms so that the requests overlap (they were all checked: the limit was read before any counted)."""
    enrolment = portal(app).services.enrolment
    check, checked = enrolment.enrol, []

    def slow_check(token: str, txn: Any, **options: Any) -> Any:
        checked.append(token)
        time.sleep(0.05)
        return check(token, txn, **options)

    monkeypatch.setattr(enrolment, "enrol", slow_check)
    txn = enrolment_transaction(ledger.client.genesis.network, Ed25519PrivateKey.generate()).to_json()
    start, answers = threading.Barrier(2 * ENROL_MAX_FAILURES), []

    def forge(n: int) -> None:
        client = app.test_client()
        start.wait()
        answers.append(client.post("/api/v1/enrol", json={"token": f"forged-{n}", "txn": txn}).status_code)

    threads = [threading.Thread(target=forge, args=(n,)) for n in range(2 * ENROL_MAX_FAILURES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 2 * ENROL_MAX_FAILURES and set(answers) == {403, 429}
    assert answers.count(403) == len(checked) <= ENROL_MAX_FAILURES


def test_enrolments_that_succeed_or_are_malformed_are_not_counted(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """With one refusal short of the limit, an address enrols a device and sends a malformed body: the
    next refusal is still checked (403), and only then is the address limited (429)."""
    network = ledger.client.genesis.network
    for _ in range(ENROL_MAX_FAILURES - 1):
        assert enrol_request(client, "B" * 43, network).status_code == 403
    made = new_tokens(client, token_of(Role.OPERATOR))[0]
    assert enrol_request(client, made["token"], network).status_code == 201
    assert client.post("/api/v1/enrol", json={"token": "x"}).status_code == 400
    assert enrol_request(client, "B" * 43, network).status_code == 403
    assert enrol_request(client, "B" * 43, network).status_code == 429


def test_a_repeated_enrolment_is_answered_again_but_audited_once_and_limited(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """A device repeating its enrolment (its answer lost) gets the same answer, but so does anyone
    holding the printed token and the public transaction: repeats are not audited again, and count
    toward the address's limit (31 audit entries for one device came of 30 repeats)."""
    made = new_tokens(client, token_of(Role.OPERATOR))[0]
    txn = enrolment_transaction(ledger.client.genesis.network, Ed25519PrivateKey.generate()).to_json()
    body = {"token": made["token"], "txn": txn}
    first = client.post("/api/v1/enrol", json=body)
    assert first.status_code == 201
    for _ in range(ENROL_MAX_FAILURES):
        again = client.post("/api/v1/enrol", json=body)
        assert again.status_code == 201 and again.get_json() == first.get_json()
    assert client.post("/api/v1/enrol", json=body).status_code == 429
    assert [a for a in audit_actions(ledger.app) if a[1] == "device.enrol"] == [
        ("device", "device.enrol", first.get_json()["did"])
    ]


# -- provisioning tokens for automation -----------------------------------------------------
@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR])
def test_token_api_creates_tokens_with_payloads(
    client: FlaskClient, token_of: Callable[[Role], str], ledger: LedgerPortal, role: Role
) -> None:
    """POST /api/v1/tokens returns each token with its payload, once; the list shows hashes only."""
    api_token = token_of(role)
    made = new_tokens(client, api_token, count=3)
    assert len(made) == 3 and all(t["payload"]["token"] == t["token"] for t in made)
    listed = client.get("/api/v1/tokens?status=issued", headers=bearer(api_token)).get_json()["tokens"]
    assert sorted(t["id"] for t in listed) == sorted(t["id"] for t in made)
    assert all("token" not in t and "payload" not in t for t in listed)
    assert ledger.counts() == (3, 0, 0)


def test_auditor_reads_but_cannot_create_tokens(
    client: FlaskClient, token_of: Callable[[Role], str], ledger: LedgerPortal
) -> None:
    """An auditor's token lists tokens (200) but creating is 403, with nothing created."""
    auditor = token_of(Role.AUDITOR)
    response = client.post("/api/v1/tokens", json=PROFILE, headers=bearer(auditor))
    assert response.status_code == 403 and response.get_json()["code"] == "forbidden"
    assert client.get("/api/v1/tokens", headers=bearer(auditor)).status_code == 200
    assert ledger.counts() == (0, 0, 0)


def test_token_api_needs_an_api_token(client: FlaskClient) -> None:
    """Without a bearer token both routes answer 401."""
    assert client.get("/api/v1/tokens").status_code == 401
    assert client.post("/api/v1/tokens", json=PROFILE).status_code == 401


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"model": ""}, "model"), ({"count": 0}, "count"), ({"count": 10_001}, "count"),
     ({"validity_hours": True}, "validity_hours"), ({"attributes": ["x"]}, "attributes"),
     ({"attributes": {"firmware": "9"}}, "attributes")],
)  # fmt: skip
def test_token_api_refuses_bad_input(
    client: FlaskClient,
    token_of: Callable[[Role], str],
    ledger: LedgerPortal,
    changes: dict[str, Any],
    field: str,
) -> None:
    """Bad input is a 400 invalid_input problem naming the field; nothing is created."""
    response = client.post(
        "/api/v1/tokens", json={**PROFILE, **changes}, headers=bearer(token_of(Role.OPERATOR))
    )
    problem = response.get_json()
    assert response.status_code == 400 and problem["code"] == "invalid_input" and problem["field"] == field
    assert ledger.counts() == (0, 0, 0)


def test_token_list_refuses_unknown_status(client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """``?status=`` must be a token state."""
    response = client.get("/api/v1/tokens?status=lost", headers=bearer(token_of(Role.ADMIN)))
    assert response.status_code == 400


def test_factory_batch_enrols_many_devices_and_refuses_bad_items(
    ledger: LedgerPortal, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """A gateway enrols a batch in one request; a reused or forged token fails only its own item."""
    api = token_of(Role.OPERATOR)
    tokens = [t["token"] for t in new_tokens(client, api, count=5)]
    network = ledger.client.genesis.network
    items = [
        {"token": token, "txn": enrolment_transaction(network, Ed25519PrivateKey.generate()).to_json()}
        for token in [*tokens, tokens[0], "forged-token"]
    ]
    response = client.post("/api/v1/enrol/batch", json={"items": items}, headers=bearer(api))
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert all("did" in r and "credential" in r for r in results[:5])
    assert [r.get("status") for r in results[5:]] == [409, 403]


def test_factory_batch_needs_an_operator(client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """An auditor's token, or none, cannot enrol a batch."""
    body = {"items": [{"token": "x", "txn": {}}]}
    assert client.post("/api/v1/enrol/batch", json=body).status_code == 401
    assert (
        client.post("/api/v1/enrol/batch", json=body, headers=bearer(token_of(Role.AUDITOR))).status_code
        == 403
    )


def test_a_batch_audits_each_device_it_enrols_even_when_a_later_chunk_fails(
    ledger: LedgerPortal,
    client: FlaskClient,
    token_of: Callable[[Role], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each device a batch enrols gets its own device.enrol entry (its DID, transaction and token), as
    its chunk is recorded: a later chunk failing does not leave the devices already recorded unaudited."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 2)
    api = token_of(Role.OPERATOR)
    tokens = [t["token"] for t in new_tokens(client, api, count=6)]
    network = ledger.client.genesis.network
    items = [
        {"token": token, "txn": enrolment_transaction(network, Ed25519PrivateKey.generate()).to_json()}
        for token in tokens
    ]
    enrolment = portal(ledger.app).services.enrolment
    fail_third_submit(monkeypatch, enrolment.ledger)
    response = client.post("/api/v1/enrol/batch", json={"items": items}, headers=bearer(api))
    assert response.status_code == 503
    recorded = {device.did for device in enrolment.devices()}
    audited = {a[2] for a in audit_actions(ledger.app) if a[1] == "device.enrol"}
    assert recorded and audited == recorded

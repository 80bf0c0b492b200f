"""Authentications reported by services (POST /api/v1/authentications) and shown on a device's page."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import select

from tests.web.support import Browser, db
from tests.web.test_ledger_pages import add_device
from verifier import Reason, Refused
from verifier.reporting import AuthenticationReporter
from web.authentications import KEEP, MAX_EVENTS
from web.models import AuditEntry, AuthenticationRow, Role

DID = "did:trellis:testnet:offline"


def _event(**changes: Any) -> dict[str, Any]:
    event = {"did": DID, "service": "telemetry", "outcome": "refused", "reason": "revoked",
             "at": datetime.now(UTC).isoformat()}  # fmt: skip
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def _post(client: FlaskClient, token: str, body: Any) -> Any:
    return client.post("/api/v1/authentications", json=body, headers={"Authorization": f"Bearer {token}"})


def _stored(app: Flask) -> list[AuthenticationRow]:
    with db(app) as session:
        return list(session.exec(select(AuthenticationRow)).all())


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR])
def test_a_service_token_stores_a_batch(app: Flask, token_of: Callable[[Role], str], role: Role) -> None:
    answer = _post(
        app.test_client(), token_of(role), {"events": [_event(), _event(outcome="admitted", reason=...)]}
    )
    assert answer.status_code == 201 and answer.get_json() == {"stored": 2}
    assert sorted(r.outcome for r in _stored(app)) == ["admitted", "refused"]


def test_an_auditor_token_cannot_report(app: Flask, token_of: Callable[[Role], str]) -> None:
    assert _post(app.test_client(), token_of(Role.AUDITOR), {"events": [_event()]}).status_code == 403
    assert _stored(app) == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"events": []}, "1 to"),
        ({"events": [_event()] * (MAX_EVENTS + 1)}, "1 to"),
        ({"events": [_event(), _event(did="not-a-did")]}, "event 1: 'did'"),
        ({"events": [_event(outcome="maybe")]}, "'outcome'"),
        ({"events": [_event(outcome="admitted")]}, "'reason'"),
        ({"events": [_event(reason=...)]}, "'reason'"),
        ({"events": [_event(at="yesterday")]}, "'at'"),
        ({"events": [_event(at="2026-01-01T00:00:00")]}, "'at'"),
        ({"events": [_event(at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())]}, "'at'"),
        ({"events": [_event(service="")]}, "'service'"),
        ({"events": "all of them"}, "events"),
        ([_event()], "events"),
    ],
)
def test_a_bad_event_refuses_the_whole_batch_naming_it(
    app: Flask, token_of: Callable[[Role], str], body: Any, named: str
) -> None:
    answer = _post(app.test_client(), token_of(Role.OPERATOR), body)
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
    assert named in answer.get_json()["detail"]
    assert _stored(app) == []


def test_a_body_that_is_not_json_is_415(app: Flask, token_of: Callable[[Role], str]) -> None:
    answer = app.test_client().post(
        "/api/v1/authentications", data="x", headers={"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    )
    assert answer.status_code == 415


def test_old_reports_are_pruned_as_new_ones_arrive(app: Flask, token_of: Callable[[Role], str]) -> None:
    old = (datetime.now(UTC) - KEEP - timedelta(days=1)).isoformat()
    client, token = app.test_client(), token_of(Role.OPERATOR)
    assert _post(client, token, {"events": [_event(at=old)]}).status_code == 201
    assert _post(client, token, {"events": [_event()]}).status_code == 201
    assert len(_stored(app)) == 1


def test_the_device_page_and_api_show_what_a_verifier_reported(
    app: Flask, token_of: Callable[[Role], str], signed_in: Callable[[Role], Browser]
) -> None:
    """A service's AuthenticationReporter posts into the real portal; the device page lists the decisions."""
    add_device(app)
    token = token_of(Role.OPERATOR)
    reporter = AuthenticationReporter(
        "http://portal.test", token, "thermostats", transport=httpx.WSGITransport(app=app)
    )

    class Admitted:
        did = DID

    reporter.observe(Admitted())
    reporter.observe(Refused(Reason.REVOKED, "bit 3 set", did=DID, authenticated=True))
    assert reporter.flush() == 2
    reporter.close()
    page = signed_in(Role.AUDITOR).get(f"/devices/{DID}").text
    assert "thermostats" in page and "admitted" in page and "revoked" in page
    device = app.test_client().get(f"/api/v1/devices/{DID}", headers={"Authorization": f"Bearer {token}"})
    reported = json.loads(device.data)["authentications"]
    assert [(e["outcome"], e["reason"]) for e in reported] == [("refused", "revoked"), ("admitted", None)]


def test_a_report_is_audited_and_its_reporter_shown(
    app: Flask, token_of: Callable[[Role], str], signed_in: Callable[[Role], Browser]
) -> None:
    """Who reported decisions is on record: each batch is audited under the token's operator, and
    the device page names the reporter beside each decision (anyone with an operator token can post)."""
    add_device(app)
    assert (
        _post(app.test_client(), token_of(Role.OPERATOR), {"events": [_event(service="doors")]}).status_code
        == 201
    )
    with db(app) as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.action == "authentications.report")).all()
    assert [(e.actor, json.loads(e.detail)["services"]) for e in entries] == [("operator", ["doors"])]
    page = signed_in(Role.AUDITOR).get(f"/devices/{DID}").text
    assert "Reported by" in page and "<td>operator</td>" in page

"""A NUL character (U+0000) anywhere in a request's path, query string or form is refused with a 400 (a
problem under ``/api/``) before any view runs, so nothing is read or stored: PostgreSQL cannot hold it
in text, and answered such requests with a 500. Every test runs on SQLite and on the tests' throwaway
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask
from sqlmodel import select
from werkzeug.test import TestResponse

from tests.web.support import Browser, audit_actions, db
from web.config import PortalConfig
from web.models import ApiToken, LoginFailure, Operator, OperatorSession, Role


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> PortalConfig:
    """The portal's configuration on an SQLite file, or on the tests' throwaway PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return PortalConfig(instance_path=tmp_path / "instance", database_url=url, password_parameters=CHEAPEST)


def _problem(answer: TestResponse, field: str | None) -> None:
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
    body = answer.get_json()
    assert body["code"] == "malformed" and "NUL" in body["detail"] and body.get("field") == field


def _page(answer: TestResponse) -> None:
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert "NUL character" in answer.text and "nothing was changed" in answer.text


@pytest.mark.parametrize(
    ("username", "password"), [("admin\x00", "wrong password!!"), ("admin", "pass\x00word!!!!!")]
)
def test_a_sign_in_holding_nul_is_a_400_that_counts_and_starts_nothing(
    app: Flask, browser: Browser, accounts: dict[Role, Operator], username: str, password: str
) -> None:
    """A NUL in the sign-in form's username or password: a 400 page; no failure counted, no session."""
    _page(browser.login(username, password))
    with db(app) as session:
        assert session.exec(select(LoginFailure)).all() == []
        assert session.exec(select(OperatorSession)).all() == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("q=%00", "q"), ("model=a%00b", "model"), ("after=2026-01-01T00:00:00|%00", "after"), ("x%00=1", "x")],
)
def test_device_list_query_holding_nul_is_a_400(
    signed_in: Callable[[Role], Browser], token_of: Callable[[Role], str], query: str, field: str
) -> None:
    """The device list's search, filters and cursor (and any query name) with a NUL: a 400 page, and a
    400 problem naming the field from the API."""
    _page(signed_in(Role.AUDITOR).get(f"/devices?{query}"))
    answer = signed_in(Role.AUDITOR).client.get(
        f"/api/v1/devices?{query}", headers={"Authorization": f"Bearer {token_of(Role.AUDITOR)}"}
    )
    _problem(answer, field)


def test_a_did_holding_nul_in_the_path_is_a_400(
    signed_in: Callable[[Role], Browser], token_of: Callable[[Role], str]
) -> None:
    """``/devices/<did>`` with a NUL in the DID, as a page, a change and from the API: 400."""
    browser = signed_in(Role.OPERATOR)
    _page(browser.get("/devices/did:trellis:x%00"))
    _page(browser.post("/devices/did:trellis:x%00/suspend"))
    headers = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    _problem(browser.client.get("/api/v1/devices/did:trellis:x%00", headers=headers), None)
    _problem(browser.client.post("/api/v1/devices/did:trellis:x%00/revoke", headers=headers), None)


def test_an_api_token_label_holding_nul_is_refused_and_no_token_is_made(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """Issuing an API token whose label holds a NUL: a 400 page naming the form; no token, no audit entry."""
    browser = signed_in(Role.ADMIN)
    before = audit_actions(app)
    answer = browser.post(f"/operators/{accounts[Role.OPERATOR].id}/tokens", {"label": "a\x00b"})
    _page(answer)
    assert "label" in answer.text
    with db(app) as session:
        assert session.exec(select(ApiToken)).all() == []
    assert audit_actions(app) == before

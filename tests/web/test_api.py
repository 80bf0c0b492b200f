"""The JSON API: bearer tokens, roles, RFC 9457 problems, paging, and its OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import select
from werkzeug.test import TestResponse

from tests.web.support import PASSWORD, Browser, audit_actions, db, operator_named
from web import audit
from web.accounts import token_hash
from web.models import ApiToken, AuditEntry, Operator, Role
from web.openapi import openapi_document


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client with no session."""
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: TestResponse, status: int, code: str) -> dict[str, object]:
    """``response`` is an RFC 9457 problem with this status and code; its body."""
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert isinstance(body, dict)
    assert body["type"] == f"https://trellis.dev/problems/{code}"
    assert body["status"] == status and body["code"] == code
    assert body["title"] and body["detail"]
    return body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWRtaW46cGFzcw=="}, {"Authorization": "Bearer "}, bearer("trellis_wrong")],
)
def test_missing_or_wrong_token_is_401(
    client: FlaskClient, accounts: dict[Role, Operator], headers: dict[str, str]
) -> None:
    """No token, another scheme, an empty or an unknown token: 401 problem with a Bearer challenge."""
    response = client.get("/api/v1/me", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401(app: Flask, client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """A revoked token opens nothing."""
    token = token_of(Role.ADMIN)
    with db(app) as session:
        row = session.exec(select(ApiToken)).one()
        row.revoked = True
        session.add(row)
        session.commit()
    assert_problem(client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")


def test_a_disabled_operator_s_token_is_401(
    app: Flask, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """Disabling an operator stops their tokens at once."""
    token = token_of(Role.OPERATOR)
    with db(app) as session:
        operator = session.exec(select(Operator).where(Operator.username == "operator")).one()
        operator.disabled = True
        session.add(operator)
        session.commit()
    assert_problem(client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")


def test_a_session_cookie_does_not_open_the_api(signed_in: Callable[[Role], Browser]) -> None:
    """The API takes tokens only: a signed-in browser without one gets 401 (so no CSRF is possible)."""
    assert_problem(signed_in(Role.ADMIN).get("/api/v1/me"), 401, "unauthorized")


def test_me_names_the_token_s_operator_and_records_its_use(
    app: Flask, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """``/me`` answers the operator (never the hash) and the token's last use is recorded."""
    response = client.get("/api/v1/me", headers=bearer(token_of(Role.AUDITOR)))
    assert response.status_code == 200
    body = response.get_json()
    assert body["username"] == "auditor" and body["role"] == "auditor" and body["disabled"] is False
    assert body["created"].endswith("Z")
    assert "password_hash" not in body
    with db(app) as session:
        assert session.exec(select(ApiToken)).one().last_used is not None


@pytest.mark.parametrize(
    ("role", "path", "allowed"),
    [
        (Role.OPERATOR, "/api/v1/audit", False),
        (Role.AUDITOR, "/api/v1/audit", True),
        (Role.ADMIN, "/api/v1/audit", True),
        (Role.OPERATOR, "/api/v1/operators", False),
        (Role.AUDITOR, "/api/v1/operators", True),
        (Role.ADMIN, "/api/v1/operators", True),
    ],
)
def test_reads_by_role(
    client: FlaskClient, token_of: Callable[[Role], str], role: Role, path: str, allowed: bool
) -> None:
    """Admins and auditors read the audit log and operators; operators get a 403 problem."""
    response = client.get(path, headers=bearer(token_of(role)))
    if allowed:
        assert response.status_code == 200
    else:
        assert_problem(response, 403, "forbidden")


def test_operators_lists_every_operator(client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """The list holds each account once, by username."""
    body = client.get("/api/v1/operators", headers=bearer(token_of(Role.AUDITOR))).get_json()
    assert [item["username"] for item in body["operators"]] == ["admin", "auditor", "operator"]


def test_admin_creates_an_operator_through_the_api(
    app: Flask, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """POST with the admin's token (and no CSRF token) creates the operator, answers 201, and is audited."""
    body = {"username": "frank", "password": PASSWORD, "role": "operator"}
    response = client.post("/api/v1/operators", json=body, headers=bearer(token_of(Role.ADMIN)))
    assert response.status_code == 201
    assert response.get_json()["username"] == "frank"
    frank = operator_named(app, "frank")
    assert frank is not None and frank.password_hash.startswith("$argon2id$")
    assert ("admin", "operator.create", "frank") in audit_actions(app)


def test_an_action_made_with_a_token_names_the_token_in_the_audit(
    app: Flask, client: FlaskClient, token_of: Callable[[Role], str]
) -> None:
    """An admin sees the tokens it issues, so the operator an API action is audited under proves
    little alone: the entry names the token (via_token), which its token.create entry names too."""
    token = token_of(Role.ADMIN)
    body = {"username": "frank", "password": PASSWORD, "role": "operator"}
    assert client.post("/api/v1/operators", json=body, headers=bearer(token)).status_code == 201
    with db(app) as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).one()
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "operator.create")).one()
    assert json.loads(entry.detail)["via_token"] == row.id


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUDITOR])
def test_only_admins_create_operators_through_the_api(
    app: Flask, client: FlaskClient, token_of: Callable[[Role], str], role: Role
) -> None:
    """Other roles get a 403 problem and nothing is created."""
    body = {"username": "frank", "password": PASSWORD, "role": "admin"}
    response = client.post("/api/v1/operators", json=body, headers=bearer(token_of(role)))
    assert_problem(response, 403, "forbidden")
    assert operator_named(app, "frank") is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "Frank!", "password": PASSWORD, "role": "operator"}, "username"),
        ({"username": "frank", "password": "short", "role": "operator"}, "password"),
        ({"username": "frank", "password": PASSWORD + "\ud800", "role": "operator"}, "password"),
        ({"username": "frank", "password": PASSWORD, "role": "king"}, "role"),
        ({"username": "frank", "password": 12, "role": "operator"}, "password"),
        ({"password": PASSWORD, "role": "operator"}, "username"),
    ],
)
def test_bad_operator_json_is_a_400_problem_naming_the_field(
    app: Flask, client: FlaskClient, token_of: Callable[[Role], str], body: dict[str, object], field: str
) -> None:
    """Invalid input answers ``invalid_input`` with ``field``; nothing is created."""
    response = client.post("/api/v1/operators", json=body, headers=bearer(token_of(Role.ADMIN)))
    assert assert_problem(response, 400, "invalid_input")["field"] == field
    assert operator_named(app, "frank") is None


def test_operator_body_must_be_json(client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """A form body is a 415 problem; JSON that is not an object is a 400 problem."""
    headers = bearer(token_of(Role.ADMIN))
    assert_problem(client.post("/api/v1/operators", data={"username": "x"}, headers=headers), 415,
                   "unsupported_media_type")  # fmt: skip
    assert_problem(client.post("/api/v1/operators", json=[1], headers=headers), 400, "malformed")


def test_audit_pages_newest_first(app: Flask, client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """``limit`` and ``before`` walk the log newest first; the last page's ``next`` is null."""
    token = token_of(Role.AUDITOR)
    with app.test_request_context():
        for number in range(5):
            audit.record("test.step", f"target-{number}", actor="tester", txn_id=f"txn-{number}")
    first = client.get("/api/v1/audit?limit=3", headers=bearer(token)).get_json()
    assert [entry["target"] for entry in first["entries"]] == ["target-4", "target-3", "target-2"]
    assert first["entries"][0]["txn"] == "txn-4" and first["entries"][0]["actor"] == "tester"
    second = client.get(f"/api/v1/audit?limit=3&before={first['next']}", headers=bearer(token)).get_json()
    assert [entry["target"] for entry in second["entries"]] == ["target-1", "target-0"]
    assert second["next"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "before=-1"])
def test_bad_paging_is_a_400_problem(
    client: FlaskClient, token_of: Callable[[Role], str], query: str
) -> None:
    """Out-of-range or non-numeric paging parameters are refused."""
    assert_problem(
        client.get(f"/api/v1/audit?{query}", headers=bearer(token_of(Role.ADMIN))), 400, "malformed"
    )


def test_unknown_api_path_is_a_404_problem(client: FlaskClient) -> None:
    """Under /api/ even routing errors are problems."""
    assert_problem(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_a_405_problem(client: FlaskClient, token_of: Callable[[Role], str]) -> None:
    """A method the route does not take is a problem with an Allow header."""
    response = client.delete("/api/v1/me", headers=bearer(token_of(Role.ADMIN)))
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_openapi_document_is_public_and_3_1(client: FlaskClient) -> None:
    """``/openapi.json`` needs no token and declares OpenAPI 3.1 with bearer security."""
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_openapi_describes_exactly_the_api_routes(app: Flask) -> None:
    """Every API route and method is described, and every described path and method is a route."""
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())  # Flask <did> is OpenAPI {did}
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    described = {(path, method) for path, item in openapi_document()["paths"].items() for method in item}
    assert routes == described

"""The ``api`` blueprint: the portal's JSON API under ``/api/v1``, token-authenticated.

Every request needs ``Authorization: Bearer <token>`` (tokens are issued on the operators page);
every error is an RFC 9457 problem (:mod:`web.problems`). Described in :mod:`web.openapi`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from sqlmodel import col, select

from web import audit, authentications
from web.accounts import InvalidInput, create_operator
from web.db import session as db_session
from web.models import Operator, Role, iso_utc
from web.openapi import openapi_document
from web.portal import portal
from web.problems import ApiProblem
from web.security import current_operator, load_token_operator, public, role_required

__all__ = ["API_BASE", "bp", "openapi_bp", "operator_json"]

API_BASE: Final = "/api/v1"
"""Where the API's routes live."""
_DIGITS = re.compile(r"[0-9]{1,18}")

bp = Blueprint("api", __name__, url_prefix=API_BASE)
"""The JSON API (token-authenticated)."""
bp.before_request(load_token_operator)

openapi_bp = Blueprint("openapi", __name__)
"""The public OpenAPI document of the API."""


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _int_arg(name: str, default: int | None, *, low: int, high: int) -> int | None:
    value = request.args.get(name, "")
    if value == "":
        return default
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise ApiProblem(
            400, "malformed", f"query parameter {name!r} must be an integer from {low} to {high}"
        )
    return int(value)


def operator_json(operator: Operator) -> dict[str, Any]:
    """An operator as the API serves it (never the password hash)."""
    return {
        "id": operator.id,
        "username": operator.username,
        "role": operator.role,
        "created": iso_utc(operator.created),
        "disabled": operator.disabled,
    }


@bp.get("/me")
@role_required()
def me() -> ResponseReturnValue:
    """The operator the token belongs to."""
    operator = current_operator()
    assert operator is not None
    return _json(operator_json(operator))


@bp.get("/audit")
@role_required(Role.ADMIN, Role.AUDITOR)
def audit_entries() -> ResponseReturnValue:
    """Audit entries, newest first: ``?before=<id>&limit=<n>``; ``next`` is the following page's ``before``."""
    limit = _int_arg("limit", portal().config.page_size, low=1, high=1000)
    before = _int_arg("before", None, low=1, high=10**18)
    assert limit is not None
    with db_session() as db:
        rows, next_cursor = audit.entries(db, before=before, limit=limit)
    return _json({"entries": [audit.entry_json(row) for row in rows], "next": next_cursor})


@bp.get("/operators")
@role_required(Role.ADMIN, Role.AUDITOR)
def operators() -> ResponseReturnValue:
    """Every operator."""
    with db_session() as db:
        rows = db.exec(select(Operator).order_by(col(Operator.username))).all()
    return _json({"operators": [operator_json(row) for row in rows]})


@bp.post("/operators")
@role_required(Role.ADMIN)
def create() -> ResponseReturnValue:
    """Create an operator from ``{"username", "password", "role"}``."""
    if not request.is_json:
        raise ApiProblem(415, "unsupported_media_type", "send the operator as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiProblem(400, "malformed", "the body must be a JSON object")
    values: dict[str, str] = {}
    for name in ("username", "password", "role"):
        value = body.get(name)
        if not isinstance(value, str):
            raise ApiProblem(400, "invalid_input", f"{name!r} must be a string", field=name)
        values[name] = value
    with db_session() as db:
        try:
            created = create_operator(
                db, portal().passwords, values["username"], values["password"], values["role"]
            )
        except InvalidInput as exc:
            raise ApiProblem(400, "invalid_input", exc.message, field=exc.field) from None
    audit.record("operator.create", created.username, detail={"role": created.role, "via": "api"})
    return _json(operator_json(created), 201)


@bp.post("/authentications")
@role_required(Role.ADMIN, Role.OPERATOR)
def report_authentications() -> ResponseReturnValue:
    """Store a service's authentication decisions ``{"events": [...]}`` (all or none); see :mod:`web.authentications`."""
    if not request.is_json:
        raise ApiProblem(415, "unsupported_media_type", "send the events as application/json")
    rows = authentications.parse_events(request.get_json(silent=True))
    operator = current_operator()
    assert operator is not None
    with db_session() as db:
        stored = authentications.record(db, rows, operator.username)
    services = sorted({row.service for row in rows})
    audit.record("authentications.report", None, detail={"events": stored, "services": services[:20]})
    return _json({"stored": stored}, 201)


@openapi_bp.get("/openapi.json")
@public
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of the portal API."""
    return _json(openapi_document())

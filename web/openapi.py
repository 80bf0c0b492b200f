"""The OpenAPI 3.1 description of the portal API (OpenAPI Specification 3.1.0), served at ``/openapi.json``.

Kept beside the routes (:mod:`web.api`); a test checks that every API route is described here and
that every path described here is a route.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Final

__all__ = ["OPENAPI_VERSION", "openapi_document"]

OPENAPI_VERSION: Final = "3.1.0"
"""The OpenAPI Specification version of the document."""

_PROBLEM_MEDIA: Final = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Any, description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Problem"), "An RFC 9457 problem", _PROBLEM_MEDIA) for s in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_ID = {"type": "integer", "minimum": 1}
_TIME = {"type": "string", "format": "date-time"}
_ROLE = {"enum": ["admin", "operator", "auditor"]}
_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is the last segment of `type`",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {"type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"}, "code": {"type": "string"},
                       "field": {"type": "string", "description": "The input field that was refused"}},
    },
    "Operator": {
        "type": "object",
        "required": ["id", "username", "role", "created", "disabled"],
        "properties": {"id": _ID, "username": {"type": "string"}, "role": _ROLE, "created": _TIME,
                       "disabled": {"type": "boolean"}},
    },
    "NewOperator": {
        "type": "object",
        "required": ["username", "password", "role"],
        "properties": {"username": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{1,63}$"},
                       "password": {"type": "string", "minLength": 12, "maxLength": 1024}, "role": _ROLE},
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "actor", "action", "target", "at", "txn", "detail"],
        "properties": {"id": _ID, "actor": {"type": "string"}, "action": {"type": "string"},
                       "target": {"type": ["string", "null"]}, "at": _TIME,
                       "txn": {"type": ["string", "null"], "description": "The ledger transaction, if any"},
                       "detail": {"type": "object"}},
    },
}  # fmt: skip


def _document() -> dict[str, Any]:
    page = {
        "type": "object",
        "required": ["entries", "next"],
        "properties": {
            "entries": {"type": "array", "items": _ref("AuditEntry")},
            "next": {"type": ["integer", "null"], "description": "`before` of the next page"},
        },
    }
    new_operator = _ref("NewOperator")
    operators = {"type": "object", "properties": {"operators": {"type": "array", "items": _ref("Operator")}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Trellis portal API",
            "version": "1",
            "description": "The fleet operators' portal. Every route needs `Authorization: Bearer <token>`; "
            "errors are RFC 9457 problem details.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/me": {
                "get": {
                    "summary": "The operator the token belongs to",
                    "responses": {"200": _json(_ref("Operator"), "The operator"), **_problems(401)},
                }
            },
            "/api/v1/audit": {
                "get": {
                    "summary": "The audit log, newest first (admin, auditor)",
                    "parameters": [
                        _query("before", _ID, "Only entries older than this id (the previous page's `next`)"),
                        _query(
                            "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Entries per page"
                        ),
                    ],
                    "responses": {"200": _json(page, "A page of entries"), **_problems(400, 401, 403)},
                }
            },
            "/api/v1/operators": {
                "get": {
                    "summary": "Every operator (admin, auditor)",
                    "responses": {"200": _json(operators, "The operators"), **_problems(401, 403)},
                },
                "post": {
                    "summary": "Create an operator (admin)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": new_operator}},
                    },
                    "responses": {
                        "201": _json(_ref("Operator"), "The new operator"),
                        **_problems(400, 401, 403, 415),
                    },
                },
            },
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@lru_cache(maxsize=1)
def _cached() -> dict[str, Any]:
    return _document()


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy each call)."""
    return copy.deepcopy(_cached())

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


_SCHEMAS["Device"] = {
    "type": "object",
    "required": ["did", "model", "firmware", "attributes", "status", "enrolled", "credential_id", "status_index"],
    "properties": {"did": {"type": "string"}, "model": {"type": "string"}, "firmware": {"type": "string"},
                   "attributes": {"type": "object"}, "status": {"enum": ["active", "suspended", "revoked"]},
                   "enrolled": _TIME, "credential_id": {"type": "string"}, "status_index": {"type": "integer"},
                   "revocation_list": {"type": "string"}, "suspension_list": {"type": "string"},
                   "credential": {"type": "object", "description": "The device credential (one device only)"},
                   "txn": {"type": ["string", "null"], "description": "The ledger transaction of a change"}},
}  # fmt: skip


def _device_paths() -> dict[str, Any]:
    """The device routes (web.devices_pages)."""
    did = {"name": "did", "in": "path", "required": True, "schema": {"type": "string"}}
    action = {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"enum": ["suspend", "reinstate", "revoke"]},
    }
    page = {
        "type": "object",
        "required": ["devices", "next"],
        "properties": {
            "devices": {"type": "array", "items": _ref("Device")},
            "next": {"type": ["string", "null"], "description": "`after` of the next page"},
        },
    }
    text = {"type": "string", "maxLength": 200}
    day = {"type": "string", "format": "date"}
    filters = [
        _query("q", text, "DID or model contains"),
        _query("status", {"enum": ["active", "suspended", "revoked"]}, "Only devices in this state"),
        _query("model", text, "Only devices of this model"),
        _query("enrolled_from", day, "Enrolled on or after this day (UTC)"),
        _query("enrolled_to", day, "Enrolled on or before this day (UTC)"),
        _query("after", {"type": "string"}, "The previous page's `next`"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Devices per page"),
    ]
    return {
        "/api/v1/devices": {"get": {"summary": "Enrolled devices, newest first", "parameters": filters,
                                    "responses": {"200": _json(page, "A page of devices"), **_problems(400, 401)}}},
        "/api/v1/devices/{did}": {"get": {"summary": "One device with its credential", "parameters": [did],
                                          "responses": {"200": _json(_ref("Device"), "The device"),
                                                        **_problems(401, 404)}}},
        "/api/v1/devices/{did}/{action}": {"post": {
            "summary": "Suspend, reinstate or revoke a device on the ledger (admin, operator); revocation is final",
            "parameters": [did, action],
            "responses": {"200": _json(_ref("Device"), "The device after the change, with `txn`"),
                          **_problems(401, 403, 404, 409, 503)}}},
    }  # fmt: skip


def _enrolment_paths() -> dict[str, Any]:
    """Device enrolment and provisioning tokens (:mod:`web.enrol_api`)."""
    token_list = {
        "type": "object",
        "properties": {"tokens": {"type": "array", "items": _ref("ProvisioningToken")}},
    }
    states = {"enum": ["issued", "claimed", "used", "expired"]}
    return {
        "/api/v1/enrol": {
            "post": {
                "summary": "Enrol a device with its provisioning token and self-signed did.create (public)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("EnrolRequest")}},
                },
                "responses": {
                    "201": _json(_ref("Enrolment"), "The device's DID and DeviceCredential"),
                    **_problems(400, 403, 409, 410, 415, 429, 502, 503),
                },
            }
        },
        "/api/v1/enrol/batch": {
            "post": {
                "summary": "Enrol many devices at once, anchored in batched ledger writes (admin, operator)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["items"],
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 5000,
                                        "items": _ref("EnrolRequest"),
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "results": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "description": "{did, credential}, or {status, code, detail}",
                                    },
                                }
                            },
                        },
                        "One result per item, in order",
                    ),
                    **_problems(400, 401, 403, 415, 503),
                },
            }
        },
        "/api/v1/tokens": {
            "get": {
                "summary": "Provisioning tokens, newest first (admin, operator, auditor)",
                "parameters": [
                    _query("status", states, "Only tokens in this state"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Tokens per page"),
                    _query("offset", {"type": "integer", "minimum": 0}, "Tokens to skip"),
                ],
                "responses": {
                    "200": _json(token_list, "The tokens (never their values)"),
                    **_problems(400, 401, 403),
                },
            },
            "post": {
                "summary": "Create provisioning tokens; their values and payloads are returned only here (admin, operator)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewTokens")}},
                },
                "responses": {
                    "201": _json(token_list, "The new tokens with `token` and `payload`"),
                    **_problems(400, 401, 403, 415, 503),
                },
            },
        },
    }


_SCHEMAS.update({
    "EnrolRequest": {
        "type": "object", "required": ["token", "txn"],
        "properties": {"token": {"type": "string", "description": "The one-time provisioning token"},
                       "txn": {"type": "object", "description": "The device's self-signed did.create transaction"}},
    },
    "Enrolment": {
        "type": "object", "required": ["did", "credential"],
        "properties": {"did": {"type": "string"}, "credential": {"type": "object"}},
    },
    "NewTokens": {
        "type": "object", "required": ["model", "firmware"],
        "properties": {"model": {"type": "string"}, "firmware": {"type": "string"},
                       "attributes": {"type": "object", "description": "Further credential claims"},
                       "count": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1},
                       "validity_hours": {"type": "integer", "minimum": 1, "maximum": 8760, "default": 24}},
    },
    "ProvisioningToken": {
        "type": "object", "required": ["id", "model", "firmware", "attributes", "created", "expires", "status", "device"],
        "properties": {"id": {"type": "string", "description": "SHA-256 (hex) of the token"},
                       "model": {"type": "string"}, "firmware": {"type": "string"}, "attributes": {"type": "object"},
                       "created": _TIME, "expires": _TIME, "status": {"enum": ["issued", "claimed", "used", "expired"]},
                       "device": {"type": ["string", "null"]},
                       "token": {"type": "string", "description": "The token's value (only when just created)"},
                       "payload": {"type": "object", "description": "The enrolment QR payload (only when just created)"}},
    },
})  # fmt: skip


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
            **_device_paths(),
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
            "/api/v1/authentications": {
                "post": {
                    "summary": "Report a service's authentication decisions, all or none (admin, operator)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _AUTHENTICATION_REPORT}},
                    },
                    "responses": {
                        "201": _json(
                            {"type": "object", "properties": {"stored": {"type": "integer"}}}, "Stored"
                        ),
                        **_problems(400, 401, 403, 415),
                    },
                }
            },
            **_enrolment_paths(),
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_AUTHENTICATION_REPORT: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["did", "service", "outcome", "at"],
                "properties": {
                    "did": {"type": "string"},
                    "service": {"type": "string", "maxLength": 100},
                    "outcome": {"enum": ["admitted", "refused"]},
                    "reason": {
                        "type": "string",
                        "description": "The verifier's refusal reason (refusals only)",
                    },
                    "at": {"type": "string", "format": "date-time"},
                },
            },
        }
    },
}


@lru_cache(maxsize=1)
def _cached() -> dict[str, Any]:
    return _document()


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy each call)."""
    return copy.deepcopy(_cached())

"""The OpenAPI 3.1 description of the node API (OpenAPI Specification 3.1.0), served at ``/openapi.json``.

Kept beside the routes (:mod:`did_registry.node.api`); a test checks that every Flask route is
described here and that every path described here is a route.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Final

__all__ = ["OPENAPI_VERSION", "openapi_document"]

OPENAPI_VERSION: Final = "3.1.0"
"""The OpenAPI Specification version of the document."""

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_OBJECT = {"type": "object"}
_HEIGHT = {"type": "integer", "minimum": 0}
_DID = {"type": "string", "description": "A DID, e.g. did:trellis:<network>:<id>"}


def _json(schema: Any, description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_PROBLEM, "An RFC 9457 problem", "application/problem+json") for s in statuses}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _get(summary: str, ok: dict[str, Any], *errors: int, params: list[dict[str, Any]] | None = None,
         description: str | None = None) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_problems(*errors)}}
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = params
    return {"get": operation}


def _page(item: str, name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name, "next"],
        "properties": {name: {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
                       "next": {"type": ["string", "integer", "null"], "description": "Cursor of the next page"}},
    }  # fmt: skip


_PAGE_PARAMS = [
    _query("after", {"type": "string"}, "The last name of the previous page (its `next`)"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Entries per page"),
]
_RESOLUTION_MEDIA = 'application/ld+json;profile="https://w3id.org/did-resolution"'
_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is the last segment of `type`",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {"type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"}, "code": {"type": "string"},
                       "txn": {"type": "string", "description": "The transaction concerned"},
                       "index": {"type": "integer", "description": "Its position in the batch"}},
    },
    "Transaction": {"type": "object", "required": ["type", "network", "submitter", "nonce", "body"]},
    "TxnStatus": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"enum": ["pending", "committed", "rejected"]},
                       "height": _HEIGHT, "index": {"type": "integer"}, "code": {"type": "string"},
                       "detail": {"type": "string"}},
    },
    "ResolutionResult": {
        "type": "object",
        "required": ["@context", "didDocument", "didResolutionMetadata", "didDocumentMetadata"],
        "description": "A W3C DID Resolution result; on error `didResolutionMetadata.error` is the code",
    },
    "HeaderItem": {"type": "object", "required": ["header", "certificate"],
                   "properties": {"header": _OBJECT, "certificate": {"type": ["object", "null"]}}},
    "BlockAnswer": {"type": "object", "required": ["block", "certificate"],
                    "properties": {"block": _OBJECT, "certificate": {"type": ["object", "null"]}}},
    "StatusList": {
        "type": "object",
        "required": ["issuer", "list", "purpose", "length", "version", "updated", "height"],
        "properties": {"encodedList": {"type": "string", "description": "Multibase base64url of the GZIP bits"}},
    },
    "TrustEntry": {"type": "object", "required": ["issuer", "types"]},
    "QuarantineEntry": {"type": "object", "required": ["did", "reporter", "evidence", "height", "time", "txn"]},
    "AuditTxn": {"type": "object",
                 "required": ["id", "height", "index", "type", "submitter", "time", "transaction"]},
}  # fmt: skip


def _paths() -> dict[str, Any]:
    txn_id = _path("txn_id", {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "The transaction id")
    did = _path("did", _DID, "The DID to resolve")
    issuer = _path("issuer", _DID, "The issuer's DID")
    name = _path("name", {"type": "string"}, "The list's name")
    headers = _json({"$ref": "#/components/schemas/BlockAnswer"}, "The block and its commit certificate")
    return {
        "/txns": {"post": {
            "summary": "Submit one transaction or a batch (at most 5000; all or nothing at the door)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Transaction"},
                {"type": "array", "maxItems": 5000, "items": {"$ref": "#/components/schemas/Transaction"}}]}}}},
            "responses": {"202": _json({"type": "object", "properties": {"txns": {"type": "array", "items": {
                "$ref": "#/components/schemas/TxnStatus"}}}}, "Admitted, pending"),
                **_problems(400, 401, 403, 404, 409, 413, 415, 503)},
        }},
        "/txns/{txn_id}/proof": _get(
            "A committed transaction, its RFC 6962 inclusion proof and its block's certified header",
            _json(_OBJECT, "{txn, height, index, header, certificate, inclusion: [hex]}"), 400, 404,
            params=[txn_id]),
        "/txns/{txn_id}": _get(
            "A transaction's status", _json({"$ref": "#/components/schemas/TxnStatus"}, "Its status"), 400, 404,
            params=[txn_id, _query("wait", {"type": "number", "minimum": 0, "maximum": 30},
                                   "Seconds to wait for commitment or rejection")]),
        "/1.0/identifiers/{did}": {"get": {
            "summary": "Resolve a DID (Universal Resolver driver path)",
            "description": "Errors are DID Resolution results too: 400 invalidDid/invalidOptions, 404 notFound, "
                           "501 methodNotSupported; a deactivated DID answers 410 with its document.",
            "parameters": [did, _query("versionId", {"type": "string", "pattern": "^[1-9][0-9]*$"}, "A version"),
                           _query("versionTime", {"type": "string", "format": "date-time"}, "A moment")],
            "responses": {str(s): _json({"$ref": "#/components/schemas/ResolutionResult"}, text, _RESOLUTION_MEDIA)
                          for s, text in ((200, "Resolved"), (400, "invalidDid or invalidOptions"),
                                          (404, "notFound"), (410, "Deactivated"), (501, "methodNotSupported"))},
        }},
        "/proofs/state": {**_get(
            "A state value (null when absent) with its sparse-Merkle proof and certified header",
            _json(_OBJECT, "A StateProof"), 400, params=[_query("key", {"type": "string", "maxLength": 2048},
                                                                 "The state key", required=True)]),
            "post": {
                "summary": "Up to 1,000 state values proven against one certified header",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["keys"], "properties": {"keys": {
                        "type": "array", "minItems": 1, "maxItems": 1000,
                        "items": {"type": "string", "maxLength": 2048}}}}}}},
                "responses": {"200": _json(_OBJECT, "{height, header, certificate, proofs: [{key, value, proof}]}"),
                              **_problems(400)},
            }},
        "/blocks": _get("Headers and certificates, a page at a time",
                        _json(_page("HeaderItem", "blocks"), "A page"), 400,
                        params=[_query("from", _HEIGHT, "First height"),
                                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size")]),
        "/sync/blocks": _get(
            "Whole blocks with their certificates, for state transfer and observers",
            _json(_OBJECT, "{head, blocks: [{block, certificate}]}"), 400,
            params=[_query("from", {"type": "integer", "minimum": 1}, "First height", required=True),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Most blocks"),
                    _query("wait", {"type": "number", "minimum": 0, "maximum": 30},
                           "Seconds to wait for block `from` when the node does not have it yet")]),
        "/txns/status": {"post": {
            "summary": "Several transactions' status, optionally waiting until all are settled",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["ids"], "properties": {
                    "ids": {"type": "array", "minItems": 1, "maxItems": 5000,
                            "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                    "wait": {"type": "number", "minimum": 0, "maximum": 30}}}}}},
            "responses": {"200": _json(_OBJECT, "{txns: [{id, status, height?, index?, code?, detail?}]}"),
                          **_problems(400)}}},
        "/blocks/head": _get("The last committed block", headers),
        "/blocks/{height}": _get("A committed block", headers, 404, params=[_path("height", _HEIGHT, "Height")]),
        "/status-lists": _get("An issuer's status lists", _json(_page("StatusList", "lists"), "A page"), 400,
                              params=[_query("issuer", _DID, "The issuer", required=True), *_PAGE_PARAMS]),
        "/status-lists/{issuer}/{name}": _get(
            "A status list with its encodedList", _json({"$ref": "#/components/schemas/StatusList"}, "The list"),
            400, 404, params=[issuer, name]),
        "/status-lists/{issuer}/{name}/credential": _get(
            "The list as an unsigned BitstringStatusListCredential", _json(_OBJECT, "The credential",
                                                                          "application/vc"), 400, 404,
            params=[issuer, name],
            description="The credential carries no proof: its integrity comes from the ledger, through "
                        "GET /proofs/state?key=status:<issuer>:<name>, whose value holds the same bits."),
        "/trust-registry": _get("Accredited issuers", _json(_page("TrustEntry", "issuers"), "A page"), 400,
                                params=_PAGE_PARAMS),
        "/trust-registry/{issuer}": _get(
            "One issuer's accredited credential types",
            _json({"$ref": "#/components/schemas/TrustEntry"}, "The entry"), 400, 404, params=[issuer]),
        "/quarantine": _get("Quarantined DIDs", _json(_page("QuarantineEntry", "entries"), "A page"), 400,
                            params=_PAGE_PARAMS),
        "/quarantine/{did}": _get(
            "One DID's quarantine report", _json({"$ref": "#/components/schemas/QuarantineEntry"}, "The report"),
            400, 404, params=[_path("did", _DID, "The DID")]),
        "/validators": _get("The validator set and scheduled changes", _json(_OBJECT, "The set")),
        "/validators/changes": _get(
            "Each validator set change after a height: the validators record of the block before it, proven",
            _json(_OBJECT, "{head, changes: [StateProof of key validators at height x - 1], more}"), 400,
            params=[_query("after", _HEIGHT, "Only changes taking effect above this height"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Most changes")]),
        "/genesis": _get("The genesis document", _json(_OBJECT, "The genesis document")),
        "/audit/txns": _get(
            "Committed transactions matching every filter, a page at a time",
            _json(_page("AuditTxn", "txns"), "A page"), 400,
            params=[_query("did", _DID, "Submitted by the DID or naming it (body.did, body.issuer)"),
                    _query("type", {"type": "string"}, "Transaction type"),
                    _query("submitter", _DID, "Submitter"),
                    _query("from_height", _HEIGHT, "Lowest height"), _query("to_height", _HEIGHT, "Highest height"),
                    _query("from_time", {"type": "string", "format": "date-time"}, "Earliest block time"),
                    _query("to_time", {"type": "string", "format": "date-time"}, "Latest block time"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size"),
                    _query("cursor", {"type": "string"}, "The previous page's `next`")]),
        "/events": _get(
            "Certified headers as Server-Sent Events", _json({"type": "string"}, "event: header, id: height, "
                                                         "data: {header, certificate}", "text/event-stream"), 400,
            params=[{"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"},
                     "description": "Replay headers after this height (at most 1000) before live ones"}]),
        "/health": _get("Liveness and the node's head", _json(_OBJECT, "Health")),
        "/metrics": _get("Prometheus metrics", _json({"type": "string"}, "Text format 0.0.4", "text/plain")),
        "/openapi.json": _get("This document", _json(_OBJECT, "OpenAPI 3.1")),
    }  # fmt: skip


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Trellis ledger node API",
            "version": "1",
            "description": "Submit transactions, resolve did:trellis DIDs, read state with proofs, blocks "
            "with commit certificates, status lists, the trust registry, quarantine, audit pages and a "
            "stream of certified headers. Errors are RFC 9457 problem details.",
        },
        "paths": _paths(),
        "components": {"schemas": _SCHEMAS},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy the caller may change)."""
    return copy.deepcopy(_document())

"""The node's HTTP API: a Flask app factory over a :class:`~did_registry.node.service.NodeService`.

The routes, their answers and their errors are described in :mod:`did_registry.node.openapi`
(served as ``GET /openapi.json``, OpenAPI 3.1). Every answer is JSON; every error is an RFC 9457
problem (:mod:`did_registry.node.api_support`), except on the DID resolver path, whose errors are
DID Resolution results as the W3C DID Resolution HTTP(S) binding asks. This module holds the
factory and the transaction routes; reads, resolution, the header stream and operations live in
``api_reads``, ``api_registry``, ``api_resolution``, ``api_events`` and ``api_ops``.

Two rules hold for every route: a path or query holding U+0000 (NUL) is refused before any view
runs, and an ``<int:...>`` route parameter is 1 to 18 ASCII digits
(:class:`~did_registry.node.api_support.AsciiIntegerConverter`), as integer query parameters are.
"""

from __future__ import annotations

import re
from typing import Final

from flask import Blueprint, Flask, Response, request

from did_registry.identity.resolution import INVALID_DID, INVALID_OPTIONS
from did_registry.ledger import merkle
from did_registry.ledger.block import Block
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node.api_events import MAX_STREAM_S, events_bp
from did_registry.node.api_ops import install_ops
from did_registry.node.api_reads import reads_bp
from did_registry.node.api_registry import registry_bp
from did_registry.node.api_resolution import resolution_bp, resolution_failure
from did_registry.node.api_support import (
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_WAITS,
    EXTENSION,
    ApiProblem,
    AsciiIntegerConverter,
    float_arg,
    json_body,
    json_response,
    limit_held_threads,
    node_service,
    register_error_handlers,
    waiting,
)
from did_registry.node.service import NodeService

__all__ = ["MAX_BODY_BYTES", "MAX_BATCH", "MAX_WAIT_S", "create_app"]

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""The largest request body the API reads (larger ones get 413): a full batch of DID creations fits."""
MAX_BATCH: Final = 5000
"""The most transactions one ``POST /txns`` may carry."""
MAX_WAIT_S: Final = 30.0
"""The longest ``GET /txns/{id}?wait=`` may hold a request."""

_HEX64 = re.compile(r"[0-9a-f]{64}")

txns_bp = Blueprint("txns", __name__)
"""The transaction routes."""


def create_app(
    service: NodeService, *, heartbeat_s: float = 15.0, stream_lifetime_s: float = MAX_STREAM_S
) -> Flask:
    """The node API over ``service``: ``heartbeat_s`` seconds between keep-alive comments on
    /events, each of whose streams ends after ``stream_lifetime_s`` (the reader reconnects). It
    serves at most :data:`DEFAULT_MAX_STREAMS` streams and :data:`DEFAULT_MAX_WAITS` waiting
    requests at once until :class:`~did_registry.node.server.NodeServer` sets its own caps."""
    if not 0 < stream_lifetime_s < float("inf") or not 0 < heartbeat_s < float("inf"):
        raise ValueError("heartbeat_s and stream_lifetime_s must be positive numbers of seconds")
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["TRELLIS_SSE_HEARTBEAT"] = heartbeat_s
    app.config["TRELLIS_SSE_LIFETIME"] = stream_lifetime_s
    app.extensions[EXTENSION] = service
    app.url_map.converters["int"] = AsciiIntegerConverter  # before any route is added
    limit_held_threads(app, streams=DEFAULT_MAX_STREAMS, waits=DEFAULT_MAX_WAITS)
    register_error_handlers(app)
    app.before_request(_refuse_nul)
    for blueprint in (txns_bp, resolution_bp, reads_bp, registry_bp, events_bp):
        app.register_blueprint(blueprint)
    install_ops(app, service)
    return app


def _refuse_nul() -> Response | None:
    """Refuse U+0000 anywhere in the path or the query before any view sees it: no key, DID or
    cursor holds one, and PostgreSQL text cannot (a query with one fails). 400 ``malformed``; on the
    resolver path, a DID Resolution result (``invalidDid`` / ``invalidOptions``), as that path answers."""
    in_path = "\x00" in request.path
    if not in_path and not any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
        return None
    where = "path" if in_path else "query"
    if request.blueprint == resolution_bp.name:
        return resolution_failure(
            INVALID_DID if in_path else INVALID_OPTIONS, f"the {where} holds U+0000 (NUL)"
        )
    raise ApiProblem(400, "malformed", f"the {where} holds U+0000 (NUL)")


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


@txns_bp.post("/txns")
def submit() -> Response:
    """Admit one transaction or a batch (all or nothing): 202 with their ids, pending."""
    if request.mimetype and not _is_json(request.mimetype):
        raise ApiProblem(415, "unsupported_media_type", f"send application/json, not {request.mimetype}")
    data = json_body()
    items = data if isinstance(data, list) else [data]
    if not 1 <= len(items) <= MAX_BATCH:
        raise ApiProblem(400, "malformed", f"send 1 to {MAX_BATCH} transactions, not {len(items)}")
    txns: list[Transaction] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            txn = Transaction.from_json(item)
        except TxnRejected as exc:
            raise ApiProblem(400, exc.code, f"transaction {index}: {exc.detail}", index=index) from None
        except RecursionError:
            raise ApiProblem(
                400, "malformed", f"transaction {index} is nested too deeply", index=index
            ) from None
        if txn.id in seen:
            raise ApiProblem(409, "replay", f"transaction {txn.id} appears twice", txn=txn.id, index=index)
        seen.add(txn.id)
        txns.append(txn)
    try:
        statuses = node_service().submit(txns)
    except RecursionError:
        raise ApiProblem(400, "malformed", "a transaction is nested too deeply") from None
    return json_response({"txns": [status.to_json() for status in statuses]}, 202)


@txns_bp.get("/txns/<txn_id>")
def txn_status(txn_id: str) -> Response:
    """Where a transaction stands; ``?wait=S`` holds the request until it is settled (at most 30 s)."""
    if not _HEX64.fullmatch(txn_id):
        raise ApiProblem(400, "malformed", "a transaction id is 64 lowercase hex digits")
    wait = float_arg("wait", high=MAX_WAIT_S)
    service = node_service()
    status = service.status(txn_id)
    if wait and status.status == "pending":
        with waiting() as slot:
            if slot:
                status = service.wait_for([txn_id], wait)[0]
    if status.status == "unknown":
        raise ApiProblem(404, "not_found", f"transaction {txn_id} is unknown to this node", txn=txn_id)
    return json_response(status.to_json())


@txns_bp.post("/txns/status")
def txn_statuses() -> Response:
    """Where several transactions stand: ``{"ids": [...], "wait": S}`` holds the request until every
    one is settled (committed or rejected) or ``S`` seconds pass (at most 30); unknown ones say so."""
    body = json_body()
    ids = body.get("ids") if isinstance(body, dict) else None
    wait = body.get("wait", 0) if isinstance(body, dict) else None
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_BATCH
        or not all(isinstance(i, str) and _HEX64.fullmatch(i) for i in ids)
    ):
        raise ApiProblem(400, "malformed", f'send {{"ids": [1 to {MAX_BATCH} transaction ids], "wait": S}}')
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT_S:
        raise ApiProblem(400, "malformed", f"wait must be a number of seconds from 0 to {MAX_WAIT_S}")
    service = node_service()
    statuses = [service.status(i) for i in ids]
    if wait and any(status.status == "pending" for status in statuses):
        with waiting() as slot:
            if slot:
                statuses = service.wait_for(ids, float(wait))
    return json_response({"txns": [status.to_json() for status in statuses]})


@txns_bp.get("/txns/<txn_id>/proof")
def txn_proof(txn_id: str) -> Response:
    """A committed transaction with its RFC 6962 inclusion proof in its block and the block's certificate."""
    if not _HEX64.fullmatch(txn_id):
        raise ApiProblem(400, "malformed", "a transaction id is 64 lowercase hex digits")
    service = node_service()
    with service.lock:
        location = service.app.store.locate(txn_id)
        found = None if location is None else service.app.store.block(location.height)
    if location is None or found is None:
        raise ApiProblem(404, "not_found", f"transaction {txn_id} is not committed here", txn=txn_id)
    block, certificate = found
    leaves = Block.txn_leaves(block.txns)
    return json_response(
        {
            "txn": block.txns[location.index].to_json(),
            "height": location.height,
            "index": location.index,
            "header": block.header.to_json(),
            "certificate": None if certificate is None else certificate.to_json(),
            "inclusion": [h.hex() for h in merkle.inclusion_proof(leaves, location.index)],
        }
    )

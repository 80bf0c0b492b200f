"""Ledger reads over HTTP: state proofs, blocks with certificates, validators, genesis, audit pages.

Each answer is read under the service lock, so it reflects one whole committed block. State proofs
are :meth:`~did_registry.ledger.proofs.StateProof.to_json` (a sparse-Merkle path to the head's
certified state root, absences included). Audit pages use the SQL store's indexed query
(:meth:`SQLLedgerStore.txns`, keyset cursors ``"<height>.<index>"``) when the store has one, and a
bounded walk over blocks otherwise (the memory store), with the same answers and cursors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final, cast

from flask import Blueprint, Response

from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp
from did_registry.ledger.txn import TXN_TYPES
from did_registry.node.api_support import (
    ApiProblem,
    float_arg,
    int_arg,
    json_body,
    json_response,
    node_service,
    str_arg,
    waiting,
)
from did_registry.node.service import NodeService
from did_registry.node.sync import SYNC_PAGE_BYTES

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PROOF_BATCH",
    "MAX_BLOCK_PAGE",
    "MAX_SYNC_PAGE",
    "MAX_SYNC_WAIT",
    "MAX_AUDIT_PAGE",
    "MAX_CHANGES_PAGE",
    "reads_bp",
]

MAX_KEY_LENGTH: Final = 2048
"""The longest state key ``GET /proofs/state`` accepts."""
MAX_PROOF_BATCH: Final = 1000
"""The most keys one ``POST /proofs/state`` proves."""
MAX_BLOCK_PAGE: Final = 100
"""The most headers one ``GET /blocks`` page holds."""
MAX_SYNC_PAGE: Final = 1000
"""The most whole blocks one ``GET /sync/blocks`` page holds (fewer once it passes ``SYNC_PAGE_BYTES``)."""
MAX_SYNC_WAIT: Final = 30.0
"""The longest ``GET /sync/blocks?wait=`` holds a request open for the next block."""
MAX_AUDIT_PAGE: Final = 500
"""The most transactions one ``GET /audit/txns`` page holds."""
MAX_CHANGES_PAGE: Final = 100
"""The most validator set changes one ``GET /validators/changes`` page holds."""

_AUDIT_WALK: Final = 10_000  # blocks one memory-store audit page may walk before answering
_END_OF_BLOCK: Final = 2**31  # a cursor index after every transaction of its block
_CURSOR = re.compile(r"(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,9})")

reads_bp = Blueprint("reads", __name__)
"""The ledger read routes (proofs, blocks, validators, genesis, audit)."""


@reads_bp.get("/proofs/state")
def state_proof() -> Response:
    """The head's value under ``key`` (``null`` when absent) with its proof."""
    key = str_arg("key", max_length=MAX_KEY_LENGTH, required=True)
    assert key is not None  # a NUL in it was refused before this view (api._refuse_nul)
    return json_response(node_service().prove(key).to_json())


@reads_bp.post("/proofs/state")
def state_proofs() -> Response:
    """Several keys proven against one certified head: ``{"keys": [...]}`` (at most 1,000)."""
    data = json_body()
    keys = data.get("keys") if isinstance(data, dict) else None
    if (
        not isinstance(keys, list)
        or not 1 <= len(keys) <= MAX_PROOF_BATCH
        or not all(isinstance(k, str) and 0 < len(k) <= MAX_KEY_LENGTH for k in keys)
    ):
        raise ApiProblem(400, "malformed", f'send {{"keys": [1 to {MAX_PROOF_BATCH} state keys]}}')
    for index, key in enumerate(keys):
        try:
            key.encode()
        except UnicodeEncodeError:  # JSON's \ud800 escapes decode to lone surrogates
            raise ApiProblem(
                400, "malformed", f"key {index} is not Unicode text (it holds a lone surrogate)", index=index
            ) from None
        if "\x00" in key:  # no state key holds one (transactions refuse it); PostgreSQL cannot hold one
            raise ApiProblem(400, "malformed", f"key {index} holds U+0000 (NUL)", index=index)
    header, certificate, proofs = node_service().prove_many(keys)
    return json_response(
        {
            "height": header.height,
            "header": header.to_json(),
            "certificate": None if certificate is None else certificate.to_json(),
            "proofs": [{"key": p.key, "value": p.value, "proof": p.proof.to_json()} for p in proofs],
        }
    )


def _block_answer(service: NodeService, height: int) -> Response:
    with service.lock:
        found = service.app.store.block(height) if height <= service.app.height else None
    if found is None:
        raise ApiProblem(404, "not_found", f"no block {height}: the head is {service.app.height}")
    block, certificate = found
    return json_response(
        {"block": block.to_json(), "certificate": None if certificate is None else certificate.to_json()}
    )


@reads_bp.get("/blocks/<int:height>")
def block(height: int) -> Response:
    """A committed block with its commit certificate (``null`` for block 0)."""
    return _block_answer(node_service(), height)


@reads_bp.get("/blocks/head")
def head() -> Response:
    """The last committed block with its commit certificate."""
    service = node_service()
    return _block_answer(service, service.app.height)


def headers_from(service: NodeService, start: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` committed ``{"header", "certificate"}`` items from height ``start`` up."""
    return service.headers(start, limit)


@reads_bp.get("/blocks")
def blocks() -> Response:
    """A page of headers and certificates from ``from`` (default 0); ``next`` is the height after."""
    service = node_service()
    start = int_arg("from", 0)
    limit = int_arg("limit", 20, low=1, high=MAX_BLOCK_PAGE)
    assert start is not None and limit is not None
    items = headers_from(service, start, limit)
    following = start + len(items)
    more = bool(items) and following <= service.app.height
    return json_response({"blocks": items, "next": following if more else None})


@reads_bp.get("/sync/blocks")
def sync_blocks() -> Response:
    """Whole blocks with their certificates from ``from`` on, for state transfer and observers.

    With ``wait``, a request for blocks the node does not have yet is held open until the first
    arrives (or ``wait`` seconds pass), so followers see each block as soon as it is committed."""
    service = node_service()
    start = int_arg("from", None, low=1)
    if start is None:
        raise ApiProblem(400, "malformed", "query parameter 'from' (a height from 1) is required")
    limit = int_arg("limit", 100, low=1, high=MAX_SYNC_PAGE)
    wait = float_arg("wait", high=MAX_SYNC_WAIT) or 0.0
    assert limit is not None
    if wait > 0 and service.app.height < start:
        with waiting() as slot:
            if slot:
                service.wait_for_height(start, wait)
    items: list[str] = []
    size = 0
    with service.lock:
        head = service.app.height
        for height in range(start, min(head, start + limit - 1) + 1):
            found = service.app.store.block(height)
            assert found is not None and found[1] is not None
            item = json.dumps({"block": found[0].to_json(), "certificate": found[1].to_json()})
            items.append(item)
            size += len(item)
            if size >= SYNC_PAGE_BYTES:
                break
    body = '{"head":%d,"blocks":[%s]}' % (head, ",".join(items))  # noqa: UP031 - the items are JSON already
    return Response(body, mimetype="application/json")


@reads_bp.get("/validators")
def validators() -> Response:
    """The validator set in force and changes scheduled for later heights."""
    service = node_service()
    with service.lock:
        raw = service.app.store.get("validators")
    return Response(raw or b"null", mimetype="application/json")


@reads_bp.get("/validators/changes")
def validator_changes() -> Response:
    """The validator set changes after height ``after`` (default 0), oldest first, at most ``limit``:
    for each height ``x`` whose header names another set than header ``x - 1``, the ``validators``
    record as of block ``x - 1`` proven against certified header ``x - 1`` (a state proof, as
    ``GET /proofs/state`` answers). ``more`` says whether changes after the last one listed exist."""
    after = int_arg("after", 0)
    limit = int_arg("limit", MAX_CHANGES_PAGE, low=1, high=MAX_CHANGES_PAGE)
    assert after is not None and limit is not None
    head, changes, more = node_service().validator_changes(after, limit)
    return json_response({"head": head, "changes": [change.to_json() for change in changes], "more": more})


@reads_bp.get("/genesis")
def genesis() -> Response:
    """The genesis document this node's chain starts from."""
    service = node_service()
    with service.lock:
        document = service.app.store.genesis()
    return json_response(dict(document) if document is not None else service.app.genesis.to_json())


# -- audit ------------------------------------------------------------------------------------
def _time_arg(name: str, *, round_up: bool) -> str | None:
    value = str_arg(name, max_length=64)
    if value is None:
        return None
    try:
        moment = parse_timestamp(value)
        if round_up and moment.microsecond:
            moment += timedelta(seconds=1)  # block times are whole seconds: an inclusive lower bound
        return format_timestamp(moment)
    except InvalidTimestamp as exc:
        raise ApiProblem(400, "malformed", f"{name}: {exc}") from None
    except OverflowError:
        raise ApiProblem(400, "malformed", f"{name} is out of the range of dates in UTC") from None


def _subject(body: Mapping[str, Any]) -> str | None:
    for name in ("did", "issuer"):
        if isinstance(body.get(name), str):
            return str(body[name])
    return None


def _walk_txns(
    service: NodeService, filters: Mapping[str, Any], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """An audit page from the blocks themselves (stores without an audit index)."""
    after = (0, -1) if cursor is None else tuple(int(part) for part in cursor.split("."))
    first = max(after[0], filters["from_height"] or 0)
    last = min(service.app.height, 10**18 if filters["to_height"] is None else filters["to_height"])
    page: list[dict[str, Any]] = []
    for height in range(first, min(last, first + _AUDIT_WALK - 1) + 1):
        with service.lock:
            found = service.app.store.block(height)
        assert found is not None
        header = found[0].header
        if (filters["from_time"] and header.time < filters["from_time"]) or (
            filters["to_time"] and header.time > filters["to_time"]
        ):
            continue
        for index, txn in enumerate(found[0].txns):
            if (height, index) <= after or not _matches(txn.type, txn.submitter, txn.body, filters):
                continue
            if len(page) == limit:
                return page, f"{page[-1]['height']}.{page[-1]['index']}"
            page.append(
                {"id": txn.id, "height": height, "index": index, "type": txn.type, "submitter": txn.submitter,
                 "time": header.time, "transaction": txn.to_json()}
            )  # fmt: skip
    walked_to = min(last, first + _AUDIT_WALK - 1)
    if walked_to < last:  # the walk budget ran out first: resume after this block
        return page, f"{walked_to}.{_END_OF_BLOCK}"
    return page, None


def _matches(txn_type: str, submitter: str, body: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    if filters["type"] is not None and txn_type != filters["type"]:
        return False
    if filters["submitter"] is not None and submitter != filters["submitter"]:
        return False
    did = filters["did"]
    return did is None or submitter == did or _subject(body) == did


@reads_bp.get("/audit/txns")
def audit_txns() -> Response:
    """A page of committed transactions matching every filter given; ``next`` is the cursor after it."""
    filters: dict[str, Any] = {
        "did": str_arg("did"),
        "type": str_arg("type", max_length=64),
        "submitter": str_arg("submitter"),
        "from_height": int_arg("from_height", None),
        "to_height": int_arg("to_height", None),
        "from_time": _time_arg("from_time", round_up=True),
        "to_time": _time_arg("to_time", round_up=False),
    }
    if filters["type"] is not None and filters["type"] not in TXN_TYPES:
        raise ApiProblem(400, "malformed", f"unknown transaction type {filters['type']!r}")
    limit = int_arg("limit", 100, low=1, high=MAX_AUDIT_PAGE)
    assert limit is not None
    cursor = str_arg("cursor", max_length=40)
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise ApiProblem(400, "malformed", "not a cursor this node returned")
    service = node_service()
    query = cast(
        Callable[..., tuple[list[dict[str, Any]], str | None]] | None,
        getattr(service.app.store, "txns", None),
    )
    if callable(query):
        try:
            page, following = query(**filters, limit=limit, cursor=cursor)
        except ValueError as exc:  # the store's InvalidQuery
            raise ApiProblem(400, "malformed", str(exc)) from None
    else:
        page, following = _walk_txns(service, filters, limit, cursor)
    return json_response({"txns": page, "next": following})

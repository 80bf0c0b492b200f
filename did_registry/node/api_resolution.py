"""DID resolution over HTTP: the Universal Resolver driver path ``GET /1.0/identifiers/{did}``.

Implements the HTTP(S) binding of W3C DID Resolution v0.3 (§ "DID Resolution" and its HTTP(S)
binding) for did:trellis (``docs/did-method.md``, "Read"): the answer is a DID Resolution result
(``@context``, ``didDocument``, ``didResolutionMetadata``, ``didDocumentMetadata`` as in DID Core
1.0 §7.1) served as ``application/ld+json;profile="https://w3id.org/did-resolution"``, errors too:
400 ``invalidDid`` / ``invalidOptions``, 404 ``notFound`` (also a DID of another network), 501
``methodNotSupported``, and 410 for a deactivated DID (the result keeps the document, with
``deactivated: true``). Options: ``versionId`` (the decimal per-DID version, state key
``didv:<did>:<n>``) and ``versionTime`` (the version in force then: the highest whose ``updated`` is
not after it, found by binary search since versions are updated in block order).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from flask import Blueprint, Response, request

from did_registry.errors import InvalidDID
from did_registry.identity.did import parse_did
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import METHOD, parse_trellis_did
from did_registry.identity.resolution import (
    INVALID_DID,
    INVALID_OPTIONS,
    METHOD_NOT_SUPPORTED,
    NOT_FOUND,
    DocumentMetadata,
    ResolutionResult,
)
from did_registry.identity.timestamps import InvalidTimestamp, parse_timestamp
from did_registry.ledger.state import decode_value
from did_registry.ledger.storage.base import LedgerStore
from did_registry.node.api_support import node_service
from did_registry.node.service import NodeService

__all__ = ["RESOLUTION_MEDIA_TYPE", "MAX_DID_LENGTH", "resolution_bp", "resolution_failure", "resolve_did"]

RESOLUTION_MEDIA_TYPE: Final = 'application/ld+json;profile="https://w3id.org/did-resolution"'
"""The media type of a DID Resolution result."""
MAX_DID_LENGTH: Final = 2048
"""Longer DIDs are refused as ``invalidDid`` before parsing."""

_HTTP_STATUS: Final = {INVALID_DID: 400, INVALID_OPTIONS: 400, NOT_FOUND: 404, METHOD_NOT_SUPPORTED: 501}
_VERSION_ID = re.compile(r"[1-9][0-9]{0,17}")

resolution_bp = Blueprint("resolution", __name__)
"""The DID resolution route."""


class _Failed(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message


def _record(store: LedgerStore, key: str) -> dict[str, Any] | None:
    raw = store.get(key)
    return None if raw is None else dict(decode_value(raw))


def _version_at(
    store: LedgerStore, did: str, current: Mapping[str, Any], when: datetime
) -> Mapping[str, Any]:
    """The highest version of ``did`` whose ``updated`` is not after ``when``."""
    if parse_timestamp(current["updated"]) <= when:
        return current
    found: Mapping[str, Any] | None = None
    low, high = 1, int(current["version"]) - 1
    while low <= high:
        middle = (low + high) // 2
        record = _record(store, f"didv:{did}:{middle}")
        if record is None:
            break
        if parse_timestamp(record["updated"]) <= when:
            found, low = record, middle + 1
        else:
            high = middle - 1
    if found is None:
        raise _Failed(NOT_FOUND, f"{did} did not exist at {when.isoformat()}")
    return found


def _chosen(store: LedgerStore, did: str, options: Mapping[str, str]) -> tuple[Mapping[str, Any], Any]:
    """The record asked for and the record of the version after it (``None`` for the newest)."""
    version_id, version_time = options.get("versionId"), options.get("versionTime")
    if version_id is not None and version_time is not None:
        raise _Failed(INVALID_OPTIONS, "give versionId or versionTime, not both")
    current = _record(store, f"did:{did}")
    if current is None:
        raise _Failed(NOT_FOUND, f"{did} is not on the ledger")
    record: Mapping[str, Any] = current
    if version_id is not None:
        if not _VERSION_ID.fullmatch(version_id):
            raise _Failed(INVALID_OPTIONS, "versionId is a decimal version number from 1")
        wanted = int(version_id)
        if wanted > int(current["version"]):
            raise _Failed(NOT_FOUND, f"{did} has no version {wanted} (its newest is {current['version']})")
        if wanted < int(current["version"]):
            found = _record(store, f"didv:{did}:{wanted}")
            if found is None:
                raise _Failed(NOT_FOUND, f"{did} has no version {wanted}")
            record = found
    elif version_time is not None:
        try:
            when = parse_timestamp(version_time)
        except InvalidTimestamp as exc:
            raise _Failed(INVALID_OPTIONS, f"versionTime: {exc}") from None
        record = _version_at(store, did, current, when)
    following = None
    if int(record["version"]) < int(current["version"]):
        following = _record(store, f"didv:{did}:{int(record['version']) + 1}")
    return record, following


def resolve_did(service: NodeService, did: str, options: Mapping[str, str]) -> tuple[ResolutionResult, int]:
    """Resolve ``did`` on this node's head state: the result and the HTTP status to answer with."""
    try:
        if len(did) > MAX_DID_LENGTH:
            raise _Failed(INVALID_DID, f"a DID of {len(did)} characters is longer than {MAX_DID_LENGTH}")
        try:
            parsed = parse_did(did)
            if parsed.method != METHOD:
                raise _Failed(
                    METHOD_NOT_SUPPORTED, f"this node resolves did:{METHOD}, not did:{parsed.method}"
                )
            network = parse_trellis_did(parsed).network
        except InvalidDID as exc:
            raise _Failed(INVALID_DID, exc.reason) from None
        if network != service.app.genesis.network:
            raise _Failed(
                NOT_FOUND,
                f"{did} belongs to network {network!r}; this node serves {service.app.genesis.network!r}",
            )
        with service.lock:
            record, following = _chosen(service.app.store, did, options)
    except _Failed as failed:
        return ResolutionResult.failure(failed.code, failed.message), _HTTP_STATUS[failed.code]
    metadata = DocumentMetadata(
        created=parse_timestamp(record["created"]),
        updated=parse_timestamp(record["updated"]),
        deactivated=bool(record["deactivated"]),
        version_id=str(record["version"]),
        next_version_id=None if following is None else str(following["version"]),
        next_update=None if following is None else parse_timestamp(following["updated"]),
    )
    result = ResolutionResult.success(DIDDocument.from_json(record["document"]), metadata)
    return result, 410 if metadata.deactivated else 200


def _answer(result: ResolutionResult, status: int) -> Response:
    body = json.dumps(result.to_json(), ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, content_type=RESOLUTION_MEDIA_TYPE)


def resolution_failure(code: str, message: str) -> Response:
    """The resolver path's answer to a request refused before resolving: a DID Resolution result
    with error ``code`` (``invalidDid``, ``invalidOptions``, ...) and its HTTP status."""
    return _answer(ResolutionResult.failure(code, message), _HTTP_STATUS[code])


@resolution_bp.get("/1.0/identifiers/<did>")
def resolve(did: str) -> Response:
    """A W3C DID Resolution result for ``did`` (``versionId`` / ``versionTime`` honoured)."""
    return _answer(*resolve_did(node_service(), did, request.args))

"""Registries over HTTP: status lists (W3C Bitstring Status List v1.0), the trust registry, quarantine.

A status list is kept in state as raw bits (base64url) under ``status:<issuer>:<list>``; the API
serves it with the spec's ``encodedList`` (§2.2: multibase base64url of the GZIP-compressed bits)
and as an unsigned ``BitstringStatusListCredential`` (§2.2) whose ``id`` is its own URL. That
credential carries no Data Integrity proof: its integrity comes from the ledger, through
``GET /proofs/state?key=status:<issuer>:<list>``. Listings are pages in state-key order with an
``after`` cursor (the last name of the page before).
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from typing import Any, Final

from flask import Blueprint, Response, current_app, request
from flask.sansio.blueprints import BlueprintSetupState

from did_registry.identity.status_list import BitstringStatusList
from did_registry.identity.status_list_credential import BitstringStatusListCredential, StatusPurpose
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.state import decode_value
from did_registry.node.api_support import ApiProblem, int_arg, json_response, node_service, str_arg

__all__ = ["MAX_NAME_LENGTH", "MAX_LIST_PAGE", "VC_MEDIA_TYPE", "registry_bp"]

MAX_NAME_LENGTH: Final = 2048
"""The longest DID or list name a path may carry."""
MAX_LIST_PAGE: Final = 100
"""The most entries one registry page holds."""
VC_MEDIA_TYPE: Final = "application/vc"
"""The media type of a credential (VC Data Model 2.0 §6.3)."""

_CACHE: Final = "trellis.encoded_lists"
_CACHE_SIZE: Final = 32

registry_bp = Blueprint("registry", __name__)
"""The status list, trust registry and quarantine routes."""


class _EncodedLists:
    """``encodedList`` values by (state key, list version): compressing a big list costs milliseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[tuple[str, int], str] = OrderedDict()

    def get(self, key: str, value: dict[str, Any]) -> str:
        version = (key, int(value["version"]))
        with self._lock:
            if version in self._values:
                self._values.move_to_end(version)
                return self._values[version]
        encoded = _bits(value).encode()
        with self._lock:
            self._values[version] = encoded
            while len(self._values) > _CACHE_SIZE:
                self._values.popitem(last=False)
        return encoded


@registry_bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    state.app.extensions[_CACHE] = _EncodedLists()


def _bits(value: dict[str, Any]) -> BitstringStatusList:
    return BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"]))


def _name(value: str, what: str) -> str:
    if len(value) > MAX_NAME_LENGTH:
        raise ApiProblem(400, "malformed", f"the {what} is longer than {MAX_NAME_LENGTH} characters")
    return value


def _state(key: str) -> Any:
    service = node_service()
    with service.lock:
        raw = service.app.store.get(key)
    return None if raw is None else decode_value(raw)


def _page(prefix: str) -> tuple[list[tuple[str, Any]], str | None]:
    """A page of state entries under ``prefix`` (names without it) and the ``after`` of the next page."""
    after = str_arg("after", max_length=MAX_NAME_LENGTH)
    limit = int_arg("limit", MAX_LIST_PAGE, low=1, high=MAX_LIST_PAGE)
    assert limit is not None
    service = node_service()
    with service.lock:
        rows = service.app.store.scan(
            prefix, after=None if after is None else prefix + after, limit=limit + 1
        )
    entries = [(key[len(prefix) :], decode_value(raw)) for key, raw in rows[:limit]]
    return entries, entries[-1][0] if len(rows) > limit else None


def _status_list(issuer: str, name: str) -> tuple[str, dict[str, Any]]:
    key = f"status:{_name(issuer, 'issuer DID')}:{_name(name, 'list name')}"
    value = _state(key)
    if value is None:
        raise ApiProblem(404, "not_found", f"{issuer} has no status list {name!r}")
    return key, dict(value)


def _summary(value: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value[name] for name in ("issuer", "list", "purpose", "length", "version", "updated", "height")
    }


@registry_bp.get("/status-lists/<issuer>/<name>")
def status_list(issuer: str, name: str) -> Response:
    """A status list: its ledger record with the spec's ``encodedList``."""
    key, value = _status_list(issuer, name)
    encoded = current_app.extensions[_CACHE].get(key, value)
    return json_response({**_summary(value), "encodedList": encoded})


@registry_bp.get("/status-lists/<issuer>/<name>/credential")
def status_list_credential(issuer: str, name: str) -> Response:
    """The list as an unsigned BitstringStatusListCredential (integrity: the state proof of its key),
    its ``encodedList`` from the same cache as :func:`status_list`'s."""
    key, value = _status_list(issuer, name)
    credential = BitstringStatusListCredential(
        issuer=value["issuer"],
        status_purposes=(StatusPurpose(value["purpose"]),),
        status_list=_bits(value),
        id=request.base_url,
        subject_id=f"{request.base_url}#list",
        valid_from=parse_timestamp(value["updated"]),
    )
    encoded = current_app.extensions[_CACHE].get(key, value)
    return json_response(credential.to_json(encoded_list=encoded), mimetype=VC_MEDIA_TYPE)


@registry_bp.get("/status-lists")
def status_lists() -> Response:
    """An issuer's status lists (records without their bits), a page at a time."""
    issuer = _name(str_arg("issuer", max_length=MAX_NAME_LENGTH, required=True) or "", "issuer DID")
    entries, following = _page(f"status:{issuer}:")
    return json_response({"lists": [_summary(value) for _, value in entries], "next": following})


@registry_bp.get("/trust-registry")
def trust_registry() -> Response:
    """Accredited issuers with the credential types each may issue, a page at a time."""
    entries, following = _page("trust:")
    return json_response(
        {"issuers": [{"issuer": did, "types": types} for did, types in entries], "next": following}
    )


@registry_bp.get("/trust-registry/<issuer>")
def trust_entry(issuer: str) -> Response:
    """The credential types one issuer is accredited for."""
    types = _state(f"trust:{_name(issuer, 'issuer DID')}")
    if types is None:
        raise ApiProblem(404, "not_found", f"{issuer} is not accredited")
    return json_response({"issuer": issuer, "types": types})


@registry_bp.get("/quarantine")
def quarantine() -> Response:
    """Quarantine reports in force, a page at a time."""
    entries, following = _page("quarantine:")
    return json_response({"entries": [record for _, record in entries], "next": following})


@registry_bp.get("/quarantine/<did>")
def quarantine_entry(did: str) -> Response:
    """The quarantine report in force for one DID."""
    record = _state(f"quarantine:{_name(did, 'DID')}")
    if record is None:
        raise ApiProblem(404, "not_found", f"{did} is not quarantined")
    return json_response(record)

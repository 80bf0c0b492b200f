"""DID documents: W3C DID Core 1.0 §5 (core properties), read, validated and indexed.

A :class:`DIDDocument` is built from a JSON object and keeps that object as its representation
(``to_json`` gives back the same members in the same order, so a published document round-trips
byte for byte). Construction validates everything once and builds the indexes the verifier needs:
:meth:`DIDDocument.public_key_for` is two dictionary look-ups.

Validation (errors are :class:`~did_registry.errors.InvalidDIDDocument` naming the JSON path):
``id`` is a DID; every method and service id is a DID URL, relative ones (``#key-1``) resolved
against ``id``; ids are unique across ``verificationMethod``, embedded methods and ``service``; a
reference to this DID must name a method of this document (one to another DID is kept as
external); ``keyAgreement`` holds X25519 keys and the four signature relationships Ed25519 keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from did_registry.errors import (
    InvalidDID,
    InvalidDIDDocument,
    KeyNotAuthorized,
    VerificationMethodNotFound,
)
from did_registry.identity.crypto import Ed25519PublicKey, X25519PublicKey
from did_registry.identity.did import DID, parse_did, parse_did_url, resolve_relative
from did_registry.identity.verification_method import VerificationMethod

__all__ = [
    "DID_CONTEXT_V1",
    "MULTIKEY_CONTEXT_V1",
    "DEFAULT_CONTEXT",
    "VerificationRelationship",
    "RELATIONSHIPS",
    "SIGNING_RELATIONSHIPS",
    "Service",
    "DIDDocument",
]

DID_CONTEXT_V1: Final = "https://www.w3.org/ns/did/v1"
"""The JSON-LD context every DID document starts with (DID Core §6.3.1)."""
MULTIKEY_CONTEXT_V1: Final = "https://w3id.org/security/multikey/v1"
"""The JSON-LD context that defines ``Multikey`` and ``publicKeyMultibase``."""
DEFAULT_CONTEXT: Final = (DID_CONTEXT_V1, MULTIKEY_CONTEXT_V1)
"""The ``@context`` of documents Trellis creates."""
_FIRST_CONTEXTS = (DID_CONTEXT_V1, "https://www.w3.org/ns/did/v1.1")


class VerificationRelationship(StrEnum):
    """The verification relationships of DID Core §5.3."""

    AUTHENTICATION = "authentication"
    ASSERTION_METHOD = "assertionMethod"
    KEY_AGREEMENT = "keyAgreement"
    CAPABILITY_INVOCATION = "capabilityInvocation"
    CAPABILITY_DELEGATION = "capabilityDelegation"


RELATIONSHIPS: Final = tuple(str(r) for r in VerificationRelationship)
"""All five relationship property names, in DID Core order."""
SIGNING_RELATIONSHIPS: Final = tuple(r for r in RELATIONSHIPS if r != "keyAgreement")
"""The relationships whose keys sign (Ed25519); ``keyAgreement`` keys are X25519."""


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def _copy_json(value: object, path: str = "") -> Any:
    """Deep-copy a JSON value, refusing anything JSON cannot represent (naming its path)."""
    try:
        return _copy_fast(value)
    except TypeError:
        return _copy_checked(value, path)


def _copy_fast(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        out = {key: _copy_fast(item) for key, item in value.items()}
        if any(type(key) is not str for key in out):
            raise TypeError("member name is not a string")
        return out
    if kind is list:
        return [_copy_fast(item) for item in value]
    if kind in _SCALARS:
        return value
    raise TypeError(kind.__name__)


def _copy_checked(value: object, path: str) -> Any:
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidDIDDocument(f"member name {key!r} is not a string", path=path)
            out[key] = _copy_checked(item, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, list | tuple):
        return [_copy_checked(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidDIDDocument(f"{type(value).__name__} is not a JSON value", path=path)


def _is_uri(value: object) -> bool:
    scheme, sep, rest = value.partition(":") if isinstance(value, str) else ("", "", "")
    return bool(sep and rest and scheme[:1].isalpha() and scheme.isascii())


_ABSOLUTE_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[!-~]+")  # RFC 3986 §4.3, printable ASCII


def _service_id(value: object, base: DID, path: str) -> str:
    """A service's id: "a URI conforming to [RFC3986]" (DID Core §5.4). DID URLs and references
    relative to the document's DID are read as :func:`_did_url` reads them; another absolute URI
    (``urn:uuid:…``, ``https://…``) is kept as written."""
    if isinstance(value, str) and not value.startswith("did:") and _ABSOLUTE_URI.fullmatch(value):
        return value
    return _did_url(value, base, path)


def _did_url(value: object, base: DID, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidDIDDocument("must be a DID URL string", path=path)
    try:
        return str(resolve_relative(value, base))
    except InvalidDID as exc:
        raise InvalidDIDDocument(exc.reason, path=path) from None


@dataclass(frozen=True, slots=True)
class Service:
    """A service (DID Core §5.4): an id (a URI: a DID URL, relative ones resolved, or any other absolute
    URI such as ``urn:uuid:…``), one or more types and an endpoint."""

    id: str
    type: str | tuple[str, ...]
    service_endpoint: Any

    @classmethod
    def from_json(cls, data: object, *, base: DID, path: str) -> Service:
        """Read a service from JSON; a relative id resolves against ``base``."""
        if not isinstance(data, Mapping):
            raise InvalidDIDDocument("a service must be a JSON object", path=path)
        service_id = _service_id(data.get("id"), base, f"{path}.id")
        type_ = data.get("type")
        if isinstance(type_, list) and type_ and all(isinstance(t, str) and t for t in type_):
            type_ = tuple(type_)
        elif not (isinstance(type_, str) and type_):
            raise InvalidDIDDocument("'type' must be a string or a list of strings", path=f"{path}.type")
        endpoint = data.get("serviceEndpoint")
        items = endpoint if isinstance(endpoint, list) and endpoint else [endpoint]
        for item in items:
            if not (_is_uri(item) or isinstance(item, Mapping)):
                raise InvalidDIDDocument(
                    "'serviceEndpoint' must be a URI, a map, or a list of them",
                    path=f"{path}.serviceEndpoint",
                )
        return cls(service_id, type_, _copy_json(endpoint, f"{path}.serviceEndpoint"))

    def to_json(self) -> dict[str, Any]:
        """Return the service's JSON form."""
        type_ = list(self.type) if isinstance(self.type, tuple) else self.type
        endpoint = _copy_json(self.service_endpoint, "serviceEndpoint")
        return {"id": self.id, "type": type_, "serviceEndpoint": endpoint}


class DIDDocument:
    """A validated DID document with O(1) look-ups of methods by id and relationship."""

    __slots__ = ("_authorized", "_external", "_id", "_json", "_methods", "_references", "_services")

    def __init__(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise InvalidDIDDocument("a DID document must be a JSON object")
        self._json: dict[str, Any] = _copy_json(data, "")
        doc = self._json
        if "@context" in doc:
            _check_context(doc["@context"])
        if not isinstance(doc.get("id"), str):
            raise InvalidDIDDocument("a DID document needs a string 'id'", path="id")
        try:
            self._id = parse_did(doc["id"])
        except InvalidDID as exc:
            raise InvalidDIDDocument(exc.reason, path="id") from None
        _check_controller(doc.get("controller"))
        _check_also_known_as(doc.get("alsoKnownAs"))
        seen: set[str] = {str(self._id)}
        self._methods: dict[str, VerificationMethod] = {}
        for i, item in enumerate(_list(doc, "verificationMethod")):
            self._add_method(
                VerificationMethod.from_json(item, base=self._id, path=f"verificationMethod[{i}]"),
                seen,
                f"verificationMethod[{i}]",
            )
        for rel in RELATIONSHIPS:
            for i, item in enumerate(_list(doc, rel)):
                if isinstance(item, Mapping):
                    path = f"{rel}[{i}]"
                    self._add_method(VerificationMethod.from_json(item, base=self._id, path=path), seen, path)
        self._services: dict[str, Service] = {}
        for i, item in enumerate(_list(doc, "service")):
            service = Service.from_json(item, base=self._id, path=f"service[{i}]")
            _claim(service.id, seen, f"service[{i}].id")
            self._services[service.id] = service
        self._references: dict[str, tuple[str, ...]] = {}
        self._authorized: dict[str, dict[str, VerificationMethod]] = {}
        self._external: dict[str, frozenset[str]] = {}
        for rel in RELATIONSHIPS:
            self._index_relationship(rel)

    def _add_method(self, method: VerificationMethod, seen: set[str], path: str) -> None:
        _claim(method.id, seen, f"{path}.id")
        self._methods[method.id] = method

    def _index_relationship(self, rel: str) -> None:
        ids: list[str] = []
        local: dict[str, VerificationMethod] = {}
        external: set[str] = set()
        signing = rel != "keyAgreement"
        for i, item in enumerate(_list(self._json, rel)):
            path = f"{rel}[{i}]"
            if isinstance(item, Mapping):
                method_id = _did_url(item.get("id"), self._id, f"{path}.id")
            elif isinstance(item, str):
                method_id = _did_url(item, self._id, path)
            else:
                raise InvalidDIDDocument("must be a DID URL or an embedded verification method", path=path)
            if method_id in local or method_id in external:
                raise InvalidDIDDocument(f"{method_id!r} is listed twice in {rel}", path=path)
            ids.append(method_id)
            method = self._methods.get(method_id)
            if method is None:
                if parse_did_url(method_id).did == self._id:
                    raise InvalidDIDDocument(
                        f"{method_id!r} names no verification method in this document", path=path
                    )
                external.add(method_id)
                continue
            if method.is_signing_key != signing:
                wanted = "an Ed25519" if signing else "an X25519"
                raise InvalidDIDDocument(f"{rel} needs {wanted} key; {method_id!r} is not one", path=path)
            local[method_id] = method
        self._references[rel] = tuple(ids)
        self._authorized[rel] = local
        self._external[rel] = frozenset(external)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DIDDocument:
        """Validate and index a DID document given as a JSON object."""
        return cls(data)

    def to_json(self) -> dict[str, Any]:
        """Return the document as a JSON object (a fresh copy, members in their original order)."""
        result: dict[str, Any] = _copy_fast(self._json)
        return result

    def json_view(self) -> Mapping[str, Any]:
        """The document's JSON object itself, not a copy: for reading or encoding only (never change it)."""
        return self._json

    def __repr__(self) -> str:
        return f"DIDDocument({self._id})"

    @property
    def id(self) -> DID:
        """The DID this document describes."""
        return self._id

    @property
    def controllers(self) -> tuple[str, ...]:
        """The DIDs in ``controller`` (empty when absent)."""
        value = self._json.get("controller")
        return (value,) if isinstance(value, str) else tuple(value or ())

    @property
    def also_known_as(self) -> tuple[str, ...]:
        """The URIs in ``alsoKnownAs``."""
        return tuple(self._json.get("alsoKnownAs", ()))

    @property
    def verification_methods(self) -> tuple[VerificationMethod, ...]:
        """Every method of the document: ``verificationMethod`` first, then the embedded ones."""
        return tuple(self._methods.values())

    @property
    def services(self) -> tuple[Service, ...]:
        """The services, in document order."""
        return tuple(self._services.values())

    def _absolute(self, id_or_fragment: str) -> str:
        if id_or_fragment.startswith("did:"):
            return id_or_fragment
        if id_or_fragment.startswith("#"):
            return f"{self._id}{id_or_fragment}"
        return f"{self._id}#{id_or_fragment}"

    def verification_method(self, id_or_fragment: str) -> VerificationMethod:
        """Return the method with this id (absolute, ``#fragment`` or bare fragment)."""
        method = self._methods.get(id_or_fragment) or self._methods.get(self._absolute(id_or_fragment))
        if method is None:
            raise VerificationMethodNotFound(str(self._id), id_or_fragment)
        return method

    def service(self, id_or_fragment: str) -> Service:
        """Return the service with this id (absolute, ``#fragment`` or bare fragment)."""
        service = self._services.get(id_or_fragment) or self._services.get(self._absolute(id_or_fragment))
        if service is None:
            raise VerificationMethodNotFound(str(self._id), id_or_fragment, "no such service")
        return service

    def relationship(self, relationship: str) -> tuple[str, ...]:
        """The absolute ids listed in a relationship (including references to other DIDs)."""
        ids = self._references.get(relationship)
        if ids is None:
            raise KeyNotAuthorized(str(self._id), "", relationship, f"unknown relationship {relationship!r}")
        return ids

    def methods_for(self, relationship: str) -> tuple[VerificationMethod, ...]:
        """The methods of this document authorised for a relationship, in document order."""
        self.relationship(relationship)
        return tuple(self._authorized[relationship].values())

    def _authorized_method(self, method_id: str, relationship: str) -> VerificationMethod:
        local = self._authorized.get(relationship)
        if local is None:
            raise KeyNotAuthorized(
                str(self._id), method_id, relationship, f"unknown relationship {relationship!r}"
            )
        method = local.get(method_id)
        if method is not None:
            return method
        absolute = self._absolute(method_id)
        method = local.get(absolute)
        if method is not None:
            return method
        if absolute in self._external[relationship]:
            raise VerificationMethodNotFound(
                str(self._id),
                absolute,
                f"listed in {relationship} but defined by another DID; resolve that DID",
            )
        if absolute in self._methods:
            raise KeyNotAuthorized(str(self._id), absolute, relationship)
        raise VerificationMethodNotFound(str(self._id), method_id)

    def public_key_for(self, method_id: str, relationship: str = "authentication") -> Ed25519PublicKey:
        """Return the Ed25519 key of ``method_id`` if the document authorises it for ``relationship``.

        Raises :class:`VerificationMethodNotFound` when no such method exists here and
        :class:`KeyNotAuthorized` when it exists but is not in ``relationship``.
        """
        key = self._authorized_method(method_id, relationship).public_key
        if not isinstance(key, Ed25519PublicKey):
            raise KeyNotAuthorized(
                str(self._id),
                method_id,
                relationship,
                "keyAgreement keys are X25519; use key_agreement_key()",
            )
        return key

    def key_agreement_key(self, method_id: str) -> X25519PublicKey:
        """Return the X25519 key of ``method_id`` if it is listed in ``keyAgreement``."""
        key = self._authorized_method(method_id, "keyAgreement").public_key
        assert isinstance(key, X25519PublicKey)  # keyAgreement holds only X25519 keys (validated)
        return key


def _list(doc: Mapping[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    if value is None:
        if name in doc:
            raise InvalidDIDDocument(f"{name!r} must be a list, not null", path=name)
        return []
    if not isinstance(value, list):
        raise InvalidDIDDocument(f"{name!r} must be a list", path=name)
    return value


def _claim(item_id: str, seen: set[str], path: str) -> None:
    if item_id in seen:
        raise InvalidDIDDocument(f"duplicate id {item_id!r}", path=path)
    seen.add(item_id)


def _check_context(context: object) -> None:
    items = context if isinstance(context, list) else [context]
    if not items or items[0] not in _FIRST_CONTEXTS:
        raise InvalidDIDDocument(f"'@context' must start with {DID_CONTEXT_V1!r}", path="@context")
    for i, item in enumerate(items):
        if not isinstance(item, str | Mapping):
            raise InvalidDIDDocument("a context must be a URL or a map", path=f"@context[{i}]")


def _check_controller(value: object) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InvalidDIDDocument("'controller' must not be an empty list", path="controller")
    for i, item in enumerate(items):
        try:
            parse_did(item)
        except InvalidDID as exc:
            raise InvalidDIDDocument(
                exc.reason, path=f"controller[{i}]" if isinstance(value, list) else "controller"
            ) from None


def _check_also_known_as(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise InvalidDIDDocument("'alsoKnownAs' must be a list of URIs", path="alsoKnownAs")
    for i, item in enumerate(value):
        if not _is_uri(item):
            raise InvalidDIDDocument("must be a URI", path=f"alsoKnownAs[{i}]")
        if item in value[:i]:
            raise InvalidDIDDocument(f"duplicate URI {item!r}", path=f"alsoKnownAs[{i}]")

"""Building DID documents (W3C DID Core 1.0 §5): add and remove keys, relationships and services.

A :class:`DIDDocumentBuilder` starts empty or from an existing :class:`DIDDocument` (key rotation:
add the new key, move the relationships, remove the old key) and :meth:`~DIDDocumentBuilder.build`
validates the result with :class:`DIDDocument`. Members come out in a fixed order: ``@context``,
``id``, ``controller``, ``alsoKnownAs``, ``verificationMethod``, the five relationships in DID Core
order, ``service``, then any other members the starting document had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from did_registry.errors import InvalidDID, InvalidDIDDocument, VerificationMethodNotFound
from did_registry.identity.did import DID, parse_did, resolve_relative
from did_registry.identity.did_document import DEFAULT_CONTEXT, RELATIONSHIPS, DIDDocument
from did_registry.identity.verification_method import MULTIKEY, PublicKey, VerificationMethod

__all__ = ["DIDDocumentBuilder"]

_KNOWN = frozenset(
    {"@context", "id", "controller", "alsoKnownAs", "verificationMethod", "service", *RELATIONSHIPS}
)


class DIDDocumentBuilder:
    """A mutable draft of a DID document; :meth:`build` validates it into a :class:`DIDDocument`."""

    def __init__(
        self, did: DID | str, *, context: Iterable[str | Mapping[str, Any]] = DEFAULT_CONTEXT
    ) -> None:
        self._did = did if isinstance(did, DID) else parse_did(did)
        self._context: list[Any] = list(context)
        self._controller: str | list[str] | None = None
        self._also_known_as: list[str] | None = None
        self._methods: list[dict[str, Any]] = []
        self._relationships: dict[str, list[Any]] = {rel: [] for rel in RELATIONSHIPS}
        self._services: list[dict[str, Any]] = []
        self._extra: dict[str, Any] = {}

    @classmethod
    def from_document(cls, document: DIDDocument) -> DIDDocumentBuilder:
        """Start from an existing document (its members, including unknown ones, are kept)."""
        data = document.to_json()
        builder = cls(document.id, context=())
        context = data.get("@context", [])
        builder._context = context if isinstance(context, list) else [context]
        builder._controller = data.get("controller")
        builder._also_known_as = data.get("alsoKnownAs")
        builder._methods = list(data.get("verificationMethod", []))
        for rel in RELATIONSHIPS:
            builder._relationships[rel] = list(data.get(rel, []))
        builder._services = list(data.get("service", []))
        builder._extra = {k: v for k, v in data.items() if k not in _KNOWN}
        return builder

    @property
    def did(self) -> DID:
        """The DID of the document being built."""
        return self._did

    def _absolute(self, id_or_fragment: str, path: str = "id") -> str:
        if not id_or_fragment.startswith(("did:", "#")):
            id_or_fragment = f"#{id_or_fragment}"
        try:
            return str(resolve_relative(id_or_fragment, self._did))
        except InvalidDID as exc:
            raise InvalidDIDDocument(exc.reason, path=path) from None

    def _entry_id(self, entry: object) -> str | None:
        raw = entry.get("id") if isinstance(entry, Mapping) else entry
        if not isinstance(raw, str):
            return None
        try:
            return str(resolve_relative(raw, self._did))
        except InvalidDID:
            return None

    def set_controller(self, controller: DID | str | Iterable[DID | str] | None) -> DIDDocumentBuilder:
        """Set (or with ``None`` remove) the ``controller`` property."""
        if controller is None or isinstance(controller, DID | str):
            self._controller = None if controller is None else str(controller)
        else:
            self._controller = [str(c) for c in controller]
        return self

    def set_also_known_as(self, uris: Iterable[str] | None) -> DIDDocumentBuilder:
        """Set (or with ``None`` remove) the ``alsoKnownAs`` property."""
        self._also_known_as = None if uris is None else list(uris)
        return self

    def add_verification_method(
        self,
        key: PublicKey,
        *,
        fragment: str,
        relationships: Iterable[str] = (),
        controller: DID | str | None = None,
        type: str = MULTIKEY,
    ) -> str:
        """Add a key as ``<did>#<fragment>`` to ``verificationMethod`` and reference it from
        ``relationships``; return the method's id."""
        method_id = self._absolute(fragment)
        method = VerificationMethod(method_id, type, str(controller or self._did), key)
        if any(self._entry_id(m) == method_id for m in self._methods):
            raise InvalidDIDDocument(f"duplicate id {method_id!r}", path="verificationMethod")
        self._methods.append(method.to_json())
        for rel in relationships:
            self.add_relationship(rel, method_id)
        return method_id

    def remove_verification_method(self, id_or_fragment: str) -> None:
        """Remove a method and every reference to it (raise if the document has no such method)."""
        method_id = self._absolute(id_or_fragment)
        kept = [m for m in self._methods if self._entry_id(m) != method_id]
        removed = len(kept) != len(self._methods)
        self._methods = kept
        for rel, entries in self._relationships.items():
            kept_entries = [e for e in entries if self._entry_id(e) != method_id]
            removed = removed or len(kept_entries) != len(entries)
            self._relationships[rel] = kept_entries
        if not removed:
            raise VerificationMethodNotFound(str(self._did), method_id)

    def add_relationship(self, relationship: str, id_or_fragment: str) -> None:
        """Reference a method (of this DID or another) from a verification relationship."""
        if relationship not in self._relationships:
            raise InvalidDIDDocument(f"unknown verification relationship {relationship!r}")
        method_id = self._absolute(id_or_fragment)
        if all(self._entry_id(e) != method_id for e in self._relationships[relationship]):
            self._relationships[relationship].append(method_id)

    def remove_relationship(self, relationship: str, id_or_fragment: str) -> None:
        """Drop a method from one verification relationship (the method itself stays)."""
        if relationship not in self._relationships:
            raise InvalidDIDDocument(f"unknown verification relationship {relationship!r}")
        method_id = self._absolute(id_or_fragment)
        entries = self._relationships[relationship]
        kept = [e for e in entries if self._entry_id(e) != method_id]
        if len(kept) == len(entries):
            raise VerificationMethodNotFound(str(self._did), method_id, f"not listed in {relationship}")
        self._relationships[relationship] = kept

    def add_service(
        self,
        fragment: str,
        type: str | Iterable[str],
        endpoint: str | Mapping[str, Any] | Iterable[str | Mapping[str, Any]],
    ) -> str:
        """Add a service ``<did>#<fragment>``; return its id."""
        service_id = self._absolute(fragment)
        if any(self._entry_id(s) == service_id for s in self._services):
            raise InvalidDIDDocument(f"duplicate id {service_id!r}", path="service")
        type_: Any = type if isinstance(type, str) else list(type)
        endpoint_: Any = endpoint if isinstance(endpoint, str | Mapping) else list(endpoint)
        self._services.append({"id": service_id, "type": type_, "serviceEndpoint": endpoint_})
        return service_id

    def remove_service(self, id_or_fragment: str) -> None:
        """Remove a service (raise if there is none with that id)."""
        service_id = self._absolute(id_or_fragment)
        kept = [s for s in self._services if self._entry_id(s) != service_id]
        if len(kept) == len(self._services):
            raise VerificationMethodNotFound(str(self._did), service_id, "no such service")
        self._services = kept

    def to_json(self) -> dict[str, Any]:
        """Return the draft as a JSON object (not yet validated)."""
        doc: dict[str, Any] = {}
        if self._context:
            doc["@context"] = list(self._context)
        doc["id"] = str(self._did)
        if self._controller is not None:
            doc["controller"] = self._controller
        if self._also_known_as is not None:
            doc["alsoKnownAs"] = list(self._also_known_as)
        if self._methods:
            doc["verificationMethod"] = list(self._methods)
        for rel in RELATIONSHIPS:
            if self._relationships[rel]:
                doc[rel] = list(self._relationships[rel])
        if self._services:
            doc["service"] = list(self._services)
        doc.update(self._extra)
        return doc

    def build(self) -> DIDDocument:
        """Validate the draft and return the :class:`DIDDocument`."""
        return DIDDocument(self.to_json())

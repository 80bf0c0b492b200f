"""DID resolution results: W3C DID Core 1.0 §7.1 (DID Resolution) and the DID Resolution draft's
result format (``didResolutionMetadata``, ``didDocument``, ``didDocumentMetadata``).

A :class:`Resolver` answers ``resolve(did, options)`` with a :class:`ResolutionResult` and never
raises for an unresolvable DID: failures are results whose ``didResolutionMetadata.error`` is a
DID Core error code (a string, with a human ``errorMessage`` beside it).
:meth:`ResolutionResult.document_or_raise` turns a failure into the matching typed error.
:class:`DIDKeyResolver` resolves did:key locally; :class:`MultiResolver` dispatches on the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol

from did_registry.errors import (
    DIDDeactivated,
    DIDNotFound,
    InvalidDID,
    InvalidDIDDocument,
    MethodNotSupported,
    ResolutionError,
)
from did_registry.identity import did_key
from did_registry.identity.did import parse_did
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp

__all__ = [
    "RESOLUTION_CONTEXT",
    "DID_LD_JSON",
    "INVALID_DID",
    "NOT_FOUND",
    "METHOD_NOT_SUPPORTED",
    "REPRESENTATION_NOT_SUPPORTED",
    "INVALID_PUBLIC_KEY",
    "INVALID_OPTIONS",
    "INTERNAL_ERROR",
    "ResolutionOptions",
    "DocumentMetadata",
    "ResolutionResult",
    "Resolver",
    "DIDKeyResolver",
    "MultiResolver",
]

RESOLUTION_CONTEXT: Final = "https://w3id.org/did-resolution/v1"
"""The ``@context`` of a DID resolution result."""
DID_LD_JSON: Final = "application/did+ld+json"
"""Media type of a DID document in its JSON-LD representation (DID Core §6.3)."""
INVALID_DID: Final = "invalidDid"
"""Error: the DID does not follow the DID syntax (or the method's syntax)."""
NOT_FOUND: Final = "notFound"
"""Error: the DID does not exist."""
METHOD_NOT_SUPPORTED: Final = "methodNotSupported"
"""Error: the resolver does not know the DID's method."""
REPRESENTATION_NOT_SUPPORTED: Final = "representationNotSupported"
"""Error: the ``accept`` option asks for a representation the resolver cannot produce."""
INVALID_PUBLIC_KEY: Final = "invalidPublicKey"
"""Error (did:key): the key the DID encodes is not a valid public key of its type."""
INVALID_OPTIONS: Final = "invalidOptions"
"""Error: a resolution option has a value the resolver cannot use."""
INTERNAL_ERROR: Final = "internalError"
"""Error: the resolver failed for a reason of its own."""

ResolutionOptions = Mapping[str, Any]
"""DID resolution options (DID Core §7.1.1), e.g. ``accept``, ``versionId``, ``versionTime``."""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_TIMES = (("created", "created"), ("updated", "updated"), ("next_update", "nextUpdate"))


@dataclass(frozen=True, slots=True)
class DocumentMetadata:
    """DID document metadata (DID Core §7.1.3); times are timezone-aware datetimes."""

    created: datetime | None = None
    updated: datetime | None = None
    deactivated: bool = False
    version_id: str | None = None
    next_update: datetime | None = None
    next_version_id: str | None = None
    equivalent_id: tuple[str, ...] = ()
    canonical_id: str | None = None

    def __post_init__(self) -> None:
        for attr, name in _TIMES:
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise InvalidTimestamp(f"{name} must be a timezone-aware datetime, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        """Return the JSON map; times as ``YYYY-MM-DDThh:mm:ssZ``, absent members omitted."""
        out: dict[str, Any] = {}
        for attr, name in _TIMES:
            value = getattr(self, attr)
            if value is not None:
                out[name] = format_timestamp(value)
        if self.deactivated:
            out["deactivated"] = True
        for attr, name in (("version_id", "versionId"), ("next_version_id", "nextVersionId")):
            if getattr(self, attr) is not None:
                out[name] = getattr(self, attr)
        if self.equivalent_id:
            out["equivalentId"] = list(self.equivalent_id)
        if self.canonical_id is not None:
            out["canonicalId"] = self.canonical_id
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DocumentMetadata:
        """Read the JSON map; raise :class:`ResolutionError` when a member is malformed."""
        if not isinstance(data, Mapping):
            raise ResolutionError("", "didDocumentMetadata must be a JSON object")
        values: dict[str, Any] = {}
        try:
            for attr, name in _TIMES:
                if name in data:
                    values[attr] = parse_timestamp(data[name])
        except InvalidTimestamp as exc:
            raise ResolutionError("", f"didDocumentMetadata: {exc}") from None
        deactivated = data.get("deactivated", False)
        if not isinstance(deactivated, bool):
            raise ResolutionError("", "didDocumentMetadata.deactivated must be a boolean")
        for attr, name in (
            ("version_id", "versionId"),
            ("next_version_id", "nextVersionId"),
            ("canonical_id", "canonicalId"),
        ):
            if name in data:
                if not isinstance(data[name], str):
                    raise ResolutionError("", f"didDocumentMetadata.{name} must be a string")
                values[attr] = data[name]
        equivalent = data.get("equivalentId", [])
        if not isinstance(equivalent, list) or not all(isinstance(e, str) for e in equivalent):
            raise ResolutionError("", "didDocumentMetadata.equivalentId must be a list of strings")
        return cls(deactivated=deactivated, equivalent_id=tuple(equivalent), **values)


@dataclass(frozen=True, slots=True)
class ResolutionResult:
    """The result of resolving a DID: a document and its metadata, or an error code."""

    did_document: DIDDocument | None = None
    did_document_metadata: DocumentMetadata = field(default_factory=DocumentMetadata)
    did_resolution_metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def success(
        cls,
        document: DIDDocument,
        metadata: DocumentMetadata | None = None,
        *,
        content_type: str = DID_LD_JSON,
    ) -> ResolutionResult:
        """A successful result (a deactivated DID is one too: check ``metadata.deactivated``)."""
        resolution = MappingProxyType({"contentType": content_type})
        return cls(document, metadata or DocumentMetadata(), resolution)

    @classmethod
    def failure(cls, error: str, message: str = "") -> ResolutionResult:
        """An error result: no document, ``didResolutionMetadata.error`` set to ``error``."""
        resolution: dict[str, Any] = {"error": error}
        if message:
            resolution["errorMessage"] = message
        return cls(None, DocumentMetadata(), MappingProxyType(resolution))

    @property
    def error(self) -> str | None:
        """The error code, or ``None`` for a successful result."""
        error = self.did_resolution_metadata.get("error")
        return error if isinstance(error, str) else None

    @property
    def error_message(self) -> str:
        """The human-readable ``errorMessage`` ('' when absent)."""
        return str(self.did_resolution_metadata.get("errorMessage", ""))

    def document_or_raise(self, did: str = "", *, allow_deactivated: bool = False) -> DIDDocument:
        """Return the document, or raise the typed error for this result's error code.

        ``invalidDid`` raises :class:`InvalidDID`, ``notFound`` :class:`DIDNotFound`,
        ``methodNotSupported`` :class:`MethodNotSupported`, any other :class:`ResolutionError`
        whose ``error`` is the code. A deactivated DID raises :class:`DIDDeactivated` unless
        ``allow_deactivated`` (its keys must not verify anything any more).
        """
        if self.did_document is not None and self.error is None:
            if self.did_document_metadata.deactivated and not allow_deactivated:
                raise DIDDeactivated(did or str(self.did_document.id), "the DID is deactivated")
            return self.did_document
        code, detail = self.error or INTERNAL_ERROR, self.error_message or "no DID document"
        if code == INVALID_DID:
            raise InvalidDID(did, detail)
        if code == NOT_FOUND:
            raise DIDNotFound(did, detail)
        if code == METHOD_NOT_SUPPORTED:
            raise MethodNotSupported(did, detail)
        exc = ResolutionError(did, detail)
        exc.error = code
        exc.args = (f"{code}: {did}: {detail}",)
        raise exc

    def to_json(self) -> dict[str, Any]:
        """Return the result in the DID Resolution JSON form."""
        return {
            "@context": RESOLUTION_CONTEXT,
            "didDocument": None if self.did_document is None else self.did_document.to_json(),
            "didResolutionMetadata": dict(self.did_resolution_metadata),
            "didDocumentMetadata": self.did_document_metadata.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolutionResult:
        """Read a DID Resolution JSON result (the document is validated)."""
        if not isinstance(data, Mapping):
            raise ResolutionError("", "a resolution result must be a JSON object")
        resolution = data.get("didResolutionMetadata", {})
        if not isinstance(resolution, Mapping):
            raise ResolutionError("", "didResolutionMetadata must be a JSON object")
        document = data.get("didDocument")
        if document is not None and "error" in resolution:
            raise ResolutionError("", "an error result must not carry a DID document")
        if document is None and "error" not in resolution:
            raise ResolutionError("", "a result needs a didDocument or an error")
        return cls(
            None if document is None else DIDDocument(document),
            DocumentMetadata.from_json(data.get("didDocumentMetadata", {})),
            MappingProxyType(dict(resolution)),
        )


class Resolver(Protocol):
    """Anything that resolves DIDs (DID Core §7.1): errors come back as results, not exceptions."""

    def resolve(self, did: str, options: ResolutionOptions | None = None) -> ResolutionResult:
        """Resolve ``did`` into a :class:`ResolutionResult`."""
        ...


def _accept_error(options: ResolutionOptions) -> ResolutionResult | None:
    accept = options.get("accept")
    if accept is not None and accept != DID_LD_JSON:
        return ResolutionResult.failure(
            REPRESENTATION_NOT_SUPPORTED, f"only {DID_LD_JSON} is produced, not {accept!r}"
        )
    return None


_KEY_FORMATS: Final = {
    "Multikey": did_key.Representation.MULTIKEY,
    "Ed25519VerificationKey2018": did_key.Representation.LEGACY_2018,
    "JsonWebKey2020": did_key.Representation.JWK_2020,
}


class DIDKeyResolver:
    """Resolves did:key locally (no I/O).

    Options: ``accept`` (only ``application/did+ld+json``), ``publicKeyFormat`` (``Multikey``,
    ``Ed25519VerificationKey2018`` or ``JsonWebKey2020``) and ``enableEncryptionKeyDerivation``.
    A malformed did:key gives ``invalidDid``; one whose 32 key bytes are no valid Ed25519 public key,
    ``invalidPublicKey`` (did:key v0.7, "Signature Method Creation Algorithm").
    """

    def __init__(
        self,
        *,
        representation: did_key.Representation | str = did_key.Representation.MULTIKEY,
        enable_encryption_key_derivation: bool = True,
    ) -> None:
        self._representation = did_key.Representation(representation)
        self._derive = enable_encryption_key_derivation

    def resolve(self, did: str, options: ResolutionOptions | None = None) -> ResolutionResult:
        """Resolve a did:key into its document."""
        options = options or _EMPTY
        refused = _accept_error(options)
        if refused is not None:
            return refused
        representation = self._representation
        if "publicKeyFormat" in options:
            requested = options["publicKeyFormat"]
            chosen = _KEY_FORMATS.get(requested) if isinstance(requested, str) else None
            if chosen is None:
                return ResolutionResult.failure(
                    INVALID_OPTIONS,
                    f"publicKeyFormat must be one of {', '.join(_KEY_FORMATS)}",
                )
            representation = chosen
        derive = options.get("enableEncryptionKeyDerivation", self._derive)
        if not isinstance(derive, bool):
            return ResolutionResult.failure(
                INVALID_OPTIONS, "enableEncryptionKeyDerivation must be a boolean"
            )
        try:
            parsed = parse_did(did)
            if parsed.method != did_key.METHOD:
                return ResolutionResult.failure(
                    METHOD_NOT_SUPPORTED, f"this resolver handles did:key, not did:{parsed.method}"
                )
            document = did_key.resolve_did_key(
                parsed, representation=representation, enable_encryption_key_derivation=derive
            )
        except did_key.InvalidPublicKey as exc:
            return ResolutionResult.failure(INVALID_PUBLIC_KEY, exc.reason)
        except InvalidDID as exc:
            return ResolutionResult.failure(INVALID_DID, exc.reason)
        return ResolutionResult.success(document)


class MultiResolver:
    """Dispatches to one resolver per DID method; an unknown method gives ``methodNotSupported``."""

    def __init__(self, resolvers: Mapping[str, Resolver]) -> None:
        self._resolvers = dict(resolvers)

    @property
    def methods(self) -> frozenset[str]:
        """The method names this resolver handles."""
        return frozenset(self._resolvers)

    def resolve(self, did: str, options: ResolutionOptions | None = None) -> ResolutionResult:
        """Resolve ``did`` with the resolver registered for its method."""
        try:
            method = parse_did(did).method
        except InvalidDID as exc:
            return ResolutionResult.failure(INVALID_DID, exc.reason)
        resolver = self._resolvers.get(method)
        if resolver is None:
            return ResolutionResult.failure(METHOD_NOT_SUPPORTED, f"no resolver for did:{method}")
        try:
            return resolver.resolve(did, options)
        except InvalidDIDDocument as exc:
            return ResolutionResult.failure(INTERNAL_ERROR, str(exc))

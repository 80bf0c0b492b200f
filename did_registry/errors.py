"""Errors raised by :mod:`did_registry`.

Every error names what failed and carries the value involved::

    DidRegistryError
    ├── InvalidDID                 a DID or DID URL breaks DID Core §3.1/§3.2 syntax   (also ValueError)
    ├── InvalidMultikey            wrong multibase prefix, multicodec or key length     (also ValueError)
    ├── InvalidKey                 raw key bytes of the wrong length or form            (also ValueError)
    ├── BadSignature               an Ed25519 signature does not verify
    ├── InvalidDIDDocument         a DID document breaks DID Core §5                    (also ValueError)
    ├── CanonicalizationError      a value has no RFC 8785 (JCS) form                   (also ValueError)
    ├── InvalidStatusList          a Bitstring Status List is malformed or truncated    (also ValueError)
    │   └── StatusIndexError       an index outside the list                            (also IndexError)
    ├── ResolutionError            a DID could not be resolved; ``error`` is the DID Resolution code
    │   ├── MethodNotSupported     ``methodNotSupported``
    │   ├── DIDNotFound            ``notFound``
    │   └── DIDDeactivated         the DID is deactivated (``didDocumentMetadata.deactivated``)
    ├── DecryptionFailed           a secretbox ciphertext fails authentication (key or bytes)
    ├── VerificationMethodNotFound a DID URL names no method in the DID document        (also LookupError)
    ├── KeyNotAuthorized           a method is not in the verification relationship asked for
    ├── InvalidProof               a Merkle inclusion, consistency or map proof fails
    ├── InvalidMerkleInput         an index or size out of range, a hash not 32 bytes   (also ValueError)
    ├── MissingMerkleNode          the node store lacks a node a map root refers to     (also LookupError)
    └── TransportError             the validator transport refused a peer, a frame or a call
        ├── InvalidTransportConfig a TransportConfig value out of range                 (also ValueError)
        ├── InvalidFrame           a frame or payload breaks the framing rules          (also ValueError)
        │   └── FrameTooLarge      a length above the configured limit (refused unread)
        ├── HandshakeFailed        a peer failed the handshake or is not the validator it claims
        ├── UnknownPeer            an id that is not another validator of the set       (also LookupError)
        └── TransportClosed        the transport is stopped
"""

from __future__ import annotations

__all__ = [
    "DidRegistryError",
    "InvalidDID",
    "InvalidMultikey",
    "InvalidKey",
    "BadSignature",
    "InvalidDIDDocument",
    "CanonicalizationError",
    "InvalidStatusList",
    "StatusIndexError",
    "ResolutionError",
    "MethodNotSupported",
    "DIDNotFound",
    "DecryptionFailed",
    "VerificationMethodNotFound",
    "KeyNotAuthorized",
    "DIDDeactivated",
    "InvalidProof",
    "InvalidMerkleInput",
    "MissingMerkleNode",
    "TransportError",
    "InvalidTransportConfig",
    "InvalidFrame",
    "FrameTooLarge",
    "HandshakeFailed",
    "UnknownPeer",
    "TransportClosed",
]


class DidRegistryError(Exception):
    """Root of every error raised by :mod:`did_registry`."""


class InvalidDID(DidRegistryError, ValueError):
    """A DID or DID URL does not follow the DID Core syntax."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid DID {value!r}: {reason}")


class InvalidMultikey(DidRegistryError, ValueError):
    """A multibase/multicodec key encoding has the wrong prefix, codec or length."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid Multikey {value!r}: {reason}")


class InvalidKey(DidRegistryError, ValueError):
    """Raw key material has the wrong length or form."""


class BadSignature(DidRegistryError):
    """An Ed25519 signature does not verify against the given key and message."""


class InvalidDIDDocument(DidRegistryError, ValueError):
    """A DID document is malformed: a missing or wrong-typed property, a bad reference, a duplicate id."""

    def __init__(self, reason: str, *, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"invalid DID document{f' at {path}' if path else ''}: {reason}")


class CanonicalizationError(DidRegistryError, ValueError):
    """A value cannot be canonicalized with RFC 8785 (NaN, infinity, a lone surrogate, a non-string key)."""


class InvalidStatusList(DidRegistryError, ValueError):
    """A Bitstring Status List (or its credential or entry) is malformed, truncated or too short."""


class StatusIndexError(InvalidStatusList, IndexError):
    """A status list index is negative or beyond the end of the list."""


class ResolutionError(DidRegistryError):
    """A DID could not be resolved; ``error`` is the W3C DID Resolution error code."""

    error = "internalError"

    def __init__(self, did: str, detail: str) -> None:
        self.did = did
        self.detail = detail
        super().__init__(f"{self.error}: {did}: {detail}")


class MethodNotSupported(ResolutionError):
    """The DID method is not one this resolver knows."""

    error = "methodNotSupported"


class DIDNotFound(ResolutionError):
    """The DID does not exist (on the ledger, or at all)."""

    error = "notFound"


class DecryptionFailed(DidRegistryError):
    """A secretbox ciphertext does not authenticate: a wrong key, a wrong nonce or altered bytes."""


class VerificationMethodNotFound(DidRegistryError, LookupError):
    """A DID URL names no verification method in the DID document (or one defined by another DID)."""

    def __init__(self, did: str, method_id: str, detail: str = "") -> None:
        self.did = did
        self.method_id = method_id
        self.detail = detail or "no such verification method in the DID document"
        super().__init__(f"{method_id!r} in the DID document of {did}: {self.detail}")


class KeyNotAuthorized(DidRegistryError):
    """A verification method exists but is not authorised for the verification relationship asked."""

    def __init__(self, did: str, method_id: str, relationship: str, detail: str = "") -> None:
        self.did = did
        self.method_id = method_id
        self.relationship = relationship
        self.detail = detail or f"not authorised for {relationship}"
        super().__init__(f"{method_id!r} of {did}: {self.detail}")


class DIDDeactivated(ResolutionError):
    """The DID resolved, but it is deactivated: its keys must not be used any more."""

    error = "deactivated"


class InvalidProof(DidRegistryError):
    """A Merkle proof (RFC 6962 inclusion or consistency, or a sparse Merkle map proof) fails."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"invalid {kind} proof: {reason}")


class InvalidMerkleInput(DidRegistryError, ValueError):
    """A Merkle tree or map was given an index or size out of range, or a hash that is not 32 bytes."""


class MissingMerkleNode(DidRegistryError, LookupError):
    """The node store has no node under a hash that a Merkle map root refers to (pruned or corrupt)."""

    def __init__(self, node_hash: bytes) -> None:
        self.node_hash = node_hash
        super().__init__(f"Merkle node {node_hash.hex()} is missing from the node store")


class TransportError(DidRegistryError):
    """The validator-to-validator transport refused a peer, a frame or a call (``docs/transport.md``)."""


class InvalidTransportConfig(TransportError, ValueError):
    """A :class:`~did_registry.transport.TransportConfig` value is out of range or inconsistent."""


class InvalidFrame(TransportError, ValueError):
    """A frame or a payload breaks the framing rules (an empty payload, a length above the limit)."""


class FrameTooLarge(InvalidFrame):
    """A frame length above the configured limit: refused before its body is read or allocated."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"a frame of {size} bytes exceeds the limit of {limit} bytes")


class HandshakeFailed(TransportError):
    """A peer failed the transport handshake, or is not the validator (id and key) it claims to be."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(f"handshake with {peer} failed: {reason}")


class UnknownPeer(TransportError, LookupError):
    """An id that is not another validator of the transport's current validator set."""

    def __init__(self, peer: str, detail: str = "") -> None:
        self.peer = peer
        self.detail = detail or "not another validator of the current set"
        super().__init__(f"{peer!r}: {self.detail}")


class TransportClosed(TransportError):
    """The transport is stopped: nothing more is sent or received."""

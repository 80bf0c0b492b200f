"""Trellis DID registry: identity formats and the permissioned ledger that anchors them.

The formats live in :mod:`did_registry.identity` (one module per spec concept); this package
re-exports the names most callers need.
"""

from __future__ import annotations

from did_registry.errors import DidRegistryError, InvalidDID, InvalidDIDDocument, ResolutionError
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.did import DID, DIDURL, parse_did, parse_did_url
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.jcs import canonicalize
from did_registry.identity.resolution import ResolutionResult, Resolver
from did_registry.identity.status_list import BitstringStatusList

__all__ = [
    "DID",
    "DIDURL",
    "parse_did",
    "parse_did_url",
    "DIDDocument",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "canonicalize",
    "BitstringStatusList",
    "Resolver",
    "ResolutionResult",
    "DidRegistryError",
    "InvalidDID",
    "InvalidDIDDocument",
    "ResolutionError",
]

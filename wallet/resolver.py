"""Key lookup through DID resolution: the bridge from proofs to DID documents.

:class:`ResolverKeyLookup` turns any :class:`~did_registry.identity.resolution.Resolver` into the
:data:`~wallet.proofs.eddsa_jcs_2022.KeyLookup` that proof verification takes: it resolves the DID
of the proof's verification method and asks the document for the key authorised for the proof's
purpose. Resolution and document errors become the wallet's typed refusals.
"""

from __future__ import annotations

from functools import lru_cache

from did_registry.errors import (
    DidRegistryError,
    InvalidDID,
    KeyNotAuthorized,
    ResolutionError,
    VerificationMethodNotFound,
)
from did_registry.identity.crypto import Ed25519PublicKey
from did_registry.identity.resolution import DIDKeyResolver, ResolutionResult, Resolver
from wallet.credential import did_of
from wallet.errors import MalformedDocument, UnknownVerificationMethod, WrongVerificationRelationship

__all__ = ["ResolverKeyLookup", "did_key_lookup"]


class ResolverKeyLookup:
    """A KeyLookup that resolves the verification method's DID with ``resolver``."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    def __call__(self, method: str, purpose: str) -> Ed25519PublicKey:
        """Return the key of ``method`` if its DID document authorises it for ``purpose``."""
        did = did_of(method)
        try:
            document = self._resolver.resolve(did).document_or_raise(did)
            return document.public_key_for(method, purpose)
        except InvalidDID as exc:
            raise MalformedDocument(f"verificationMethod is not a DID URL: {exc}") from None
        except ResolutionError as exc:
            raise UnknownVerificationMethod(f"cannot resolve {did}: {exc}", subject=method) from None
        except VerificationMethodNotFound as exc:
            raise UnknownVerificationMethod(str(exc), subject=method) from None
        except KeyNotAuthorized as exc:
            raise WrongVerificationRelationship(str(exc), subject=method) from None
        except DidRegistryError as exc:
            raise UnknownVerificationMethod(f"unusable key: {exc}", subject=method) from None


class _CachedDIDKeyResolver:
    """did:key documents are a pure function of the DID, so caching them is always correct."""

    def __init__(self, size: int) -> None:
        self._resolver = DIDKeyResolver()
        self.resolve = lru_cache(maxsize=size)(self._resolve)

    def _resolve(self, did: str, options: None = None) -> ResolutionResult:
        return self._resolver.resolve(did, options)


def did_key_lookup(cache_size: int = 4096) -> ResolverKeyLookup:
    """A KeyLookup for ``did:key`` methods only: works offline, keeps recent documents."""
    return ResolverKeyLookup(_CachedDIDKeyResolver(cache_size))

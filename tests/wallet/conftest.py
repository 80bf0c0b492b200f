"""Wallet test fixtures: issuers and holders with keys, and a key lookup over them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.multikey import encode_ed25519_public_key
from wallet.errors import UnknownVerificationMethod, WrongVerificationRelationship

ALL_RELATIONSHIPS = frozenset(
    {"authentication", "assertionMethod", "capabilityInvocation", "capabilityDelegation"}
)


@dataclass
class Identity:
    """A did:key-shaped identity made for a test."""

    key: Ed25519PrivateKey
    did: str
    method: str


@dataclass
class KeyRing:
    """Identities by verification method, each with the relationships its key may be used for."""

    methods: dict[str, tuple[Ed25519PublicKey, frozenset[str]]] = field(default_factory=dict)

    def new(self, relationships: frozenset[str] = ALL_RELATIONSHIPS) -> Identity:
        """Create an identity whose key is allowed for ``relationships``."""
        key = Ed25519PrivateKey.generate()
        multikey = encode_ed25519_public_key(key.public_key)
        did = f"did:key:{multikey}"
        method = f"{did}#{multikey}"
        self.methods[method] = (key.public_key, relationships)
        return Identity(key, did, method)

    def lookup(self, method: str, purpose: str) -> Ed25519PublicKey:
        """The KeyLookup the wallet's verification functions take."""
        if method not in self.methods:
            raise UnknownVerificationMethod("no such verification method", subject=method)
        key, relationships = self.methods[method]
        if purpose not in relationships:
            raise WrongVerificationRelationship(f"key is not listed under {purpose}", subject=method)
        return key


@pytest.fixture
def keyring() -> KeyRing:
    """An empty key ring."""
    return KeyRing()

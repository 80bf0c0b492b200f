"""Data Integrity proofs with the ``eddsa-jcs-2022`` cryptosuite.

Implements W3C *Data Integrity EdDSA Cryptosuites v1.0* §3.3 (eddsa-jcs-2022): the document and the
proof configuration are canonicalized with RFC 8785 (JCS), each hashed with SHA-256, and Ed25519
signs ``hash(proofConfig) ‖ hash(document)``; ``proofValue`` is the signature in multibase
base58btc (a value longer than 64 bytes can encode is refused before it is decoded). Proof options
follow W3C *Verifiable Credential Data Integrity 1.0* §2.1 (``created``, ``expires``, ``challenge``,
``domain``, ``nonce``). Only single proofs are produced and accepted.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from did_registry.errors import BadSignature, CanonicalizationError
from did_registry.identity.crypto import ED25519_SIGNATURE_SIZE, Ed25519PrivateKey, Ed25519PublicKey, sha256
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multibase import decode_base58btc, encode_base58btc
from did_registry.identity.signature_memo import SignatureMemo
from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp
from wallet.errors import (
    ChallengeMismatch,
    CredentialExpired,
    DomainMismatch,
    InvalidSignature,
    MalformedDocument,
    UnsupportedCryptosuite,
    WrongVerificationRelationship,
)

__all__ = [
    "CRYPTOSUITE",
    "PROOF_TYPE",
    "KeyLookup",
    "ProofOptions",
    "VerifiedProof",
    "add_proof",
    "create_proof",
    "verify_proof",
]

CRYPTOSUITE = "eddsa-jcs-2022"
PROOF_TYPE = "DataIntegrityProof"

KeyLookup = Callable[[str, str], Ed25519PublicKey]
"""``(verification_method_id, proof_purpose) -> key``: raises a :class:`~wallet.errors.VerificationFailed`
(``UnknownVerificationMethod`` or ``WrongVerificationRelationship``) when the method cannot be used."""


@dataclass(frozen=True, slots=True)
class ProofOptions:
    """What a new proof says besides its signature (Data Integrity §2.1)."""

    verification_method: str
    proof_purpose: str = "assertionMethod"
    created: datetime | None = None
    expires: datetime | None = None
    challenge: str | None = None
    domain: str | tuple[str, ...] | None = None
    """One domain, or a set of them (written as an array)."""
    nonce: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The proof configuration without ``@context`` or ``proofValue``."""
        proof: dict[str, Any] = {
            "type": PROOF_TYPE,
            "cryptosuite": CRYPTOSUITE,
            "verificationMethod": self.verification_method,
            "proofPurpose": self.proof_purpose,
        }
        if self.created is not None:
            proof["created"] = format_timestamp(self.created)
        if self.expires is not None:
            proof["expires"] = format_timestamp(self.expires)
        for name, value in (
            ("challenge", self.challenge),
            ("domain", self.domain),
            ("nonce", self.nonce),
        ):
            if value is not None:
                proof[name] = list(value) if isinstance(value, tuple) else value
        return proof


class VerifiedProof(NamedTuple):
    """A proof that verified: who signed, for what purpose, and when they say they did."""

    verification_method: str
    proof_purpose: str
    created: datetime | None
    challenge: str | None
    domain: str | tuple[str, ...] | None
    """A string, or the set of strings the proof names (Data Integrity §2.1), in its order."""


def _hash_data(document: Mapping[str, Any], proof_config: Mapping[str, Any]) -> bytes:
    try:
        return sha256(canonicalize(proof_config)) + sha256(canonicalize(document))
    except CanonicalizationError as exc:
        raise MalformedDocument(f"document cannot be canonicalized: {exc}") from None


def create_proof(
    document: Mapping[str, Any], key: Ed25519PrivateKey, options: ProofOptions
) -> dict[str, Any]:
    """Return a new ``DataIntegrityProof`` over ``document`` (which must not carry a proof)."""
    if "proof" in document:
        raise ValueError("document already has a proof; proof sets are not supported")
    proof = options.to_json()
    if "@context" in document:
        proof["@context"] = document["@context"]
    proof["proofValue"] = encode_base58btc(key.sign(_hash_data(document, proof)))
    return proof


def add_proof(document: Mapping[str, Any], key: Ed25519PrivateKey, options: ProofOptions) -> dict[str, Any]:
    """Return a copy of ``document`` secured with an ``eddsa-jcs-2022`` proof."""
    secured = dict(document)
    secured["proof"] = create_proof(document, key, options)
    return secured


def _optional_str(proof: Mapping[str, Any], name: str) -> str | None:
    value = proof.get(name)
    if value is not None and not isinstance(value, str):
        raise MalformedDocument(f"proof.{name} must be a string")
    return value


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8, lone surrogates (which JSON's ``\\ud800`` escapes can carry) included, so
    that comparing two strings never fails; canonicalization refuses such a string later."""
    return text.encode("utf-8", "surrogatepass")


def _domain(proof: Mapping[str, Any]) -> str | tuple[str, ...] | None:
    """``domain``: "either a string, or an unordered set of strings" (Data Integrity §2.1)."""
    value = proof.get("domain")
    if isinstance(value, list):
        if not value or not all(isinstance(item, str) for item in value):
            raise MalformedDocument("proof.domain must be a string or a non-empty array of strings")
        return tuple(value)
    if value is not None and not isinstance(value, str):
        raise MalformedDocument("proof.domain must be a string or a non-empty array of strings")
    return value


def verify_proof(
    secured: Mapping[str, Any],
    lookup: KeyLookup,
    *,
    expected_purpose: str,
    now: datetime | None = None,
    challenge: str | None = None,
    domain: str | None = None,
) -> VerifiedProof:
    """Verify the ``eddsa-jcs-2022`` proof of ``secured`` (Data Integrity §4.4, EdDSA §3.3.2).

    The key comes from ``lookup(verificationMethod, proofPurpose)``. When ``challenge`` or
    ``domain`` is given the proof must carry exactly that value (or a set of domains holding it). Raises a
    :class:`~wallet.errors.VerificationFailed` subclass naming the failed check.
    """
    proof = secured.get("proof")
    if isinstance(proof, list):
        raise MalformedDocument("proof sets (several proofs) are not supported")
    if not isinstance(proof, dict):
        raise MalformedDocument("document has no proof object")
    if proof.get("type") != PROOF_TYPE or proof.get("cryptosuite") != CRYPTOSUITE:
        raise UnsupportedCryptosuite(
            f"proof is {proof.get('type')!r}/{proof.get('cryptosuite')!r}, "
            f"expected {PROOF_TYPE}/{CRYPTOSUITE}"
        )
    method = proof.get("verificationMethod")
    purpose = proof.get("proofPurpose")
    proof_value = proof.get("proofValue")
    if not isinstance(method, str) or not method:
        raise MalformedDocument("proof.verificationMethod must be a non-empty string")
    if not isinstance(purpose, str):
        raise MalformedDocument("proof.proofPurpose must be a string")
    if not isinstance(proof_value, str):
        raise MalformedDocument("proof.proofValue must be a string")
    if purpose != expected_purpose:
        raise WrongVerificationRelationship(
            f"proof purpose is {purpose!r}, expected {expected_purpose!r}", subject=method
        )
    try:
        created = parse_timestamp(proof["created"]) if "created" in proof else None
        expires = parse_timestamp(proof["expires"]) if "expires" in proof else None
    except InvalidTimestamp as exc:
        raise MalformedDocument(f"proof timestamp: {exc}") from None
    if expires is not None and now is not None and now > expires:
        raise CredentialExpired(f"proof expired at {proof['expires']}", subject=method)
    proof_challenge = _optional_str(proof, "challenge")
    proof_domain = _domain(proof)
    if challenge is not None and (
        proof_challenge is None or not hmac.compare_digest(_utf8(proof_challenge), _utf8(challenge))
    ):
        raise ChallengeMismatch("proof challenge is missing or not the one issued", subject=method)
    if domain is not None and not (
        proof_domain == domain or (isinstance(proof_domain, tuple) and domain in proof_domain)
    ):
        raise DomainMismatch(f"proof domain is {proof_domain!r}, expected {domain!r}", subject=method)

    document = {name: value for name, value in secured.items() if name != "proof"}
    config = {name: value for name, value in proof.items() if name != "proofValue"}
    if "@context" in config:
        context = config["@context"]
        doc_context = document.get("@context")
        if isinstance(context, str):
            context = [context]
        if isinstance(doc_context, str):
            doc_context = [doc_context]
        if (
            not isinstance(context, list)
            or not isinstance(doc_context, list)
            or (doc_context[: len(context)] != context)
        ):
            raise MalformedDocument("document @context does not start with the proof's @context")
        document["@context"] = config["@context"]

    key = lookup(method, purpose)
    try:
        signature = decode_base58btc(proof_value, max_size=ED25519_SIGNATURE_SIZE)
    except ValueError as exc:
        raise InvalidSignature(f"proofValue is not multibase base58btc: {exc}", subject=method) from None
    data = _hash_data(document, config)
    try:
        _VERIFIED.verify(key, data, signature)
    except BadSignature as exc:
        raise InvalidSignature(str(exc), subject=method) from None
    return VerifiedProof(method, purpose, created, proof_challenge, proof_domain)


_VERIFIED = SignatureMemo(
    1 << 20
)  # credentials seen recently: a verifier sees a fleet's again and again (~150 B each)

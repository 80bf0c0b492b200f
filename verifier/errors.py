"""The verifier's error tree: every refusal carries a typed :class:`Reason`.

``Refused`` is what an authentication attempt raises when the device must not be let in; its
``reason`` says why in a form a program can branch on, ``detail`` says it for a person, and
``status`` is the HTTP status a service answers with (401 when the device did not prove who it is,
403 when it did but may not come in, 503 when the verifier cannot decide now). ``did`` names the
device the refusal is about, and ``authenticated`` says whether that DID is proven: only a refusal
made after the request's signature (or session MAC, or presentation proof) verified with a key of
that DID is; before that, ``did`` is merely what the sender claims, and anyone can claim any DID.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Reason",
    "VerifierError",
    "Refused",
    "ConfigurationError",
    "StoreUnavailable",
]


class Reason(StrEnum):
    """Why a device was refused (the ``reason`` member of a problem details answer)."""

    MALFORMED = "malformed"
    """The request, signature headers or presentation do not parse."""
    BAD_SIGNATURE = "bad_signature"
    """A signature or MAC does not verify."""
    DIGEST_MISMATCH = "digest_mismatch"
    """The body does not match its Content-Digest (RFC 9530), or a covered component is missing."""
    KEY_NOT_AUTHORIZED = "key_not_authorized"
    """The key is not in the DID document's ``authentication`` relationship (any more)."""
    DID_NOT_FOUND = "did_not_found"
    """The device's DID is not on the ledger."""
    DID_DEACTIVATED = "did_deactivated"
    """The device's DID was deactivated."""
    UNSUPPORTED_DID_METHOD = "unsupported_did_method"
    """No resolver for the DID's method, or its network is not trusted by this verifier."""
    CREDENTIAL_MISSING = "credential_missing"
    """No credential of an accepted type is presented, or it is not about the device."""
    CREDENTIAL_INVALID = "credential_invalid"
    """The credential's proof or shape is invalid."""
    CREDENTIAL_TYPE_NOT_ACCEPTED = "credential_type_not_accepted"
    """The policy does not accept this credential type."""
    ISSUER_NOT_ACCREDITED = "issuer_not_accredited"
    """The issuer is not accredited for the credential type (trust registry or explicit list)."""
    CREDENTIAL_NOT_YET_VALID = "credential_not_yet_valid"
    CREDENTIAL_EXPIRED = "credential_expired"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    QUARANTINED = "quarantined"
    """The device is on the ledger's quarantine list."""
    CHALLENGE_UNKNOWN = "challenge_unknown"
    """The presentation answers no challenge this verifier issued (or one already used)."""
    CHALLENGE_EXPIRED = "challenge_expired"
    WRONG_AUDIENCE = "wrong_audience"
    """The challenge or signature is bound to another audience (domain)."""
    REPLAYED = "replayed"
    """A nonce or signature was already used."""
    SIGNATURE_EXPIRED = "signature_expired"
    """``created`` is too old or in the future, or ``expires`` has passed."""
    SESSION_UNKNOWN = "session_unknown"
    SESSION_EXPIRED = "session_expired"
    SESSION_ENDED = "session_ended"
    """The session was ended (revocation, suspension, quarantine, key rotation)."""
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    """The verifier cannot reach a ledger node that proves its answer, and has nothing fresh enough."""
    TOO_STALE = "too_stale"
    """Running offline, the verifier's data is older than the policy's maximum staleness."""


_FORBIDDEN = frozenset(
    {
        Reason.DID_DEACTIVATED,
        Reason.ISSUER_NOT_ACCREDITED,
        Reason.CREDENTIAL_TYPE_NOT_ACCEPTED,
        Reason.CREDENTIAL_NOT_YET_VALID,
        Reason.CREDENTIAL_EXPIRED,
        Reason.REVOKED,
        Reason.SUSPENDED,
        Reason.QUARANTINED,
    }
)
_UNAVAILABLE = frozenset({Reason.LEDGER_UNAVAILABLE, Reason.TOO_STALE})


class VerifierError(Exception):
    """Base of every error this package raises."""


class Refused(VerifierError):
    """A device is refused; ``reason`` says why (see :class:`Reason`).

    ``did`` is the DID the refusal names, if any. ``authenticated`` is true only when that DID is
    proven: the refusal came after the request's signature or session MAC, or the presentation's
    proof, verified with a key of that DID (a revoked credential, a wrong audience within a session,
    a reused nonce). A refusal before that (``bad_signature``, ``digest_mismatch``, an unknown or
    unauthorised key, an expired signature, a deactivated or quarantined DID, an unknown session)
    names a DID the sender only claims: it must not be held against that device. A ``replayed``
    refusal is authenticated (the signature is the device's), but it proves only that the device
    signed the request once, not who sent it again: a device replaying its own requests and a third
    party replaying requests it captured look the same.
    """

    def __init__(
        self, reason: Reason, detail: str, *, did: str | None = None, authenticated: bool = False
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.did = did
        self.authenticated = authenticated and did is not None

    @property
    def status(self) -> int:
        """The HTTP status: 401 (not authenticated), 403 (authenticated, not allowed), 503 (cannot decide)."""
        if self.reason in _UNAVAILABLE:
            return 503
        return 403 if self.reason in _FORBIDDEN else 401


class ConfigurationError(VerifierError, ValueError):
    """A verifier, policy or store is configured wrongly (the message names the setting)."""


class StoreUnavailable(VerifierError):
    """The shared replay or session store (Redis) cannot be reached; the verifier refuses rather than guess."""

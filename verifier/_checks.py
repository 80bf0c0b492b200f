"""The checks a device's credential goes through, each refusal mapped to its :class:`Reason`.

In order: a credential of an accepted type about the device; its issuer accredited (the policy's
list, or the ledger's trust registry for each accepted type the credential claims, with the issuer
role still held); its
``eddsa-jcs-2022`` proof by a key in the issuer's ``assertionMethod``; its validity period (with
the policy's clock skew); every status entry on a ledger status list of the issuer, with neither
the revocation nor the suspension bit set (and, unless the policy says otherwise, at least one
revocation entry, so that the credential can be revoked at all).

A session keeps what the issuer-side checks need (the proof's key and the accepted types, from
:class:`Checked`); :func:`check_issuer_standing` does them again without the credential.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from did_registry.bounded_cache import BoundedCache
from did_registry.errors import InvalidStatusList
from did_registry.identity.crypto import Ed25519PublicKey
from did_registry.identity.status_list_credential import BitstringStatusListEntry
from did_registry.identity.timestamps import parse_timestamp
from verifier._ledger_view import LedgerView
from verifier._records import ASSERTION, STATUS_LIST_URL
from verifier.errors import Reason, Refused
from verifier.policy import Policy
from wallet.credential import VerifiedCredential, did_of, status_entries, verify_credential
from wallet.errors import (
    ChallengeMismatch,
    CredentialExpired,
    CredentialNotYetValid,
    DomainMismatch,
    InvalidSignature,
    MalformedDocument,
    UnknownVerificationMethod,
    UnsupportedCryptosuite,
    VerificationFailed,
    WrongVerificationRelationship,
)

__all__ = [
    "AuthenticatedDevice",
    "CredentialSummary",
    "Checked",
    "check_credential",
    "check_credential_verified",
    "check_issuer_standing",
    "check_validity",
    "candidate_credentials",
    "MAX_CANDIDATES",
    "proof_refusal",
    "credential_refusal",
]


MAX_CANDIDATES: Final = 4
"""Credentials of an accepted type about the device checked in turn, at most (each may cost a proof
check and ledger reads; a device holds one or two)."""
_LEDGER_REASONS: Final = frozenset({Reason.LEDGER_UNAVAILABLE, Reason.TOO_STALE})


@dataclass(frozen=True)
class CredentialSummary:
    """The credential a device was let in with: its id, types and issuer."""

    id: str | None
    types: tuple[str, ...]
    """``VerifiableCredential`` and the types the policy accepts and the issuer is trusted for: the
    credential's other types are not vouched for, so not reported."""
    issuer: str
    status: tuple[tuple[str, str, int], ...] = ()
    """The ``(issuer, list, index)`` of each of its ledger status entries."""


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """A device that passed every check: who it is, with which key and credential, as of which height."""

    did: str
    key_id: str
    """The verification method (DID URL) it proved control of; a session id for session requests."""
    credential: CredentialSummary | None
    """The credential it was let in with (``None`` for a request within a session)."""
    height: int
    """The highest ledger height of the records the decision used."""
    session: Mapping[str, str] | None = None
    """A session offer to send the device (``session_id``, ``verifier_key``, ``expires``), if any."""


def proof_refusal(exc: VerificationFailed, did: str | None) -> Refused:
    """The refusal for a presentation (authentication) proof that failed."""
    reason = Reason.MALFORMED
    if isinstance(exc, InvalidSignature):
        reason = Reason.BAD_SIGNATURE
    elif isinstance(exc, UnknownVerificationMethod | WrongVerificationRelationship):
        reason = Reason.KEY_NOT_AUTHORIZED
    elif isinstance(exc, ChallengeMismatch):
        reason = Reason.CHALLENGE_UNKNOWN
    elif isinstance(exc, DomainMismatch):
        reason = Reason.WRONG_AUDIENCE
    elif isinstance(exc, CredentialExpired):
        reason = Reason.SIGNATURE_EXPIRED
    elif isinstance(exc, MalformedDocument | UnsupportedCryptosuite):
        reason = Reason.MALFORMED
    return Refused(reason, f"presentation: {exc}", did=did)


def credential_refusal(exc: VerificationFailed, did: str | None) -> Refused:
    """The refusal for a credential that failed verification."""
    if isinstance(exc, CredentialExpired):
        return Refused(Reason.CREDENTIAL_EXPIRED, str(exc), did=did)
    if isinstance(exc, CredentialNotYetValid):
        return Refused(Reason.CREDENTIAL_NOT_YET_VALID, str(exc), did=did)
    return Refused(Reason.CREDENTIAL_INVALID, f"credential: {exc}", did=did)


def _types(credential: Mapping[str, Any]) -> tuple[str, ...]:
    value = credential.get("type")
    types = [value] if isinstance(value, str) else value
    return tuple(t for t in types if isinstance(t, str)) if isinstance(types, list) else ()


def _subjects(credential: Mapping[str, Any]) -> tuple[str, ...]:
    value = credential.get("credentialSubject")
    subjects = value if isinstance(value, list) else [value]
    return tuple(s["id"] for s in subjects if isinstance(s, Mapping) and isinstance(s.get("id"), str))


def _issuer(credential: Mapping[str, Any]) -> str | None:
    issuer = credential.get("issuer")
    if isinstance(issuer, Mapping):
        issuer = issuer.get("id")
    return issuer if isinstance(issuer, str) else None


def candidate_credentials(
    credentials: Sequence[object], holder: str, policy: Policy
) -> list[tuple[Mapping[str, Any], tuple[str, ...]]]:
    """The credentials about ``holder`` of a type the policy accepts, in the order presented (at most
    :data:`MAX_CANDIDATES`), each with its accepted types."""
    about_holder = [c for c in credentials if isinstance(c, Mapping) and holder in _subjects(c)]
    if not about_holder:
        raise Refused(Reason.CREDENTIAL_MISSING, f"no credential about {holder} is presented", did=holder)
    found = []
    for credential in about_holder:
        accepted = tuple(t for t in _types(credential) if t in policy.credential_types)
        if accepted:
            found.append((credential, accepted))
    if not found:
        shown = sorted({t for c in about_holder for t in _types(c)} - {"VerifiableCredential"})
        raise Refused(
            Reason.CREDENTIAL_TYPE_NOT_ACCEPTED,
            f"credential types {shown} are not among {list(policy.credential_types)}",
            did=holder,
        )
    return found[:MAX_CANDIDATES]


def _check_issuer(
    ledger: LedgerView, issuer: str, accepted: tuple[str, ...], policy: Policy, did: str
) -> None:
    if policy.issuers is not None:
        if issuer not in policy.issuers:
            raise Refused(Reason.ISSUER_NOT_ACCREDITED, f"{issuer} is not a trusted issuer", did=did)
        return
    if not issuer.startswith("did:trellis:"):
        raise Refused(Reason.ISSUER_NOT_ACCREDITED, f"{issuer} is in no trust registry", did=did)
    try:
        entry = ledger.issuer(issuer)
    except Refused as refused:
        if refused.reason in (Reason.LEDGER_UNAVAILABLE, Reason.TOO_STALE):
            raise
        raise Refused(Reason.ISSUER_NOT_ACCREDITED, f"{issuer}: {refused.detail}", did=did) from None
    missing = [t for t in accepted if t not in entry.types]
    if not entry.issuer_role or missing:  # each accepted type the credential claims must be vouched for
        raise Refused(
            Reason.ISSUER_NOT_ACCREDITED,
            f"{issuer} is not accredited for {' and '.join(missing or accepted)} in the trust registry",
            did=did,
        )


def _issuer_lookup(ledger: LedgerView, issuer: str, did: str) -> Any:
    def lookup(method: str, purpose: str) -> Ed25519PublicKey:
        if did_of(method) != issuer:
            raise Refused(Reason.CREDENTIAL_INVALID, f"signed by {method}, not by issuer {issuer}", did=did)
        try:
            entry = ledger.entry(issuer)
        except Refused as refused:
            if refused.reason in (Reason.LEDGER_UNAVAILABLE, Reason.TOO_STALE):
                raise
            raise Refused(Reason.CREDENTIAL_INVALID, f"issuer {issuer}: {refused.detail}", did=did) from None
        key = entry.key(method.partition("#")[2], ASSERTION) if not entry.deactivated else None
        if key is None:
            raise Refused(
                Reason.CREDENTIAL_INVALID, f"{method} is not an assertion key of the issuer", did=did
            )
        return key

    return lookup


def _check_status(
    ledger: LedgerView, credential: Mapping[str, Any], issuer: str, did: str, require_revocation: bool
) -> tuple[list[tuple[str, str, int]], int]:
    refs: list[tuple[str, str, int]] = []
    height = 0
    revocable = False
    for raw in status_entries(credential):
        try:
            entry = BitstringStatusListEntry.from_json(raw)
        except InvalidStatusList as exc:
            raise Refused(Reason.CREDENTIAL_INVALID, f"credentialStatus: {exc}", did=did) from None
        if entry.status_size != 1:  # its status is bits i*size.. (§3.2 step 10), which no ledger list holds
            raise Refused(
                Reason.CREDENTIAL_INVALID,
                f"credentialStatus has statusSize {entry.status_size}; ledger status lists hold 1-bit entries",
                did=did,
            )
        match = STATUS_LIST_URL.search(entry.status_list_credential)
        if match is None or match.group(1) != issuer:
            raise Refused(
                Reason.CREDENTIAL_INVALID,
                f"{entry.status_list_credential} is not a ledger status list of issuer {issuer}",
                did=did,
            )
        name = match.group(2)
        status, at = ledger.status_list(issuer, name)
        height = max(height, at)
        if status is None or status.purpose != entry.status_purpose.value:
            raise Refused(
                Reason.CREDENTIAL_INVALID, f"no {entry.status_purpose.value} list {name} of {issuer}", did=did
            )
        try:
            is_set = status.get(entry.status_list_index)
        except IndexError:
            raise Refused(Reason.CREDENTIAL_INVALID, f"index beyond status list {name}", did=did) from None
        if is_set:
            reason = Reason.REVOKED if status.purpose == "revocation" else Reason.SUSPENDED
            raise Refused(reason, f"{status.purpose} bit {entry.status_list_index} of {name} is set", did=did)
        refs.append((issuer, name, entry.status_list_index))
        revocable = revocable or status.purpose == "revocation"
    if require_revocation and not revocable:
        raise Refused(
            Reason.CREDENTIAL_INVALID,
            "the credential has no revocation entry on a ledger status list",
            did=did,
        )
    return refs, height


def check_issuer_standing(
    ledger: LedgerView, policy: Policy, method: str, key: bytes, accepted: tuple[str, ...], holder: str
) -> None:
    """Refuse, as :func:`check_credential` would, a credential that ``key`` under ``method`` verified
    before, unless its issuer (``method``'s DID) is still accredited for ``accepted`` and not
    deactivated, and ``method`` is still its assertion key ``key``."""
    issuer = did_of(method)
    _check_issuer(ledger, issuer, accepted, policy, holder)
    if bytes(_issuer_lookup(ledger, issuer, holder)(method, "assertionMethod")) != key:
        raise Refused(Reason.CREDENTIAL_INVALID, f"{method} is no longer the key that signed it", did=holder)


class _Proof(NamedTuple):
    verified: VerifiedCredential
    key: tuple[str, bytes]  # the verification method and the issuer key that verified the proof
    expires: datetime | None  # the proof's ``expires``


class _VerifiedCredentials:
    """Credentials whose proof verified, by object identity (the ``Device-Credential`` header of a
    device decodes to the same object each time: ``_signed``), with the issuer key that verified it.

    What does not change is remembered: the shape and the proof (with its ``expires``). What may change
    is checked on every use: the key must still be the issuer's assertion key (a rotated key misses),
    the validity period and the proof's expiry are compared with the clock, and the issuer, status and
    quarantine checks run as always.
    """

    def __init__(self, size: int) -> None:
        self._items: BoundedCache[int, tuple[Mapping[str, Any], _Proof]] = BoundedCache(size)

    def get(self, credential: Mapping[str, Any]) -> _Proof | None:
        item = self._items.get(id(credential))
        if item is None or item[0] is not credential:
            return None
        return item[1]

    def put(self, credential: Mapping[str, Any], proof: _Proof) -> None:
        self._items.put(id(credential), (credential, proof))


_VERIFIED = _VerifiedCredentials(4096)  # bounded like the decoded headers it is keyed on


def _remembered(
    credential: Mapping[str, Any], lookup: Any, now: datetime, skew: timedelta, holder: str
) -> _Proof | None:
    """The remembered verification of ``credential`` if its issuer key still stands; the validity
    period and the proof's expiry are checked against ``now`` here, as :func:`verify_credential` would."""
    found = _VERIFIED.get(credential)
    if found is None:
        return None
    if bytes(lookup(found.key[0], "assertionMethod")) != found.key[1]:
        return None
    check_validity(found.verified, credential, now, skew, holder, found.expires)
    return found


def _proof_expiry(credential: Mapping[str, Any]) -> datetime | None:
    """The ``expires`` of a credential's (verified, so well-formed) proof."""
    value = credential["proof"].get("expires")
    return None if value is None else parse_timestamp(value)


def check_validity(
    verified: VerifiedCredential,
    credential: Mapping[str, Any],
    now: datetime,
    skew: timedelta,
    holder: str,
    proof_expires: datetime | None,
) -> None:
    """Refuse a verified credential whose proof expired before ``now`` (``proof_expires``, with no skew,
    as :func:`verify_proof` does) or outside its validity period at ``now`` (with ``skew``), in the
    order and with the refusals of :func:`verify_credential`."""
    if proof_expires is not None and now > proof_expires:
        method = verified.proof.verification_method
        expired = CredentialExpired(f"proof expired at {credential['proof']['expires']}", subject=method)
        raise credential_refusal(expired, holder)
    if verified.valid_from is not None and now + skew < verified.valid_from:
        raise Refused(
            Reason.CREDENTIAL_NOT_YET_VALID, f"valid from {credential.get('validFrom')}", did=holder
        )
    if verified.valid_until is not None and now - skew > verified.valid_until:
        raise Refused(Reason.CREDENTIAL_EXPIRED, f"valid until {credential.get('validUntil')}", did=holder)


class Checked(NamedTuple):
    """What :func:`check_credential_verified` found."""

    summary: CredentialSummary
    height: int
    """The highest ledger height read."""
    credential: Mapping[str, Any]
    """The credential chosen."""
    verified: VerifiedCredential
    key: tuple[str, bytes]
    """The proof's verification method and the issuer key that verified it."""
    accepted: tuple[str, ...]
    """The credential's types the policy accepts (the issuer is accredited for one of them)."""
    proof_expires: datetime | None
    """The proof's ``expires``, if it has one."""


def check_credential(
    ledger: LedgerView,
    credentials: Sequence[object],
    holder: str,
    policy: Policy,
    now: datetime,
) -> tuple[CredentialSummary, int]:
    """Run every credential check for ``holder``; return the summary and the highest height read."""
    checked = check_credential_verified(ledger, credentials, holder, policy, now)
    return checked.summary, checked.height


def check_credential_verified(
    ledger: LedgerView,
    credentials: Sequence[object],
    holder: str,
    policy: Policy,
    now: datetime,
) -> Checked:
    """:func:`check_credential`, also giving the credential chosen and what its verification found.

    The candidates (:func:`candidate_credentials`) are checked in turn and the first that passes is
    chosen: a device presenting a revoked credential and a valid one is let in on the valid one.
    When none passes, the first refusal that is the ledger's (unavailable, too stale) is raised, since
    another credential might pass once the ledger answers; otherwise the first one's refusal."""
    refusals: list[Refused] = []
    for credential, accepted in candidate_credentials(credentials, holder, policy):
        try:
            return _check_one(ledger, credential, accepted, holder, policy, now)
        except Refused as refused:
            refusals.append(refused)
    raise next((r for r in refusals if r.reason in _LEDGER_REASONS), refusals[0])


def _check_one(
    ledger: LedgerView,
    credential: Mapping[str, Any],
    accepted: tuple[str, ...],
    holder: str,
    policy: Policy,
    now: datetime,
) -> Checked:
    issuer = _issuer(credential)
    if issuer is None:
        raise Refused(Reason.CREDENTIAL_INVALID, "credential has no issuer id", did=holder)
    issuer = did_of(issuer)
    _check_issuer(ledger, issuer, accepted, policy, holder)
    lookup = _issuer_lookup(ledger, issuer, holder)
    skew = timedelta(seconds=policy.clock_skew)
    proof = _remembered(credential, lookup, now, skew, holder)
    if proof is None:
        used: list[tuple[str, bytes]] = []

        def recording(method: str, purpose: str) -> Ed25519PublicKey:
            key: Ed25519PublicKey = lookup(method, purpose)
            used.append((method, bytes(key)))
            return key

        try:
            verified = verify_credential(credential, recording, now=now, clock_skew=skew)
        except VerificationFailed as exc:
            raise credential_refusal(exc, holder) from None
        proof = _Proof(verified, used[-1], _proof_expiry(credential))
        _VERIFIED.put(credential, proof)
    try:
        refs, height = _check_status(ledger, credential, issuer, holder, policy.require_revocation)
    except MalformedDocument as exc:
        raise Refused(Reason.CREDENTIAL_INVALID, str(exc), did=holder) from None
    verified = proof.verified
    vouched = tuple(t for t in verified.types if t == "VerifiableCredential" or t in accepted)
    summary = CredentialSummary(
        verified.id if isinstance(verified.id, str) else None, vouched, issuer, tuple(refs)
    )
    return Checked(summary, height, credential, verified, proof.key, accepted, proof.expires)

"""W3C Verifiable Credentials Data Model 2.0: build, secure and verify credentials.

Credentials are secured with Data Integrity ``eddsa-jcs-2022`` proofs
(:mod:`wallet.proofs.eddsa_jcs_2022`). Verification checks, in order: the document's shape
(VC 2.0 §4), the proof (its cryptosuite, purpose ``assertionMethod``, key and signature), that the
proof's key belongs to the ``issuer`` (§4.7), the validity period (§4.9) with a clock skew, and the
credential's status entries (§4.10) through a caller-supplied status check. Each refusal raises a
:class:`~wallet.errors.VerificationFailed` subclass that names the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp
from wallet.errors import (
    CredentialExpired,
    CredentialNotYetValid,
    IssuerMismatch,
    MalformedDocument,
)
from wallet.proofs.eddsa_jcs_2022 import (
    KeyLookup,
    ProofOptions,
    VerifiedProof,
    add_proof,
    verify_proof,
)

__all__ = [
    "VC_V2_CONTEXT",
    "StatusCheck",
    "VerifiedCredential",
    "build_credential",
    "check_context",
    "check_credential",
    "credentials_of",
    "status_entries",
    "did_of",
    "issue_credential",
    "verify_credential",
]

VC_V2_CONTEXT = "https://www.w3.org/ns/credentials/v2"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s]+")

StatusCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], None]
"""``(credentialStatus entry, credential) -> None``; raises ``CredentialStatusRefused``."""


class VerifiedCredential(NamedTuple):
    """A credential that passed every check, with the facts a relying party acts on."""

    id: str | None
    issuer: str
    types: tuple[str, ...]
    subject_ids: tuple[str, ...]
    valid_from: datetime | None
    valid_until: datetime | None
    proof: VerifiedProof
    document: Mapping[str, Any]

    @property
    def subject(self) -> Mapping[str, Any]:
        """The (first) ``credentialSubject`` object."""
        subject = self.document["credentialSubject"]
        return subject[0] if isinstance(subject, list) else subject  # type: ignore[no-any-return]


def did_of(did_url: str) -> str:
    """The DID part of a DID URL: everything before ``#``, ``?`` or ``/`` after the DID."""
    return did_url.partition("#")[0].partition("?")[0].partition("/")[0]


def build_credential(
    *,
    issuer: str,
    subject: Mapping[str, Any],
    types: Sequence[str] = (),
    credential_id: str | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    status: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    contexts: Sequence[str] = (),
) -> dict[str, Any]:
    """Return an unsecured VC 2.0 credential; ``types`` are added after ``VerifiableCredential``."""
    credential: dict[str, Any] = {"@context": [VC_V2_CONTEXT, *contexts]}
    if credential_id is not None:
        credential["id"] = credential_id
    credential["type"] = [
        "VerifiableCredential",
        *[t for t in types if t != "VerifiableCredential"],
    ]
    credential["issuer"] = issuer
    if valid_from is not None:
        credential["validFrom"] = format_timestamp(valid_from)
    if valid_until is not None:
        credential["validUntil"] = format_timestamp(valid_until)
    credential["credentialSubject"] = dict(subject)
    if status is not None:
        credential["credentialStatus"] = (
            dict(status) if isinstance(status, Mapping) else [dict(s) for s in status]
        )
    return credential


def issue_credential(
    credential: Mapping[str, Any],
    key: Ed25519PrivateKey,
    verification_method: str,
    *,
    created: datetime | None = None,
) -> dict[str, Any]:
    """Secure ``credential`` with an ``eddsa-jcs-2022`` proof for purpose ``assertionMethod``."""
    check_credential(credential)
    created = created or datetime.now(UTC)
    return add_proof(credential, key, ProofOptions(verification_method, "assertionMethod", created=created))


def _types(document: Mapping[str, Any], required: str) -> tuple[str, ...]:
    value = document.get("type")
    types = (value,) if isinstance(value, str) else value
    if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
        raise MalformedDocument("type must be a string or an array of strings")
    if required not in types:
        raise MalformedDocument(f"type must include {required!r}")
    return tuple(types)


def check_context(document: Mapping[str, Any]) -> None:
    """Require ``@context`` to be an array whose first item is the VC 2.0 context (§4.3)."""
    context = document.get("@context")
    if not isinstance(context, list) or not context or context[0] != VC_V2_CONTEXT:
        raise MalformedDocument(f"@context must be an array starting with {VC_V2_CONTEXT!r}")
    if not all(_is_url(item) or isinstance(item, Mapping) for item in context[1:]):
        raise MalformedDocument("@context items after the first must be URLs or objects")


def _is_url(value: object) -> bool:
    """Whether ``value`` is an absolute URL (RFC 3986: a scheme, a colon, no white space)."""
    return isinstance(value, str) and _URL.fullmatch(value) is not None


def _check_id(item: Mapping[str, Any], where: str) -> None:
    """An ``id``, when present, "MUST be a single URL" (VC 2.0 §4.4)."""
    if "id" in item and not _is_url(item["id"]):
        raise MalformedDocument(f"{where}id must be a single URL")


def _issuer_id(credential: Mapping[str, Any]) -> str:
    issuer = credential.get("issuer")
    if isinstance(issuer, Mapping):
        issuer = issuer.get("id")
    if not isinstance(issuer, str) or ":" not in issuer:
        raise MalformedDocument("issuer must be a URL or an object with an id URL")
    return issuer


def _subject_ids(credential: Mapping[str, Any]) -> tuple[str, ...]:
    subject = credential.get("credentialSubject")
    subjects: list[Any] = subject if isinstance(subject, list) else [subject]
    if not subjects or not all(isinstance(s, Mapping) and s for s in subjects):
        raise MalformedDocument("credentialSubject must be a non-empty object or array of objects")
    for item in subjects:
        _check_id(item, "credentialSubject.")
    return tuple(s["id"] for s in subjects if "id" in s)


def _timestamp(credential: Mapping[str, Any], name: str) -> datetime | None:
    if name not in credential:
        return None
    try:
        return parse_timestamp(credential[name])
    except InvalidTimestamp as exc:
        raise MalformedDocument(f"{name}: {exc}") from None


def status_entries(credential: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``credentialStatus`` entries of a credential, as a list (§4.10)."""
    status = credential.get("credentialStatus")
    if status is None:
        return []
    entries = status if isinstance(status, list) else [status]
    if not all(isinstance(e, Mapping) and isinstance(e.get("type"), str) for e in entries):
        raise MalformedDocument("credentialStatus entries must be objects with a type")
    for entry in entries:
        _check_id(entry, "credentialStatus.")
    return entries


class _Shape(NamedTuple):
    types: tuple[str, ...]
    issuer: str
    subject_ids: tuple[str, ...]
    valid_from: datetime | None
    valid_until: datetime | None
    status: list[Mapping[str, Any]]


def _shape(credential: Mapping[str, Any]) -> _Shape:
    if not isinstance(credential, Mapping):
        raise MalformedDocument("a credential must be a JSON object")
    check_context(credential)
    _check_id(credential, "")
    shape = _Shape(
        _types(credential, "VerifiableCredential"),
        _issuer_id(credential),
        _subject_ids(credential),
        _timestamp(credential, "validFrom"),
        _timestamp(credential, "validUntil"),
        status_entries(credential),
    )
    if shape.valid_from and shape.valid_until and shape.valid_until < shape.valid_from:
        raise MalformedDocument("validUntil is before validFrom")
    return shape


def check_credential(credential: Mapping[str, Any]) -> None:
    """Check a credential's shape against the VC 2.0 data model; raise :class:`MalformedDocument`."""
    _shape(credential)


def verify_credential(
    credential: Mapping[str, Any],
    lookup: KeyLookup,
    *,
    now: datetime | None = None,
    clock_skew: timedelta = timedelta(seconds=0),
    status_check: StatusCheck | None = None,
    require_issuer_key: bool = True,
) -> VerifiedCredential:
    """Verify a secured credential; return its facts or raise the failed check.

    ``require_issuer_key`` (default) demands that the proof's verification method belongs to the
    ``issuer`` DID; turn it off only for credentials whose issuer is not a DID.
    """
    shape = _shape(credential)
    now = now or datetime.now(UTC)
    proof = verify_proof(credential, lookup, expected_purpose="assertionMethod", now=now)
    if require_issuer_key and did_of(proof.verification_method) != shape.issuer:
        raise IssuerMismatch(
            f"signed by {proof.verification_method}, which issuer {shape.issuer} does not control",
            subject=credential.get("id"),
        )
    if shape.valid_from is not None and now + clock_skew < shape.valid_from:
        raise CredentialNotYetValid(f"valid from {credential['validFrom']}", subject=credential.get("id"))
    if shape.valid_until is not None and now - clock_skew > shape.valid_until:
        raise CredentialExpired(f"valid until {credential['validUntil']}", subject=credential.get("id"))
    if status_check is not None:
        for entry in shape.status:
            status_check(entry, credential)
    return VerifiedCredential(
        id=credential.get("id"),
        issuer=shape.issuer,
        types=shape.types,
        subject_ids=shape.subject_ids,
        valid_from=shape.valid_from,
        valid_until=shape.valid_until,
        proof=proof,
        document=credential,
    )


def credentials_of(values: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Check that every item is a JSON object, as embedded credentials must be."""
    items = list(values)
    if not all(isinstance(item, Mapping) for item in items):
        raise MalformedDocument("verifiableCredential must hold credential objects")
    return items

"""W3C Verifiable Presentations (VC Data Model 2.0 §4.13) secured with ``eddsa-jcs-2022``.

A presentation proves control of the holder's DID: its proof has purpose ``authentication`` and
carries the verifier's ``challenge`` and ``domain`` (Data Integrity §2.1), so it cannot be replayed to
another verifier or at another time. Verification checks the presentation proof, then every embedded
credential, then that each credential's subject is the holder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from did_registry.identity.crypto import Ed25519PrivateKey
from wallet.credential import (
    VC_V2_CONTEXT,
    StatusCheck,
    VerifiedCredential,
    check_context,
    credentials_of,
    did_of,
    verify_credential,
)
from wallet.errors import HolderMismatch, MalformedDocument
from wallet.proofs.eddsa_jcs_2022 import (
    KeyLookup,
    ProofOptions,
    VerifiedProof,
    add_proof,
    verify_proof,
)

__all__ = [
    "VerifiedPresentation",
    "build_presentation",
    "sign_presentation",
    "verify_presentation",
]


@dataclass(frozen=True, slots=True)
class VerifiedPresentation:
    """A presentation that passed every check: the holder and the credentials it showed."""

    holder: str
    credentials: tuple[VerifiedCredential, ...]
    proof: VerifiedProof
    document: Mapping[str, Any]


def build_presentation(
    *, holder: str, credentials: Sequence[Mapping[str, Any]], presentation_id: str | None = None
) -> dict[str, Any]:
    """Return an unsecured presentation of ``credentials`` by ``holder``."""
    presentation: dict[str, Any] = {"@context": [VC_V2_CONTEXT]}
    if presentation_id is not None:
        presentation["id"] = presentation_id
    presentation["type"] = ["VerifiablePresentation"]
    presentation["holder"] = holder
    presentation["verifiableCredential"] = [dict(c) for c in credentials]
    return presentation


def sign_presentation(
    presentation: Mapping[str, Any],
    key: Ed25519PrivateKey,
    verification_method: str,
    *,
    challenge: str,
    domain: str,
    created: datetime | None = None,
    expires: datetime | None = None,
) -> dict[str, Any]:
    """Secure ``presentation`` with an ``authentication`` proof bound to ``challenge`` and ``domain``."""
    options = ProofOptions(
        verification_method,
        "authentication",
        created=created or datetime.now(UTC),
        expires=expires,
        challenge=challenge,
        domain=domain,
    )
    return add_proof(presentation, key, options)


def _holder(presentation: Mapping[str, Any], proof: VerifiedProof) -> str:
    holder = presentation.get("holder", did_of(proof.verification_method))
    if isinstance(holder, Mapping):
        holder = holder.get("id")
    if not isinstance(holder, str):
        raise MalformedDocument("holder must be a URL or an object with an id")
    return holder


def verify_presentation(
    presentation: Mapping[str, Any],
    lookup: KeyLookup,
    *,
    challenge: str,
    domain: str,
    now: datetime | None = None,
    clock_skew: timedelta = timedelta(seconds=0),
    status_check: StatusCheck | None = None,
) -> VerifiedPresentation:
    """Verify a presentation made for ``challenge`` and ``domain`` and every credential it holds."""
    if not isinstance(presentation, Mapping):
        raise MalformedDocument("a presentation must be a JSON object")
    check_context(presentation)
    types = presentation.get("type")
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or "VerifiablePresentation" not in types:
        raise MalformedDocument("type must include 'VerifiablePresentation'")
    embedded = presentation.get("verifiableCredential", [])
    embedded = [embedded] if isinstance(embedded, Mapping) else embedded
    if not isinstance(embedded, list):
        raise MalformedDocument("verifiableCredential must be an array of credentials")
    now = now or datetime.now(UTC)
    proof = verify_proof(
        presentation,
        lookup,
        expected_purpose="authentication",
        now=now,
        challenge=challenge,
        domain=domain,
    )
    holder = _holder(presentation, proof)
    if did_of(proof.verification_method) != holder:
        raise HolderMismatch(f"signed by {proof.verification_method}, not by holder {holder}", subject=holder)
    verified = []
    for credential in credentials_of(embedded):
        result = verify_credential(
            credential, lookup, now=now, clock_skew=clock_skew, status_check=status_check
        )
        if holder not in result.subject_ids:
            raise HolderMismatch(
                f"credential {result.id or '(no id)'} is about {', '.join(result.subject_ids) or 'nobody'}, "
                f"not holder {holder}",
                subject=holder,
            )
        verified.append(result)
    return VerifiedPresentation(holder, tuple(verified), proof, presentation)

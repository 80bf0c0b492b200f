"""Checking a credential's status against its issuer's Bitstring Status Lists (v1.0 §3.2).

:class:`StatusListChecker` is a :data:`~wallet.credential.StatusCheck`: for each
``BitstringStatusListEntry`` it obtains the status list credential from a source, verifies that
credential's proof and that it was issued by the credential's own issuer (a list published by anyone
else cannot vouch for or against it), checks its validity period and purpose, and refuses the
credential when the entry's bit is set. Entries of other types are refused as unsupported rather
than ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from did_registry.errors import InvalidStatusList
from did_registry.identity.status_list_credential import (
    BitstringStatusListCredential,
    BitstringStatusListEntry,
    StatusPurpose,
)
from wallet.credential import did_of, verify_credential
from wallet.errors import CredentialStatusRefused, MalformedDocument, VerificationFailed
from wallet.proofs.eddsa_jcs_2022 import KeyLookup

__all__ = ["StatusListChecker", "StatusListSource", "StatusUnavailable"]

StatusListSource = Callable[[str], Mapping[str, Any]]
"""``url -> BitstringStatusListCredential`` JSON (fetched, cached or read from the ledger)."""


class StatusUnavailable(VerificationFailed):
    """The status list cannot be obtained or trusted, so the credential's status is unknown."""

    check = "status_unavailable"


class StatusListChecker:
    """Refuse credentials whose revocation or suspension bit is set in their issuer's list."""

    def __init__(self, source: StatusListSource, lookup: KeyLookup, *, now: datetime | None = None) -> None:
        self._source = source
        self._lookup = lookup
        self._now = now

    def _status_list(self, url: str, issuer: str) -> BitstringStatusListCredential:
        try:
            document = self._source(url)
        except VerificationFailed:
            raise
        except Exception as exc:
            raise StatusUnavailable(f"cannot obtain status list {url}: {exc}", subject=url) from exc
        now = self._now or datetime.now(UTC)
        verified = verify_credential(document, self._lookup, now=now)
        if did_of(verified.issuer) != did_of(issuer):
            raise StatusUnavailable(
                f"status list {url} is issued by {verified.issuer}, not by {issuer}", subject=url
            )
        try:
            return BitstringStatusListCredential.from_json(document)
        except InvalidStatusList as exc:
            raise StatusUnavailable(f"status list {url} is malformed: {exc}", subject=url) from None

    def __call__(self, entry: Mapping[str, Any], credential: Mapping[str, Any]) -> None:
        """Check one ``credentialStatus`` entry of ``credential``; raise when its bit is set."""
        if entry.get("type") != "BitstringStatusListEntry":
            raise MalformedDocument(f"unsupported credentialStatus type {entry.get('type')!r}")
        try:
            parsed = BitstringStatusListEntry.from_json(entry)
        except InvalidStatusList as exc:
            raise MalformedDocument(f"credentialStatus: {exc}") from None
        issuer = credential["issuer"]
        issuer = issuer["id"] if isinstance(issuer, Mapping) else issuer
        status_list = self._status_list(parsed.status_list_credential, issuer)
        try:
            result = status_list.status_of(parsed)
        except InvalidStatusList as exc:
            raise StatusUnavailable(str(exc), subject=parsed.status_list_credential) from None
        if not result.valid and result.purpose in (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION):
            raise CredentialStatusRefused(
                f"{result.purpose.value} bit {parsed.status_list_index} is set in {parsed.status_list_credential}",
                purpose=result.purpose.value,
                subject=credential.get("id"),
            )

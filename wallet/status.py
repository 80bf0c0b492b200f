"""Checking a credential's status against its issuer's Bitstring Status Lists (v1.0 §3.2).

:class:`StatusListChecker` is a :data:`~wallet.credential.StatusCheck`: for each
``BitstringStatusListEntry`` it obtains the status list credential from a source, verifies that
credential's proof and that it was issued by the credential's own issuer (a list published by anyone
else cannot vouch for or against it), checks its validity period and purpose, and refuses the
credential when the entry's bit is set. Entries of other types are refused as unsupported rather
than ignored.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from did_registry.errors import InvalidStatusList
from did_registry.identity.status_list import BitstringStatusList
from did_registry.identity.status_list_credential import (
    BitstringStatusListCredential,
    BitstringStatusListEntry,
    StatusPurpose,
)
from wallet.credential import did_of, verify_credential
from wallet.errors import CredentialStatusRefused, MalformedDocument, VerificationFailed
from wallet.proofs.eddsa_jcs_2022 import KeyLookup

__all__ = ["LedgerStatusCheck", "StatusListChecker", "StatusListSource", "StatusUnavailable"]

StatusListSource = Callable[[str], Mapping[str, Any]]
"""``url -> BitstringStatusListCredential`` JSON (fetched, cached or read from the ledger)."""


class StatusUnavailable(VerificationFailed):
    """The status list cannot be obtained or trusted, so the credential's status is unknown."""

    check = "status_unavailable"


class StatusListChecker:
    """Refuse credentials whose revocation or suspension bit is set in their status list.

    A status list is trusted when its issuer is the credential's. Bitstring Status List §2.2 lets
    another party issue it ("MAY be different"): ``status_issuers`` maps a credential issuer's DID to
    the other DIDs whose lists are trusted for its credentials (none by default: whoever can sign a
    list can revoke, or un-revoke, every credential that points to it).
    """

    def __init__(
        self,
        source: StatusListSource,
        lookup: KeyLookup,
        *,
        now: datetime | None = None,
        status_issuers: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._source = source
        self._lookup = lookup
        self._now = now
        self._status_issuers = {did: frozenset(others) for did, others in (status_issuers or {}).items()}

    def _status_list(self, url: str, issuer: str) -> BitstringStatusListCredential:
        try:
            document = self._source(url)
        except VerificationFailed:
            raise
        except Exception as exc:
            raise StatusUnavailable(f"cannot obtain status list {url}: {exc}", subject=url) from exc
        now = self._now or datetime.now(UTC)
        verified = verify_credential(document, self._lookup, now=now)
        lister, owner = did_of(verified.issuer), did_of(issuer)
        if lister != owner and lister not in self._status_issuers.get(owner, ()):
            raise StatusUnavailable(
                f"status list {url} is issued by {verified.issuer}, not by {issuer} nor a status issuer "
                "trusted for it",
                subject=url,
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


_LEDGER_LIST = re.compile(r"/status-lists/(did:trellis:[^/]+)/([A-Za-z0-9._-]+)(?:/credential)?$")


class LedgerStatusCheck:
    """Check ``credentialStatus`` entries against status lists anchored on a Trellis ledger.

    A list on the ledger is published at ``<node>/status-lists/<issuer>/<list>/credential``; any node
    serves it, so the host is ignored and the bits are read as a proven state value
    (``status:<issuer>:<list>``) through ``prove`` (e.g. :meth:`LedgerClient.prove`). The list must
    belong to the credential's issuer.
    """

    def __init__(self, prove: Callable[[str], Any]) -> None:
        self._prove = prove

    def __call__(self, entry: Mapping[str, Any], credential: Mapping[str, Any]) -> None:
        """Check one entry; raise when its bit is set, or when the list cannot be read."""
        try:
            parsed = BitstringStatusListEntry.from_json(entry)
        except InvalidStatusList as exc:
            raise MalformedDocument(f"credentialStatus: {exc}") from None
        if parsed.status_size != 1:  # its status is bits i*size.. (§3.2 step 10), which no ledger list holds
            raise MalformedDocument(
                f"credentialStatus has statusSize {parsed.status_size}; ledger status lists hold 1-bit entries"
            )
        match = _LEDGER_LIST.search(parsed.status_list_credential)
        if match is None:
            raise StatusUnavailable(f"{parsed.status_list_credential} is not a ledger status list")
        issuer, name = match.groups()
        credential_issuer = credential["issuer"]
        credential_issuer = (
            credential_issuer["id"] if isinstance(credential_issuer, Mapping) else credential_issuer
        )
        if issuer != did_of(credential_issuer):
            raise StatusUnavailable(
                f"status list {name} belongs to {issuer}, not to issuer {credential_issuer}"
            )
        try:
            value = self._prove(f"status:{issuer}:{name}")
        except Exception as exc:
            raise StatusUnavailable(f"cannot read status list {name} of {issuer}: {exc}") from exc
        if value is None:
            raise StatusUnavailable(f"no status list {name} of {issuer} on the ledger")
        if value["purpose"] != parsed.status_purpose.value:
            raise StatusUnavailable(
                f"status list {name} is for {value['purpose']}, not {parsed.status_purpose.value}"
            )
        bits = BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"]))
        if parsed.status_list_index >= len(bits):
            raise MalformedDocument(f"statusListIndex {parsed.status_list_index} is beyond list {name}")
        if bits.get(parsed.status_list_index):
            raise CredentialStatusRefused(
                f"{value['purpose']} bit {parsed.status_list_index} is set in {name} (ledger height {value['height']})",
                purpose=value["purpose"],
                subject=credential.get("id"),
            )

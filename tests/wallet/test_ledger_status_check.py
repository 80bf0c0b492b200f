"""wallet.status.LedgerStatusCheck: credentialStatus entries read from status lists on a ledger."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from did_registry.identity.status_list import BitstringStatusList
from wallet.errors import CredentialStatusRefused, MalformedDocument
from wallet.status import LedgerStatusCheck

ISSUER = "did:trellis:testnet:issuer"
LIST_URL = f"https://node.example/status-lists/{ISSUER}/rev/credential"
CREDENTIAL = {"id": "urn:uuid:1", "issuer": ISSUER}


def ledger_with(*set_bits: int) -> Callable[[str], Any]:
    """A proven-read function answering one revocation list with ``set_bits`` set."""
    bits = BitstringStatusList(131_072)
    for index in set_bits:
        bits.set(index)
    value = {"purpose": "revocation", "bits": base64.urlsafe_b64encode(bits.to_bytes()).decode(), "height": 3}
    return lambda key: value if key == f"status:{ISSUER}:rev" else None


def entry(index: int, **more: Any) -> dict[str, Any]:
    """A revocation entry at ``index`` of the issuer's list ``rev``."""
    return {"type": "BitstringStatusListEntry", "statusPurpose": "revocation",
            "statusListIndex": str(index), "statusListCredential": LIST_URL, **more}  # fmt: skip


def test_a_set_bit_refuses_the_credential() -> None:
    """The entry's own bit set: the credential is refused as revoked."""
    with pytest.raises(CredentialStatusRefused):
        LedgerStatusCheck(ledger_with(5))(entry(5), CREDENTIAL)


def test_an_entry_wider_than_one_bit_is_malformed() -> None:
    """Entry 5 of 2-bit entries is bits 10 and 11 (Bitstring Status List §3.2 step 10), which a
    ledger list does not hold: refused as malformed, not read as bit 5 (here bit 11 is set)."""
    messages = [{"status": f"0x{n}", "message": f"state {n}"} for n in range(4)]
    with pytest.raises(MalformedDocument, match="statusSize 2"):
        LedgerStatusCheck(ledger_with(11))(entry(5, statusSize=2, statusMessage=messages), CREDENTIAL)

"""A static ledger with one accredited issuer and one enrolled device whose credential's lifetime
(validUntil, and the proof's ``expires`` if any) a test chooses, and a verifier on a fake clock."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import decode_x25519_public_key
from tests.verifier.conftest import START, FakeClock
from verifier import MemorySessionStore, Refused, SessionStore, Verifier
from verifier.testing import StaticLedger
from wallet.credential import build_credential
from wallet.device_client import CREDENTIAL_HEADER, SIGNED_COMPONENTS, encode_device_credential
from wallet.http_signatures import HttpRequest, sign_request
from wallet.proofs.eddsa_jcs_2022 import ProofOptions, add_proof
from wallet.session_keys import session_key

URL = "https://service.example/readings"
LIST = "devices"
INDEX = 7


@dataclass
class World:
    """The ledger, its clock, the issuer and the device (its credential and the header carrying it)."""

    ledger: StaticLedger
    clock: FakeClock
    issuer_key: Ed25519PrivateKey
    issuer: str
    device_key: Ed25519PrivateKey
    device: str
    credential: dict[str, Any]
    header: str

    def verifier(self, *, sessions: bool = True, store: SessionStore | None = None) -> Verifier:
        """A verifier of this ledger on the fake clock (with a memory session store unless told)."""
        if store is None and sessions:
            store = MemorySessionStore(clock=self.clock)
        return self.ledger.verifier(clock=self.clock, sessions=store)

    def request(self) -> HttpRequest:
        """A fresh POST signed by the device's key, carrying its credential header."""
        return self._signed(
            self.device_key, f"{self.device}#key-1", "ed25519", {CREDENTIAL_HEADER: self.header}
        )

    def session_request(self, offer: Mapping[str, str]) -> HttpRequest:
        """A fresh POST signed with the session key agreed through ``offer``."""
        mac = session_key(
            self.device_key.to_x25519(), decode_x25519_public_key(offer["verifier_key"]), offer["session_id"]
        )
        return self._signed(mac, offer["session_id"], "hmac-sha256", {})

    def _signed(
        self, key: Ed25519PrivateKey | bytes, keyid: str, alg: str, headers: dict[str, str]
    ) -> HttpRequest:
        base = HttpRequest("POST", URL, {"content-type": "application/json", **headers}, b"{}")
        created = int(self.clock())
        added = sign_request(
            base, key=key, keyid=keyid, components=SIGNED_COMPONENTS, created=created,
            expires=created + 60, nonce=secrets.token_urlsafe(16), alg=alg,
        )  # fmt: skip
        return HttpRequest("POST", URL, {**base.headers, **added}, b"{}")


def make_world(valid_for: float = 3600.0, proof_expires_in: float | None = None) -> World:
    """A world at the fake clock's start whose device credential is valid for ``valid_for`` seconds
    more and whose proof, with ``proof_expires_in``, expires that many seconds from now."""
    clock = FakeClock(START)
    ledger = StaticLedger("testnet")
    issuer_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    url = ledger.create_status_list(issuer, LIST)
    device = ledger.add_device(device_key)
    now = datetime.fromtimestamp(clock(), UTC)
    entry = {"id": f"{url}#{INDEX}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
             "statusListIndex": str(INDEX), "statusListCredential": url}  # fmt: skip
    document = build_credential(
        issuer=issuer,
        subject={"id": device},
        types=["DeviceCredential"],
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(seconds=valid_for),
        status=entry,
    )
    expires = None if proof_expires_in is None else now + timedelta(seconds=proof_expires_in)
    options = ProofOptions(f"{issuer}#key-1", "assertionMethod", created=now, expires=expires)
    credential = add_proof(document, issuer_key, options)
    header = encode_device_credential(credential)
    return World(ledger, clock, issuer_key, issuer, device_key, device, credential, header)


def refused(verifier: Verifier, request: HttpRequest) -> Refused:
    """The refusal of ``request`` (the test fails if it is let in)."""
    with pytest.raises(Refused) as caught:
        verifier.authenticate_request(request)
    return caught.value

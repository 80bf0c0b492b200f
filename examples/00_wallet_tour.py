"""A tour of the wallet layer, offline: a device identity, its credential, verification, revocation.

Run with ``make demo`` (or ``.venv/bin/python examples/00_wallet_tour.py``). Every step uses the real
code: encrypted keystores, Data Integrity eddsa-jcs-2022 proofs, Bitstring Status Lists in SQLite.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wallet.device import Challenge, DeviceWallet
from wallet.errors import VerificationFailed
from wallet.holder import HolderWallet
from wallet.issuer import Issuer
from wallet.keystore import KDF_INTERACTIVE
from wallet.presentation import verify_presentation
from wallet.resolver import did_key_lookup
from wallet.status import StatusListChecker
from wallet.storage import open_engine


def step(number: int, text: str) -> None:
    """Print a numbered step of the tour."""
    print(f"\n{number}. {text}")


def main() -> int:
    """Run the tour in a temporary folder; exit 0 when every expectation held."""
    with tempfile.TemporaryDirectory(prefix="trellis-tour-") as folder:
        root = Path(folder)
        passphrase = secrets.token_urlsafe(16)

        step(1, "The fleet operator creates its issuer identity (keys sealed with Argon2id).")
        operator = HolderWallet.create(root / "operator", passphrase, params=KDF_INTERACTIVE)
        issuer = Issuer(
            did=operator.did,
            key=operator.key,
            verification_method=operator.verification_method,
            engine=open_engine(f"sqlite:///{root / 'issuer.db'}"),
            status_base_url="https://fleet.example/status",
        )
        print(f"   issuer DID: {issuer.did}")

        step(2, "A thermostat creates its own key and DID; the private key never leaves it.")
        device = DeviceWallet.create(root / "thermostat", passphrase, params=KDF_INTERACTIVE)
        print(f"   device DID: {device.did}")

        step(3, "The operator issues the device credential, with a revocation and a suspension entry.")
        credential = issuer.issue(
            {"id": device.did, "model": "TH-1", "firmware": "1.4.2"},
            types=["DeviceCredential"],
            valid_until=datetime.now(UTC) + timedelta(days=365),
        )
        device.store(credential)
        print(f"   credential {credential['id']}, status index {issuer.status(credential['id']).index}")

        lookup = did_key_lookup()
        status = StatusListChecker(issuer.status_list_credential, lookup)

        def authenticate() -> str:
            challenge = Challenge(
                secrets.token_urlsafe(16),
                "https://metering.example",
                datetime.now(UTC) + timedelta(minutes=1),
            )
            answer = device.answer(challenge)
            try:
                result = verify_presentation(
                    answer, lookup, challenge=challenge.nonce, domain=challenge.audience, status_check=status
                )
            except VerificationFailed as refusal:
                return f"refused ({refusal.check}): {refusal.detail}"
            return f"accepted: {result.holder} holds {result.credentials[0].types[-1]}"

        step(4, "A metering service challenges the device; the device answers with a presentation.")
        first = authenticate()
        print(f"   {first}")

        step(5, "The operator suspends the device, then reinstates it.")
        issuer.suspend(credential["id"])
        suspended = authenticate()
        print(f"   while suspended: {suspended}")
        issuer.reinstate(credential["id"])
        reinstated = authenticate()
        print(f"   reinstated: {reinstated}")

        step(6, "The operator revokes the credential; the next authentication is refused.")
        issuer.revoke(credential["id"])
        revoked = authenticate()
        print(f"   {revoked}")

        ok = (
            first.startswith("accepted")
            and suspended.startswith("refused (suspended)")
            and reinstated.startswith("accepted")
            and revoked.startswith("refused (revoked)")
        )
        print("\nTour complete: every step behaved as expected." if ok else "\nTour FAILED.")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

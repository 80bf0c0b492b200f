"""Trellis wallets: encrypted keys, DIDs, W3C Verifiable Credentials 2.0 with Data Integrity proofs."""

from __future__ import annotations

from wallet.credential import VerifiedCredential, build_credential, issue_credential, verify_credential
from wallet.device import Challenge, DeviceWallet
from wallet.errors import VerificationFailed, WalletError
from wallet.holder import HolderWallet
from wallet.issuer import Issuer
from wallet.keystore import Keystore
from wallet.presentation import (
    VerifiedPresentation,
    build_presentation,
    sign_presentation,
    verify_presentation,
)
from wallet.resolver import ResolverKeyLookup, did_key_lookup
from wallet.status import StatusListChecker

__all__ = [
    "Keystore",
    "HolderWallet",
    "DeviceWallet",
    "Challenge",
    "Issuer",
    "build_credential",
    "issue_credential",
    "verify_credential",
    "VerifiedCredential",
    "build_presentation",
    "sign_presentation",
    "verify_presentation",
    "VerifiedPresentation",
    "StatusListChecker",
    "ResolverKeyLookup",
    "did_key_lookup",
    "WalletError",
    "VerificationFailed",
]

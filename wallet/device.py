"""The device wallet: a device's own key, DID and device credential, answering challenges.

The private key is generated on the device and never leaves it. A verifier's challenge
(a single-use nonce, the audience, an expiry) is answered with a presentation of the device
credential whose proof carries the nonce as ``challenge`` and the audience as ``domain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from did_registry.identity.timestamps import parse_timestamp
from wallet.errors import WalletError
from wallet.holder import HolderWallet

__all__ = ["DEVICE_CREDENTIAL_TYPE", "Challenge", "DeviceWallet"]

DEVICE_CREDENTIAL_TYPE = "DeviceCredential"


@dataclass(frozen=True, slots=True)
class Challenge:
    """What a verifier asks a device to sign: a single-use nonce for an audience, until a time."""

    nonce: str
    audience: str
    expires: datetime

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Challenge:
        """Parse ``{"nonce", "audience", "expires"}`` as a verifier sends it."""
        try:
            return cls(str(value["nonce"]), str(value["audience"]), parse_timestamp(value["expires"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WalletError(f"malformed challenge: {exc}") from None


class DeviceWallet(HolderWallet):
    """A device's wallet: one identity, its device credential, and challenge answers."""

    def device_credential(self) -> dict[str, Any]:
        """The newest device credential held."""
        held = self.credentials(DEVICE_CREDENTIAL_TYPE)
        if not held:
            raise WalletError(f"device {self.did} holds no {DEVICE_CREDENTIAL_TYPE}")
        return held[-1]

    def answer(self, challenge: Challenge) -> dict[str, Any]:
        """Answer a verifier's challenge with a presentation of the device credential."""
        return self.present(
            challenge=challenge.nonce,
            domain=challenge.audience,
            credentials=[self.device_credential()],
            expires=challenge.expires,
        )

"""Simulated devices: keys held in memory, credentials from the portal, and what happened to each.

A :class:`SimulatedDevice` is what a real device's wallet is, without the disk: its Ed25519 key
(made "on the device"), its did:trellis, its device credential as the portal issued it, its
sessions with each service and its transaction nonce. It satisfies
:class:`wallet.device_client.DeviceIdentity`, so a :class:`~wallet.device_client.DeviceClient`
signs for it exactly as for a device wallet.

Each device also keeps its *ground truth*: the status changes made to it (revocation, suspension,
reinstatement, quarantine) with the height at which each was committed, and its key rotations.
:meth:`SimulatedDevice.standing` says from that record whether a verifier that has applied the
ledger up to a given height must refuse the device, must let it in, or may do either (the change
was submitted but the verifier has not reached its block yet).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from did_registry.identity.crypto import Ed25519PrivateKey
from wallet.device import Challenge
from wallet.device_client import Session
from wallet.presentation import build_presentation, sign_presentation

__all__ = ["Change", "Standing", "SimulatedDevice"]


class Standing(Enum):
    """What a verifier must decide for a device, given how far it has read the ledger."""

    ADMIT = "admit"
    REFUSE = "refuse"
    EITHER = "either"


@dataclass(frozen=True, slots=True)
class Change:
    """A change to a device's standing: submitted at ``submitted`` (monotonic seconds), committed
    at ``height`` (``None`` while unacknowledged)."""

    kind: str
    """``revocation``, ``suspension``, ``reinstatement`` or ``quarantine``."""
    submitted: float
    height: int | None = None


@dataclass(eq=False)
class SimulatedDevice:
    """One device of the simulated fleet (see the module docstring)."""

    did: str
    signing_key: Ed25519PrivateKey
    credential: dict[str, Any] = field(default_factory=dict)
    key_number: int = 1
    nonce: int = 1
    """The nonce of its last ledger transaction (its did.create used 1)."""
    sessions: dict[str, Session] = field(default_factory=dict)
    """Its open session with each service, by service name."""
    changes: list[Change] = field(default_factory=list)
    rotations: list[tuple[float, int | None]] = field(default_factory=list)
    """Its key rotations: when each was submitted (monotonic) and the height it was committed at."""
    rogue: bool = False
    """Whether it misbehaves (replays its own signed requests) and should end up quarantined."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held while the device is busy (a request, a rotation): one thing at a time, as a device does."""

    # -- wallet.device_client.DeviceIdentity ------------------------------------------------
    @property
    def key(self) -> Ed25519PrivateKey:
        """The current key."""
        return self.signing_key

    @property
    def fragment(self) -> str:
        """The current key's fragment (``key-1``, then ``key-2`` after a rotation, …)."""
        return f"key-{self.key_number}"

    @property
    def verification_method(self) -> str:
        """The current key's DID URL."""
        return f"{self.did}#{self.fragment}"

    def device_credential(self) -> dict[str, Any]:
        """The credential the portal issued."""
        return self.credential

    def answer(self, challenge: Challenge) -> dict[str, Any]:
        """A presentation of the credential answering ``challenge`` (signed by the current key)."""
        presentation = build_presentation(holder=self.did, credentials=[self.credential])
        return sign_presentation(
            presentation,
            self.signing_key,
            self.verification_method,
            challenge=challenge.nonce,
            domain=challenge.audience,
            expires=challenge.expires,
        )

    # -- ground truth -----------------------------------------------------------------------
    @property
    def blocked(self) -> bool:
        """Whether a change that bars the device was submitted and not lifted (as of now)."""
        return bool(self._barred(None))

    def _barred(self, height: int | None) -> dict[str, Change]:
        """The barring changes in force at ``height``, by kind."""
        barred: dict[str, Change] = {}
        for change in self.changes:
            if height is not None and (change.height is None or change.height > height):
                continue
            if change.kind == "reinstatement":
                barred.pop("suspension", None)
            else:
                barred[change.kind] = change
        return barred

    def standing(self, view_height: int | None, ended: float) -> Standing:
        """What a verifier that had applied blocks up to ``view_height`` when a request began must
        decide, for a request that was answered at ``ended`` (monotonic seconds).

        A suspension in force at ``view_height`` but lifted by a reinstatement submitted before the
        answer leaves the decision open: the verifier may have read the list afresh, past its height.
        """
        if view_height is not None:
            barred = self._barred(view_height)
            if barred:
                lifted = set(barred) == {"suspension"} and any(
                    c.kind == "reinstatement"
                    and c.submitted <= ended
                    and (c.height is None or c.height > view_height)
                    for c in self.changes
                )
                return Standing.EITHER if lifted else Standing.REFUSE
        pending = [c for c in self.changes if c.submitted <= ended]
        if not pending:
            return Standing.ADMIT
        if view_height is not None and all(c.height is not None and c.height <= view_height for c in pending):
            return Standing.ADMIT  # every change (a suspension later lifted) is behind the verifier
        return Standing.EITHER

    def record(self, change: Change) -> int:
        """Add a change; its index (for :meth:`committed`)."""
        self.changes.append(change)
        return len(self.changes) - 1

    def committed(self, index: int, height: int) -> None:
        """Note the height at which change ``index`` was committed."""
        change = self.changes[index]
        self.changes[index] = Change(change.kind, change.submitted, height)

    def rotate(self, new_key: Ed25519PrivateKey, submitted: float, height: int) -> None:
        """Switch to ``new_key``, whose rotation was submitted at ``submitted`` and committed at
        ``height``; sessions bound to the old key end."""
        self.signing_key = new_key
        self.key_number += 1
        self.rotations.append((submitted, height))
        self.sessions.clear()

    def rotating(self, view_height: int | None, ended: float) -> bool:
        """Whether a rotation submitted before ``ended`` is beyond a verifier at ``view_height``: such a
        verifier cannot know the new key yet (it may refuse it, as it would an unknown key)."""
        return any(
            submitted <= ended and (view_height is None or height is None or height > view_height)
            for submitted, height in self.rotations
        )

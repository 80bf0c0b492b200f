"""Credential decisions remembered while nothing they were made from has changed.

A device signing requests sends the same ``Device-Credential`` header each time, which decodes to the
same (read-only) object (``_signed``). After the full credential check for that object and device
(:func:`~verifier._checks.check_credential_verified`), the decision is kept with the generation of the
verifier's ledger caches: a number that moves on whenever a cached entry is dropped or replaced (a block
touching the issuer's DID, accreditation or status lists, a re-read, a snapshot). It is read before the
checks, so an entry replaced while they ran makes the decision unusable. A later request with the same
credential object, by the same device, at the same generation, gets the decision after the checks that
depend on time alone: the issuer's network not too stale (``too_stale`` as always) and the credential's
validity period (and its proof's ``expires``) against the clock. The device's own entry (key,
deactivation, quarantine) is read on every signed request as before. Within a session, the checks of
the device's entry, the status bits and the issuer (accredited, not deactivated, the proof's key still
its assertion key) are likewise remembered per session until the generation moves on (with the device
they let in, and the caches of every network they read: the device's, the issuer's, its status
lists'), each of those networks made fresh enough (or ``too_stale``) before the memo is trusted, since
the generation of a network no node answers for never moves; sessions whose credential's issuer is
resolved outside the trusted ledgers are checked on every request.
For the fast request path (``verifier._fast``, verifiers without sessions) the device let in is also
remembered per key id, with the credential header and the DID entry it was let in with: a request
with the same key id, header and (identical) cached entry gets it back while the decision behind it
stands, by the same rules as above. Issuers resolved outside the trusted ledgers, other than ``did:key`` (which
cannot change), are never remembered: their documents are resolved on every request.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from did_registry.bounded_cache import BoundedCache, remember
from verifier._checks import (
    AuthenticatedDevice,
    Checked,
    CredentialSummary,
    check_credential_verified,
    check_validity,
)
from verifier._ledger_view import LedgerView
from verifier._records import DIDEntry
from verifier.ledger_cache import LedgerCache
from verifier.policy import Policy

__all__ = ["ADMISSIONS_KEPT", "DEVICES_KEPT", "Admitted", "Admissions"]

ADMISSIONS_KEPT: Final = 4096
"""Decisions kept (the devices seen most recently), like the memos of decoded credential headers."""
DEVICES_KEPT: Final = 2048
"""Devices let in remembered by key id for the fast path (see ``verifier._ledger_view.KEYS_KEPT`` on the size)."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """A credential decision: what a session opened with the credential needs besides the summary."""

    summary: CredentialSummary
    height: int
    """The highest ledger height read."""
    not_after: float
    """The last moment (Unix seconds) the credential passes: its validUntil with the clock skew, or
    its proof's ``expires`` (without, as the proof check allows none) if earlier."""
    key: tuple[str, bytes]
    """The credential proof's verification method and the issuer key that verified it."""
    accepted: tuple[str, ...]
    """The credential's types the policy accepts (the issuer must stay accredited for one)."""


@dataclass(frozen=True, slots=True)
class _Decision:
    credential: Mapping[str, Any]
    holder: str
    generation: int
    issuer_cache: LedgerCache | None
    admitted: Admitted
    checked: Checked  # what the refusal at either end of the validity period is made from
    not_before: float  # the validity period with the clock skew (and the proof's expiry), Unix seconds
    not_after: float


class Admissions:
    """The credential checks of one verifier, with its decisions remembered (see the module docstring)."""

    def __init__(self, ledger: LedgerView, policy: Policy, size: int = ADMISSIONS_KEPT) -> None:
        self.ledger = ledger
        self.policy = policy
        self.skew = timedelta(seconds=policy.clock_skew)
        self._decisions: BoundedCache[int, _Decision] = BoundedCache(size)
        self.size = size
        self._sessions: OrderedDict[str, tuple[int, AuthenticatedDevice, tuple[LedgerCache, ...]]] = (
            OrderedDict()
        )
        self._devices: OrderedDict[str, tuple[str, DIDEntry, _Decision, AuthenticatedDevice]] = OrderedDict()

    def session_device(self, session_id: str, did: str, key_id: str) -> AuthenticatedDevice | None:
        """The device of the session's last ledger checks if they still stand (every network they read
        fresh enough, else ``too_stale`` naming ``did``; no entry changed since)."""
        known = self._sessions.get(session_id)
        if known is None:
            return None
        for cache in known[2]:
            if not cache.live:
                self.ledger.ensure_fresh(cache, did)
        if known[0] != self.ledger.generation():
            return None
        device = known[1]
        return device if device.did == did and device.key_id == key_id else None

    def session_checked(
        self,
        session_id: str,
        generation: int,
        device: AuthenticatedDevice,
        caches: tuple[LedgerCache, ...],
    ) -> None:
        """Note that the session's ledger checks passed (``device``, with its height), started at
        ``generation``, reading the networks of ``caches``."""
        remember(self._sessions, session_id, (generation, device, caches), self.size)

    def device(self, key_id: str, header: str, entry: DIDEntry, now: float) -> AuthenticatedDevice | None:
        """What :meth:`remember_device` noted for ``key_id`` with this credential ``header`` and DID
        ``entry``, if the credential decision behind it still stands at Unix time ``now`` (the issuer's
        network fresh enough, no cached entry changed, within the validity period); else ``None``."""
        known = self._devices.get(key_id)
        if known is None or known[1] is not entry or known[0] != header:
            return None
        decision = known[2]
        if decision.issuer_cache is not None and not decision.issuer_cache.live:
            self.ledger.ensure_fresh(decision.issuer_cache, decision.holder)
        if (
            decision.generation != self.ledger.generation()
            or not decision.not_before <= now <= decision.not_after
        ):
            return None
        return known[3]

    def remember_device(
        self, key_id: str, header: str, entry: DIDEntry, credential: object, device: AuthenticatedDevice
    ) -> None:
        """Note the ``device`` let in with ``key_id``, the credential decoded from ``header``, and DID
        ``entry``, when a credential decision for it is remembered (see :meth:`device`)."""
        decision = self._decisions.get(id(credential))
        if (
            device.session is None
            and decision is not None
            and decision.credential is credential
            and decision.holder == device.did
            and device.credential is decision.admitted.summary
            and device.height == max(decision.admitted.height, entry.height)
        ):
            remember(self._devices, key_id, (header, entry, decision, device), min(self.size, DEVICES_KEPT))

    def check(
        self, credentials: Sequence[object], holder: str, now: float, *, remember: bool = False
    ) -> Admitted:
        """Every credential check for ``holder`` at Unix time ``now`` (or a decision that still stands).
        ``remember`` only for a credential object nobody changes (decoded from a ``Device-Credential``
        header by ``_signed``)."""
        single = remember and len(credentials) == 1
        if single:
            known = self._decisions.get(id(credentials[0]))
            if known is not None and known.credential is credentials[0] and known.holder == holder:
                if known.issuer_cache is not None:
                    self.ledger.ensure_fresh(known.issuer_cache, holder)
                if known.generation == self.ledger.generation():
                    if not known.not_before <= now <= known.not_after:  # the refusal says which end
                        checked = known.checked
                        check_validity(
                            checked.verified, checked.credential, _when(now), self.skew, holder,
                            checked.proof_expires,
                        )  # fmt: skip
                    return known.admitted
        generation = self.ledger.generation()
        checked = check_credential_verified(self.ledger, credentials, holder, self.policy, _when(now))
        skew = self.skew.total_seconds()
        valid_from, valid_until = checked.verified.valid_from, checked.verified.valid_until
        not_after = math.inf if valid_until is None else valid_until.timestamp() + skew
        if checked.proof_expires is not None:  # no skew: the proof check allows none
            not_after = min(not_after, checked.proof_expires.timestamp())
        admitted = Admitted(checked.summary, checked.height, not_after, checked.key, checked.accepted)
        issuer = checked.summary.issuer
        if single and issuer.startswith(("did:trellis:", "did:key:")):
            cache = self.ledger.caches.get(issuer.split(":", 3)[2]) if issuer.startswith("did:t") else None
            not_before = -math.inf if valid_from is None else valid_from.timestamp() - skew
            decision = _Decision(
                checked.credential, holder, generation, cache, admitted, checked, not_before, not_after
            )
            self._decisions.put(id(checked.credential), decision)
        return admitted


def _when(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)

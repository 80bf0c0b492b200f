"""Credential decisions remembered while nothing they were made from has changed.

A device signing requests sends the same ``Device-Credential`` header each time, which decodes to the
same (read-only) object (``_signed``). After the full credential check for that object and device
(:func:`~verifier._checks.check_credential_verified`), the decision is kept with the generation of the
verifier's ledger caches: a number that moves on whenever a cached entry is dropped or replaced (a block
touching the issuer's DID, accreditation or status lists, a re-read, a snapshot). It is read before the
checks, so an entry replaced while they ran makes the decision unusable. A later request with the same
credential object, by the same device, at the same generation, gets the decision after the checks that
depend on time alone: the issuer's network not too stale (``too_stale`` as always) and the credential's
validity period against the clock. The device's own entry (key, deactivation, quarantine) is read on
every signed request as before. Within a session, the checks of the device's entry and status bits
are likewise remembered per session until the generation moves on. Issuers resolved outside the trusted ledgers, other than ``did:key`` (which
cannot change), are never remembered: their documents are resolved on every request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from did_registry.bounded_cache import BoundedCache
from verifier._checks import CredentialSummary, check_credential_verified, check_validity
from verifier._ledger_view import LedgerView
from verifier.ledger_cache import LedgerCache
from verifier.policy import Policy
from wallet.credential import VerifiedCredential

__all__ = ["ADMISSIONS_KEPT", "Admissions"]

ADMISSIONS_KEPT: Final = 4096
"""Decisions kept (the devices seen most recently), like the memos of decoded credential headers."""


@dataclass(frozen=True, slots=True)
class _Decision:
    credential: Mapping[str, Any]
    holder: str
    generation: int
    issuer_cache: LedgerCache | None
    summary: CredentialSummary
    height: int
    verified: VerifiedCredential
    not_before: float  # the validity period with the clock skew, Unix seconds
    not_after: float


class Admissions:
    """The credential checks of one verifier, with its decisions remembered (see the module docstring)."""

    def __init__(self, ledger: LedgerView, policy: Policy, size: int = ADMISSIONS_KEPT) -> None:
        self.ledger = ledger
        self.policy = policy
        self.skew = timedelta(seconds=policy.clock_skew)
        self._decisions: BoundedCache[int, _Decision] = BoundedCache(size)
        self._sessions: BoundedCache[str, tuple[int, int]] = BoundedCache(size)

    def session_height(self, session_id: str) -> int | None:
        """The height of the session's last ledger checks if they still stand (no entry changed since)."""
        known = self._sessions.get(session_id)
        if known is None or known[0] != self.ledger.generation():
            return None
        return known[1]

    def session_checked(self, session_id: str, generation: int, height: int) -> None:
        """Note that the session's ledger checks passed at ``height``, started at ``generation``."""
        self._sessions.put(session_id, (generation, height))

    def check(
        self, credentials: Sequence[object], holder: str, now: float, *, remember: bool = False
    ) -> tuple[CredentialSummary, int]:
        """Every credential check for ``holder`` at Unix time ``now`` (or a decision that still stands):
        the summary and the highest height read. ``remember`` only for a credential object nobody
        changes (decoded from a ``Device-Credential`` header by ``_signed``)."""
        single = remember and len(credentials) == 1
        if single:
            known = self._decisions.get(id(credentials[0]))
            if known is not None and known.credential is credentials[0] and known.holder == holder:
                if known.issuer_cache is not None:
                    self.ledger.ensure_fresh(known.issuer_cache, holder)
                if known.generation == self.ledger.generation():
                    if not known.not_before <= now <= known.not_after:  # the refusal says which end
                        check_validity(known.verified, known.credential, _when(now), self.skew, holder)
                    return known.summary, known.height
        generation = self.ledger.generation()
        summary, height, credential, verified = check_credential_verified(
            self.ledger, credentials, holder, self.policy, _when(now)
        )
        issuer = summary.issuer
        if single and issuer.startswith(("did:trellis:", "did:key:")):
            cache = self.ledger.caches.get(issuer.split(":", 3)[2]) if issuer.startswith("did:t") else None
            skew = self.skew.total_seconds()
            not_before = -math.inf if verified.valid_from is None else verified.valid_from.timestamp() - skew
            not_after = math.inf if verified.valid_until is None else verified.valid_until.timestamp() + skew
            decision = _Decision(
                credential, holder, generation, cache, summary, height, verified, not_before, not_after
            )
            self._decisions.put(id(credential), decision)
        return summary, height


def _when(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)

"""Challenges: single-use nonces a device signs into its presentation (``challenge`` and ``domain``).

A challenge is ``{"nonce", "audience", "expires"}`` (what :meth:`wallet.device.Challenge.from_json`
reads). The verifier keeps it in its :class:`~verifier.replay.NonceStore` with :meth:`put`, and an
answer :meth:`take` s it: a nonce is answered once, whatever the outcome. The store holds it a
little past its expiry, so that a late answer is told ``challenge_expired`` rather than
``challenge_unknown``.

Anyone may ask for a challenge, before proving anything, so the store bounds the challenges it holds
apart from everything else (``max_challenges`` of :class:`~verifier.replay.MemoryNonceStore` and
:class:`~verifier.replay.RedisNonceStore`, 100,000 by default): when that many are outstanding,
:func:`issue_challenge` raises :class:`~verifier.replay.ChallengeLimitReached` (a
:class:`~verifier.errors.StoreUnavailable`, answered 503 with its ``retry_after``) and the used
signature nonces of devices keep their room.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from did_registry.identity.timestamps import format_timestamp
from verifier.errors import Reason, Refused
from verifier.replay import CHALLENGE_NAMESPACE, ChallengeLimitReached, NonceStore

__all__ = [
    "CHALLENGE_NAMESPACE",
    "ChallengeLimitReached",
    "IssuedChallenge",
    "issue_challenge",
    "redeem_challenge",
]

_NONCE_BYTES: Final = 32
_MAX_NONCE: Final = 128


@dataclass(frozen=True, slots=True)
class IssuedChallenge:
    """An issued challenge, as the store keeps it."""

    nonce: str
    audience: str
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        """The challenge as sent to the device."""
        return {
            "nonce": self.nonce,
            "audience": self.audience,
            "expires": format_timestamp(datetime.fromtimestamp(self.expires_at, UTC)),
        }


def issue_challenge(
    store: NonceStore, audience: str, *, now: float, ttl: float, grace: float
) -> IssuedChallenge:
    """Make a fresh challenge for ``audience`` valid ``ttl`` seconds, held ``grace`` seconds longer.

    Raises :class:`ChallengeLimitReached` when the store holds as many challenges as it allows."""
    if not isinstance(audience, str) or not audience:
        raise Refused(Reason.MALFORMED, "a challenge needs a non-empty audience")
    # A whole-second expiry, so that the RFC 3339 text the device reads says exactly when it ends.
    challenge = IssuedChallenge(secrets.token_urlsafe(_NONCE_BYTES), audience, float(int(now + ttl)))
    data = json.dumps({"audience": audience, "expires_at": challenge.expires_at}).encode()
    store.put(CHALLENGE_NAMESPACE, challenge.nonce, data, challenge.expires_at + grace)
    return challenge


def redeem_challenge(store: NonceStore, nonce: object, audience: str, *, now: float) -> IssuedChallenge:
    """Take the challenge ``nonce`` (once) and check it is for ``audience`` and not expired."""
    if not isinstance(nonce, str) or not 0 < len(nonce) <= _MAX_NONCE:
        raise Refused(Reason.CHALLENGE_UNKNOWN, "the presentation carries no challenge this verifier issued")
    data = store.take(CHALLENGE_NAMESPACE, nonce)
    if data is None:
        raise Refused(Reason.CHALLENGE_UNKNOWN, "the challenge is unknown or was already answered")
    stored = json.loads(data)
    challenge = IssuedChallenge(nonce, str(stored["audience"]), float(stored["expires_at"]))
    if challenge.audience != audience:
        raise Refused(
            Reason.WRONG_AUDIENCE, f"the challenge was issued for {challenge.audience!r}, not {audience!r}"
        )
    if now > challenge.expires_at:
        raise Refused(Reason.CHALLENGE_EXPIRED, "the challenge expired before it was answered")
    return challenge

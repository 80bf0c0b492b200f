"""Handing just-created provisioning tokens to the operator who made them, for a short time only.

The portal stores only the SHA-256 of a token, so a QR code cannot be drawn from the database. When
an operator creates tokens on the enrolment page, their enrolment payloads are kept **in the portal
process's memory** (never in the database, never in the session cookie) as a *handout*: a random
batch id (128 bits), the id of the operator who made it, and the payloads. Only that operator's
requests can read it (QR images, the printable sheet), and only for :data:`HANDOUT_TTL` after
creation; the oldest handouts are dropped beyond :data:`MAX_HANDOUTS`. A restart forgets them all:
the tokens stay valid, but their QR codes can no longer be shown (create new ones instead).
Several portal processes behind one balancer must route an operator to one process (sticky sessions).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from flask import current_app

from web.enrolment_records import ProvisioningToken

__all__ = ["HANDOUT_TTL", "MAX_HANDOUTS", "HandedToken", "Handout", "Handouts", "handouts"]

HANDOUT_TTL: Final = 15 * 60.0
"""Seconds for which just-created tokens can be shown (QR codes, sheet)."""
MAX_HANDOUTS: Final = 16
"""The most batches held at once by one portal process (the oldest go first)."""
_EXTENSION: Final = "trellis.handouts"


@dataclass(frozen=True, slots=True)
class HandedToken:
    """One just-created token: its id (SHA-256 hex), the payload text its QR code encodes, its profile."""

    token_id: str
    payload: str
    model: str
    firmware: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class Handout:
    """A batch of just-created tokens, readable by ``operator_id`` until ``deadline`` (monotonic)."""

    batch_id: str
    operator_id: int
    deadline: float
    tokens: tuple[HandedToken, ...]

    def token(self, token_id: str) -> HandedToken | None:
        """The token ``token_id`` of this batch, if it is one."""
        return next((t for t in self.tokens if t.token_id == token_id), None)


class Handouts:
    """The handouts of one portal process (thread-safe)."""

    def __init__(self, ttl: float = HANDOUT_TTL, limit: int = MAX_HANDOUTS) -> None:
        self.ttl, self.limit = ttl, limit
        self._lock = threading.Lock()
        self._batches: OrderedDict[str, Handout] = OrderedDict()
        self._by_token: dict[str, str] = {}

    def _expire(self, now: float) -> None:
        while self._batches:
            batch_id, oldest = next(iter(self._batches.items()))
            if oldest.deadline > now and len(self._batches) <= self.limit:
                return
            del self._batches[batch_id]
            for token in oldest.tokens:
                self._by_token.pop(token.token_id, None)

    def add(self, operator_id: int, tokens: Sequence[ProvisioningToken]) -> Handout:
        """Keep the payloads of ``tokens`` (just created by ``operator_id``); return the new handout."""
        handed = []
        for token in tokens:
            assert token.payload is not None, "only just-created tokens carry their payload"
            handed.append(
                HandedToken(
                    token.token_hash,
                    token.payload.encode(),
                    token.profile.model,
                    token.profile.firmware,
                    token.expires,
                )
            )
        handout = Handout(secrets.token_urlsafe(16), operator_id, time.monotonic() + self.ttl, tuple(handed))
        with self._lock:
            self._batches[handout.batch_id] = handout
            self._by_token.update((t.token_id, handout.batch_id) for t in handed)
            self._expire(time.monotonic())
        return handout

    def batch(self, batch_id: str, operator_id: int) -> Handout | None:
        """The handout ``batch_id`` if ``operator_id`` made it and it has not expired."""
        with self._lock:
            self._expire(time.monotonic())
            handout = self._batches.get(batch_id)
        return handout if handout is not None and handout.operator_id == operator_id else None

    def token(self, token_id: str, operator_id: int) -> HandedToken | None:
        """The just-created token ``token_id`` if ``operator_id`` made it and its handout is still held."""
        with self._lock:
            self._expire(time.monotonic())
            batch_id = self._by_token.get(token_id)
            handout = self._batches.get(batch_id) if batch_id is not None else None
        if handout is None or handout.operator_id != operator_id:
            return None
        return handout.token(token_id)


def handouts() -> Handouts:
    """The handouts of the app handling the current request."""
    held = current_app.extensions.get(_EXTENSION)
    if not isinstance(held, Handouts):
        held = current_app.extensions.setdefault(_EXTENSION, Handouts())
    assert isinstance(held, Handouts)
    return held

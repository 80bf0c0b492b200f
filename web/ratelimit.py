"""The sign-in rate limit: after ``login_max_failures`` failures within ``login_window``, refuse (429).

Failures are counted per username (``user:<name>``) and per client address (``addr:<address>``) in the
database table ``portal_login_failure``, so every worker thread and process of one portal shares the
count and it survives a restart. While a key is limited no password is checked and nothing more is
counted; the limit lifts when enough of its failures leave the window. A successful sign-in clears
that username's failures (not the address's). Rows older than the window are deleted as new ones come.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select

from web.models import LoginFailure

__all__ = ["user_key", "address_key", "retry_after", "record_failure", "clear_failures"]


def user_key(username: str) -> str:
    """The rate-limit key of a username."""
    return "user:" + username[:150]


def address_key(address: str | None) -> str:
    """The rate-limit key of a client address."""
    return "addr:" + (address or "unknown")[:150]


def retry_after(
    db: Session, keys: Sequence[str], *, max_failures: int, window: timedelta, now: datetime
) -> int | None:
    """Seconds until a limited key may try again (the longest wait of ``keys``), or ``None`` if none is."""
    wait = 0.0
    for key in keys:
        times = db.exec(
            select(LoginFailure.at)
            .where(LoginFailure.key == key, col(LoginFailure.at) > now - window)
            .order_by(col(LoginFailure.at))
        ).all()
        if len(times) >= max_failures:
            lifts = times[len(times) - max_failures] + window
            wait = max(wait, (lifts - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else None


def record_failure(db: Session, keys: Sequence[str], *, window: timedelta, now: datetime) -> None:
    """Count one failed sign-in under each of ``keys`` (and forget failures older than the window)."""
    db.exec(delete(LoginFailure).where(col(LoginFailure.at) <= now - window))
    for key in keys:
        db.add(LoginFailure(key=key, at=now))
    db.commit()


def clear_failures(db: Session, key: str) -> None:
    """Forget the failures counted under ``key``."""
    db.exec(delete(LoginFailure).where(col(LoginFailure.key) == key))
    db.commit()

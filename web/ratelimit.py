"""The sign-in rate limit: after ``login_max_failures`` failures within ``login_window``, refuse (429).

Failures are counted per username (``user:<name>``) and per client address (``addr:<address>``) in the
database table ``portal_login_failure``, so every worker thread and process of one portal shares the
count and it survives a restart. While a key is limited no password is checked and nothing more is
counted; the limit lifts when enough of its failures leave the window. A successful sign-in clears
that username's failures (not the address's). Rows older than the window are deleted as new ones come.

An attempt is counted *before* its password is checked (:func:`begin_attempt`), and goes ahead only
if it is within the limit counting the attempts recorded before it: requests that arrive together
cannot all pass a check made before any of them was counted. A successful attempt is then forgotten.
The same limit guards the current password asked when changing one's password (``password:<id>``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, func, select

from web.models import LoginFailure

__all__ = [
    "user_key",
    "address_key",
    "retry_after",
    "begin_attempt",
    "forget_attempt",
    "record_failure",
    "clear_failures",
]

_LOCK_SPACE = 0x54524C53  # "TRLS": the advisory-lock class of sign-in rate-limit keys


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


def begin_attempt(
    db: Session, keys: Sequence[str], *, max_failures: int, window: timedelta, now: datetime
) -> list[int] | None:
    """Count an attempt under each of ``keys`` before its secret is checked: the ids of its rows, to
    :func:`forget_attempt` if it succeeds; or ``None`` (nothing kept) when, with the attempts counted
    before it, a key is over ``max_failures``: the caller must refuse without checking anything.

    The rows are written and counted in one transaction that holds the keys, one attempt at a time:
    on PostgreSQL an advisory lock per key (ids come from a sequence when rows are written, not when
    they are committed, so without it an attempt could count before one with a lower id committed,
    and attempts sent together could all pass); SQLite lets one writer at a time in anyway."""
    _hold(db, sorted(set(keys)))
    db.exec(delete(LoginFailure).where(col(LoginFailure.at) <= now - window))
    rows = [LoginFailure(key=key, at=now) for key in keys]
    db.add_all(rows)
    db.flush()
    for row in rows:
        counted = db.exec(
            select(func.count())
            .select_from(LoginFailure)
            .where(
                LoginFailure.key == row.key,
                col(LoginFailure.at) > now - window,
                col(LoginFailure.id) <= row.id,
            )
        ).one()
        if counted > max_failures:
            db.rollback()
            return None
    ids = [row.id for row in rows if row.id is not None]
    db.commit()
    return ids


def _hold(db: Session, keys: Sequence[str]) -> None:
    """Take PostgreSQL's transaction-scoped advisory lock of each key, in order (no deadlock between
    attempts sharing keys); released when the transaction ends. Nothing on other databases."""
    if db.get_bind().dialect.name != "postgresql":
        return
    for key in keys:
        db.exec(select(func.pg_advisory_xact_lock(_LOCK_SPACE, func.hashtext(key))))


def forget_attempt(db: Session, ids: Sequence[int]) -> None:
    """Forget an attempt :func:`begin_attempt` counted (it succeeded, or it was refused unchecked)."""
    db.exec(delete(LoginFailure).where(col(LoginFailure.id).in_(list(ids))))
    db.commit()


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

"""The sign-in rate limit: after too many failures within ``login_window``, refuse (429).

A sign-in is counted under three keys, each with its own limit:

- ``pair:<digest>``, one username tried from one client: ``login_max_failures``;
- ``addr:<client>``, one client whatever the names: ``login_max_failures``;
- ``user:<name>``, one username from every address together: ``login_user_limit`` (by default ten
  times ``login_max_failures``), so a guesser spread over many addresses is stopped, while one
  guessing from a few addresses cannot lock the owner out: the owner's own address stays open.

A *client* is what :func:`client` makes of the request's address: an IPv4 address; an IPv6 address's
/64 network, since one host (a home line, a server, a phone) is commonly given a whole /64 and could
otherwise count as 2^64 clients; an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) as its IPv4
address. The enrolment API's limit (``enrol:<client>``, :func:`enrol_key`) counts clients the same way.

Failures are kept in the database table ``portal_login_failure``, so every worker thread and process
of one portal shares the count and it survives a restart. While a key is limited no password is
checked and nothing more is counted; the limit lifts when enough of its failures leave the window.
A successful sign-in clears that pair's failures, under all three keys (:func:`clear_pair`): the
mistakes of whoever then got the password right are not guesses. Other names' failures from that
address, and that name's failures from other addresses, stay counted. Rows older than the window are
deleted as new ones come.

An attempt is counted *before* its password is checked (:func:`begin_attempt`), and goes ahead only
if it is within the limit counting the attempts recorded before it: requests that arrive together
cannot all pass a check made before any of them was counted. A successful attempt is then forgotten.
The same limit guards the current password asked when changing one's password (``password:<id>``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, TypeAlias

from sqlmodel import Session, col, delete, func, select

from web.models import LoginFailure

__all__ = [
    "Limits",
    "IPV6_PREFIX",
    "client",
    "user_key",
    "address_key",
    "pair_key",
    "enrol_key",
    "login_limits",
    "retry_after",
    "begin_attempt",
    "forget_attempt",
    "record_failure",
    "clear_failures",
    "clear_pair",
]

Limits: TypeAlias = int | Mapping[str, int]
"""How many failures a key may have within the window: one number for every key, or each key's own."""

_LOCK_SPACE = 0x54524C53  # "TRLS": the advisory-lock class of sign-in rate-limit keys


def user_key(username: str) -> str:
    """The rate-limit key of a username."""
    return "user:" + username[:150]


IPV6_PREFIX: Final = 64
"""The length of the IPv6 network a limit counts as one client."""


def client(address: str | None) -> str:
    """The client a limit counts for a request's ``address``: an IPv4 address as it is
    (``192.0.2.1``); an IPv6 address as its :data:`IPV6_PREFIX` network (``2001:db8:1:2::/64``, its
    zone left out); an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) as its IPv4 address; anything
    else (no address, a Unix socket's name) as given, at most 150 characters (``unknown`` for none)."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return (address or "unknown")[:150]
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    host_bits = 128 - IPV6_PREFIX
    return str(ipaddress.IPv6Network((int(parsed) >> host_bits << host_bits, IPV6_PREFIX)))


def address_key(address: str | None) -> str:
    """The rate-limit key of a client address: of its :func:`client`."""
    return "addr:" + client(address)


def enrol_key(address: str | None) -> str:
    """The enrolment API's rate-limit key of a client address: of its :func:`client`."""
    return "enrol:" + client(address)


def pair_key(username: str, address: str | None) -> str:
    """The rate-limit key of a username tried from a client address (its :func:`client`): a digest of
    the two, which are free text (a name may hold any character, an IPv6 network holds colons)."""
    both = json.dumps([username[:150], client(address)])
    return "pair:" + hashlib.sha256(both.encode()).hexdigest()


def login_limits(
    username: str, address: str | None, *, max_failures: int, user_max_failures: int
) -> dict[str, int]:
    """The keys a sign-in as ``username`` from ``address`` is counted under, with their limits:
    ``max_failures`` for the pair and for the address, ``user_max_failures`` for the username."""
    return {
        pair_key(username, address): max_failures,
        address_key(address): max_failures,
        user_key(username): user_max_failures,
    }


def _limit(max_failures: Limits, key: str) -> int:
    return max_failures if isinstance(max_failures, int) else max_failures[key]


def retry_after(
    db: Session, keys: Collection[str], *, max_failures: Limits, window: timedelta, now: datetime
) -> int | None:
    """Seconds until a limited key may try again (the longest wait of ``keys``), or ``None`` if none is.

    ``max_failures`` is the limit of every key, or a mapping from each key to its own limit."""
    wait = 0.0
    for key in keys:
        limit = _limit(max_failures, key)
        times = db.exec(
            select(LoginFailure.at)
            .where(LoginFailure.key == key, col(LoginFailure.at) > now - window)
            .order_by(col(LoginFailure.at))
        ).all()
        if len(times) >= limit:
            lifts = times[len(times) - limit] + window
            wait = max(wait, (lifts - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else None


def begin_attempt(
    db: Session, keys: Collection[str], *, max_failures: Limits, window: timedelta, now: datetime
) -> list[int] | None:
    """Count an attempt under each of ``keys`` before its secret is checked: the ids of its rows, to
    :func:`forget_attempt` if it succeeds; or ``None`` (nothing kept) when, with the attempts counted
    before it, a key is over its limit (``max_failures``: one for every key, or each key's own): the
    caller must refuse without checking anything. Its rows all have the time ``now``.

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
        if counted > _limit(max_failures, row.key):
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


def clear_pair(db: Session, username: str, address: str | None) -> None:
    """Forget the failures of ``username`` tried from ``address``: under the pair's key, and the same
    attempts under the address's and the username's keys (found by their time: :func:`begin_attempt`
    writes an attempt's rows at one instant). Other names' failures from the address, and the name's
    from other addresses, stay counted."""
    pair = pair_key(username, address)
    times = select(LoginFailure.at).where(LoginFailure.key == pair)
    db.exec(
        delete(LoginFailure).where(
            col(LoginFailure.key).in_([address_key(address), user_key(username)]),
            col(LoginFailure.at).in_(times),
        )
    )
    db.exec(delete(LoginFailure).where(col(LoginFailure.key) == pair))
    db.commit()

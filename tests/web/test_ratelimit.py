"""The sign-in rate limit's count (web.ratelimit), on both database backends for real."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from web import ratelimit
from web.db import open_engine
from web.models import LoginFailure, utcnow

WINDOW = timedelta(minutes=15)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The portal's engine on an SQLite file, or on the tests' throwaway PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'portal.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = open_engine(url)
    try:
        yield db
    finally:
        db.dispose()


class _PausedAfterFlush(Session):
    """A session whose first flush waits, once its rows are written, until told to go on: an attempt
    caught between writing its row and committing it."""

    def __init__(self, bind: Engine) -> None:
        super().__init__(bind)
        self.flushed, self.proceed = threading.Event(), threading.Event()

    def flush(self, objects: Any = None) -> None:
        writing = bool(self.new)
        super().flush(objects)
        if writing and not self.flushed.is_set():
            self.flushed.set()
            assert self.proceed.wait(10)


def test_an_attempt_written_but_not_committed_counts_for_the_next(engine: Engine) -> None:
    """With one failure allowed, two attempts at once: the second is refused even when it comes while
    the first has written its row but not yet committed it (a PostgreSQL sequence gives the first the
    lower id, and its row was invisible to the second's count)."""
    now, results = utcnow(), {}
    first = _PausedAfterFlush(engine)

    def attempt(name: str, db: Session) -> None:
        with db:
            results[name] = ratelimit.begin_attempt(
                db, ["user:operator"], max_failures=1, window=WINDOW, now=now
            )

    one = threading.Thread(target=attempt, args=("first", first))
    one.start()
    assert first.flushed.wait(10)
    two = threading.Thread(target=attempt, args=("second", Session(engine)))
    two.start()
    two.join(0.5)  # it waits for the first (or, before the fix, counted without it and passed)
    first.proceed.set()
    one.join(10)
    two.join(10)
    assert not one.is_alive() and not two.is_alive()
    assert results["first"] is not None and results["second"] is None
    with Session(engine) as db:
        assert db.exec(select(func.count()).select_from(LoginFailure)).one() == 1  # the refused one left none


def test_a_refused_attempt_leaves_the_count_as_it_was(engine: Engine) -> None:
    """Over the limit, an attempt is refused and keeps no row; within it, each attempt keeps one."""
    now = utcnow()
    with Session(engine) as db:
        kept = [ratelimit.begin_attempt(db, ["user:a", "addr:x"], max_failures=2, window=WINDOW, now=now)
                for _ in range(3)]  # fmt: skip
        assert [k is not None for k in kept] == [True, True, False]
        assert db.exec(select(func.count()).select_from(LoginFailure)).one() == 4


def _counted(db: Session, key: str) -> int:
    return db.exec(select(func.count()).select_from(LoginFailure).where(LoginFailure.key == key)).one()


def test_each_key_is_held_to_its_own_limit(engine: Engine) -> None:
    """With a limit per key, an attempt is refused when any of its keys is over that key's own limit."""
    now = utcnow()
    first, second = {"pair:1": 2, "user:u": 3}, {"pair:2": 2, "user:u": 3}
    with Session(engine) as db:
        kept = [
            ratelimit.begin_attempt(db, limits.keys(), max_failures=limits, window=WINDOW, now=now)
            for limits in (first, first, first, second, second)
        ]
        assert [k is not None for k in kept] == [True, True, False, True, False]
        assert (
            ratelimit.retry_after(db, ["pair:2"], max_failures={"pair:2": 2}, window=WINDOW, now=now) is None
        )
        assert ratelimit.retry_after(db, ["user:u"], max_failures={"user:u": 3}, window=WINDOW, now=now)


def test_clearing_a_pair_forgets_its_failures_under_every_key_and_no_others(engine: Engine) -> None:
    """``clear_pair`` forgets one name's failures from one address, under the pair's, the address's and
    the name's keys, and keeps the address's failures against other names and the name's from elsewhere."""
    now = utcnow()
    with Session(engine) as db:
        for moment, (name, address) in enumerate([("u", "a"), ("u", "a"), ("v", "a"), ("u", "b")]):
            keys = ratelimit.login_limits(name, address, max_failures=5, user_max_failures=50)
            at = now + timedelta(microseconds=moment)
            assert ratelimit.begin_attempt(db, keys, max_failures=keys, window=WINDOW, now=at) is not None
        ratelimit.clear_pair(db, "u", "a")
        counts = {
            key: _counted(db, key)
            for key in (
                ratelimit.pair_key("u", "a"),
                ratelimit.pair_key("v", "a"),
                ratelimit.pair_key("u", "b"),
                ratelimit.address_key("a"),
                ratelimit.address_key("b"),
                ratelimit.user_key("u"),
                ratelimit.user_key("v"),
            )
        }
    assert list(counts.values()) == [0, 1, 1, 1, 1, 1, 1]


def test_a_pair_key_tells_apart_names_and_addresses_that_run_together() -> None:
    """A name and an address are kept apart in the pair's key, whatever characters they hold."""
    assert ratelimit.pair_key("a:b", "c") != ratelimit.pair_key("a", "b:c")
    assert ratelimit.pair_key('a", "b', "c") != ratelimit.pair_key("a", 'b", "c')

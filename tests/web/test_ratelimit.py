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

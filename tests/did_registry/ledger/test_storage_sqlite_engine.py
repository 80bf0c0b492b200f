"""SQLite tuning: the background WAL checkpointer runs at most once per interval and stops promptly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from did_registry.ledger.storage.sqlite_engine import WalCheckpointer, configure_sqlite


class CountingCheckpointer(WalCheckpointer):
    """Counts its checkpoints."""

    def __init__(self, engine: Engine, *, interval: float) -> None:
        super().__init__(engine, interval=interval)
        self.count = 0

    def checkpoint(self) -> None:
        """Checkpoint, and count it."""
        super().checkpoint()
        self.count += 1


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file engine set up as the ledger store sets it up."""
    made = create_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    configure_sqlite(made, durable=False)
    yield made
    made.dispose()


def test_many_pokes_within_an_interval_make_one_checkpoint_each_interval(engine: Engine) -> None:
    """Commits poking 60 times in about 0.3 s get a first checkpoint at once and at most one more per
    0.25 s interval after it."""
    checkpointer = CountingCheckpointer(engine, interval=0.25)
    began = time.monotonic()
    for _ in range(60):
        checkpointer.poke()
        time.sleep(0.005)
    elapsed = time.monotonic() - began
    deadline = time.monotonic() + 5
    while checkpointer.count < 2 and time.monotonic() < deadline:  # the last pokes' checkpoint
        time.sleep(0.01)
    checkpointer.close()
    assert 2 <= checkpointer.count <= 2 + int(elapsed / 0.25)


def test_close_does_not_wait_out_the_interval(engine: Engine) -> None:
    """Closing right after a checkpoint returns at once, not after the interval."""
    checkpointer = CountingCheckpointer(engine, interval=30.0)
    checkpointer.poke()
    deadline = time.monotonic() + 5
    while checkpointer.count < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    checkpointer.close()
    assert checkpointer.count == 1 and time.monotonic() - began < 5

"""SQLite tuning for the ledger store: WAL, the durability level, explicit BEGIN, background checkpoints.

The pysqlite driver is put in autocommit mode and every transaction is begun by us, so a block's
write can ``BEGIN IMMEDIATE`` (take the write lock before reading the head height) while reads
``BEGIN`` (deferred) or run single statements in their own implicit transaction. Automatic WAL
checkpoints are off: a checkpoint copies the WAL into the database file and syncs it, which would
land on whichever commit crossed the threshold; a background thread does it after commits instead,
at most once per ``interval`` (each checkpoint copies the pages the WAL holds and syncs the database
file: under load, one per block would cost more than the blocks' own writes).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["BEGIN_OPTION", "WalCheckpointer", "configure_sqlite"]

BEGIN_OPTION = "trellis_sqlite_begin"
"""Execution option: how a transaction begins (``DEFERRED``, ``IMMEDIATE``, or ``""`` for none)."""


def configure_sqlite(engine: Engine, *, durable: bool) -> None:
    """Set the pragmas on every new connection and take over ``BEGIN`` (see the module docstring)."""
    synchronous = "FULL" if durable else "NORMAL"

    def connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None  # the driver never begins on its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: a large block's pages stay in memory
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # WalCheckpointer does it, off the commit path
        cursor.close()

    def begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        if mode:
            conn.exec_driver_sql(f"BEGIN {mode}")

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", begin)


class WalCheckpointer:
    """A daemon thread that checkpoints the WAL (PASSIVE: never blocks readers or the writer), at
    most once every ``interval`` seconds however often it is poked."""

    def __init__(self, engine: Engine, *, interval: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        """Ask for a checkpoint soon (after a commit); starts the thread on first use."""
        with self._lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-wal-checkpoint", daemon=True)
                self._thread.start()
        self._wake.set()

    def checkpoint(self) -> None:
        """Checkpoint now, in the caller's thread."""
        conn = self._engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cursor.close()
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        with self._lock:
            self._stopping = True
            thread, self._thread = self._thread, None
        self._closed.set()
        self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            # busy or closing: the next poke asks again
            with contextlib.suppress(sqlite3.Error, SQLAlchemyError):
                self.checkpoint()
            self._closed.wait(self._interval)  # commits meanwhile leave _wake set: one checkpoint next

"""The portal's database: the engine (SQLite in WAL mode by default, any SQLAlchemy URL) and sessions."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from web.models import TABLES
from web.portal import portal

__all__ = ["open_engine", "engine", "session"]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(url: str) -> Engine:
    """Open the database at ``url`` and create the portal's tables that are missing."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        db = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        db = create_engine(url)
    if db.dialect.name == "sqlite":
        event.listen(db, "connect", _sqlite_pragmas)
    tables = [SQLModel.metadata.tables[str(table.__tablename__)] for table in TABLES]
    SQLModel.metadata.create_all(db, tables=tables)
    return db


def engine() -> Engine:
    """The database engine of the app handling the current request."""
    return portal().engine


def session() -> Session:
    """A new session on the current app's database (use it as a context manager)."""
    return Session(engine(), expire_on_commit=False)

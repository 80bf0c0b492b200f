"""Wallet storage on SQLModel: held credentials, and an issuer's status lists and issued credentials.

Rows are the storage edge only: spec objects (credentials, status lists) are mapped to and from rows
in :mod:`wallet.holder` and :mod:`wallet.issuer` and never double as rows. SQLite (WAL) by default;
any SQLAlchemy URL works (PostgreSQL in production).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel, create_engine

__all__ = ["HeldCredentialRow", "IssuedCredentialRow", "StatusListRow", "open_engine"]


class HeldCredentialRow(SQLModel, table=True):
    """A credential a wallet holds, as the JSON it received."""

    __tablename__ = "wallet_held_credential"

    id: str = Field(primary_key=True)
    holder: str = Field(index=True)
    issuer: str
    types: str  # JSON array
    document: str  # the secured credential, JSON
    received_at: datetime


class StatusListRow(SQLModel, table=True):
    """One of an issuer's Bitstring Status Lists, with its index allocator."""

    __tablename__ = "wallet_status_list"

    url: str = Field(primary_key=True)
    issuer: str = Field(index=True)
    purpose: str
    length: int
    allocated: int = 0  # how many indices have been handed out (the permutation's counter)
    permutation_key: bytes  # keys the index permutation (random index assignment)
    bits: bytes  # the uncompressed bitstring
    updated_at: datetime


class IssuedCredentialRow(SQLModel, table=True):
    """A credential an issuer issued, with its status index (one index in each of its lists)."""

    __tablename__ = "wallet_issued_credential"
    __table_args__ = (UniqueConstraint("revocation_list", "status_index"),)

    id: str = Field(primary_key=True)
    subject: str = Field(index=True)
    types: str  # JSON array
    revocation_list: str
    suspension_list: str
    status_index: int
    issued_at: datetime
    valid_until: datetime | None = None
    revoked: bool = False
    suspended: bool = False


_ROWS: tuple[type[SQLModel], ...] = (HeldCredentialRow, StatusListRow, IssuedCredentialRow)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(url: str = "sqlite://") -> Engine:
    """Open (and create the tables of) a wallet database; SQLite files run in WAL mode.

    ``sqlite://`` is one in-memory database shared by every session of the returned engine.
    """
    if url in ("sqlite://", "sqlite:///:memory:"):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    tables = [SQLModel.metadata.tables[str(row.__tablename__)] for row in _ROWS]
    SQLModel.metadata.create_all(engine, tables=tables)
    return engine

"""The SQL tables of the ledger store, and the mapping of blocks and state to rows (docs/ledger.md).

Rows are the storage edge only: blocks, transactions and certificates are mapped to plain row
dictionaries here (for bulk inserts) and back, and never double as rows. Column types behave the same
on SQLite and PostgreSQL: ``LargeBinary`` for bytes, ``Text`` for JSON, ``BigInteger`` for heights.
State values are their canonical (RFC 8785) JSON, kept as UTF-8 text so the SQL views can read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Index, LargeBinary, Table, Text
from sqlmodel import Field, SQLModel

from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from did_registry.ledger.txn import Transaction

__all__ = [
    "BlockRow",
    "TxnRow",
    "StateRow",
    "NodeRow",
    "DidVersionRow",
    "MetaRow",
    "TABLES",
    "block_row",
    "txn_rows",
    "did_version_rows",
    "subject_of",
    "block_from_rows",
    "dumps",
]

_NO_AUTOINCREMENT = {"autoincrement": False}


class BlockRow(SQLModel, table=True):
    """A committed block header (its JSON too) and its commit certificate."""

    __tablename__ = "ledger_block"

    height: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs=_NO_AUTOINCREMENT)
    hash: str = Field(unique=True)  # hex SHA-256 of the header's JCS bytes
    previous_hash: str
    time: str = Field(index=True)  # RFC 3339, as in the header
    proposer: str
    txn_count: int
    txn_root: str
    state_root: str
    header: str = Field(sa_type=Text)  # the header, JSON
    certificate: str | None = Field(default=None, sa_type=Text)  # the commit certificate, JSON


class TxnRow(SQLModel, table=True):
    """A committed transaction: where it is, who sent it, what it is about, and its JSON."""

    __tablename__ = "ledger_txn"
    __table_args__ = (Index("ix_ledger_txn_height_idx", "height", "idx", unique=True),)

    id: str = Field(primary_key=True)  # hex transaction id
    height: int = Field(sa_type=BigInteger)
    idx: int  # position in the block
    type: str = Field(index=True)
    submitter: str = Field(index=True)
    subject: str | None = Field(default=None, index=True)  # the DID the body names (did, else issuer)
    time: str = Field(index=True)  # the block's time
    body: str = Field(sa_type=Text)  # the body, JSON
    full_json: str = Field(sa_type=Text)  # the signed transaction, JSON ("full" is reserved in SQL)


class StateRow(SQLModel, table=True):
    """One head-state entry: a state key and its canonical JSON value."""

    __tablename__ = "ledger_state"

    key: str = Field(primary_key=True)
    value: str = Field(sa_type=Text)


class NodeRow(SQLModel, table=True):
    """A state-map node under its hash (content-addressed, never changed)."""

    __tablename__ = "ledger_node"

    hash: bytes = Field(primary_key=True, sa_type=LargeBinary)
    data: bytes = Field(sa_type=LargeBinary)


class DidVersionRow(SQLModel, table=True):
    """One version of a DID record, as written by the block that made it."""

    __tablename__ = "ledger_did_version"

    did: str = Field(primary_key=True)
    version: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs=_NO_AUTOINCREMENT)
    height: int = Field(sa_type=BigInteger, index=True)
    time: str
    txn: str  # the transaction id ("genesis" for genesis trustees)
    deactivated: bool
    document: str = Field(sa_type=Text)  # the DID document, JSON


class MetaRow(SQLModel, table=True):
    """The store's single row: the head height (the append lock) and the genesis document."""

    __tablename__ = "ledger_meta"

    id: int = Field(primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)  # always 1
    height: int = Field(sa_type=BigInteger)
    genesis: str | None = Field(default=None, sa_type=Text)


def _table(row: type[SQLModel]) -> Table:
    table = row.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


TABLES: tuple[Table, ...] = tuple(
    _table(row) for row in (MetaRow, BlockRow, TxnRow, StateRow, NodeRow, DidVersionRow)
)
"""Every table of the ledger store, in creation order."""

def dumps(value: Any) -> str:
    """Compact JSON text for a JSON column (not canonical: the ledger's hashes never read it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def block_row(block: Block, certificate: CommitCertificate | None) -> dict[str, Any]:
    """The ``ledger_block`` row of a block and its certificate."""
    header = block.header
    return {
        "height": header.height,
        "hash": header.hash.hex(),
        "previous_hash": header.previous_hash,
        "time": header.time,
        "proposer": header.proposer,
        "txn_count": header.txn_count,
        "txn_root": header.txn_root,
        "state_root": header.state_root,
        "header": dumps(header.to_json()),
        "certificate": None if certificate is None else dumps(certificate.to_json()),
    }


def subject_of(body: Mapping[str, Any]) -> str | None:
    """The DID a transaction body is about: ``body.did``, else ``body.issuer`` (trust.*), else None."""
    for name in ("did", "issuer"):
        value = body.get(name)
        if isinstance(value, str):
            return value
    return None


def txn_rows(block: Block) -> list[dict[str, Any]]:
    """The ``ledger_txn`` rows of a block's transactions."""
    height, time = block.header.height, block.header.time
    return [
        {
            "id": txn.id,
            "height": height,
            "idx": index,
            "type": txn.type,
            "submitter": txn.submitter,
            "subject": subject_of(txn.body),
            "time": time,
            "body": dumps(txn.body),
            "full_json": dumps(txn.to_json()),
        }
        for index, txn in enumerate(block.txns)
    ]


def did_version_rows(changes: Mapping[str, bytes | None], height: int) -> list[dict[str, Any]]:
    """The ``ledger_did_version`` rows for every ``didv:<did>:<n>`` key a block writes."""
    rows = []
    for key, raw in changes.items():
        if raw is None or not key.startswith("didv:"):
            continue
        did, _, version = key[len("didv:") :].rpartition(":")
        record = json.loads(raw)
        rows.append(
            {
                "did": did,
                "version": int(version),
                "height": height,
                "time": record.get("updated", ""),
                "txn": record.get("txn", ""),
                "deactivated": bool(record.get("deactivated", False)),
                "document": dumps(record.get("document")),
            }
        )
    return rows


def block_from_rows(
    header: str, certificate: str | None, txns: list[str]
) -> tuple[Block, CommitCertificate | None]:
    """A block and its certificate from the header JSON, certificate JSON and transactions' JSON."""
    block = Block(
        BlockHeader.from_json(json.loads(header)),
        tuple(Transaction.from_json(json.loads(full)) for full in txns),
    )
    return block, None if certificate is None else CommitCertificate.from_json(json.loads(certificate))

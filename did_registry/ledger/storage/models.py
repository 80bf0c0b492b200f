"""The SQL tables of the ledger store, and the mapping of blocks and state to rows (docs/ledger.md).

Rows are the storage edge only: blocks, transactions and certificates are mapped to plain row tuples
here (for bulk inserts) and back, and never double as rows. Column types behave the same
on SQLite and PostgreSQL: ``LargeBinary`` for bytes, ``Text`` for JSON, ``BigInteger`` for heights.
State values are their canonical (RFC 8785) JSON, kept as UTF-8 text so the SQL views can read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Table, Text
from sqlmodel import Field, SQLModel

from did_registry.identity.did import is_did
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from did_registry.ledger.txn import Transaction

__all__ = [
    "BlockRow",
    "TxnRow",
    "StateRow",
    "NodeRow",
    "DidVersionRow",
    "MetaRow",
    "SchemaRow",
    "LAYOUT_VERSION",
    "META",
    "SCHEMA",
    "BLOCK",
    "TXN",
    "STATE",
    "NODE",
    "DID_VERSION",
    "TABLES",
    "block_row",
    "txn_rows",
    "did_version_rows",
    "subject_of",
    "txn_json",
    "block_from_rows",
    "dumps",
    "insert_statements",
]

_NO_AUTOINCREMENT = {"autoincrement": False}
_HEIGHT = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
_KEY = String().with_variant(String(collation="C"), "postgresql")  # code-point order, as SQLite's BINARY


class BlockRow(SQLModel, table=True):
    """A committed block header (its JSON too) and its commit certificate."""

    __tablename__ = "ledger_block"
    __table_args__ = (
        Index("ix_ledger_block_time", "time", "height"),
        Index("ix_ledger_block_state_root", "state_root", "height"),  # a root's version (smt)
    )

    height: int = Field(primary_key=True, sa_type=_HEIGHT, sa_column_kwargs=_NO_AUTOINCREMENT)
    hash: str = Field(unique=True)  # hex SHA-256 of the header's JCS bytes
    previous_hash: str
    time: str  # RFC 3339, as in the header; never decreases from block to block
    proposer: str
    txn_count: int
    txn_root: str
    state_root: str
    header: str = Field(sa_type=Text)  # the header, JSON
    certificate: str | None = Field(default=None, sa_type=Text)  # the commit certificate, JSON


class TxnRow(SQLModel, table=True):
    """A committed transaction: where it is, who sent it, what it is about, its body and signatures."""

    __tablename__ = "ledger_txn"
    __table_args__ = (
        Index("ix_ledger_txn_height", "height", "idx", unique=True),
        Index("ix_ledger_txn_type", "type", "height", "idx"),
        Index("ix_ledger_txn_submitter", "submitter", "height", "idx"),
        Index("ix_ledger_txn_subject", "subject", "height", "idx"),
    )

    id: str = Field(primary_key=True)  # hex transaction id
    height: int = Field(sa_type=BigInteger)
    idx: int  # position in the block
    type: str
    network: str
    submitter: str
    nonce: int = Field(sa_type=BigInteger)
    subject: str | None = None  # the DID the rules read as the target: see subject_of
    time: str  # the block's time
    body: str = Field(sa_type=Text)  # the body, JSON
    signatures: str = Field(sa_type=Text)  # the signatures, JSON (with the columns above: the whole txn)


class StateRow(SQLModel, table=True):
    """One head-state entry: a state key and its canonical JSON value."""

    __tablename__ = "ledger_state"

    key: str = Field(primary_key=True, sa_type=_KEY)
    value: str = Field(sa_type=Text)


class NodeRow(SQLModel, table=True):
    """A state-map node's record under its version and hash (never changed; see ``ledger.smt``).

    Keyed by version (the height of the block that stored it) first, so one block's nodes are
    appended side by side at the end of the index: keyed by hash alone, each of them landed on a page
    of its own at a random place, and a block rewrote about one page per node."""

    __tablename__ = "ledger_node"
    __table_args__ = {"sqlite_with_rowid": False}  # one B-tree keyed by (version, hash)

    version: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs=_NO_AUTOINCREMENT)
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


class SchemaRow(SQLModel, table=True):
    """The layout of the store's tables, as :data:`LAYOUT_VERSION` numbers it: a version of Trellis
    refuses a store laid out by a later one rather than misread it."""

    __tablename__ = "ledger_schema"

    id: int = Field(primary_key=True, sa_column_kwargs=_NO_AUTOINCREMENT)  # always 1
    layout: int


LAYOUT_VERSION: Final = 1
"""The layout these tables have (1: state-map nodes keyed by version and hash; the first stamped)."""


def _table(row: type[SQLModel]) -> Table:
    table = row.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


META = _table(MetaRow)
BLOCK = _table(BlockRow)
TXN = _table(TxnRow)
STATE = _table(StateRow)
NODE = _table(NodeRow)
DID_VERSION = _table(DidVersionRow)
SCHEMA = _table(SchemaRow)
TABLES: tuple[Table, ...] = (META, BLOCK, TXN, STATE, NODE, DID_VERSION, SCHEMA)
"""Every table of the ledger store, in creation order."""

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # built once, not per call


def dumps(value: Any) -> str:
    """Compact JSON text for a JSON column (not canonical: the ledger's hashes never read it)."""
    return _ENCODE(value)


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


_SUBJECT_MEMBERS: Final = {
    "role.grant": "did",
    "role.revoke": "did",
    "quarantine.report": "did",
    "quarantine.clear": "did",
    "trust.accredit": "issuer",
    "trust.withdraw": "issuer",
}
_MAX_SUBJECT = 1024  # a DID the rules read; an index entry must stay far below PostgreSQL's 2,704 bytes


def subject_of(txn_type: str, body: Mapping[str, Any]) -> str | None:
    """The DID a transaction is about besides its submitter: the member its rules read as the target
    (``did`` of role and quarantine changes, ``issuer`` of trust changes), else None. A member the
    rules do not read is never indexed: its value is anything a submitter chose (of any length, which
    one database could index and another not)."""
    member = _SUBJECT_MEMBERS.get(txn_type)
    value = None if member is None else body.get(member)
    return value if isinstance(value, str) and len(value) <= _MAX_SUBJECT and is_did(value) else None


def txn_rows(block: Block) -> list[tuple[Any, ...]]:
    """The ``ledger_txn`` rows of a block, in :func:`insert_statements` order (canonical text for body)."""
    height, time = block.header.height, block.header.time
    return [
        (
            txn.id,
            height,
            index,
            txn.type,
            txn.network,
            txn.submitter,
            txn.nonce,
            subject_of(txn.type, txn.body),
            time,
            txn.canonical.decode(),  # the database cuts the body out of it
            dumps([s.to_json() for s in txn.signatures]),
        )
        for index, txn in enumerate(block.txns)
    ]


def txn_json(row: Any) -> dict[str, Any]:
    """The signed transaction (JSON) of a ``ledger_txn`` row."""
    return {
        "type": row.type,
        "network": row.network,
        "submitter": row.submitter,
        "nonce": row.nonce,
        "body": json.loads(row.body),
        "signatures": json.loads(row.signatures),
    }


def did_version_rows(changes: Mapping[str, bytes | None], height: int) -> list[tuple[Any, ...]]:
    """The ``ledger_did_version`` rows for every ``didv:<did>:<n>`` key written, in
    :func:`insert_statements` order (the record's text: the database reads its members)."""
    rows = []
    for key, raw in changes.items():
        if raw is not None and key.startswith("didv:"):
            did, _, version = key[len("didv:") :].rpartition(":")
            rows.append((did, int(version), height, raw.decode()))
    return rows


def insert_statements(dialect: str) -> dict[str, str]:
    """The bulk INSERT of each written table for ``sqlite`` or ``postgresql`` (see :func:`txn_rows`).

    SQLite statements take one row per execution (``executemany``); PostgreSQL statements take each
    column as one binary array (``%b``) and insert every row with ``unnest`` in one execution. JSON members (a
    transaction's body, a DID record's fields) are read by the database's JSON functions from the
    canonical text, so no Python code parses or encodes a DID document a second time.
    """
    if dialect == "sqlite":
        return {
            "txn": "INSERT INTO ledger_txn (id, height, idx, type, network, submitter, nonce, subject, time, body, signatures)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, json_extract(?, '$.body'), ?)",
            "state": "INSERT INTO ledger_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            "node": "INSERT INTO ledger_node (version, hash, data) VALUES (?, ?, ?)"
            " ON CONFLICT (version, hash) DO NOTHING",
            "did_version": "INSERT INTO ledger_did_version (did, version, height, time, txn, deactivated, document)"
            " SELECT ?, ?, ?, json_extract(r, '$.updated'), json_extract(r, '$.txn'),"
            " json_extract(r, '$.deactivated'), json_extract(r, '$.document') FROM (SELECT ? AS r)",
        }
    return {
        "txn": "INSERT INTO ledger_txn (id, height, idx, type, network, submitter, nonce, subject, time, body, signatures)"
        " SELECT id, height, idx, type, network, submitter, nonce, subject, time,"
        " (CAST(canonical AS json) -> 'body')::text, signatures"
        " FROM unnest(%b::text[], %b::bigint[], %b::int[], %b::text[], %b::text[], %b::text[],"
        " %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[])"
        " AS t(id, height, idx, type, network, submitter, nonce, subject, time, canonical, signatures)",
        "state": "INSERT INTO ledger_state (key, value) SELECT * FROM unnest(%b::text[], %b::text[])"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        "node": "INSERT INTO ledger_node (version, hash, data)"
        " SELECT * FROM unnest(%b::bigint[], %b::bytea[], %b::bytea[]) ON CONFLICT (version, hash) DO NOTHING",
        "did_version": "INSERT INTO ledger_did_version (did, version, height, time, txn, deactivated, document)"
        " SELECT did, version, height, r ->> 'updated', r ->> 'txn', (r ->> 'deactivated')::boolean,"
        " (r -> 'document')::text FROM (SELECT did, version, height, CAST(record AS json) AS r"
        " FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::text[]) AS u(did, version, height, record))"
        " AS v",
    }


def block_from_rows(
    header: str, certificate: str | None, txns: Sequence[Any]
) -> tuple[Block, CommitCertificate | None]:
    """A block and its certificate from its ``ledger_block`` columns and its ``ledger_txn`` rows."""
    block = Block(
        BlockHeader.from_json(json.loads(header)),
        tuple(Transaction.from_json(txn_json(row)) for row in txns),
    )
    return block, None if certificate is None else CommitCertificate.from_json(json.loads(certificate))

"""The integrity check of a SQL ledger store: what ``trellis node check`` runs (and a node before it
serves, with ``[storage] verify_on_start``), after a crash or an edit behind the node's back.

A store is consistent when (docs/ledger.md):

* its blocks are exactly heights 0 … head, each row agreeing with its header JSON, block 0 hanging
  from the genesis document's hash and every later block from its parent's hash (the hash chain);
* every block holds ``txn_count`` transactions whose RFC 6962 root is the header's ``txn_root``,
  and every certificate names its own block;
* the state map rebuilt from the ``ledger_state`` rows has the head header's ``state_root``, and every
  node of that map is in ``ledger_node`` (so every head-state proof can be served);
* ``ledger_did_version`` has one row per ``didv:`` state key.

Commit certificates' signatures are not checked here (that needs each height's validator set):
:meth:`~did_registry.ledger.application.LedgerApplication.commit` checked them before writing.

The whole check reads every block, transaction and state row (about 0.1 ms per DID on SQLite:
docs/ledger.md). Its first, cheap part, :func:`check_head_rows` (the head height against the blocks'
count and range, from indexes), runs whenever a :class:`~did_registry.ledger.storage.sql.SQLLedgerStore`
is opened.
"""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, func, select

from did_registry.errors import DidRegistryError
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.smt import EMPTY_ROOT, SparseMerkleMap, children, is_record_of
from did_registry.ledger.state import value_hash
from did_registry.ledger.storage.models import BLOCK, DID_VERSION, META, STATE, TXN, txn_json
from did_registry.ledger.txn import Transaction

__all__ = ["CorruptStore", "check_head_rows", "check_store"]

_CHUNK = 500


class CorruptStore(DidRegistryError):
    """A ledger store breaks one of its invariants (the message names the block, table or key)."""


class _Collect:
    """A node store that keeps every node written (the rebuilt map's nodes)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get(self, node_hash: bytes, version: int) -> bytes | None:
        return self.nodes.get(node_hash)

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        self.nodes.update(nodes)


def check_store(conn: Connection) -> int | None:
    """Check every invariant (module docstring) in one read; return the head height (None if empty).

    Raises :class:`CorruptStore` naming the first broken invariant.
    """
    head = check_head_rows(conn)
    if head is None:
        return None
    genesis = conn.execute(select(META.c.genesis).where(META.c.id == 1)).scalar()
    anchor = None if genesis is None else Genesis.from_json(json.loads(genesis)).hash.hex()
    last = _check_chain(conn, anchor)
    _check_txns(conn)
    _check_state(conn, last)
    versions = conn.execute(select(func.count()).select_from(DID_VERSION)).scalar_one()
    in_didv = (STATE.c.key >= "didv:") & (STATE.c.key < "didv;")  # ";" follows ":"; LIKE ignores case
    didv = conn.execute(select(func.count()).where(in_didv)).scalar_one()
    if versions != didv:
        raise CorruptStore(f"ledger_did_version has {versions} rows for {didv} didv: state keys")
    return head


def check_head_rows(conn: Connection) -> int | None:
    """The cheap part of :func:`check_store`: ``ledger_meta``'s head height is the highest block and
    blocks 0 … head are all there (their count and range: index reads, one statement, so one
    snapshot). Returns the head height (None if empty); raises :class:`CorruptStore`."""
    head, count, low, high = conn.execute(
        select(
            select(META.c.height).where(META.c.id == 1).scalar_subquery(),
            select(func.count()).select_from(BLOCK).scalar_subquery(),
            select(func.min(BLOCK.c.height)).scalar_subquery(),
            select(func.max(BLOCK.c.height)).scalar_subquery(),
        )
    ).one()
    if head is None:
        if count:
            raise CorruptStore(f"{count} block(s) but no head in ledger_meta")
        return None
    head = int(head)
    if (count, low, high) != (head + 1, 0, head):
        raise CorruptStore(
            f"blocks {low}…{high} ({count} rows) do not match the head height {head} in ledger_meta"
        )
    return head


def _check_chain(conn: Connection, anchor: str | None) -> BlockHeader:
    """Walk the blocks in height order: row = header, hash chain, certificates; return the head header."""
    previous: BlockHeader | None = None
    query = select(BLOCK).order_by(BLOCK.c.height).execution_options(yield_per=1000)
    with conn.execute(query) as rows:  # closed (server-side cursor too) even when a check raises
        for row in rows:
            previous = _check_block(row, previous, anchor)
    assert previous is not None  # the caller checked that block 0 exists
    return previous


def _check_block(row: Any, previous: BlockHeader | None, anchor: str | None) -> BlockHeader:
    """One block row against its header JSON, its parent (or the genesis anchor) and its certificate."""
    header = BlockHeader.from_json(json.loads(row.header))
    block_hash = header.hash.hex()
    columns = (row.height, row.hash, row.previous_hash, row.time, row.state_root, row.txn_root)
    fields = (header.height, block_hash, header.previous_hash, header.time, header.state_root)
    if columns != (*fields, header.txn_root) or row.txn_count != header.txn_count:
        raise CorruptStore(f"block {row.height}: its columns disagree with its header JSON")
    parent = anchor if previous is None else previous.hash.hex()
    if parent is not None and header.previous_hash != parent:
        raise CorruptStore(f"block {row.height}: previous_hash does not name block {row.height - 1}")
    if row.certificate is not None:
        certificate = CommitCertificate.from_json(json.loads(row.certificate))
        if (certificate.height, certificate.block_hash) != (header.height, block_hash):
            raise CorruptStore(f"block {row.height}: its certificate is for another block")
    return header


def _check_txns(conn: Connection) -> None:
    """Every block's transactions: their count and their Merkle root against the header."""
    headers = {
        height: (count, root)
        for height, count, root in conn.execute(select(BLOCK.c.height, BLOCK.c.txn_count, BLOCK.c.txn_root))
    }
    query = select(TXN).order_by(TXN.c.height, TXN.c.idx).execution_options(yield_per=2000)
    seen = set()
    with conn.execute(query) as result:
        for height, rows in groupby(result, key=lambda row: int(row.height)):
            txns = [Transaction.from_json(txn_json(row)) for row in rows]
            count, root = headers.get(height, (None, None))
            if len(txns) != count or Block.txn_root_of(txns) != root:
                raise CorruptStore(
                    f"block {height}: its transactions do not match its txn_count and txn_root"
                )
            seen.add(height)
    empty = [h for h, (count, _) in headers.items() if count and h not in seen]
    if empty:
        raise CorruptStore(f"block {min(empty)}: its transactions are missing")


def _check_state(conn: Connection, head: BlockHeader) -> None:
    """Rebuild the state map from ``ledger_state``; compare its root; find its nodes in ``ledger_node``."""
    rebuilt = _Collect()
    changes: dict[bytes, bytes | None] = {}
    query = select(STATE.c.key, STATE.c.value).execution_options(yield_per=10_000)
    with conn.execute(query) as rows:
        for key, value in rows:
            changes[key.encode()] = value_hash(value.encode())
    root = SparseMerkleMap(rebuilt).update(changes)
    if root.hex() != head.state_root:
        raise CorruptStore(
            f"the state rows hash to root {root.hex()}, block {head.height} commits to {head.state_root}"
        )
    if root == EMPTY_ROOT:
        return
    version = conn.execute(
        select(func.min(BLOCK.c.height)).where(BLOCK.c.state_root == head.state_root)
    ).scalar()
    found, missing = _walk_stored(conn, root, int(version or 0))
    if missing or found != len(rebuilt.nodes):
        lacking = max(missing, len(rebuilt.nodes) - found)
        raise CorruptStore(f"ledger_node lacks {lacking} node(s) of the head state map")


def _walk_stored(conn: Connection, root: bytes, version: int) -> tuple[int, int]:
    """Walk the stored state map from ``root`` (at ``version``) a level at a time: how many of its
    nodes are found (each record hashing to its key) and how many are missing or malformed."""
    found = missing = 0
    frontier = [(root, version)]
    while frontier:
        below: list[tuple[bytes, int]] = []
        for start in range(0, len(frontier), _CHUNK):
            chunk = frontier[start : start + _CHUNK]
            rows = _stored_nodes(conn, chunk)
            for node, _ in chunk:
                data = rows.get(node)
                if data is None or not is_record_of(node, data):
                    missing += 1
                    continue
                found += 1
                below.extend(children(data))
        frontier = below
    return found, missing


def _stored_nodes(conn: Connection, chunk: list[tuple[bytes, int]]) -> dict[bytes, bytes]:
    """The ``ledger_node`` records among ``(hash, version)`` pairs, by hash: the pairs joined with
    the table's (version, hash) key, one index look-up each (a row-value ``IN`` list is a scan of
    the whole table per chunk on SQLite)."""
    if conn.dialect.name == "sqlite":
        values = ",".join(["(?, ?)"] * len(chunk))  # placeholders only: the values are bound
        sql = (
            f"SELECT n.hash, n.data FROM (VALUES {values}) AS w"  # noqa: S608
            " JOIN ledger_node AS n ON n.version = w.column1 AND n.hash = w.column2"
        )
        params: Any = tuple(value for h, v in chunk for value in (v, bytearray(h)))
    else:
        sql = (
            "SELECT n.hash, n.data FROM unnest(%s::bigint[], %s::bytea[]) AS w(version, hash)"
            " JOIN ledger_node AS n ON n.version = w.version AND n.hash = w.hash"
        )
        params = ([v for _, v in chunk], [h for h, _ in chunk])
    return {bytes(h): bytes(d) for h, d in conn.exec_driver_sql(sql, params)}

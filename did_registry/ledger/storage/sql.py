"""The SQL :class:`~did_registry.ledger.storage.base.LedgerStore`: SQLite (embedded) or PostgreSQL.

:meth:`SQLLedgerStore.append` writes a whole block — header and certificate, transactions, state
upserts and deletions, map nodes, DID versions — in ONE database transaction, which first moves the
head height in ``ledger_meta`` from ``h - 1`` to ``h`` (a compare-and-set that both checks the height
and serialises writers). A node killed at any moment restarts at its last committed block.

SQLite runs in WAL mode (readers never block the writer) with ``synchronous=FULL`` by default: the
WAL is synced at every commit, so a block that :meth:`~SQLLedgerStore.append` returned survives a
power loss, not only a crash. A validator signs and gossips what it committed; it must not come back
from a power cut behind what it told its peers and clients, and one fsync per block is cheap next to
the block. ``durable=False`` gives ``synchronous=NORMAL`` (safe against process crashes, not power
loss) for tests and tools. PostgreSQL keeps its own settings (``synchronous_commit`` is on by
default); ``postgresql://`` URLs use psycopg 3. A PostgreSQL database must be encoded UTF8 (its
``server_encoding``): one that is not is refused when opened (:class:`UnsupportedDatabase`), since a
LATIN1 database cannot hold text another validator's store holds, so a DID document in any other
script would halt that validator; the client encoding is set to UTF8 on every connection.

Opening a store checks the cheap structural invariants (the head height in ``ledger_meta`` against the
blocks: :func:`~did_registry.ledger.storage.integrity.check_head_rows`);
:meth:`SQLLedgerStore.verify_integrity` checks every one. An append that fails drops the head-state
caches: its transaction may have committed although its answer was lost (a connection cut during
``COMMIT``), and the caches must not keep the values from before it.

Writes go to the driver as positional ``executemany`` batches, and point reads (state values, map
nodes, transaction locations) as one statement on a driver connection: SQLAlchemy Core costs ten
times the query itself there, and so does checking a connection out of SQLAlchemy's pool and back
(with its reset); a few idle reading connections are kept aside for point reads instead. Map nodes
never change, so recently used ones are also cached.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, inspect, make_url, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, create_engine

from did_registry.bounded_cache import GenerationalCache, remember
from did_registry.errors import DidRegistryError
from did_registry.ledger.block import Block, CommitCertificate
from did_registry.ledger.storage import audit
from did_registry.ledger.storage.base import Commit, TxnLocation
from did_registry.ledger.storage.integrity import CorruptStore, check_head_rows, check_store
from did_registry.ledger.storage.models import (
    BLOCK,
    LAYOUT_VERSION,
    META,
    SCHEMA,
    STATE,
    TABLES,
    TXN,
    block_from_rows,
    block_row,
    did_version_rows,
    dumps,
    insert_statements,
    txn_rows,
)
from did_registry.ledger.storage.sqlite_engine import BEGIN_OPTION, WalCheckpointer, configure_sqlite
from did_registry.ledger.storage.views import create_views

__all__ = ["CommitRefused", "UnsupportedDatabase", "SQLLedgerStore"]

_NODE_CACHE = 1 << 16
_VALUE_CACHE = 1 << 15
_ABSENT_CACHE = 1 << 15
_CHUNK = 500  # keys per DELETE ... IN (...)
_ROOTS_KEPT = 1024  # state-map roots whose version is remembered
_SPARE_READERS = 4  # idle point-read connections kept out of the pool (it holds 15 at most)


_READS = {  # with SQLite's "?" placeholders (psycopg's "%s" on PostgreSQL)
    "get": "SELECT value FROM ledger_state WHERE key = ?",
    "node_get": "SELECT data FROM ledger_node WHERE version = ? AND hash = ?",
    "root_version": "SELECT MIN(height) FROM ledger_block WHERE state_root = ?",
    "locate": "SELECT height, idx FROM ledger_txn WHERE id = ?",
    "get_many": "SELECT key, value FROM ledger_state WHERE key IN (?)",  # (?) becomes one "?" per key
    "locate_many": "SELECT id FROM ledger_txn WHERE id IN (?)",
    "meta": "SELECT height, genesis FROM ledger_meta WHERE id = 1",
    "claim_genesis": "INSERT INTO ledger_meta (id, height, genesis) VALUES (1, 0, ?) ON CONFLICT (id) DO NOTHING",
    "claim": "UPDATE ledger_meta SET height = ?, genesis = COALESCE(?, genesis) WHERE id = 1 AND height = ?",
}


class CommitRefused(DidRegistryError, ValueError):
    """A commit does not extend the store's head (wrong height), or holds a value that is not UTF-8."""


class UnsupportedDatabase(DidRegistryError, ValueError):
    """The database URL names a backend the ledger store does not run on (SQLite and PostgreSQL do),
    or a database it cannot keep a ledger in (a PostgreSQL database not encoded UTF8, an old layout)."""


def _normalise(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.partition("://")[2]
    return url


class SQLLedgerStore:
    """The ledger in SQL tables (see the module docstring); ``url`` is a SQLite or PostgreSQL URL.

    ``sqlite://`` (in memory) is one connection shared by every thread: for single-threaded tests.
    """

    def __init__(self, url: str, *, durable: bool = True, node_cache: int = _NODE_CACHE) -> None:
        url = _normalise(url)
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError as exc:
            raise UnsupportedDatabase(f"not a database URL: {exc}") from None
        if backend not in ("sqlite", "postgresql"):
            raise UnsupportedDatabase(f"{backend} databases are not supported: use SQLite or PostgreSQL")
        # PostgreSQL: the client encoding is UTF8 whatever the environment (PGCLIENTENCODING) or the
        # database says; a database in another encoding is refused below
        # database says; a database in another encoding is refused below. A pooled connection is
        # tried before use (pool_pre_ping): one the server dropped (a restart, pg_terminate_backend)
        # is replaced rather than failing the block or read it was taken for.
        client: dict[str, Any] = (
            {}
            if backend == "sqlite"
            else {"connect_args": {"client_encoding": "utf8"}, "pool_pre_ping": True}
        )
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            engine = create_engine(url, **client)
        self.dialect = backend
        self._sqlite = self.dialect == "sqlite"
        if self._sqlite:
            configure_sqlite(engine, durable=durable)
        self.engine = engine
        # point reads: PostgreSQL gets a pool of autocommit connections (no BEGIN/ROLLBACK round trips)
        self._reader: Engine = (
            engine if self._sqlite else create_engine(url, isolation_level="AUTOCOMMIT", **client)
        )
        self._writer = engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        self._single = engine.execution_options(**{BEGIN_OPTION: ""})
        in_memory = isinstance(engine.pool, StaticPool)
        self._checkpointer = WalCheckpointer(engine) if self._sqlite and not in_memory else None
        reads = _READS if self._sqlite else {name: sql.replace("?", "%s") for name, sql in _READS.items()}
        self._sql = {**insert_statements(self.dialect), **reads}
        self._nodes: GenerationalCache[bytes, bytes] = GenerationalCache(node_cache)
        self._root_versions: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()
        self._values: OrderedDict[str, bytes | None] = OrderedDict()  # head state, write-through
        self._absent: OrderedDict[str, None] = OrderedDict()  # ids of no committed txn, write-through
        self._generation = 0  # moved by every append: a read that straddles one is not cached
        self._genesis: Mapping[str, Any] | None = None
        self._spare: list[Any] = []  # idle point-read connections (checked out of the pool)
        self._share_reader = in_memory  # one connection for everything: nothing to keep aside
        try:
            with self._writer.begin() as conn:
                if not self._sqlite:
                    _require_utf8(conn, make_url(url).database)
                schema = inspect(conn)
                if schema.has_table("ledger_node") and "version" not in {
                    column["name"] for column in schema.get_columns("ledger_node")
                }:
                    raise UnsupportedDatabase(
                        "this ledger database keeps state-map nodes by hash alone (the layout before nodes"
                        " had versions): move it aside and start the node on an empty one; it catches up"
                        " from its peers"
                    )
                SQLModel.metadata.create_all(conn, tables=list(TABLES))
                _check_layout(conn)
                create_views(conn)
                check_head_rows(conn)
        except (UnsupportedDatabase, CorruptStore):
            self.close()
            raise

    def close(self) -> None:
        """Stop the checkpoint thread and close every pooled connection."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        while self._spare:
            self._spare.pop().close()
        self._reader.dispose()
        self.engine.dispose()

    def _point(self, sql: str, *params: object) -> Any:
        """The first row of a query, on a pooled driver connection (no Core overhead)."""
        if self._share_reader:
            conn = self._reader.raw_connection()
            try:
                return _first_row(conn, sql, params)
            finally:
                conn.close()
        try:
            conn = self._spare.pop()  # atomic: no two threads get the same one
        except IndexError:
            conn = self._reader.raw_connection()
        else:  # a spare was idle outside the pool, unchecked: the server may have dropped it
            try:
                return self._kept(conn, _first_row(conn, sql, params))
            except Exception:
                conn.invalidate()  # gone; so, most likely, are the other idle ones
                with contextlib.suppress(IndexError):  # (another thread may take the last)
                    while True:
                        self._spare.pop().invalidate()
            conn = self._reader.raw_connection()  # tried before use (pool_pre_ping)
        try:
            row = _first_row(conn, sql, params)
        except BaseException:
            conn.close()  # back to the pool, which resets or discards it
            raise
        return self._kept(conn, row)

    def _kept(self, conn: Any, row: Any) -> Any:
        """``row``, after keeping ``conn`` as an idle point-read connection (or closing it)."""
        if len(self._spare) < _SPARE_READERS:
            self._spare.append(conn)
        else:
            conn.close()
        return row

    # -- the LedgerStore protocol: reads ----------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """Current (head) state value under ``key`` (hot keys, e.g. an endorser's DID record or the
        network rules, are served from a bounded write-through cache that ``append`` keeps exact)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            generation = self._generation
        row = self._point(self._sql["get"], key)
        value = None if row is None else row[0].encode()
        with self._lock:
            if generation == self._generation:  # no block committed meanwhile: the value is the head's
                self._values[key] = value
                if len(self._values) > _VALUE_CACHE:
                    self._values.popitem(last=False)
        return value

    def node(self, node_hash: bytes, version: int) -> bytes | None:
        """A state-map node's record by hash and version (cached by hash: nodes never change)."""
        with self._lock:
            data = self._nodes.get(node_hash)
            if data is not None:
                return data
        # pysqlite binds bytearray directly, bytes only through its adapter lookup
        row = self._point(self._sql["node_get"], version, bytearray(node_hash) if self._sqlite else node_hash)
        if row is None:
            return None
        data = bytes(row[0])
        self._remember({node_hash: data})
        return data

    def nodes(self, nodes: Sequence[tuple[bytes, int]]) -> dict[bytes, bytes]:
        """The stored state-map records among ``(hash, version)`` pairs, by hash (absent ones left
        out): those not cached with one query per few hundred, then cached like :meth:`node`'s."""
        found: dict[bytes, bytes] = {}
        missing: list[tuple[bytes, int]] = []
        with self._lock:
            cached = self._nodes.get
            for node_hash, version in nodes:
                data = cached(node_hash)
                if data is None:
                    missing.append((node_hash, version))
                else:
                    found[node_hash] = data
        if not missing:
            return found
        read: dict[bytes, bytes] = {}
        for start in range(0, len(missing), _CHUNK):
            for node_hash, data in self._node_rows(missing[start : start + _CHUNK]):
                read[bytes(node_hash)] = bytes(data)
        self._remember(read)
        found.update(read)
        return found

    def _node_rows(self, nodes: list[tuple[bytes, int]]) -> list[Any]:
        """``(hash, data)`` of the stored nodes among ``(hash, version)`` pairs: a join of the pairs
        with the table's (version, hash) key, one index look-up each."""
        if self._sqlite:
            pairs = ",".join(["(?, ?)"] * len(nodes))  # placeholders only: the values are bound
            sql = (
                f"SELECT n.hash, n.data FROM (VALUES {pairs}) AS w"  # noqa: S608
                " JOIN ledger_node AS n ON n.version = w.column1 AND n.hash = w.column2"
            )
            params: list[Any] = [value for h, v in nodes for value in (v, bytearray(h))]
        else:
            sql = (
                "SELECT n.hash, n.data FROM unnest(%s::bigint[], %s::bytea[]) AS w(version, hash)"
                " JOIN ledger_node AS n ON n.version = w.version AND n.hash = w.hash"
            )
            params = [[v for _, v in nodes], [h for h, _ in nodes]]
        return self._all_rows(sql, params)

    def root_version(self, root: bytes) -> int | None:
        """The version a state-map root is stored at: the height of the first block whose root it is
        (None if no block's is). Cached: a committed block's root never changes."""
        with self._lock:
            known = self._root_versions.get(root)
        if known is not None:
            return known
        row = self._point(self._sql["root_version"], root.hex())
        if row is None or row[0] is None:
            return None
        version = int(row[0])
        with self._lock:
            remember(self._root_versions, root, version, _ROOTS_KEPT)
        return version

    def height(self) -> int | None:
        """The last committed height, or ``None`` before genesis."""
        row = self._point(self._sql["meta"])
        return None if row is None else int(row[0])

    def genesis(self) -> Mapping[str, Any] | None:
        """The genesis document this store was started with."""
        if self._genesis is None:
            row = self._point(self._sql["meta"])
            self._genesis = None if row is None or row[1] is None else json.loads(row[1])
        return self._genesis

    def block(self, height: int) -> tuple[Block, CommitCertificate | None] | None:
        """A committed block and its certificate."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(BLOCK.c.header, BLOCK.c.certificate).where(BLOCK.c.height == height)
            ).first()
            if row is None:
                return None
            txns = conn.execute(select(TXN).where(TXN.c.height == height).order_by(TXN.c.idx)).all()
        return block_from_rows(row.header, row.certificate, txns)

    def locate(self, txn_id: str) -> TxnLocation | None:
        """Where a committed transaction is (a transaction is looked for at admission, in the pool and
        in its block: ids found absent are remembered, and ``append`` forgets those it commits)."""
        with self._lock:
            if txn_id in self._absent:
                return None
            generation = self._generation
        row = self._point(self._sql["locate"], txn_id)
        if row is not None:
            return TxnLocation(int(row[0]), int(row[1]))
        with self._lock:
            if generation == self._generation:  # no block committed meanwhile: absent at the head
                self._absent[txn_id] = None
                if len(self._absent) > _ABSENT_CACHE:
                    self._absent.popitem(last=False)
        return None

    def prefetch(self, keys: Iterable[str], txn_ids: Iterable[str] = ()) -> None:
        """Read the head values of ``keys`` and whether ``txn_ids`` are committed, for those not
        cached, with one ``IN`` query per few hundred, into the caches ``get`` and ``locate`` serve
        from: a block's reads in a few round trips instead of one each. Nothing is cached when a
        block is committed meanwhile (the answers might be the previous head's)."""
        with self._lock:
            generation = self._generation
            wanted = [key for key in dict.fromkeys(keys) if key not in self._values]
            unknown = [i for i in dict.fromkeys(txn_ids) if i not in self._absent]
        if not wanted and not unknown:
            return
        values: dict[str, bytes] = {}
        present: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            values.update((key, value.encode()) for key, value in self._rows("get_many", chunk))
        for start in range(0, len(unknown), _CHUNK):
            chunk = unknown[start : start + _CHUNK]
            present.update(row[0] for row in self._rows("locate_many", chunk))
        with self._lock:
            if generation != self._generation:
                return
            for key in wanted[-_VALUE_CACHE // 2 :]:  # never more than half the cache's hot keys out
                self._values[key] = values.get(key)
            for txn_id in unknown[-_ABSENT_CACHE // 2 :]:
                if txn_id not in present:
                    self._absent[txn_id] = None
            for _ in range(len(self._values) - _VALUE_CACHE):
                self._values.popitem(last=False)
            for _ in range(len(self._absent) - _ABSENT_CACHE):
                self._absent.popitem(last=False)

    def _rows(self, name: str, params: Sequence[Any]) -> list[Any]:
        """Every row of the ``IN`` query ``name`` over ``params`` (one placeholder each)."""
        mark = "?" if self._sqlite else "%s"
        sql = self._sql[name].replace(f"({mark})", "(" + ",".join([mark] * len(params)) + ")")
        return self._all_rows(sql, params)

    def _all_rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Every row of a query, on a driver connection from the read pool."""
        conn = self._reader.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        finally:
            conn.close()

    # -- the LedgerStore protocol: the one write ---------------------------------------------------
    def append(self, commit: Commit) -> None:
        """Write one block's changes in one transaction; refuse a height that is not head + 1."""
        height = commit.block.header.height
        state = _state_rows(commit.changes)
        deleted = [key for key, value in commit.changes.items() if value is None]
        nodes: list[tuple[Any, Any, Any]] = [(height, h, commit.nodes[h]) for h in sorted(commit.nodes)]
        if self._sqlite:  # pysqlite binds bytearray directly, bytes only through its adapter lookup
            nodes = [(height, bytearray(h), bytearray(d)) for _, h, d in nodes]
        try:
            with self._writer.begin() as conn:
                self._claim_height(conn, height, commit.genesis)
                conn.execute(BLOCK.insert(), block_row(commit.block, commit.certificate))
                self._write(conn, "txn", txn_rows(commit.block))
                self._write(conn, "state", state)
                for start in range(0, len(deleted), _CHUNK):
                    conn.execute(delete(STATE).where(STATE.c.key.in_(deleted[start : start + _CHUNK])))
                self._write(conn, "node", nodes)
                self._write(conn, "did_version", did_version_rows(commit.changes, height))
        except BaseException:
            self._forget_head()  # committed or not: an error during COMMIT does not say
            raise
        with self._lock:
            self._generation += 1
            for key, value in commit.changes.items():
                if key in self._values:
                    self._values[key] = value
            for txn in commit.block.txns:
                self._absent.pop(txn.id, None)
        if commit.genesis is not None:
            self._genesis = commit.genesis
        self._remember(commit.nodes)
        if self._checkpointer is not None:
            self._checkpointer.poke()

    def _forget_head(self) -> None:
        """Drop what is cached of the head state (values, absent transaction ids), and make reads in
        flight not cache theirs: after an append that failed, the database may hold the block or not."""
        with self._lock:
            self._generation += 1
            self._values.clear()
            self._absent.clear()

    def _claim_height(self, conn: Connection, height: int, genesis: Mapping[str, Any] | None) -> None:
        """Move the head from ``height - 1`` to ``height`` (create it at 0), or refuse."""
        document = None if genesis is None else dumps(genesis)
        if height == 0:
            claimed = conn.exec_driver_sql(self._sql["claim_genesis"], (document,)).rowcount
        else:
            claimed = conn.exec_driver_sql(self._sql["claim"], (height, document, height - 1)).rowcount
        if claimed != 1:
            head = conn.execute(select(META.c.height).where(META.c.id == 1)).scalar()
            expected = 0 if head is None else head + 1
            raise CommitRefused(f"the store expects block {expected}, not block {height}")

    def _write(self, conn: Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in column order): SQLite row by row, PostgreSQL as column arrays."""
        if not rows:
            return
        if self._sqlite:
            conn.exec_driver_sql(self._sql[table], rows)
        else:
            conn.exec_driver_sql(self._sql[table], tuple(list(column) for column in zip(*rows, strict=True)))

    def _remember(self, nodes: Mapping[bytes, bytes]) -> None:
        with self._lock:
            self._nodes.update(nodes)

    # -- reading for audits and checks ---------------------------------------------------------------
    def txns(
        self,
        *,
        submitter: str | None = None,
        type: str | None = None,  # the transaction member's own name
        from_height: int | None = None,
        to_height: int | None = None,
        from_time: str | None = None,
        to_time: str | None = None,
        did: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of transactions matching every filter, and the next page's cursor (None at the end).

        See :func:`~did_registry.ledger.storage.audit.query_txns` for the filters' meaning.
        """
        with self._single.connect() as conn:
            return audit.query_txns(
                conn,
                submitter=submitter,
                type=type,
                from_height=from_height,
                to_height=to_height,
                from_time=from_time,
                to_time=to_time,
                did=did,
                limit=limit,
                cursor=cursor,
                newest_first=newest_first,
            )

    def did_history(self, did: str) -> list[dict[str, Any]]:
        """Every version of a DID's record, oldest first."""
        with self._single.connect() as conn:
            return audit.query_did_history(conn, did)

    def blocks(self, from_height: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Up to ``limit`` blocks from ``from_height`` up (hash, header, certificate)."""
        with self._single.connect() as conn:
            return audit.query_blocks(conn, from_height, limit)

    def verify_integrity(self) -> int | None:
        """Check every invariant of the store in one consistent read; return the head height.

        Raises :class:`~did_registry.ledger.storage.integrity.CorruptStore` (see that module).
        """
        engine = (
            self.engine if self._sqlite else self.engine.execution_options(isolation_level="REPEATABLE READ")
        )
        with engine.connect() as conn:
            try:
                return check_store(conn)
            except CorruptStore:
                raise
            except (ValueError, TypeError, KeyError, DidRegistryError) as exc:  # a row edited into nonsense
                raise CorruptStore(f"a stored row does not read as what it holds: {exc!r:.500}") from None

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[tuple[str, bytes]]:
        """Current state entries whose key starts with ``prefix``, in key order, after key ``after``."""
        if type(limit) is not int or limit < 0:
            raise audit.InvalidQuery(f"limit must be an integer >= 0, not {limit!r}")
        query = _from_prefix(prefix, after).limit(limit)
        with self._single.connect() as conn:
            rows = conn.execute(query).all()
        return list(_prefixed(((row.key, row.value) for row in rows), prefix))

    def state_items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """Every head-state entry whose key starts with ``prefix``, in key order (one consistent read)."""
        query = _from_prefix(prefix, None).execution_options(yield_per=10_000)
        with self.engine.connect() as conn, conn.execute(query) as rows:
            yield from _prefixed(((row.key, row.value) for row in rows), prefix)


def _from_prefix(prefix: str, after: str | None) -> Select[tuple[str, str]]:
    """State rows from ``prefix`` (and after ``after``) in key order: one range scan of the key index.

    Keys compare by code point on both databases (SQLite's BINARY, PostgreSQL's "C" collation), so
    the keys under a prefix are the run that starts at the prefix itself; LIKE would not do (SQLite's
    ignores case).
    """
    query = select(STATE.c.key, STATE.c.value).where(STATE.c.key >= prefix)
    if after is not None:
        query = query.where(STATE.c.key > after)
    return query.order_by(STATE.c.key)


def _prefixed(rows: Iterable[tuple[str, str]], prefix: str) -> Iterator[tuple[str, bytes]]:
    """The rows while their key starts with ``prefix`` (the run ends at the first that does not)."""
    for key, value in rows:
        if not key.startswith(prefix):
            return
        yield key, value.encode()


def _check_layout(conn: Connection) -> None:
    """Stamp a store with :data:`LAYOUT_VERSION` (new, or laid out as now before stores were stamped),
    or refuse one another version of Trellis laid out (see :class:`~.models.SchemaRow`)."""
    layout = conn.execute(select(SCHEMA.c.layout).where(SCHEMA.c.id == 1)).scalar()
    if layout is None:  # (written only then: opening a stamped store writes nothing)
        stamp = (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(SCHEMA)
        conn.execute(stamp.values(id=1, layout=LAYOUT_VERSION).on_conflict_do_nothing())
        layout = conn.execute(select(SCHEMA.c.layout).where(SCHEMA.c.id == 1)).scalar_one()
    if layout != LAYOUT_VERSION:
        raise UnsupportedDatabase(
            f"this ledger database is laid out as layout {layout}, by "
            f"{'a later' if layout > LAYOUT_VERSION else 'an earlier'} version of Trellis; this version"
            f" reads layout {LAYOUT_VERSION}: run the version that wrote it, or move it aside and start"
            " the node on an empty database (it catches up from its peers)"
        )


def _require_utf8(conn: Connection, database: str | None) -> None:
    """Refuse a PostgreSQL database not encoded UTF8 (see the module docstring)."""
    encoding = str(conn.exec_driver_sql("SHOW server_encoding").scalar())
    if encoding.upper() not in ("UTF8", "UTF-8"):
        name = database or "<name>"
        raise UnsupportedDatabase(
            f"the PostgreSQL database {name!r} is encoded {encoding}, not UTF8: it cannot hold every text a"
            " ledger holds (a block another validator stores would halt this one). Create the ledger's"
            f" database in UTF8: CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            " TEMPLATE template0"
        )


def _first_row(conn: Any, sql: str, params: tuple[object, ...]) -> Any:
    """The first row of a query on a driver connection (autocommit: no transaction is left open, so
    the connection can serve the next read as it is)."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    finally:
        cursor.close()


def _state_rows(changes: Mapping[str, bytes | None]) -> list[tuple[str, str]]:
    try:
        return sorted((k, v.decode()) for k, v in changes.items() if v is not None)
    except UnicodeDecodeError as exc:
        raise CommitRefused(f"a state value is not UTF-8 JSON: {exc}") from None

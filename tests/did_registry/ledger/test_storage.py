"""The SQL ledger store on SQLite and PostgreSQL: determinism, atomic appends, restarts, integrity."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, inspect, text

from did_registry.ledger.application import InvalidBlock, LedgerApplication
from did_registry.ledger.block import Block, BlockHeader
from did_registry.ledger.storage import SQLLedgerStore
from did_registry.ledger.storage.audit import InvalidQuery
from did_registry.ledger.storage.base import Commit
from did_registry.ledger.storage.integrity import CorruptStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.storage.sql import CommitRefused, UnsupportedDatabase
from tests.did_registry.ledger.conftest import Network, make_genesis, network_on, new_actor
from tests.did_registry.ledger.storage_helpers import RecordingStore, certify, drive, snapshot


@pytest.fixture
def store(store_url: str) -> Iterator[SQLLedgerStore]:
    """An empty SQL ledger store on the parametrized backend."""
    opened = SQLLedgerStore(store_url)
    yield opened
    opened.close()


@pytest.fixture
def recorded() -> tuple[Network, RecordingStore]:
    """A varied chain driven on a memory store that recorded every commit."""
    memory = RecordingStore()
    net = network_on(memory)
    drive(net)
    return net, memory


def _pending(net: Network) -> Commit:
    """The next block's commit (one new DID), proposed and certified but not written."""
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, net.trustee)
    executed = net.app.propose([txn], time="2026-01-05T00:00:00Z", proposer="node-1")
    certificate = certify(net, executed.block.header)
    return Commit(executed.block, certificate, executed.changes, executed.nodes)


class TestDeterminism:
    def test_replayed_blocks_give_the_same_chain(
        self, recorded: tuple[Network, RecordingStore], store: SQLLedgerStore
    ) -> None:
        """Blocks replayed through validate/commit give every header, block, state value and node again."""
        net, memory = recorded
        app = LedgerApplication(store, net.app.genesis)
        head = memory.height()
        assert head is not None and head > 15
        for height in range(1, head + 1):
            found = memory.block(height)
            assert found is not None
            app.commit(app.validate(found[0]), found[1])  # type: ignore[arg-type]
        assert store.height() == head
        assert [store.block(h) for h in range(head + 1)] == [memory.block(h) for h in range(head + 1)]
        assert dict(store.state_items()) == memory.state()
        nodes = {(c.block.header.height, h): d for c in memory.commits for h, d in c.nodes.items()}
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT version, hash, data FROM ledger_node"))
            assert {(v, bytes(h)): bytes(d) for v, h, d in rows} == nodes  # each under its block's height
        assert all(store.node(h, version)[:65] == d[:65] for (version, h), d in nodes.items())  # type: ignore[index]
        txns = [t for commit in memory.commits for t in commit.block.txns]
        assert [store.locate(t.id) for t in txns] == [memory.locate(t.id) for t in txns]
        assert store.genesis() == memory.genesis()
        assert store.verify_integrity() == head

    def test_proposals_on_sql_match_memory(
        self, recorded: tuple[Network, RecordingStore], store: SQLLedgerStore
    ) -> None:
        """Proposing the same transactions at the same times on SQL builds the very same headers."""
        net, memory = recorded
        app = LedgerApplication(store, net.app.genesis)
        assert app.head == memory.commits[0].block.header
        for commit in memory.commits[1:]:
            header = commit.block.header
            executed = app.propose(list(commit.block.txns), time=header.time, proposer=header.proposer)
            assert executed.block.header == header
            app.commit(executed, commit.certificate)  # type: ignore[arg-type]
        assert app.head.state_root == memory.commits[-1].block.header.state_root


class TestRestart:
    def test_reopened_store_resumes(self, store_url: str) -> None:
        """A new store on the same database and a new application resume at the same head, and go on."""
        first = SQLLedgerStore(store_url)
        net = network_on(first)
        issuer = net.onboard("issuer")
        head = net.app.head
        first.close()
        again = SQLLedgerStore(store_url)
        app = LedgerApplication(again, net.app.genesis)
        assert app.head == head and again.verify_integrity() == head.height
        resumed = Network(app, net.validator_key, net.trustee, net.clock)
        resumed.accept(issuer.txn("status_list.create", {"list": "l1", "purpose": "revocation"}))
        assert again.height() == head.height + 1 and again.verify_integrity() == head.height + 1
        again.close()

    def test_other_networks_genesis_is_refused(self, store: SQLLedgerStore) -> None:
        """An application with another genesis refuses a store holding a chain."""
        network_on(store)
        with pytest.raises(InvalidBlock, match="genesis differs"):
            LedgerApplication(store, make_genesis(new_actor(), new_actor().key))


class TestAppend:
    @pytest.mark.parametrize("offset", [-2, -1, 1, "genesis"])
    def test_wrong_height_is_refused_and_changes_nothing(
        self, store: SQLLedgerStore, offset: int | str
    ) -> None:
        """A commit that is not exactly head + 1 is refused, and every table stays as it was."""
        net = network_on(store)
        net.onboard("issuer")
        commit = _pending(net)
        before = snapshot(store)
        height = 0 if offset == "genesis" else commit.block.header.height + int(offset)
        header = dataclasses.replace(commit.block.header, height=height)
        wrong = dataclasses.replace(commit, block=Block(header, commit.block.txns))
        with pytest.raises(CommitRefused, match=f"expects block {commit.block.header.height}"):
            store.append(wrong)
        assert snapshot(store) == before

    @pytest.mark.parametrize("table", ["txn", "state", "node", "did_version"])
    def test_failure_midway_leaves_the_previous_block(
        self, store: SQLLedgerStore, monkeypatch: pytest.MonkeyPatch, table: str
    ) -> None:
        """A failure after some rows are written rolls the whole block back; the block then commits."""
        net = network_on(store)
        net.onboard("issuer")
        commit = _pending(net)
        before = snapshot(store)
        write = SQLLedgerStore._write

        def failing(self: SQLLedgerStore, conn: object, name: str, rows: list[tuple[object, ...]]) -> None:
            write(self, conn, name, rows)  # type: ignore[arg-type]
            if name == table:
                raise OSError(f"disk gone after writing {name}")

        monkeypatch.setattr(SQLLedgerStore, "_write", failing)
        with pytest.raises(OSError, match="disk gone"):
            store.append(commit)
        monkeypatch.undo()
        assert snapshot(store) == before
        stored = {row[1] for row in before["tables"]["ledger_node"]}  # (version, hash, data)
        height = commit.block.header.height
        assert all(store.node(h, height) is None for h in commit.nodes if h not in stored)
        store.append(commit)
        assert store.height() == commit.block.header.height
        assert store.verify_integrity() == commit.block.header.height

    def test_non_utf8_value_is_refused(self, store: SQLLedgerStore) -> None:
        """A state value that is not UTF-8 is refused before anything is written."""
        net = network_on(store)
        commit = _pending(net)
        before = snapshot(store)
        with pytest.raises(CommitRefused, match="UTF-8"):
            store.append(dataclasses.replace(commit, changes={**commit.changes, "x": b"\xff"}))
        assert snapshot(store) == before

    def test_transaction_looked_for_before_its_block_is_found_after(self, store: SQLLedgerStore) -> None:
        """A transaction found absent (and remembered so) is located once its block is appended."""
        net = network_on(store)
        commit = _pending(net)
        txn_id = commit.block.txns[0].id
        assert store.locate(txn_id) is None and store.locate(txn_id) is None
        store.append(commit)
        found = store.locate(txn_id)
        assert found is not None and (found.height, found.index) == (commit.block.header.height, 0)

    def test_failed_append_leaves_its_transactions_absent(
        self, store: SQLLedgerStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A transaction whose block failed to commit is still reported absent, then found once it commits."""
        net = network_on(store)
        commit = _pending(net)
        txn_id = commit.block.txns[0].id
        assert store.locate(txn_id) is None

        def failing(self: SQLLedgerStore, conn: object, name: str, rows: list[tuple[object, ...]]) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(SQLLedgerStore, "_write", failing)
        with pytest.raises(OSError, match="disk gone"):
            store.append(commit)
        monkeypatch.undo()
        assert store.locate(txn_id) is None
        store.append(commit)
        assert store.locate(txn_id) is not None

    def test_thousand_did_block_commits_in_bulk(self, tmp_path: Path) -> None:
        """A block of 1,000 DID creations is written with a few bulk statements (one per table),
        not one statement per row (how fast that is, is for bench.ledger to say)."""
        store = SQLLedgerStore(f"sqlite:///{tmp_path}/bulk.db")
        net = network_on(store)
        devices = [new_actor() for _ in range(1000)]
        txns = [d.txn("did.create", {"document": d.document()}, net.trustee) for d in devices]
        executed = net.app.propose(txns, time="2026-01-02T00:00:00Z", proposer="node-1")
        assert len(executed.block.txns) == 1000
        commit = Commit(executed.block, certify(net, executed.block.header), executed.changes, executed.nodes)
        statements: list[bool] = []

        def count(*args: object) -> None:
            statements.append(bool(args[-1]))  # executemany

        event.listen(store.engine, "before_cursor_execute", count)
        store.append(commit)
        event.remove(store.engine, "before_cursor_execute", count)
        store.close()
        assert len(statements) <= 10 and sum(statements) >= 4, statements
        assert len(commit.changes) > 2000 and len(commit.nodes) > 1000


class TestPrefetch:
    def test_prefetch_changes_no_answer(self, store: SQLLedgerStore) -> None:
        """After a prefetch of present and absent keys and of committed and unknown transaction ids,
        every read gives what the stored state and blocks say."""
        net = network_on(store)
        drive(net)
        state = dict(store.state_items())
        keys = [*list(state)[:40], "did:did:trellis:testnet:nobody", "nonce:nobody"]
        head = store.height()
        assert head is not None
        txns = [t for h in range(1, head + 1) for t in store.block(h)[0].txns]  # type: ignore[index]
        ids = [t.id for t in txns[:30]] + ["0" * 64]
        store.prefetch(keys, ids)
        assert [store.get(k) for k in keys] == [state.get(k) for k in keys]
        located = [store.locate(i) for i in ids]
        assert all(found is not None for found in located[:-1]) and located[-1] is None

    def test_prefetched_absence_ends_with_the_commit_that_writes(self, store: SQLLedgerStore) -> None:
        """A key and a transaction prefetched as absent are found once the block holding them commits."""
        net = network_on(store)
        commit = _pending(net)
        stored = dict(store.state_items())
        written = [k for k, v in commit.changes.items() if v is not None and k not in stored]
        store.prefetch(written, [commit.block.txns[0].id])
        assert written and all(store.get(k) is None for k in written)
        store.append(commit)
        assert [store.get(k) for k in written] == [commit.changes[k] for k in written]
        assert store.locate(commit.block.txns[0].id) is not None

    def test_prefetch_straddling_a_commit_caches_nothing(
        self, store: SQLLedgerStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A prefetch whose reads straddle an append keeps none of its (maybe older) answers."""
        net = network_on(store)
        commit = _pending(net)
        stored = dict(store.state_items())
        written = sorted(k for k, v in commit.changes.items() if v is not None and k not in stored)
        read = SQLLedgerStore._rows
        appended = []

        def meanwhile(self: SQLLedgerStore, name: str, params: list[str]) -> list[object]:
            rows = read(self, name, params)
            if name == "get_many":
                monkeypatch.undo()
                store.append(commit)  # the block lands between the read and the caching
                appended.append(commit)
            return rows

        monkeypatch.setattr(SQLLedgerStore, "_rows", meanwhile)
        store.prefetch(written)
        assert appended and written
        assert [store.get(k) for k in written] == [commit.changes[k] for k in written]


class TestNodes:
    def test_bulk_node_read_gives_exactly_the_stored_nodes(
        self, store: SQLLedgerStore, store_url: str
    ) -> None:
        """``nodes`` of stored and unknown hashes, more than one query's worth, gives each stored
        node as ``node`` does and leaves the unknown ones out, from a cold cache and a warm one."""
        drive(network_on(store))
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT version, hash, data FROM ledger_node ORDER BY version"))
            stored = {bytes(h): (v, bytes(d)) for v, h, d in rows}  # a hash's latest record
        reopened = SQLLedgerStore(store_url)
        try:
            unknown = [sha256(b"unknown %d" % i).digest() for i in range(300)]
            at = {h: v for h, (v, _) in stored.items()}
            wanted = [*at.items(), *((h, 1) for h in unknown), *list(at.items())[:50]]  # a repeat too
            wanted.append((next(iter(at)), 10**6))  # a stored node, asked for at a version it is not at
            assert len(set(wanted)) > 500 and len(stored) >= 200
            found = reopened.nodes(wanted)  # cold
            assert found == {h: stored[h][1] for h, _ in wanted[:-1] if h in stored}
            assert reopened.nodes(wanted) == found  # cached
            assert all(reopened.node(h, v) == found.get(h) for h, v in wanted[:-1])
        finally:
            reopened.close()

    def test_restarted_node_reads_a_blocks_map_nodes_in_bulk(
        self, store: SQLLedgerStore, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A validator restarted on its store (nothing cached) validates a block of 40 new DIDs
        reading the state map's nodes a level at a time, with no read of one node by its hash."""
        net = network_on(store)
        drive(net)
        devices = [new_actor() for _ in range(40)]
        txns = [d.txn("did.create", {"document": d.document()}, net.trustee) for d in devices]
        block = net.app.propose(txns, time="2026-01-05T00:00:00Z", proposer="node-1").block
        reopened = SQLLedgerStore(store_url)
        try:
            app = LedgerApplication(reopened, net.app.genesis)
            point, bulk = SQLLedgerStore._point, SQLLedgerStore._node_rows
            reads: list[str] = []

            def one(self: SQLLedgerStore, sql: str, *params: object) -> object:
                reads.append("node" if "ledger_node" in sql else "other")
                return point(self, sql, *params)

            def many(self: SQLLedgerStore, nodes: list[tuple[bytes, int]]) -> list[object]:
                reads.append("node_many")
                return bulk(self, nodes)

            monkeypatch.setattr(SQLLedgerStore, "_point", one)
            monkeypatch.setattr(SQLLedgerStore, "_node_rows", many)
            executed = app.validate(block)
            assert executed.block.header == block.header
            assert "node" not in reads
            assert 0 < reads.count("node_many") <= 40, reads
        finally:
            reopened.close()

    def test_database_of_the_layout_by_hash_alone_is_refused(self, store_url: str) -> None:
        """A database whose ledger_node keeps nodes by hash alone (the layout before versions) is
        refused with an error that says what to do, and is left as it was."""
        blob = "BLOB" if store_url.startswith("sqlite") else "BYTEA"
        engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE ledger_node (hash {blob} PRIMARY KEY, data {blob} NOT NULL)"))
        with pytest.raises(UnsupportedDatabase, match=r"by hash alone.*catches up from its peers"):
            SQLLedgerStore(store_url)
        with engine.connect() as conn:
            columns = list(conn.execute(text("SELECT * FROM ledger_node")).keys())
            tables = inspect(conn).get_table_names()
        engine.dispose()
        assert columns == ["hash", "data"] and tables == ["ledger_node"]


class TestIntegrity:
    @pytest.mark.parametrize(
        ("tamper", "message"),
        [
            ("UPDATE ledger_state SET value = '{}' WHERE key = 'trustees'", "state rows hash"),
            ("DELETE FROM ledger_state WHERE key LIKE 'nonce:%'", "state rows hash"),
            ("UPDATE ledger_block SET previous_hash = 'ab' WHERE height = 2", "columns disagree"),
            ("DELETE FROM ledger_txn WHERE height = 1", "transactions are missing"),
            ("UPDATE ledger_txn SET signatures = '[]' WHERE height = 1", "do not match"),
            ("DELETE FROM ledger_block WHERE height = 1", "do not match the head"),
            ("DELETE FROM ledger_node", "lacks"),
            ("DELETE FROM ledger_did_version", "ledger_did_version has"),
            ("UPDATE ledger_meta SET genesis = NULL, height = 7", "do not match the head"),
        ],
    )
    def test_tampering_is_found(self, store: SQLLedgerStore, tamper: str, message: str) -> None:
        """verify_integrity names what was changed behind the store's back."""
        net = network_on(store)
        net.onboard("issuer")
        assert store.verify_integrity() == 2
        with store.engine.begin() as conn:
            conn.execute(text(tamper))
        store._nodes.clear()  # the cache would still serve deleted nodes
        with pytest.raises(CorruptStore, match=message):
            store.verify_integrity()

    def test_broken_hash_chain_is_found(self, store: SQLLedgerStore) -> None:
        """A block whose header no longer names its parent breaks the chain."""
        net = network_on(store)
        net.onboard("issuer")
        found = store.block(2)
        assert found is not None
        forged = dataclasses.replace(found[0].header, previous_hash="00" * 32)
        forged_json = text(
            "UPDATE ledger_block SET header = :h, hash = :x, previous_hash = :p WHERE height = 2"
        )
        with store.engine.begin() as conn:
            conn.execute(forged_json, {"h": _json(forged), "x": forged.hash.hex(), "p": "00" * 32})
        with pytest.raises(CorruptStore, match="previous_hash does not name block 1"):
            store.verify_integrity()

    def test_empty_store_is_consistent(self, store: SQLLedgerStore) -> None:
        """A store before genesis has no head and nothing to contradict."""
        assert store.verify_integrity() is None and store.height() is None and store.genesis() is None


def _json(header: BlockHeader) -> str:
    return json.dumps(header.to_json())


class TestBackends:
    @pytest.mark.parametrize("url", ["mysql://user@host/ledger", "oracle://x", "not a url"])
    def test_other_databases_are_refused(self, url: str) -> None:
        """Only SQLite and PostgreSQL URLs open a store."""
        with pytest.raises(UnsupportedDatabase):
            SQLLedgerStore(url)

    def test_scan_pages_through_a_prefix(self, store: SQLLedgerStore) -> None:
        """scan gives a prefix's entries in key order, page by page with ``after``, as the memory store."""
        memory = MemoryLedgerStore()
        net, twin = network_on(store), network_on(memory)
        for network in (net, twin):
            for _ in range(3):
                network.onboard("issuer")
        assert [k for k, _ in store.scan("role:", limit=10)] == sorted(
            k for k, _ in store.state_items("role:")
        )
        first = store.scan("did:", limit=2)
        second = store.scan("did:", after=first[-1][0], limit=2)
        assert len(first) == len(second) == 2 and first[-1][0] < second[0][0]
        assert all(k.startswith("did:") for k, _ in first + second)
        assert store.scan("nonce:", limit=0) == [] and store.scan("zzz", limit=5) == []
        assert len(store.scan("did:", limit=100)) == len(memory.scan("did:", limit=100)) == 4
        with pytest.raises(InvalidQuery, match="limit"):
            store.scan("did:", limit=-1)

    def test_in_memory_sqlite_runs_a_network(self) -> None:
        """``sqlite://`` is a working in-memory store (tests and tools)."""
        store = SQLLedgerStore("sqlite://", durable=False)
        net = network_on(store)
        device = net.onboard()
        assert store.get(f"did:{device.did}") is not None and store.verify_integrity() == 1
        store.close()


_KEYS = st.text(alphabet="abAB:xz", min_size=1, max_size=6).map(lambda k: f"k:{k}")
_VALUES = st.one_of(st.none(), st.text(max_size=20).map(lambda v: f'"{v.encode().hex()}"'.encode()))
_NODES = st.dictionaries(st.binary(min_size=32, max_size=32), st.binary(min_size=65, max_size=65), max_size=4)
_SCANS = st.tuples(
    st.sampled_from(["", "k:", "k:a", "k:A", "k:a:", "k:z"]), st.none() | _KEYS, st.integers(0, 5)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.dictionaries(_KEYS, _VALUES, max_size=6), _NODES), min_size=1, max_size=6),
    st.lists(_SCANS, max_size=4),
)
def test_store_agrees_with_memory_store(
    blocks: list[tuple[dict[str, bytes | None], dict[bytes, bytes]]], scans: list[tuple[str, str | None, int]]
) -> None:
    """Any sequence of upserts, deletions and (repeated) nodes reads and scans as the memory store has it."""
    sql, memory = SQLLedgerStore("sqlite://", durable=False), MemoryLedgerStore()
    for height, (changes, nodes) in enumerate(blocks):
        header = BlockHeader("t", height, "00", "2026-01-01T00:00:00Z", "p", 0, "", "", "")
        commit = Commit(Block(header, ()), None, changes, nodes, {"g": 1} if height == 0 else None)
        sql.append(commit)
        memory.append(commit)
        keys = {k for c, _ in blocks[: height + 1] for k in c}
        assert {k: sql.get(k) for k in keys} == {k: memory.get(k) for k in keys}
        written = [(h, at) for at, (_, n) in enumerate(blocks[: height + 1]) for h in n]
        assert all(sql.node(h, at) == memory.node(h, at) for h, at in written)
        for prefix, after, limit in scans:
            assert sql.scan(prefix, after=after, limit=limit) == memory.scan(prefix, after=after, limit=limit)
    assert sql.height() == memory.height() and sql.genesis() == memory.genesis() == {"g": 1}
    sql.close()

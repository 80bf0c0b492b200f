"""A node whose store fails to write a block: the solo producer tries again and then halts; a block
stored although its write raised (the answer to COMMIT lost) is taken as committed; a store that holds
something else, or a certified block that does not execute here, halts the node, saying why."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from did_registry.consensus import Committed
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import CHECK_HINT, LedgerApplication, StoreHeadLost
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.storage import SQLLedgerStore
from did_registry.ledger.storage.base import Commit
from did_registry.ledger.txn import Transaction
from did_registry.node.block_app import encode_block, request_bytes
from did_registry.node.replica import Replica, ReplicaConfig
from did_registry.node.service import NodeService
from did_registry.node.sync import CertifiedBlock, SyncError, install
from tests.did_registry.ledger.conftest import Actor, new_actor
from tests.did_registry.node.conftest import Node, make_node


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty ledger database: a SQLite file, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'follower.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def leader() -> Iterator[Node]:
    """A solo validator on a memory store, whose blocks the followers install."""
    node = make_node()
    yield node
    node.service.stop()


def _follower(leader: Node, store: SQLLedgerStore) -> NodeService:
    """A node following ``leader``'s chain (same genesis) on ``store``."""
    app = LedgerApplication(store, leader.service.app.genesis)
    return NodeService(app, validator_id="observer", validator_key=Ed25519PrivateKey.generate())


def _certified(leader: Node, *heights: int) -> list[CertifiedBlock]:
    """The leader's blocks at ``heights`` with their certificates, as state transfer fetches them."""
    blocks = []
    for height in heights:
        found = leader.service.app.store.block(height)
        assert found is not None and found[1] is not None
        blocks.append(CertifiedBlock(found[0], found[1]))
    return blocks


def _device_blocks(leader: Node) -> Actor:
    """Blocks 1 and 2 on the leader: a device's DID created, then updated by the device."""
    device = new_actor()
    leader.commit(device.txn("did.create", {"document": device.document()}, leader.trustee))
    document = device.document()
    document["service"] = [
        {"id": f"{device.did}#s", "type": "Sensor", "serviceEndpoint": "https://e.example/"}
    ]
    leader.commit(device.txn("did.update", {"document": document}))
    return device


def _lose_answers(
    store: SQLLedgerStore, monkeypatch: pytest.MonkeyPatch, then: Callable[[], None] = lambda: None
) -> list[int]:
    """Make the next COMMIT on ``store``'s writer go through, then fail as when the connection drops
    before the server's answer arrives (``then`` runs at that moment); returns the count of answers lost."""
    dialect = store.engine.dialect
    commit = dialect.do_commit
    lost: list[int] = []
    error: Exception = (
        sqlite3.OperationalError("disk I/O error")
        if store.dialect == "sqlite"
        else psycopg.OperationalError("server closed the connection unexpectedly")
    )

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        if not lost:
            lost.append(1)
            then()
            raise error

    monkeypatch.setattr(dialect, "do_commit", do_commit)
    return lost


class TestLostAnswer:
    def test_a_block_stored_though_its_write_raised_is_taken_as_committed(
        self, leader: Node, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """State transfer writes block 1, the database commits it but the answer is lost: the node
        reads its store's head, finds the very block, takes it as committed (head and caches moved)
        and goes on to block 2, which needs block 1's state; before, every retry was refused ('the
        store expects block 2, not block 1') while the node answered at the old head."""
        device = _device_blocks(leader)
        store = SQLLedgerStore(store_url)
        follower = _follower(leader, store)
        try:
            lost = _lose_answers(store, monkeypatch)
            install(follower, _certified(leader, 1, 2))
            assert lost == [1]
            assert follower.halted is None and follower.app.head == leader.service.app.head
            assert follower.head[0] == leader.service.app.head
            key = f"did:{device.did}"
            assert store.get(key) == leader.service.app.store.get(key)
        finally:
            store.close()

    def test_a_node_that_cannot_read_its_head_after_a_failed_write_halts_and_resumes_on_restart(
        self, leader: Node, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the store cannot be read either right after a write that raised, whether it holds the
        block is unknown: the node halts saying so (its application refuses to go on), and a node
        restarted on the store resumes from the block the store does hold."""
        _device_blocks(leader)
        store = SQLLedgerStore(store_url)
        follower = _follower(leader, store)
        height = store.height
        unreadable: list[int] = []

        def no_head() -> int | None:
            if unreadable:
                unreadable.pop()
                raise sqlite3.OperationalError("unable to open database file")
            return height()

        monkeypatch.setattr(store, "height", no_head)
        _lose_answers(store, monkeypatch, then=lambda: unreadable.append(1))
        with pytest.raises(SyncError, match="whether it holds the block is unknown"):
            install(follower, _certified(leader, 1, 2))
        assert follower.halted is not None and "cannot be read" in follower.halted
        with pytest.raises(StoreHeadLost):
            follower.app.validate(_certified(leader, 2)[0].block)
        store.close()
        monkeypatch.undo()
        again = SQLLedgerStore(store_url)
        try:
            restarted = _follower(leader, again)
            assert restarted.app.height == 1
            install(restarted, _certified(leader, 2))
            assert restarted.app.head == leader.service.app.head
        finally:
            again.close()


def test_a_store_another_process_wrote_halts_the_node(leader: Node, tmp_path: Path) -> None:
    """A store whose head is, after a refused write, another block than the one written (a second
    process writing the database) halts the node, saying so; before, the refusal was logged and the
    block tried again for ever."""
    _device_blocks(leader)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store, intruder = SQLLedgerStore(url), SQLLedgerStore(url)
    try:
        follower = _follower(leader, store)
        other = LedgerApplication(intruder, leader.service.app.genesis)
        executed = other.propose([], time="2026-01-01T05:00:00Z", proposer="node-1")
        header = executed.block.header
        signature = CommitCertificate.sign(header.hash, leader.validator_key)
        other.commit(executed, CommitCertificate(header.height, header.hash.hex(), {"node-1": signature}))
        with pytest.raises(SyncError, match="another process writing this database"):
            install(follower, _certified(leader, 1))
        assert follower.halted is not None and "neither block 0 nor the block written" in follower.halted
    finally:
        store.close()
        intruder.close()


class TestDivergedState:
    @staticmethod
    def _tampered_follower(leader: Node, url: str) -> tuple[NodeService, SQLLedgerStore]:
        """A follower whose store lost the trustee's role row behind its back (then reopened)."""
        store = SQLLedgerStore(url)
        LedgerApplication(store, leader.service.app.genesis)
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM ledger_state WHERE key = :k"), {"k": f"role:{leader.trustee.did}"})
        store.close()
        store = SQLLedgerStore(url)
        return _follower(leader, store), store

    def test_a_certified_block_that_does_not_execute_here_halts_state_transfer_with_the_check_hint(
        self, leader: Node, tmp_path: Path
    ) -> None:
        """A block certified by the set in force, whose transactions are its header's, but which this
        node's (edited) state refuses, halts the node with a reason that says to run
        ``trellis node check``; before, it was refused and fetched again for ever."""
        _device_blocks(leader)
        follower, store = self._tampered_follower(leader, f"sqlite:///{tmp_path / 'tampered.db'}")
        try:
            with pytest.raises(SyncError):
                install(follower, _certified(leader, 1))
            assert follower.halted is not None
            assert "trellis node check" in follower.halted and CHECK_HINT in follower.halted
        finally:
            store.close()

    def test_a_block_consensus_committed_that_does_not_execute_here_halts_with_the_check_hint(
        self, leader: Node, tmp_path: Path
    ) -> None:
        """The same on the consensus path: the validator halts (as before) and the reason now says to
        run ``trellis node check``."""
        _device_blocks(leader)
        follower, store = self._tampered_follower(leader, f"sqlite:///{tmp_path / 'tampered.db'}")
        replica = Replica(follower, Ed25519PrivateKey.generate(), ReplicaConfig())
        try:
            (item,) = _certified(leader, 1)
            raw = encode_block(item.block.header, [request_bytes(t) for t in item.block.txns])
            replica._apply([Committed(1, raw, item.certificate)])
            assert follower.halted is not None and "consensus committed block 1" in follower.halted
            assert "trellis node check" in follower.halted
        finally:
            replica.stop()
            store.close()


class TestSoloProducer:
    @staticmethod
    def _locked(store: SQLLedgerStore, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
        """Make the store's next ``times`` appends fail as when another process holds the write lock;
        returns the heights tried."""
        append = store.append
        tried: list[int] = []

        def locked(commit: Commit) -> None:
            tried.append(commit.block.header.height)
            if len(tried) <= times:
                raise sqlite3.OperationalError("database is locked")
            append(commit)

        monkeypatch.setattr(store, "append", locked)
        return tried

    @staticmethod
    def _creation(node: Node) -> Transaction:
        device = new_actor()
        return device.txn("did.create", {"document": device.document()}, node.trustee)

    def test_a_producer_that_cannot_commit_halts_naming_the_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The solo producer tries a block its store refuses ``commit_retries`` more times, then halts
        the node with a reason naming the error (so ``serve`` stops and a supervisor restarts it);
        before, its thread died and the node kept admitting transactions it never committed."""
        store = SQLLedgerStore(f"sqlite:///{tmp_path / 'solo.db'}")
        node = make_node(store, commit_retries=2, retry_delay=0)
        tried = self._locked(store, monkeypatch, times=10)
        halted = threading.Event()
        node.service.on_halt(lambda _reason: halted.set())
        assert node.submit(self._creation(node)).status_code == 202
        node.service.start()
        try:
            assert halted.wait(15), "the node did not halt"
        finally:
            node.service.stop()
            store.close()
        assert tried == [1, 1, 1]
        assert node.service.halted is not None and "database is locked" in node.service.halted
        assert "could not make block 1 (3 attempt(s))" in node.service.halted

    def test_a_producer_whose_store_refuses_once_commits_on_the_next_try(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A block the store refuses once (a lock held a moment too long) is made on the next try,
        and the node does not halt."""
        store = SQLLedgerStore(f"sqlite:///{tmp_path / 'solo.db'}")
        node = make_node(store, retry_delay=0)
        tried = self._locked(store, monkeypatch, times=1)
        txn = self._creation(node)
        assert node.submit(txn).status_code == 202
        node.service.start()
        try:
            (status,) = node.service.wait_for([txn.id], 15)
        finally:
            node.service.stop()
            store.close()
        assert status.status == "committed" and tried == [1, 1] and node.service.halted is None

    def test_a_halted_node_refuses_transactions_saying_why(self) -> None:
        """A halted node answers a submission with 503 ``overloaded`` naming why it halted, instead
        of admitting a transaction it will never put in a block."""
        node = make_node()
        node.service.halt("block 3 could not be stored: database is locked")
        answer = node.submit(self._creation(node))
        problem = answer.get_json()
        assert answer.status_code == 503 and problem["code"] == "overloaded"
        assert "halted" in problem["detail"] and "database is locked" in problem["detail"]

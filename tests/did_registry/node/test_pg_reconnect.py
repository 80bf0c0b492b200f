"""A node on PostgreSQL goes on when the server drops its connections (a restart,
``pg_terminate_backend``, an idle timeout) while the database itself is sound: the next write and
the reads after it take fresh connections instead of halting the node as if its store were lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import make_url

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.storage import SQLLedgerStore
from did_registry.node.config import InvalidConfig, NodeConfig, build_service
from did_registry.node.service import NodeService
from did_registry.node.sync import CertifiedBlock, install
from tests.did_registry.ledger.conftest import make_genesis, new_actor
from tests.did_registry.node.conftest import make_node
from tests.services import PostgresServer


def _drop_connections(server: PostgresServer, url: str) -> int:
    """Terminate every server process of the database at ``url``: how many there were."""
    database = make_url(url).database
    with server.connect() as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_follower_installs_blocks_after_its_connections_were_dropped(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Blocks installed after every connection of the follower's database was terminated: the
    follower reaches the leader's head, not halted (it halted: StoreHeadLost, its head unreadable
    on an idle connection the server had dropped)."""
    leader = make_node()
    try:
        for _ in range(3):
            leader.onboard()
        blocks = [CertifiedBlock(*leader.service.app.store.block(h)) for h in range(1, 4)]  # type: ignore[misc]
    finally:
        leader.service.stop()
    store = SQLLedgerStore(postgres_url)
    try:
        follower = NodeService(
            LedgerApplication(store, leader.service.app.genesis),
            validator_id="observer",
            validator_key=Ed25519PrivateKey.generate(),
        )
        install(follower, blocks[:1])
        assert _drop_connections(postgres_server, postgres_url) > 0
        install(follower, blocks[1:])
        assert follower.halted is None
        assert follower.app.head == leader.service.app.head
    finally:
        store.close()


def test_a_genesis_mismatch_does_not_show_the_database_password(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """A node started on a database holding another network's chain is refused naming the database
    with its password hidden (it was printed whole)."""
    url = make_url(postgres_url).set(password="S3cretPassw0rd").render_as_string(hide_password=False)

    def config(tag: str) -> tuple[NodeConfig, Ed25519PrivateKey]:
        key, trustee = Ed25519PrivateKey.generate(), new_actor()
        genesis = tmp_path / f"genesis-{tag}.json"
        genesis.write_text(json.dumps(make_genesis(trustee, key).to_json()))
        return NodeConfig(id="node-1", port=0, database=url, key_file=tmp_path / "k", genesis=genesis), key

    first, second = config("a"), config("b")
    build_service(*first).app.store.close()
    with pytest.raises(InvalidConfig) as refused:
        build_service(*second)
    assert "another network" in str(refused.value) and "S3cretPassw0rd" not in str(refused.value)

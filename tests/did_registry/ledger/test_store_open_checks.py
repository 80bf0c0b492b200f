"""What opening a SQL ledger store refuses (a database it cannot keep a ledger in, a head that does not
match its blocks), and what the full integrity check reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from did_registry.ledger.storage import SQLLedgerStore
from did_registry.ledger.storage.integrity import CorruptStore
from did_registry.ledger.storage.sql import UnsupportedDatabase
from tests.did_registry.ledger.conftest import network_on
from tests.services import PostgresServer


@pytest.fixture
def non_utf8_database(
    request: pytest.FixtureRequest, postgres_server: PostgresServer
) -> Iterator[tuple[str, str]]:
    """A PostgreSQL database encoded ``request.param`` (LATIN1, SQL_ASCII): its URL and encoding,
    dropped after."""
    encoding: str = request.param
    name = f"enc_{encoding.lower()}"
    with postgres_server.connect() as conn:
        conn.execute(
            f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    try:
        yield postgres_server.url_for(name), encoding
    finally:
        postgres_server.drop_database(name)


class TestEncoding:
    @pytest.mark.parametrize("non_utf8_database", ["LATIN1", "SQL_ASCII"], indirect=True)
    def test_a_postgres_database_not_in_utf8_is_refused_saying_how_to_make_one(
        self, non_utf8_database: tuple[str, str], postgres_server: PostgresServer
    ) -> None:
        """A PostgreSQL database encoded LATIN1 (it cannot hold text other validators store) or
        SQL_ASCII (what initdb gives under the C locale) is refused when opened, with an
        UnsupportedDatabase naming its encoding and how to create the database in UTF8, and is left
        without the ledger's tables."""
        url, encoding = non_utf8_database
        with pytest.raises(UnsupportedDatabase) as refused:
            SQLLedgerStore(url)
        message = str(refused.value)
        assert f"encoded {encoding}, not UTF8" in message
        assert "ENCODING 'UTF8'" in message and "TEMPLATE template0" in message
        with postgres_server.connect(f"enc_{encoding.lower()}") as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)

    def test_text_in_any_script_is_stored_whatever_client_encoding_the_environment_asks_for(
        self, postgres_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The store talks UTF8 to PostgreSQL even when PGCLIENTENCODING asks for LATIN1, so a DID
        document in another script is stored (and read back) as on SQLite."""
        monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
        store = SQLLedgerStore(postgres_url)
        try:
            net = network_on(store)
            device = net.onboard()
            document = device.document()
            document["service"] = [
                {"id": f"{device.did}#s", "type": "温度センサ", "serviceEndpoint": "https://example.com/"}
            ]
            net.accept(device.txn("did.update", {"document": document}))
            stored = store.get(f"did:{device.did}")
            assert stored is not None and "温度センサ" in stored.decode()
        finally:
            store.close()


class TestHeadAtOpen:
    @pytest.mark.parametrize("offset", [-1, 1])
    def test_a_head_height_that_does_not_match_the_blocks_is_refused_at_open(
        self, store_url: str, offset: int
    ) -> None:
        """A ledger_meta height set back (or forward) behind the store's back is refused when the
        store is opened, with a CorruptStore naming the head and the blocks; before, the node started
        at the wrong height (or failed on an assertion)."""
        store = SQLLedgerStore(store_url)
        network_on(store).onboard()
        store.close()
        store = SQLLedgerStore(store_url)
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE ledger_meta SET height = height + :offset"), {"offset": offset})
        store.close()
        with pytest.raises(
            CorruptStore, match=f"blocks 0…1 \\(2 rows\\) do not match the head height {1 + offset}"
        ):
            SQLLedgerStore(store_url)

    def test_a_store_whose_head_matches_its_blocks_opens(self, store_url: str) -> None:
        """A store closed at its head opens again at that head (the check at open refuses nothing
        legitimate), as does an empty one."""
        SQLLedgerStore(store_url).close()
        store = SQLLedgerStore(store_url)
        network_on(store).onboard()
        store.close()
        again = SQLLedgerStore(store_url)
        try:
            assert again.height() == 1
        finally:
            again.close()


class TestFullCheck:
    def test_map_nodes_are_read_by_key_not_by_scanning_the_table(self, tmp_path: Path) -> None:
        """The integrity check reads the head map's nodes through ledger_node's (version, hash) key:
        no query it runs scans the table (a row-value IN list did, once per 500 nodes, so the check
        grew with the square of the ledger: 22 s at 20,000 DIDs instead of 2 s)."""
        store = SQLLedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
        net = network_on(store)
        for _ in range(3):
            net.onboard()
        statements: list[tuple[str, Any]] = []

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if "ledger_node" in statement:
                statements.append((statement, parameters))

        event.listen(store.engine, "before_cursor_execute", record)
        try:
            assert store.verify_integrity() == 3
        finally:
            event.remove(store.engine, "before_cursor_execute", record)
        plans = []
        with store.engine.connect() as conn:
            for statement, parameters in statements:
                driver = conn.connection.dbapi_connection
                assert driver is not None
                plans.append(driver.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall())
        store.close()
        assert plans  # each statement: one look-up by the key per pair, the table never scanned
        for plan in plans:
            details = [row[3] for row in plan]
            assert any("USING PRIMARY KEY" in d for d in details), details
            assert not any(d.startswith("SCAN ledger_node") for d in details), details

    def test_a_row_edited_into_nonsense_is_reported_as_corrupt(self, store_url: str) -> None:
        """A block header edited into text that is not JSON is a CorruptStore from the check (not a
        decoding error from deep inside it)."""
        store = SQLLedgerStore(store_url)
        try:
            network_on(store).onboard()
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE ledger_block SET header = 'not json' WHERE height = 1"))
            with pytest.raises(CorruptStore, match="does not read"):
                store.verify_integrity()
        finally:
            store.close()

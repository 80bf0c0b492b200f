"""A SQL ledger store says which layout its tables have (``ledger_schema``): a version of Trellis
refuses a store another version laid out rather than misread it, stamps one laid out as now before
stores were stamped, and gives an existing database its own views."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.storage import SQLLedgerStore
from did_registry.ledger.storage.models import LAYOUT_VERSION
from did_registry.ledger.storage.sql import UnsupportedDatabase
from did_registry.ledger.storage.views import VIEWS
from tests.did_registry.ledger.conftest import creates, network_on


def _sql(url: str, *statements: str) -> list[object]:
    """Run ``statements`` on the database at ``url`` in one transaction; the last one's first column."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            rows: list[object] = []
            for statement in statements:
                result = conn.execute(text(statement))
                rows = [row[0] for row in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


def _chain(url: str) -> LedgerApplication:
    """Commit a block of two DID creations on a new network in the store at ``url`` (closed after)."""
    store = SQLLedgerStore(url)
    try:
        network = network_on(store)
        network.accept(*creates(network.trustee, 2))
        return network.app
    finally:
        store.close()


def test_a_store_is_stamped_with_its_layout(store_url: str) -> None:
    """Opening a new store writes the layout these tables have."""
    SQLLedgerStore(store_url).close()
    assert _sql(store_url, "SELECT layout FROM ledger_schema WHERE id = 1") == [LAYOUT_VERSION]


def test_a_store_laid_out_by_a_later_version_is_refused_unchanged(store_url: str) -> None:
    """A store whose stamp is a later layout is refused naming both layouts (it was opened and read
    as this version's tables), and nothing in it changes."""
    _chain(store_url)
    later = LAYOUT_VERSION + 1
    _sql(store_url, f"UPDATE ledger_schema SET layout = {later}")
    before = _sql(store_url, "SELECT height FROM ledger_meta")
    with pytest.raises(UnsupportedDatabase) as refused:
        SQLLedgerStore(store_url)
    assert f"layout {later}, by a later version" in str(refused.value)
    assert f"reads layout {LAYOUT_VERSION}" in str(refused.value)
    assert _sql(store_url, "SELECT layout FROM ledger_schema") == [later]
    assert _sql(store_url, "SELECT height FROM ledger_meta") == before


def test_a_store_from_before_stamps_is_stamped_and_keeps_its_chain(store_url: str) -> None:
    """A store laid out as now but written before stores were stamped opens, gets its stamp, and its
    chain is intact."""
    written = _chain(store_url)
    _sql(store_url, "DROP TABLE ledger_schema")
    store = SQLLedgerStore(store_url)
    try:
        app = LedgerApplication(store, written.genesis)
        assert (app.height, app.head) == (written.height, written.head)
    finally:
        store.close()
    assert _sql(store_url, "SELECT layout FROM ledger_schema") == [LAYOUT_VERSION]


def test_an_existing_sqlite_database_gets_this_version_s_views(tmp_path: Path) -> None:
    """A SQLite view left as another version made it is made again as this version's when the store
    is opened (it was kept: CREATE VIEW IF NOT EXISTS)."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    SQLLedgerStore(url).close()
    name = next(iter(VIEWS))
    _sql(url, f"DROP VIEW {name}", f"CREATE VIEW {name} AS SELECT 1 AS stale")
    SQLLedgerStore(url).close()
    [definition] = _sql(url, f"SELECT sql FROM sqlite_master WHERE type = 'view' AND name = '{name}'")
    assert "stale" not in str(definition)
    assert VIEWS[name]["sqlite"].split()[0].upper() in str(definition).upper()


def test_opening_a_current_sqlite_store_writes_nothing(tmp_path: Path) -> None:
    """A store already stamped and with this version's views is opened without a write: its schema
    version stays, and it opens read-only (mode=ro), as `trellis node check` and readers need."""
    path = tmp_path / "ledger.db"
    _chain(f"sqlite:///{path}")

    def schema_version() -> int:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA schema_version").fetchone()[0])
        finally:
            conn.close()

    before = schema_version()
    SQLLedgerStore(f"sqlite:///{path}").close()
    assert schema_version() == before
    store = SQLLedgerStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        assert store.height() == 1
    finally:
        store.close()

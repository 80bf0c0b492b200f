"""Audit queries and the read-only SQL views of the SQL ledger store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from did_registry.ledger.state import decode_value
from did_registry.ledger.storage.audit import MAX_PAGE, InvalidQuery
from did_registry.ledger.storage.sql import SQLLedgerStore
from did_registry.ledger.storage.views import VIEWS
from tests.did_registry.ledger.conftest import Network, network_on
from tests.did_registry.ledger.storage_helpers import Cast, drive


@pytest.fixture
def chain(store_url: str) -> Iterator[tuple[SQLLedgerStore, Network, Cast]]:
    """A varied chain driven on a SQL store."""
    store = SQLLedgerStore(store_url, durable=False)
    net = network_on(store)
    cast = drive(net)
    yield store, net, cast
    store.close()


def _all_txns(store: SQLLedgerStore) -> list[dict[str, Any]]:
    """Every committed transaction, from the blocks themselves (what a page must agree with)."""
    out = []
    for height in range((store.height() or 0) + 1):
        found = store.block(height)
        assert found is not None
        header = found[0].header
        for index, txn in enumerate(found[0].txns):
            out.append(
                {"id": txn.id, "height": height, "index": index, "type": txn.type, "submitter": txn.submitter,
                 "time": header.time, "transaction": txn.to_json()}
            )  # fmt: skip
    return out


def _pages(store: SQLLedgerStore, cursor: str | None = None, **filters: Any) -> list[dict[str, Any]]:
    """Every page of a query (from ``cursor``), followed cursor to cursor."""
    page, cursor = store.txns(cursor=cursor, **filters)
    rows = list(page)
    while cursor is not None:
        page, cursor = store.txns(cursor=cursor, **filters)
        assert page, "a cursor is only given when more rows follow"
        rows.extend(page)
    return rows


def _names_did(row: dict[str, Any], did: str) -> bool:
    body = row["transaction"]["body"]
    return bool(row["submitter"] == did or body.get("did", body.get("issuer")) == did)


class TestTxns:
    def test_filters_match_the_blocks(self, chain: tuple[SQLLedgerStore, Network, Cast]) -> None:
        """Every filter selects exactly the transactions the blocks hold that match it, in chain order."""
        store, _, cast = chain
        everything = _all_txns(store)
        issuer, device = cast.issuer.did, cast.devices[2].did
        cases: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
            ({}, everything),
            ({"submitter": issuer}, [r for r in everything if r["submitter"] == issuer]),
            ({"type": "status_list.update"}, [r for r in everything if r["type"] == "status_list.update"]),
            ({"from_height": 5, "to_height": 9}, [r for r in everything if 5 <= r["height"] <= 9]),
            (
                {"from_time": "2026-01-02T09:00:00Z", "to_time": "2026-01-03T10:00:00Z"},
                [r for r in everything if "2026-01-02T09:00:00Z" <= r["time"] <= "2026-01-03T10:00:00Z"],
            ),
            ({"did": device}, [r for r in everything if _names_did(r, device)]),
            (
                {"did": issuer, "type": "trust.withdraw"},
                [r for r in everything if r["type"] == "trust.withdraw" and _names_did(r, issuer)],
            ),
        ]
        for filters, expected in cases:
            assert expected, filters  # every case selects something
            assert store.txns(limit=MAX_PAGE, **filters) == (expected, None), filters

    def test_did_filter_finds_what_names_it(self, chain: tuple[SQLLedgerStore, Network, Cast]) -> None:
        """A DID's transactions: its creation, its quarantine report and clearance."""
        store, _, cast = chain
        rows, _ = store.txns(did=cast.devices[2].did)
        assert [r["type"] for r in rows] == ["did.create", "quarantine.report", "quarantine.clear"]

    @pytest.mark.parametrize("newest_first", [False, True])
    def test_pages_walk_the_whole_result(
        self, chain: tuple[SQLLedgerStore, Network, Cast], newest_first: bool
    ) -> None:
        """Pages of 3 followed by cursor give every row once, in order (newest first when asked)."""
        store, _, _ = chain
        expected = _all_txns(store)
        if newest_first:
            expected.reverse()
        assert _pages(store, limit=3, newest_first=newest_first) == expected
        assert len(expected) > 9

    def test_cursor_pages_stay_stable_while_blocks_append(
        self, chain: tuple[SQLLedgerStore, Network, Cast]
    ) -> None:
        """A cursor taken before new blocks still continues exactly after the last row it saw."""
        store, net, cast = chain
        first, cursor = store.txns(limit=4)
        net.accept(cast.issuer.txn("status_list.create", {"list": "later", "purpose": "revocation"}))
        rest = _pages(store, cursor=cursor, limit=4)
        assert first + rest == _all_txns(store)

    @pytest.mark.parametrize(
        ("filters", "message"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": MAX_PAGE + 1}, "limit"),
            ({"cursor": "abc"}, "cursor"),
            ({"cursor": "1.2.3"}, "cursor"),
            ({"cursor": "01.2"}, "cursor"),
            ({"type": "did.explode"}, "transaction type"),
            ({"from_height": -1}, "from_height"),
            ({"to_height": "9"}, "to_height"),
        ],
    )
    def test_bad_queries_are_refused(
        self, chain: tuple[SQLLedgerStore, Network, Cast], filters: dict[str, Any], message: str
    ) -> None:
        """A bad limit, cursor, type or height is an InvalidQuery (a ValueError) naming it."""
        store, _, _ = chain
        with pytest.raises(InvalidQuery, match=message):
            store.txns(**filters)
        assert issubclass(InvalidQuery, ValueError)


class TestHistoryAndBlocks:
    def test_did_history_holds_every_version(self, chain: tuple[SQLLedgerStore, Network, Cast]) -> None:
        """A DID's history lists each version as the state's didv: records have it."""
        store, _, cast = chain
        for actor, versions in ((cast.devices[0], 2), (cast.devices[1], 2), (cast.devices[3], 1)):
            history = store.did_history(actor.did)
            assert [v["version"] for v in history] == list(range(1, versions + 1))
            for entry in history:
                raw = store.get(f"didv:{actor.did}:{entry['version']}")
                assert raw is not None
                record = decode_value(raw)
                assert entry["document"] == record["document"] and entry["txn"] == record["txn"]
                assert (entry["time"], entry["deactivated"]) == (record["updated"], record["deactivated"])
                assert entry["height"] == record["height"]
        assert store.did_history(cast.devices[1].did)[-1]["deactivated"] is True
        assert store.did_history("did:trellis:testnet:unknown") == []

    def test_blocks_page_gives_headers_and_certificates(
        self, chain: tuple[SQLLedgerStore, Network, Cast]
    ) -> None:
        """A block page carries each block's hash, header and certificate."""
        store, _, _ = chain
        page = store.blocks(3, 4)
        assert [b["height"] for b in page] == [3, 4, 5, 6]
        for item in page:
            found = store.block(item["height"])
            assert found is not None and found[1] is not None
            assert item["header"] == found[0].header.to_json() and item["hash"] == found[0].header.hash.hex()
            assert item["certificate"] == found[1].to_json()
        assert store.blocks(0, 1)[0]["certificate"] is None
        with pytest.raises(InvalidQuery, match="from_height"):
            store.blocks(-1)


def _view(store: SQLLedgerStore, name: str, order: str) -> list[tuple[Any, ...]]:
    """A view's rows, in ``order`` (ties broken in Python, so two reads compare equal)."""
    with store.engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(f"SELECT * FROM {name} ORDER BY {order}"))]
    return sorted(rows, key=repr) if order == "1" else rows


class TestViews:
    def test_devices_per_issuer(self, chain: tuple[SQLLedgerStore, Network, Cast]) -> None:
        """Each endorser with the DIDs it brought on and how many are still active."""
        store, _, _ = chain
        records = [decode_value(raw) for key, raw in store.state_items("did:")]
        endorsed = [r for r in records if r["endorser"] != r["document"]["id"]]
        devices = Counter(r["endorser"] for r in endorsed)
        active = Counter(r["endorser"] for r in endorsed if not r["deactivated"])
        expected = sorted((e, n, active[e]) for e, n in devices.items())
        assert _view(store, "v_devices_per_issuer", "endorser") == expected
        assert len(expected) == 2  # the trustee's and the issuer's

    def test_revocations_over_time(self, chain: tuple[SQLLedgerStore, Network, Cast]) -> None:
        """Status list updates per day and list purpose, with the indices set and cleared."""
        store, _, _ = chain
        totals: dict[tuple[str, str], list[int]] = {}
        for row in _all_txns(store):
            if row["type"] == "status_list.update":
                body = row["transaction"]["body"]
                raw = store.get(f"status:{row['submitter']}:{body['list']}")
                assert raw is not None
                key = (row["time"][:10], decode_value(raw)["purpose"])
                counts = totals.setdefault(key, [0, 0, 0])
                counts[0] += 1
                counts[1] += len(body.get("set", []))
                counts[2] += len(body.get("clear", []))
        expected = sorted((*key, *counts) for key, counts in totals.items())
        assert _view(store, "v_revocations_over_time", "day, purpose") == expected
        assert len({day for day, *_ in expected}) == 2

    def test_did_history_view(self, chain: tuple[SQLLedgerStore, Network, Cast]) -> None:
        """Every version of every DID, with the hash of the block that wrote it."""
        store, _, cast = chain
        rows = _view(store, "v_did_history", "did, version")
        dids = sorted({r[0] for r in rows})
        expected = []
        for did in dids:
            for v in store.did_history(did):
                found = store.block(v["height"])
                assert found is not None
                block_hash = found[0].header.hash.hex()
                expected.append(
                    (did, v["version"], v["time"], v["height"], v["txn"], v["deactivated"], block_hash)
                )
        assert [(*r[:5], bool(r[5]), r[6]) for r in rows] == expected
        assert cast.devices[0].did in dids and len(rows) == len(dids) + 2  # two DIDs have a second version

    @pytest.mark.parametrize("view", sorted(VIEWS))
    @pytest.mark.parametrize("statement", ["DELETE FROM {}", "UPDATE {} SET {} = NULL"])
    def test_views_cannot_be_written(
        self, chain: tuple[SQLLedgerStore, Network, Cast], view: str, statement: str
    ) -> None:
        """No view writes through to the ledger tables."""
        store, _, _ = chain
        with store.engine.connect() as conn:
            column = next(iter(conn.execute(text(f"SELECT * FROM {view}")).keys()))
        before = _view(store, view, "1")
        with pytest.raises(DBAPIError), store.engine.begin() as conn:
            conn.execute(text(statement.format(view, column)))
        assert _view(store, view, "1") == before


def test_views_are_documented() -> None:
    """docs/sql-views.md documents every view, with sqlite3 and psql examples."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "sql-views.md").read_text()
    for view in VIEWS:
        assert f"`{view}`" in doc and f"FROM {view}" in doc
    assert "sqlite3 " in doc and "psql " in doc


def test_a_body_member_the_rules_do_not_read_names_no_subject(store_url: str) -> None:
    """A did.update may carry members its rules ignore, e.g. a 3,000-character ``did``: its block
    commits on every backend (PostgreSQL could not index such a subject and halted at that block),
    and the transaction is about its submitter alone."""
    store = SQLLedgerStore(store_url, durable=False)
    try:
        net = network_on(store)
        device = net.onboard()
        stray = "did:example:" + "x" * 3000
        update = device.txn("did.update", {"document": device.document(), "did": stray})
        net.accept(update)
        assert store.height() == 2 and store.locate(update.id) is not None
        assert [row["id"] for row in _pages(store, did=stray)] == []
        assert update.id in [row["id"] for row in _pages(store, did=device.did)]
    finally:
        store.close()

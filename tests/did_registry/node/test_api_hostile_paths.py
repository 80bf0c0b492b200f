"""Hostile paths and query strings: U+0000 (NUL) anywhere, and route integers in non-ASCII digits.

NUL is refused by one guard before any view, so no store sees it: PostgreSQL text cannot hold one,
and a query with one used to fail as a 500 with a logged traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from did_registry.ledger.storage.sql import SQLLedgerStore
from tests.did_registry.node.conftest import PROBLEM_JSON, RESOLUTION_TYPE, Node, make_node

NUL_PATHS = [
    "/trust-registry/did:x%00",
    "/quarantine/did:x%00",
    "/status-lists/did:x%00/l",
    "/status-lists/did:x%00/l/credential",
    "/status-lists?issuer=did:x%00",
    "/trust-registry?after=%00",
    "/quarantine?after=a%00",
    "/audit/txns?did=a%00",
    "/audit/txns?submitter=a%00",
    "/audit/txns?type=did.create&x%00=1",
    "/proofs/state?key=a%00",
    "/txns/a%00",
    "/no/such/route%00",
]
"""A NUL in each route's path parameters and query parameters (values and names)."""


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    """A node on SQLite and on PostgreSQL, whose reads query the database."""
    if request.param == "sqlite":
        store = SQLLedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}", durable=False)
    else:
        store = SQLLedgerStore(request.getfixturevalue("postgres_url"), durable=False)
    made = make_node(store)
    made.onboard()
    yield made
    made.service.stop()
    store.close()


class TestNul:
    @pytest.mark.parametrize("path", NUL_PATHS)
    def test_a_nul_in_the_path_or_query_is_a_400_problem(
        self, sql_node: Node, path: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A NUL anywhere in the path or query is refused as ``malformed`` before any store sees it,
        and nothing is logged as an error."""
        response = sql_node.client.get(path)
        assert response.status_code == 400 and response.mimetype == PROBLEM_JSON, response.get_data()
        assert response.get_json()["code"] == "malformed"
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]

    @pytest.mark.parametrize(
        ("path", "error"),
        [
            ("/1.0/identifiers/did:trellis:testnet:%00", "invalidDid"),
            ("/1.0/identifiers/did:trellis:testnet:abc?versionTime=%00", "invalidOptions"),
        ],
    )
    def test_the_resolver_path_answers_a_nul_as_a_resolution_result(
        self, sql_node: Node, path: str, error: str
    ) -> None:
        """On the resolver path, the refusal is a DID Resolution result, as that path's errors are."""
        response = sql_node.client.get(path)
        assert response.status_code == 400 and response.content_type == RESOLUTION_TYPE
        assert response.get_json()["didResolutionMetadata"]["error"] == error


class TestRouteIntegers:
    @pytest.mark.parametrize(
        "height",
        ["\u0661", "\uff10", "\u0967", "1\u0661", "1" * 19],
        ids=["arabic", "fullwidth", "devanagari", "mixed", "19"],
    )
    def test_a_height_in_other_digits_matches_no_route(self, node: Node, height: str) -> None:
        """``/blocks/{height}`` takes 1 to 18 ASCII digits only, as the query parameters do: a
        height in other Unicode digits (or too long) is no block's path."""
        node.onboard()
        response = node.client.get(f"/blocks/{height}")
        assert response.status_code == 404 and response.get_json()["code"] == "not_found"

    def test_a_height_in_ascii_digits_is_served(self, node: Node) -> None:
        """ASCII digits, leading zeros included, name the block as before."""
        node.onboard()
        for path in ("/blocks/1", "/blocks/01"):
            assert node.client.get(path).get_json()["block"]["header"]["height"] == 1

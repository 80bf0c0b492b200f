"""Whole numbers in paths (``<int:...>``: operator and token ids, block heights) are ASCII digits within
the range their column or the ledger holds; any other segment is no route (404), never a 500 from the
database, and never another row's number. Every test runs on SQLite and on the tests' throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask
from sqlmodel import select
from werkzeug.routing.converters import NumberConverter

from tests.web.support import Browser, audit_actions, db, operator_named
from web.config import PortalConfig
from web.converters import MAX_ROUTE_INT, MAX_ROW_ID, RowIdConverter
from web.ledger_pages import MAX_HEIGHT
from web.models import ApiToken, Operator, Role

ADMIN_POSTS = ["/operators/{}/disable", "/operators/{}/enable", "/operators/{}/tokens", "/tokens/{}/revoke"]
TOO_LARGE = [str(MAX_ROW_ID + 1), str(MAX_ROUTE_INT + 1), "9" * 20]


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> PortalConfig:
    """The portal's configuration on an SQLite file, or on the tests' throwaway PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return PortalConfig(instance_path=tmp_path / "instance", database_url=url, password_parameters=CHEAPEST)


def _tokens(app: Flask) -> list[ApiToken]:
    with db(app) as session:
        return list(session.exec(select(ApiToken)).all())


@pytest.mark.parametrize("number", TOO_LARGE)
@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_an_id_beyond_the_id_columns_is_a_404_and_changes_nothing(
    app: Flask, signed_in: Callable[[Role], Browser], path: str, number: str
) -> None:
    """An admin's POST naming an id beyond the id columns (32 bits on PostgreSQL, 64 on SQLite) answers
    404 (it was a 500), and writes nothing."""
    browser = signed_in(Role.ADMIN)
    before = audit_actions(app)
    assert browser.post(path.format(number), {"label": "x"}).status_code == 404
    assert audit_actions(app) == before and _tokens(app) == []


@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_the_largest_id_is_looked_up_and_not_found(
    app: Flask, signed_in: Callable[[Role], Browser], path: str
) -> None:
    """2**31 - 1 reaches the database, which has no such row: 404."""
    assert signed_in(Role.ADMIN).post(path.format(MAX_ROW_ID), {"label": "x"}).status_code == 404


@pytest.mark.parametrize(
    "digit",
    ["\u0660", "\u0966", "\uff10", "\u00b2"],
    ids=["arabic", "devanagari", "fullwidth", "superscript"],
)
def test_digits_that_are_not_ascii_name_no_operator(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator], digit: str
) -> None:
    """A non-ASCII digit of the operator's id (``/operators/٢/disable`` for id 2) is no route: 404, and the
    operator stays enabled (werkzeug's own converter read it as 2)."""
    target = accounts[Role.OPERATOR].id
    assert target is not None and target < 10
    same = chr(ord(digit) + target) if digit != "\u00b2" else digit
    assert signed_in(Role.ADMIN).post(f"/operators/{same}/disable").status_code == 404
    operator = operator_named(app, "operator")
    assert operator is not None and not operator.disabled


@pytest.mark.parametrize("height", [MAX_HEIGHT + 1, MAX_ROUTE_INT + 1])
def test_a_block_height_beyond_the_ledger_s_is_a_404(
    signed_in: Callable[[Role], Browser], height: int
) -> None:
    """The block page takes heights up to 2**53 - 1 (the ledger's); above, there is no such page."""
    assert signed_in(Role.AUDITOR).get(f"/ledger/blocks/{height}").status_code == 404


def test_a_block_height_beyond_an_id_still_routes(signed_in: Callable[[Role], Browser]) -> None:
    """A height above the ids' 32 bits reaches the block page (503 here: no node is configured)."""
    assert signed_in(Role.AUDITOR).get(f"/ledger/blocks/{MAX_ROW_ID + 1}").status_code == 503


def test_every_number_in_a_route_uses_the_portal_s_converter(app: Flask) -> None:
    """No route of the portal takes a number through werkzeug's own converters (Unicode digits, any size)."""
    converters = [c for rule in app.url_map.iter_rules() for c in rule._converters.values()]
    assert any(isinstance(c, RowIdConverter) for c in converters)
    assert not [c for c in converters if isinstance(c, NumberConverter)]

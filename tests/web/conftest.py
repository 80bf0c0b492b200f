"""Portal fixtures: an app on a tmp_path SQLite database, accounts of every role, and a signed-in browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask

from tests.web.support import PASSWORD, Browser, db, portal
from web.accounts import create_operator, issue_token
from web.app import create_app
from web.config import PortalConfig
from web.models import Operator, Role


@pytest.fixture
def config(tmp_path: Path) -> PortalConfig:
    """A portal configuration in a fresh instance folder, with the cheapest Argon2id cost (tests only)."""
    return PortalConfig(instance_path=tmp_path / "instance", password_parameters=CHEAPEST)


@pytest.fixture
def app(config: PortalConfig) -> Iterator[Flask]:
    """A portal app; its database engine is closed afterwards."""
    app = create_app(config)
    yield app
    portal(app).engine.dispose()


@pytest.fixture
def make_operator(app: Flask) -> Callable[..., Operator]:
    """Create an operator directly in the database (password :data:`PASSWORD`)."""

    def make(username: str, role: Role = Role.OPERATOR, password: str = PASSWORD) -> Operator:
        with db(app) as session:
            return create_operator(session, portal(app).passwords, username, password, role)

    return make


@pytest.fixture
def accounts(make_operator: Callable[..., Operator]) -> dict[Role, Operator]:
    """One operator of each role: ``admin``, ``operator`` and ``auditor``, named after their role."""
    return {role: make_operator(role.value, role) for role in Role}


@pytest.fixture
def browser(app: Flask) -> Browser:
    """A browser that is not signed in."""
    return Browser(app.test_client())


@pytest.fixture
def signed_in(app: Flask, accounts: dict[Role, Operator]) -> Callable[[Role], Browser]:
    """A browser signed in as the fixture account of a role."""

    def sign_in(role: Role) -> Browser:
        browser = Browser(app.test_client())
        response = browser.login(role.value)
        assert response.status_code == 302, response.text
        return browser

    return sign_in


@pytest.fixture
def token_of(app: Flask, accounts: dict[Role, Operator]) -> Callable[[Role], str]:
    """A fresh API token of the fixture account of a role."""

    def issue(role: Role) -> str:
        operator_id = accounts[role].id
        assert operator_id is not None
        with db(app) as session:
            return issue_token(session, operator_id, "test")[1]

    return issue

"""Helpers of the portal tests: the fixture password, a CSRF-aware browser, database access."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session, col, select
from werkzeug.test import TestResponse

from did_registry.client import LedgerUnavailable
from web.models import AuditEntry, Operator
from web.portal import EXTENSION, Portal

PASSWORD = "correct horse battery staple"
"""The password every fixture account has."""


class Browser:
    """A test client that signs in and sends each form with the session's CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def csrf(self) -> str:
        """The session's CSRF token (a page is fetched first when the session has none yet)."""
        with self.client.session_transaction() as session:
            token = session.get("csrf_token")
        if token is None:
            self.client.get("/login")
            with self.client.session_transaction() as session:
                token = session["csrf_token"]
        assert isinstance(token, str)
        return token

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        """GET ``url``."""
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> TestResponse:
        """POST a form to ``url``, with the CSRF token unless ``csrf`` is false."""
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf()
        return self.client.post(url, data=form)

    def login(self, username: str, password: str = PASSWORD) -> TestResponse:
        """Submit the sign-in form."""
        return self.post("/login", {"username": username, "password": password})


def portal(app: Flask) -> Portal:
    """The app's :class:`Portal`."""
    held = app.extensions[EXTENSION]
    assert isinstance(held, Portal)
    return held


def db(app: Flask) -> Session:
    """A session on the app's database."""
    return Session(portal(app).engine, expire_on_commit=False)


def audit_actions(app: Flask) -> list[tuple[str, str, str | None]]:
    """Every audit entry as (actor, action, target), oldest first."""
    with db(app) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
    return [(row.actor, row.action, row.target) for row in rows]


def operator_named(app: Flask, username: str) -> Operator | None:
    """The operator ``username`` as stored now."""
    with db(app) as session:
        return session.exec(select(Operator).where(Operator.username == username)).first()


def fail_third_submit(monkeypatch: Any, ledger: Any, *, admitted: bool = False) -> Callable[..., Any]:
    """Make ``ledger.submit`` raise LedgerUnavailable on its third call (after the node admitted the
    chunk when ``admitted``: its answer lost); return the real ``submit`` to put back."""
    submit, calls = ledger.submit, []

    def third_fails(txns: Any) -> Any:
        calls.append(1)
        if len(calls) != 3:
            return submit(txns)
        if admitted:
            submit(txns)
        raise LedgerUnavailable("the answer was lost" if admitted else "no node answered")

    monkeypatch.setattr(ledger, "submit", third_fails)
    return cast(Callable[..., Any], submit)


def old_database_url(tmp_path: Path, request: pytest.FixtureRequest, database: str) -> str:
    """A database to make as an earlier version would have: a SQLite file, or the throwaway PostgreSQL."""
    if database == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url

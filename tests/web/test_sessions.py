"""Sessions kept on the server: signing out ends a session wherever its cookie was copied, a password
change or disabling ends them all, idle ones expire and each operator keeps a bounded number. Every
test runs on SQLite and on the tests' throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask
from sqlmodel import col, select

from tests.web.support import PASSWORD, Browser, db, portal
from web.app import create_app
from web.config import PortalConfig
from web.models import Operator, OperatorSession, Role


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> PortalConfig:
    """The portal's configuration on an SQLite file, or on the tests' throwaway PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return PortalConfig(instance_path=tmp_path / "instance", database_url=url, password_parameters=CHEAPEST)


def _copy_of(app: Flask, browser: Browser) -> Browser:
    """Another browser holding a copy of ``browser``'s session cookie (as a thief would)."""
    copy = Browser(app.test_client())
    with browser.client.session_transaction() as session:
        cookie = dict(session)
    with copy.client.session_transaction() as session:
        session.update(cookie)
    return copy


def _age_sessions(app: Flask, username: str, by: timedelta) -> None:
    """Move the begin and last use of ``username``'s sessions back by ``by`` (time passing)."""
    with db(app) as session:
        operator = session.exec(select(Operator).where(Operator.username == username)).one()
        rows = session.exec(select(OperatorSession).where(col(OperatorSession.operator_id) == operator.id))
        for row in rows.all():
            row.created -= by
            row.last_seen -= by
            session.add(row)
        session.commit()


def test_a_cookie_copied_before_sign_out_is_refused_after_it(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """Signing out ends the session on the server: a copy of its cookie no longer signs anyone in."""
    browser = signed_in(Role.OPERATOR)
    copy = _copy_of(app, browser)
    assert copy.get("/").status_code == 200
    assert browser.post("/logout").status_code == 302
    assert copy.get("/").status_code == 302  # to the sign-in page


def test_signing_out_leaves_the_operator_s_other_sessions(signed_in: Callable[[Role], Browser]) -> None:
    """Signing out on one device ends that session only: the same operator's session elsewhere goes on."""
    laptop, phone = signed_in(Role.OPERATOR), signed_in(Role.OPERATOR)
    assert laptop.post("/logout").status_code == 302
    assert phone.get("/").status_code == 200
    assert laptop.get("/").status_code == 302


def test_a_cookie_copied_before_a_password_change_is_refused_after_it(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """Changing the password ends every earlier session, copies included; the changer's browser goes on."""
    browser = signed_in(Role.OPERATOR)
    copy = _copy_of(app, browser)
    new = "a brand new passphrase"
    assert browser.post("/password", {"current": PASSWORD, "new": new, "confirm": new}).status_code == 200
    assert copy.get("/").status_code == 302
    assert browser.get("/").status_code == 200


def test_disabling_an_operator_ends_their_sessions_for_good(
    signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """A session of a disabled operator stays ended once the account is enabled again."""
    admin, victim = signed_in(Role.ADMIN), signed_in(Role.OPERATOR)
    operator_id = accounts[Role.OPERATOR].id
    assert admin.post(f"/operators/{operator_id}/disable").status_code == 303
    assert admin.post(f"/operators/{operator_id}/enable").status_code == 303
    assert victim.get("/").status_code == 302


def test_signing_in_again_in_the_same_browser_ends_its_earlier_session(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """Signing in anew replaces the browser's session: a copy of the earlier cookie stops working."""
    browser = signed_in(Role.OPERATOR)
    copy = _copy_of(app, browser)
    assert browser.login("auditor").status_code == 302
    assert copy.get("/").status_code == 302
    assert browser.get("/").status_code == 200


def test_an_operator_keeps_at_most_sessions_per_operator_sessions(
    config: PortalConfig, accounts: dict[Role, Operator]
) -> None:
    """Signing in once more than ``sessions_per_operator`` allows ends the least recently used session."""
    app = create_app(replace(config, sessions_per_operator=3))
    try:
        browsers = [Browser(app.test_client()) for _ in range(4)]
        for browser in browsers:
            assert browser.login("operator").status_code == 302
        assert [browser.get("/").status_code for browser in browsers] == [302, 200, 200, 200]
    finally:
        portal(app).engine.dispose()


def test_a_session_idle_past_its_lifetime_is_refused(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """A session unused for longer than the session lifetime (8 hours) ends on the server, whatever
    the cookie says."""
    browser = signed_in(Role.OPERATOR)
    _age_sessions(app, "operator", timedelta(hours=8, seconds=1))
    assert browser.get("/").status_code == 302


def test_a_session_in_use_outlives_its_lifetime_since_sign_in(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """The lifetime counts from the last use, not the sign-in: a session used every 7 hours goes on."""
    browser = signed_in(Role.OPERATOR)
    for _ in range(3):
        _age_sessions(app, "operator", timedelta(hours=7))
        assert browser.get("/").status_code == 200


def test_sessions_idle_past_their_lifetime_are_deleted(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """The server forgets expired sessions: the next sign-in, by anyone, deletes them."""
    signed_in(Role.OPERATOR)
    _age_sessions(app, "operator", timedelta(hours=8, seconds=1))
    signed_in(Role.AUDITOR)
    with db(app) as session:
        left = session.exec(
            select(OperatorSession).where(col(OperatorSession.operator_id) == accounts[Role.OPERATOR].id)
        ).all()
    assert left == []


@pytest.mark.parametrize("value", [0, -1])
def test_sessions_per_operator_must_be_positive(tmp_path: Path, value: int) -> None:
    """A bound below one would refuse every sign-in: the configuration is refused when made."""
    with pytest.raises(ValueError, match="sessions_per_operator"):
        PortalConfig(instance_path=tmp_path, sessions_per_operator=value)

"""Signing in and out, the login rate limit, and changing one's password."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlmodel import select

from tests.web.support import PASSWORD, Browser, audit_actions, db, operator_named, portal
from web.accounts import RESERVED_USERNAMES
from web.models import LoginFailure, Operator, Role


def test_sign_in_succeeds_and_opens_the_dashboard(browser: Browser, accounts: dict[Role, Operator]) -> None:
    """The right password signs in and the dashboard names the operator and role."""
    response = browser.login("operator")
    assert response.status_code == 302
    assert response.location == "/"
    page = browser.get("/")
    assert page.status_code == 200
    assert "Signed in as <strong>operator</strong> (operator)" in page.text


def test_sign_in_is_audited(app: Flask, browser: Browser, accounts: dict[Role, Operator]) -> None:
    """A successful sign-in writes an audit entry."""
    browser.login("auditor")
    assert ("auditor", "auth.login", "auditor") in audit_actions(app)


@pytest.mark.parametrize(("username", "password"), [("operator", "wrong password!"), ("nobody", PASSWORD)])
def test_sign_in_failure_says_the_same_for_wrong_password_and_unknown_name(
    browser: Browser, accounts: dict[Role, Operator], username: str, password: str
) -> None:
    """A wrong password and an unknown username get the same 401 answer and no session."""
    response = browser.login(username, password)
    assert response.status_code == 401
    assert "The username or password is not correct" in response.text
    assert browser.get("/").status_code == 302


def test_a_disabled_operator_cannot_sign_in(
    app: Flask, browser: Browser, accounts: dict[Role, Operator]
) -> None:
    """The right password of a disabled account is refused."""
    with db(app) as session:
        operator = session.get(Operator, accounts[Role.OPERATOR].id)
        assert operator is not None
        operator.disabled = True
        session.add(operator)
        session.commit()
    assert browser.login("operator").status_code == 401


def test_a_stranger_is_sent_to_sign_in_and_back(browser: Browser, accounts: dict[Role, Operator]) -> None:
    """A page asked for before signing in is where the sign-in leads."""
    response = browser.get("/audit?before=5")
    assert response.status_code == 302
    assert response.location == "/login?next=/audit?before%3D5"
    browser.client.get(response.location)
    signed = browser.client.post(
        response.location, data={"username": "admin", "password": PASSWORD, "csrf_token": browser.csrf()}
    )
    assert signed.location == "/audit?before=5"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "javascript:alert(1)",
        "/x\r\nSet-Cookie: a=b",
        "/\\evil.example",
    ],
)
def test_sign_in_never_redirects_off_site(
    browser: Browser, accounts: dict[Role, Operator], target: str
) -> None:
    """A ``next`` that leaves the portal, or holds a control character (urlsplit drops them, and a
    header refuses them: it answered 500), is ignored: the dashboard is shown instead."""
    browser.get("/login")
    response = browser.client.post(
        "/login", query_string={"next": target},
        data={"username": "admin", "password": PASSWORD, "csrf_token": browser.csrf()},
    )  # fmt: skip
    assert response.location == "/"


def test_five_failures_then_429_with_retry_after(browser: Browser, accounts: dict[Role, Operator]) -> None:
    """After 5 failed sign-ins for one name from one address, the 6th attempt from there, even with the
    right password, gets 429."""
    for _ in range(5):
        assert browser.login("operator", "wrong password!").status_code == 401
    response = browser.login("operator")
    assert response.status_code == 429
    retry = int(response.headers["Retry-After"])
    assert 0 < retry <= 15 * 60
    assert "Too many failed sign-ins" in response.text
    assert browser.get("/").status_code == 302


def test_the_limit_counts_per_client_address(app: Flask, accounts: dict[Role, Operator]) -> None:
    """Failures against different names from one address add up; another address is not limited."""
    attacker = Browser(app.test_client())
    for name in ("a1", "a2", "a3", "a4", "a5"):
        attacker.login(name, "wrong password!")
    assert attacker.login("operator").status_code == 429
    other = Browser(app.test_client())
    other.client.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert other.login("operator").status_code == 302


def test_the_limit_lifts_when_failures_leave_the_window(
    app: Flask, browser: Browser, accounts: dict[Role, Operator]
) -> None:
    """Once the failures are older than the window, signing in works again."""
    for _ in range(5):
        browser.login("operator", "wrong password!")
    assert browser.login("operator").status_code == 429
    with db(app) as session:
        for row in session.exec(select(LoginFailure)).all():
            row.at -= timedelta(minutes=15, seconds=1)
            session.add(row)
        session.commit()
    assert browser.login("operator").status_code == 302


def test_sign_out_ends_the_session(signed_in: Callable[[Role], Browser]) -> None:
    """After signing out, pages send the browser to sign in again."""
    browser = signed_in(Role.OPERATOR)
    assert browser.post("/logout").status_code == 302
    assert browser.get("/").status_code == 302


def test_sign_out_needs_post(signed_in: Callable[[Role], Browser]) -> None:
    """A link (GET) cannot sign anyone out."""
    browser = signed_in(Role.OPERATOR)
    assert browser.get("/logout").status_code == 405
    assert browser.get("/").status_code == 200


def test_change_password(app: Flask, signed_in: Callable[[Role], Browser]) -> None:
    """The new password works, the old one no longer does, and the change is audited."""
    browser = signed_in(Role.OPERATOR)
    new = "a brand new passphrase"
    response = browser.post("/password", {"current": PASSWORD, "new": new, "confirm": new})
    assert response.status_code == 200
    assert "Your password was changed" in response.text
    assert browser.get("/").status_code == 200  # this session goes on
    fresh = Browser(app.test_client())
    assert fresh.login("operator", PASSWORD).status_code == 401
    assert fresh.login("operator", new).status_code == 302
    assert ("operator", "auth.password_change", "operator") in audit_actions(app)


def test_change_password_ends_other_sessions(app: Flask, signed_in: Callable[[Role], Browser]) -> None:
    """A session opened before the change is signed out at its next request."""
    here, elsewhere = signed_in(Role.OPERATOR), signed_in(Role.OPERATOR)
    new = "a brand new passphrase"
    here.post("/password", {"current": PASSWORD, "new": new, "confirm": new})
    assert elsewhere.get("/").status_code == 302


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"current": "not my password", "new": "long enough pass", "confirm": "long enough pass"},
            "not correct",
        ),
        ({"current": PASSWORD, "new": "short", "confirm": "short"}, "at least 12"),
        ({"current": PASSWORD, "new": "long enough pass", "confirm": "long enough pazz"}, "not the same"),
    ],
)
def test_a_refused_password_change_says_why_and_changes_nothing(
    app: Flask, signed_in: Callable[[Role], Browser], form: dict[str, str], message: str
) -> None:
    """Bad input re-shows the form with the reason (400) and keeps the old hash."""
    before = operator_named(app, "operator")
    browser = signed_in(Role.OPERATOR)
    response = browser.post("/password", form)
    assert response.status_code == 400
    assert message in response.text
    assert "Nothing was changed" in response.text
    after = operator_named(app, "operator")
    assert before is not None and after is not None
    assert after.password_hash == before.password_hash


def test_a_disabled_operator_s_session_ends(app: Flask, signed_in: Callable[[Role], Browser]) -> None:
    """Disabling an account ends its open sessions at their next request."""
    browser = signed_in(Role.OPERATOR)
    with db(app) as session:
        operator = session.exec(select(Operator).where(Operator.username == "operator")).one()
        operator.disabled = True
        session.add(operator)
        session.commit()
    assert browser.get("/").status_code == 302


def test_guesses_sent_together_are_checked_no_more_than_the_limit(
    app: Flask, accounts: dict[Role, Operator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight wrong passwords posted at the same moment, three times over: at most five are checked
    (answered 401); the others are refused unchecked (429). Each check takes 50 ms, as Argon2 at the
    portal's cost does (the tests' cheap hashing would leave no time for the requests to overlap)."""
    passwords = portal(app).passwords
    check = passwords.verify

    def slow_check(stored: str, password: str) -> bool:
        time.sleep(0.05)
        return check(stored, password)

    monkeypatch.setattr(passwords, "verify", slow_check)
    browsers = [Browser(app.test_client()) for _ in range(8)]
    tokens = [browser.csrf() for browser in browsers]
    answers: list[int] = []
    for round_ in range(3):
        start = threading.Barrier(len(browsers))

        def guess(
            browser: Browser, token: str, start: threading.Barrier = start, round_: int = round_
        ) -> None:
            start.wait()
            form = {"username": "operator", "password": f"wrong guess {round_}!!", "csrf_token": token}
            answers.append(browser.client.post("/login", data=form).status_code)

        threads = [threading.Thread(target=guess, args=pair) for pair in zip(browsers, tokens, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(answers) == 24 and answers.count(401) <= 5
    assert set(answers) == {401, 429}


def test_wrong_current_passwords_are_limited_like_sign_ins(signed_in: Callable[[Role], Browser]) -> None:
    """Five wrong current passwords on the password page, then even the right one is refused (429)."""
    browser = signed_in(Role.OPERATOR)
    change = {"new": "a brand new passphrase 42", "confirm": "a brand new passphrase 42"}
    for _ in range(5):
        assert browser.post("/password", {"current": "wrong password!", **change}).status_code == 400
    refused = browser.post("/password", {"current": PASSWORD, **change})
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert browser.login("operator", PASSWORD).status_code == 302  # the password was not changed


def test_a_right_current_password_does_not_count_against_the_limit(
    signed_in: Callable[[Role], Browser],
) -> None:
    """Refusals for the new password (too short, not confirmed) are not guesses: they never lock one out."""
    browser = signed_in(Role.OPERATOR)
    for _ in range(6):
        assert (
            browser.post("/password", {"current": PASSWORD, "new": "short", "confirm": "short"}).status_code
            == 400
        )
    change = {"current": PASSWORD, "new": "a brand new passphrase 42", "confirm": "a brand new passphrase 42"}
    assert browser.post("/password", change).status_code == 200


def test_disabling_an_account_ends_its_sessions_for_good(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """A session (or a copy of its cookie) made before the account was disabled stays ended after the
    account is enabled again; signing in anew works."""
    admin, victim = signed_in(Role.ADMIN), signed_in(Role.OPERATOR)
    copy = Browser(app.test_client())
    with victim.client.session_transaction() as session:
        cookie = dict(session)
    with copy.client.session_transaction() as session:
        session.update(cookie)
    operator_id = accounts[Role.OPERATOR].id
    assert admin.post(f"/operators/{operator_id}/disable").status_code in (200, 303)
    assert admin.post(f"/operators/{operator_id}/enable").status_code in (200, 303)
    assert copy.get("/enrol").status_code == 302  # to the sign-in page
    assert Browser(app.test_client()).login("operator").status_code == 302


@pytest.mark.parametrize("name", sorted(RESERVED_USERNAMES))
def test_the_audit_log_s_own_actor_names_are_not_usernames(
    signed_in: Callable[[Role], Browser], app: Flask, name: str
) -> None:
    answer = signed_in(Role.ADMIN).post(
        "/operators", {"username": name, "password": PASSWORD, "role": "operator"}
    )
    assert answer.status_code == 400
    assert operator_named(app, name) is None

"""The operators page: who may see and change it, creating operators, disabling them, API tokens."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from sqlmodel import select

from tests.web.support import PASSWORD, Browser, audit_actions, db, operator_named
from web.accounts import token_hash
from web.models import ApiToken, Operator, Role

READ_PAGES = {"/": set(Role), "/operators": {Role.ADMIN, Role.AUDITOR}, "/audit": {Role.ADMIN, Role.AUDITOR},
              "/password": set(Role)}  # fmt: skip


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("path", sorted(READ_PAGES))
def test_pages_by_role(signed_in: Callable[[Role], Browser], role: Role, path: str) -> None:
    """Each role sees the pages it may see; the others answer a 403 page that names the role needed."""
    response = signed_in(role).get(path)
    if role in READ_PAGES[path]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert "text/html" in response.content_type
        assert "needs the role admin or auditor" in response.text


@pytest.mark.parametrize("path", sorted(READ_PAGES))
def test_strangers_are_sent_to_sign_in(browser: Browser, path: str) -> None:
    """Without a session every page redirects to the sign-in page."""
    response = browser.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUDITOR])
def test_only_admins_create_operators(app: Flask, signed_in: Callable[[Role], Browser], role: Role) -> None:
    """Operators and auditors posting the new-operator form get 403 and nothing is created."""
    response = signed_in(role).post("/operators", {"username": "eve", "password": PASSWORD, "role": "admin"})
    assert response.status_code == 403
    assert operator_named(app, "eve") is None


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUDITOR])
def test_only_admins_disable_operators_and_issue_tokens(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator], role: Role
) -> None:
    """Every admin action answers 403 to other roles and changes nothing."""
    browser = signed_in(role)
    target = accounts[Role.ADMIN].id
    assert browser.post(f"/operators/{target}/disable").status_code == 403
    assert browser.post(f"/operators/{target}/tokens", {"label": "x"}).status_code == 403
    admin = operator_named(app, "admin")
    assert admin is not None and not admin.disabled
    with db(app) as session:
        assert session.exec(select(ApiToken)).all() == []


def test_admin_creates_an_operator(app: Flask, signed_in: Callable[[Role], Browser]) -> None:
    """The new operator is stored with an Argon2id hash, listed, can sign in, and the creation is audited."""
    browser = signed_in(Role.ADMIN)
    response = browser.post("/operators", {"username": "dana", "password": PASSWORD, "role": "auditor"})
    assert response.status_code == 303
    dana = operator_named(app, "dana")
    assert dana is not None
    assert dana.role == "auditor"
    assert dana.password_hash.startswith("$argon2id$")
    assert '<th scope="row">dana</th>' in browser.get("/operators").text
    assert ("admin", "operator.create", "dana") in audit_actions(app)
    assert Browser(app.test_client()).login("dana").status_code == 302


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"username": "Bad Name", "password": PASSWORD, "role": "operator"}, "The username must be"),
        ({"username": "x", "password": PASSWORD, "role": "operator"}, "The username must be"),
        ({"username": "newbie", "password": "short", "role": "operator"}, "at least 12 characters"),
        ({"username": "newbie", "password": PASSWORD, "role": "root"}, "The role must be one of"),
        ({"username": "operator", "password": PASSWORD, "role": "operator"}, "already exists"),
    ],
)
def test_bad_operator_input_says_why_and_changes_nothing(
    app: Flask, signed_in: Callable[[Role], Browser], form: dict[str, str], message: str
) -> None:
    """The form comes back (400) with the reason next to the field; no operator or audit entry is added."""
    browser = signed_in(Role.ADMIN)
    with db(app) as session:
        before = len(session.exec(select(Operator)).all())
    entries = len(audit_actions(app))
    response = browser.post("/operators", form)
    assert response.status_code == 400
    assert message in response.text
    assert 'aria-invalid="true"' in response.text
    with db(app) as session:
        assert len(session.exec(select(Operator)).all()) == before
    assert len(audit_actions(app)) == entries


def test_admin_disables_and_enables_an_operator(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """Disabling stops sign-in; enabling restores it; both are audited."""
    browser = signed_in(Role.ADMIN)
    target = accounts[Role.OPERATOR].id
    assert browser.post(f"/operators/{target}/disable").status_code == 303
    assert Browser(app.test_client()).login("operator").status_code == 401
    assert browser.post(f"/operators/{target}/enable").status_code == 303
    assert Browser(app.test_client()).login("operator").status_code == 302
    actions = audit_actions(app)
    assert ("admin", "operator.disable", "operator") in actions
    assert ("admin", "operator.enable", "operator") in actions


def test_an_admin_cannot_disable_themselves(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """Disabling one's own account is refused with a message, so the portal never loses its last admin that way."""
    browser = signed_in(Role.ADMIN)
    response = browser.post(f"/operators/{accounts[Role.ADMIN].id}/disable")
    assert response.status_code == 400
    assert "You cannot disable your own account." in response.text
    admin = operator_named(app, "admin")
    assert admin is not None and not admin.disabled


def test_disabling_revokes_the_operator_s_api_tokens_for_good(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator],
    token_of: Callable[[Role], str],
) -> None:  # fmt: skip
    """A token of a disabled operator stays dead once the account is enabled again, as its sessions
    do: re-enabling a compromised account must not bring back what an attacker may hold."""
    token = token_of(Role.OPERATOR)
    browser = signed_in(Role.ADMIN)
    target = accounts[Role.OPERATOR].id
    assert browser.post(f"/operators/{target}/disable").status_code == 303
    assert browser.post(f"/operators/{target}/enable").status_code == 303
    answer = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401


def test_the_last_enabled_admin_cannot_be_disabled(
    app: Flask, signed_in: Callable[[Role], Browser], make_operator: Callable[..., Operator],
    accounts: dict[Role, Operator],
) -> None:  # fmt: skip
    """Of two admins, one may disable the other; the remaining one is then the last enabled admin,
    and an admin disabled meanwhile (a session opened before) can no longer disable anyone."""
    second = make_operator("second", Role.ADMIN)
    first_browser, second_browser = signed_in(Role.ADMIN), Browser(app.test_client())
    assert second_browser.login("second").status_code == 302
    assert first_browser.post(f"/operators/{second.id}/disable").status_code == 303
    refused = second_browser.post(f"/operators/{accounts[Role.ADMIN].id}/disable")
    assert refused.status_code in (302, 400)  # its session ended with the account, or the action is refused
    admin = operator_named(app, "admin")
    assert admin is not None and not admin.disabled
    with db(app) as session:
        from web.accounts import InvalidInput, set_disabled

        first = session.exec(select(Operator).where(Operator.username == "admin")).one()
        third = make_operator("third", Role.ADMIN)
        assert third.id is not None and first.id is not None
        set_disabled(session, third.id, True, by=first)
        with pytest.raises(InvalidInput, match="Only an enabled admin"):
            set_disabled(session, first.id, True, by=third)
    enabled = [
        o for o in (operator_named(app, n) for n in ("admin", "second", "third")) if o and not o.disabled
    ]
    assert [o.username for o in enabled] == ["admin"]


def test_unknown_operator_is_404(signed_in: Callable[[Role], Browser]) -> None:
    """Acting on an operator that does not exist answers a 404 page."""
    assert signed_in(Role.ADMIN).post("/operators/999/disable").status_code == 404


def test_a_token_is_shown_once_and_stored_hashed(
    app: Flask, signed_in: Callable[[Role], Browser], accounts: dict[Role, Operator]
) -> None:
    """Issuing a token shows it on an uncached page; the database holds only its SHA-256."""
    browser = signed_in(Role.ADMIN)
    response = browser.post(f"/operators/{accounts[Role.OPERATOR].id}/tokens", {"label": "ci runner"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    match = re.search(r'value="(trellis_[A-Za-z0-9_-]+)"', response.text)
    assert match is not None
    token = match.group(1)
    with db(app) as session:
        row = session.exec(select(ApiToken)).one()
    assert row.token_hash == token_hash(token) != token
    assert row.label == "ci runner"
    assert token not in browser.get("/operators").text
    assert ("admin", "token.create", "operator") in audit_actions(app)


def test_admin_revokes_a_token(
    app: Flask, signed_in: Callable[[Role], Browser], token_of: Callable[[Role], str]
) -> None:
    """A revoked token is marked so, and no longer opens the API."""
    token = token_of(Role.OPERATOR)
    with db(app) as session:
        row = session.exec(select(ApiToken)).one()
    browser = signed_in(Role.ADMIN)
    assert browser.post(f"/tokens/{row.id}/revoke").status_code == 303
    assert (
        app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    assert ("admin", "token.revoke", "operator") in audit_actions(app)


def test_auditor_sees_operators_without_controls(signed_in: Callable[[Role], Browser]) -> None:
    """The auditor's operators page lists accounts but offers no form that changes anything."""
    page = signed_in(Role.AUDITOR).get("/operators").text
    assert '<th scope="row">admin</th>' in page
    assert "Create operator" not in page
    assert "Issue token" not in page
    assert "/disable" not in page

"""web.audit.record: who is recorded, transactions shared with the change, paging; the /audit page."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from flask import Flask, g
from sqlmodel import select

from tests.web.support import Browser, audit_actions, db, portal
from web import audit
from web.app import create_app
from web.config import PortalConfig
from web.models import AuditEntry, Operator, Role


def test_record_outside_a_request_names_the_system(app: Flask) -> None:
    """Without a signed-in operator the actor is ``system``."""
    with app.app_context():
        entry = audit.record("organisation.setup", "did:trellis:devnet:abc", txn_id="t1", detail={"steps": 3})
    assert entry.actor == audit.SYSTEM_ACTOR
    with db(app) as session:
        stored = session.exec(select(AuditEntry)).one()
    assert (stored.action, stored.target, stored.txn_id) == (
        "organisation.setup",
        "did:trellis:devnet:abc",
        "t1",
    )
    assert json.loads(stored.detail) == {"steps": 3}
    assert stored.at.tzinfo is not None


def test_record_in_a_request_names_the_operator(app: Flask, accounts: dict[Role, Operator]) -> None:
    """Inside a request the signed-in operator is the actor."""
    with app.test_request_context():
        g.operator = accounts[Role.OPERATOR]
        audit.record("device.revoke", "did:trellis:devnet:dev1", txn_id="abc")
    assert audit_actions(app) == [("operator", "device.revoke", "did:trellis:devnet:dev1")]


def test_record_with_a_session_commits_with_the_caller(app: Flask) -> None:
    """Given the caller's session the entry is written with the caller's change, or not at all."""
    with app.app_context():
        with db(app) as session:
            audit.record("device.suspend", "d1", actor="x", db=session)
            session.rollback()
        assert audit_actions(app) == []
        with db(app) as session:
            audit.record("device.suspend", "d1", actor="x", db=session)
            session.commit()
    assert audit_actions(app) == [("x", "device.suspend", "d1")]


def test_entries_page_newest_first(app: Flask) -> None:
    """``entries`` gives ``limit`` entries and the cursor of the next page, which is None at the end."""
    with app.app_context():
        for number in range(3):
            audit.record("step", str(number), actor="t")
        with db(app) as session:
            page, cursor = audit.entries(session, before=None, limit=2)
            assert [entry.target for entry in page] == ["2", "1"]
            rest, end = audit.entries(session, before=cursor, limit=2)
    assert [entry.target for entry in rest] == ["0"]
    assert end is None


def test_the_audit_page_pages(config: PortalConfig) -> None:
    """With a page size of 2, the page shows the newest 2 and links to the older ones."""
    app = create_app(replace(config, page_size=2))
    try:
        with db(app) as session:
            session.add(
                Operator(username="boss", password_hash=portal(app).passwords.hash("x" * 12), role="admin")
            )
            session.commit()
        with app.app_context():
            for number in range(3):
                audit.record("step", f"target-{number}", actor="t")
        browser = Browser(app.test_client())
        assert browser.login("boss", "x" * 12).status_code == 302  # the 4th entry: auth.login
        first = browser.get("/audit").text
        assert "auth.login" in first and "target-2" in first and "target-1" not in first
        assert 'rel="next"' in first
        second = browser.get("/audit?before=3").text
        assert "target-1" in second and "target-0" in second and "target-2" not in second
        assert 'rel="next"' not in second
    finally:
        portal(app).engine.dispose()


def test_the_dashboard_shows_recent_actions_to_auditors_only(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """Auditors see the latest actions on the dashboard; operators do not."""
    with app.app_context():
        audit.record("device.enrol", "did:trellis:devnet:visible", actor="someone")
    assert "did:trellis:devnet:visible" in signed_in(Role.AUDITOR).get("/").text
    assert "did:trellis:devnet:visible" not in signed_in(Role.OPERATOR).get("/").text

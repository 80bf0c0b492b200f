"""The ``dashboard`` blueprint: the start page and the audit log page."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue
from sqlmodel import func, select

from web import audit
from web.db import session as db_session
from web.models import Operator, Role
from web.portal import portal
from web.security import current_operator, role_required

__all__ = ["bp"]

bp = Blueprint("dashboard", __name__)
"""Start page and audit log."""


@bp.get("/")
@role_required()
def index() -> ResponseReturnValue:
    """Who is signed in, what their role allows, and (for admins and auditors) the latest actions."""
    operator = current_operator()
    assert operator is not None
    recent: list[object] = []
    with db_session() as db:
        operator_count = db.exec(select(func.count()).select_from(Operator)).one()
        if operator.role in (Role.ADMIN, Role.AUDITOR):
            recent = list(audit.entries(db, before=None, limit=10)[0])
    return render_template("dashboard.html", operator_count=operator_count, recent=recent)


@bp.get("/audit")
@role_required(Role.ADMIN, Role.AUDITOR)
def audit_log() -> ResponseReturnValue:
    """The audit log, newest first, one page at a time (``?before=<id>``)."""
    raw = request.args.get("before", "")
    before = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    with db_session() as db:
        rows, next_cursor = audit.entries(db, before=before, limit=portal().config.page_size)
    return render_template("audit.html", entries=rows, next_cursor=next_cursor, first=before is None)

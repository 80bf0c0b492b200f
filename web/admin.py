"""The ``admin`` blueprint: operators and their API tokens (admins change, auditors read)."""

from __future__ import annotations

from collections import defaultdict

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlmodel import col, select

from web import audit
from web.accounts import InvalidInput, create_operator, issue_token, revoke_token, set_disabled
from web.db import session as db_session
from web.models import ApiToken, Operator, Role
from web.portal import portal
from web.security import current_operator, role_required

__all__ = ["bp"]

bp = Blueprint("admin", __name__)
"""Operator management pages."""


def _page(status: int = 200, **context: object) -> ResponseReturnValue:
    with db_session() as db:
        operators = db.exec(select(Operator).order_by(col(Operator.username))).all()
        tokens: dict[int, list[ApiToken]] = defaultdict(list)
        for token in db.exec(select(ApiToken).order_by(col(ApiToken.id))).all():
            tokens[token.operator_id].append(token)
    form = context.pop("form", {"username": "", "role": Role.OPERATOR.value})
    page = render_template(
        "operators.html", operators=operators, tokens=tokens, roles=list(Role), form=form, **context
    )
    return page, status


@bp.get("/operators")
@role_required(Role.ADMIN, Role.AUDITOR)
def operators() -> ResponseReturnValue:
    """Every operator with their role, state and API tokens."""
    return _page()


@bp.post("/operators")
@role_required(Role.ADMIN)
def create() -> ResponseReturnValue:
    """Create an operator; bad input re-shows the form with the reason and creates nothing."""
    username = request.form.get("username", "").strip()
    role = request.form.get("role", "")
    form = {"username": username, "role": role}
    with db_session() as db:
        try:
            created = create_operator(
                db, portal().passwords, username, request.form.get("password", ""), role
            )
        except InvalidInput as exc:
            return _page(400, form=form, errors={exc.field: exc.message})
    audit.record("operator.create", created.username, detail={"role": created.role})
    return redirect(url_for("admin.operators"), 303)


def _set_disabled(operator_id: int, disabled: bool) -> ResponseReturnValue:
    me = current_operator()
    assert me is not None
    with db_session() as db:
        try:
            changed = set_disabled(db, operator_id, disabled, by=me)
        except InvalidInput as exc:
            return _page(400, message=exc.message)
    audit.record("operator.disable" if disabled else "operator.enable", changed.username)
    return redirect(url_for("admin.operators"), 303)


@bp.post("/operators/<int:operator_id>/disable")
@role_required(Role.ADMIN)
def disable(operator_id: int) -> ResponseReturnValue:
    """Disable an operator: their sessions and API tokens stop working at once."""
    return _set_disabled(operator_id, True)


@bp.post("/operators/<int:operator_id>/enable")
@role_required(Role.ADMIN)
def enable(operator_id: int) -> ResponseReturnValue:
    """Enable a disabled operator again."""
    return _set_disabled(operator_id, False)


@bp.post("/operators/<int:operator_id>/tokens")
@role_required(Role.ADMIN)
def create_token(operator_id: int) -> ResponseReturnValue:
    """Issue an API token for an operator and show it, this once."""
    with db_session() as db:
        try:
            row, token = issue_token(db, operator_id, request.form.get("label", ""))
        except InvalidInput as exc:
            return _page(400, message=exc.message)
        owner = db.get(Operator, operator_id)
    assert owner is not None
    audit.record("token.create", owner.username, detail={"token_id": row.id, "label": row.label})
    page = render_template("token_created.html", owner=owner, row=row, token=token)
    return page, 201, {"Cache-Control": "no-store"}


@bp.post("/tokens/<int:token_id>/revoke")
@role_required(Role.ADMIN)
def revoke(token_id: int) -> ResponseReturnValue:
    """Revoke an API token for good."""
    with db_session() as db:
        row = revoke_token(db, token_id)
        owner = db.get(Operator, row.operator_id)
    audit.record("token.revoke", owner.username if owner else None, detail={"token_id": token_id})
    return redirect(url_for("admin.operators"), 303)

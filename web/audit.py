"""The audit log: every state-changing action in the portal is recorded with :func:`record`.

Call it from a view after the change (``record("device.revoke", target=did, txn_id=txn)``): inside a
request the actor is the signed-in operator; pass ``db`` to write the entry in the same database
transaction as the change (the caller commits), or leave it out to write and commit it at once.
Actions are named ``<area>.<verb>`` (``operator.create``, ``token.revoke``, ``auth.login``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from flask import g, has_request_context
from sqlmodel import Session, col, select

from web.db import session as db_session
from web.models import AuditEntry, iso_utc
from web.security import current_operator

__all__ = ["SYSTEM_ACTOR", "record", "entries", "entry_json"]

SYSTEM_ACTOR: Final = "system"
"""The actor of actions taken outside a signed-in request (e.g. ``trellis web create-admin``)."""


def _actor(actor: str | None) -> str:
    if actor is not None:
        return actor
    operator = current_operator() if has_request_context() else None
    return operator.username if operator is not None else SYSTEM_ACTOR


def record(
    action: str,
    target: str | None = None,
    *,
    txn_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    actor: str | None = None,
    db: Session | None = None,
) -> AuditEntry:
    """Record that ``actor`` (default: the signed-in operator, else ``system``) did ``action`` to ``target``.

    ``txn_id`` is the ledger transaction the action submitted, if any; ``detail`` any JSON object.
    An action made with an API token notes the token's id as ``via_token``: an admin who issued the
    token (``token.create``) saw it, so the operator named is not proof of who acted.
    """
    detail = dict(detail or {})
    if actor is None and has_request_context() and g.get("api_token") is not None:
        detail["via_token"] = g.api_token
    entry = AuditEntry(
        actor=_actor(actor),
        action=action,
        target=target,
        txn_id=txn_id,
        detail=json.dumps(detail, sort_keys=True, separators=(",", ":")),
    )
    if db is not None:
        db.add(entry)
        return entry
    with db_session() as own:
        own.add(entry)
        own.commit()
        own.refresh(entry)
    return entry


def entries(db: Session, *, before: int | None, limit: int) -> tuple[list[AuditEntry], int | None]:
    """Up to ``limit`` entries, newest first, older than entry ``before``; and the cursor of the next page."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit + 1)
    if before is not None:
        query = query.where(col(AuditEntry.id) < before)
    rows = list(db.exec(query).all())
    page, more = rows[:limit], len(rows) > limit
    return page, (page[-1].id if more and page else None)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the API serves it (times in UTC, ISO 8601 with ``Z``)."""
    return {
        "id": entry.id,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "at": iso_utc(entry.at),
        "txn": entry.txn_id,
        "detail": json.loads(entry.detail),
    }

"""Authentications that verifier-protected services report, kept for each device's page.

A service that embeds the verifier posts its decisions in batches to ``POST /api/v1/authentications``
with an API token (:class:`verifier.reporting.AuthenticationReporter` does it), as
``{"events": [{"did", "service", "outcome": "admitted"|"refused", "reason", "at"}]}``. A batch is
checked whole: one bad event refuses it (RFC 9457 problem naming the event and the field) and
nothing is stored. The device page shows the newest :data:`SHOWN` of a device; rows older than
:data:`KEEP` are pruned as new ones arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete
from sqlmodel import Session, col, select

from web.models import AuthenticationRow, iso_utc, utcnow
from web.problems import ApiProblem

__all__ = ["KEEP", "MAX_EVENTS", "SHOWN", "parse_events", "record", "recent", "event_json"]

MAX_EVENTS: Final = 1_000
"""The most events one report holds."""
SHOWN: Final = 20
"""Authentications listed on a device's page."""
KEEP: Final = timedelta(days=30)
"""How long reported authentications are kept."""
_OUTCOMES: Final = ("admitted", "refused")
_FUTURE: Final = timedelta(minutes=5)


def _text(event: dict[str, Any], name: str, where: str, limit: int, *, required: bool = True) -> str | None:
    value = event.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise ApiProblem(
            400,
            "invalid_input",
            f"{where}: {name!r} must be a string of 1 to {limit} printable characters",
            field=name,
        )
    return value


def parse_events(body: object, now: datetime | None = None) -> list[AuthenticationRow]:
    """The rows of a report body; raise :class:`~web.problems.ApiProblem` (400) naming the first bad event."""
    now = now or utcnow()
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ApiProblem(400, "malformed", 'the body must be {"events": [...]}')
    events = body["events"]
    if not 0 < len(events) <= MAX_EVENTS:
        raise ApiProblem(400, "invalid_input", f"a report holds 1 to {MAX_EVENTS} events", field="events")
    rows = []
    for number, event in enumerate(events):
        where = f"event {number}"
        if not isinstance(event, dict):
            raise ApiProblem(400, "malformed", f"{where} must be a JSON object")
        did = _text(event, "did", where, 512)
        if did is None or not did.startswith("did:"):
            raise ApiProblem(400, "invalid_input", f"{where}: 'did' must be a DID", field="did")
        service = _text(event, "service", where, 100)
        outcome = event.get("outcome")
        if outcome not in _OUTCOMES:
            raise ApiProblem(
                400, "invalid_input", f"{where}: 'outcome' must be admitted or refused", field="outcome"
            )
        reason = _text(event, "reason", where, 64, required=False)
        if (reason is None) != (outcome == "admitted"):
            raise ApiProblem(
                400, "invalid_input", f"{where}: a refusal has a 'reason', an admission none", field="reason"
            )
        at_text = _text(event, "at", where, 40)
        at: datetime | None
        try:
            given = datetime.fromisoformat(str(at_text).replace("Z", "+00:00"))
            at = given.astimezone(UTC) if given.tzinfo is not None else None
        except (ValueError, OverflowError):  # not a time, or one whose UTC falls outside the calendar
            at = None
        if at is None or at > now + _FUTURE:
            raise ApiProblem(
                400,
                "invalid_input",
                f"{where}: 'at' must be an ISO 8601 time with its offset, not in the future",
                field="at",
            )
        rows.append(
            AuthenticationRow(
                did=did,
                service=str(service),
                outcome=str(outcome),
                reason=reason,
                at=at,
                reporter="",
            )
        )
    return rows


def record(db: Session, rows: Sequence[AuthenticationRow], reporter: str, now: datetime | None = None) -> int:
    """Store ``rows`` as reported by ``reporter`` and prune rows older than :data:`KEEP`; how many were stored."""
    now = now or utcnow()
    for row in rows:
        row.reporter = reporter
        db.add(row)
    db.exec(delete(AuthenticationRow).where(col(AuthenticationRow.at) < now - KEEP))
    db.commit()
    return len(rows)


def recent(db: Session, did: str, limit: int = SHOWN) -> list[AuthenticationRow]:
    """The newest ``limit`` authentications of ``did``."""
    query = (
        select(AuthenticationRow)
        .where(AuthenticationRow.did == did)
        .order_by(col(AuthenticationRow.at).desc(), col(AuthenticationRow.id).desc())
        .limit(limit)
    )
    return list(db.exec(query).all())


def event_json(row: AuthenticationRow) -> dict[str, Any]:
    """One stored authentication as the API serves it."""
    return {
        "did": row.did,
        "service": row.service,
        "outcome": row.outcome,
        "reason": row.reason,
        "at": iso_utc(row.at),
    }

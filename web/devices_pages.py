"""The ``devices`` blueprint (pages) and ``devices_api`` (JSON under ``/api/v1/devices``).

Every role reads: the device list (search by DID or model substring; filter by status, model and
enrolment dates; keyset paging, newest first) and each device's page (its proven DID document, its
ledger history, its credential with the current status bits, its quarantine report). Admins and
operators suspend, reinstate and revoke, one device or every device of the current filter (at most
:data:`BULK_CAP`), always after a confirmation page; the change is anchored on the ledger by
:class:`~web.enrolment.Enrolment` and audited with the ledger transaction that made it, the audit
entries written in the same database transaction as the devices' new status (both are there, or
neither). Revocation is final: reinstating a revoked device is refused and changes nothing.

The ledger is where a device's status is; the portal's record follows it. A change the ledger made
that the portal did not record (its answer timed out, the database failed) is recorded when it is
found: by the next change of the device (repeating the action completes it, its transaction sent
again, which changes nothing on the ledger) or when the device's page shows bits proven on the ledger
that its record does not, read no older than the ledger height the record stands on (a node behind
cannot take a record back). A state the portal found on its own is audited by ``portal`` with no
transaction id and ``found_on_ledger`` in its detail; a change repeated is audited by its operator with
its transaction, and ``found_on_ledger`` when the ledger showed it made already.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from flask import Blueprint, Response, abort, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import Session, col, select

from did_registry.client import LedgerUnavailable
from did_registry.identity.status_list import BitstringStatusList
from web import audit, authentications
from web.db import session as db_session
from web.device_status import Recorder, StatusEvent
from web.enrolment_records import DeviceRow, UnknownDevice
from web.ledger_pages import node_reader
from web.models import Role, iso_utc
from web.organisation import PortalError
from web.portal import portal
from web.problems import ApiProblem
from web.security import load_token_operator, role_required

__all__ = [
    "BULK_CAP",
    "PAGE_SIZE",
    "ACTIONS",
    "RECONCILER",
    "DeviceQuery",
    "device_page",
    "change_devices",
    "bp",
    "api_bp",
]

BULK_CAP: Final = 10_000
"""Most devices one bulk action changes."""
PAGE_SIZE: Final = 50
"""Devices per page of the list."""
ACTIONS: Final[Mapping[str, frozenset[str]]] = {
    "suspend": frozenset({"active"}),
    "reinstate": frozenset({"suspended"}),
    "revoke": frozenset({"active", "suspended"}),
}
"""Each action and the device states it applies to."""
RECONCILER: Final = "portal"
"""The actor of the audit entries of changes the portal found made on the ledger on its own."""
_PAST: Final = {"suspend": "suspended", "reinstate": "reinstated", "revoke": "revoked"}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CHANGERS: Final = (Role.ADMIN, Role.OPERATOR)
_log = logging.getLogger(__name__)

bp = Blueprint("devices", __name__, url_prefix="/devices")
"""The device pages."""
api_bp = Blueprint("devices_api", __name__, url_prefix="/api/v1/devices")
"""The device API (token-authenticated)."""
api_bp.before_request(load_token_operator)


# -- finding devices -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """Which devices a list or bulk action covers; empty members do not narrow."""

    q: str = ""
    status: str = ""
    model: str = ""
    enrolled_from: date | None = None
    enrolled_to: date | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> tuple[DeviceQuery, dict[str, str]]:
        """The query in ``args`` (a request's query or form) and the errors by field."""
        errors: dict[str, str] = {}
        text = {name: str(args.get(name, "")).strip() for name in ("q", "status", "model")}
        for name, value in text.items():
            if len(value) > 200:
                errors[name] = "Use at most 200 characters."
        if text["status"] and text["status"] not in ACTIONS["revoke"] | {"revoked"}:
            errors["status"] = "Choose active, suspended or revoked."
        dates: dict[str, date | None] = {}
        for name in ("enrolled_from", "enrolled_to"):
            raw = str(args.get(name, "")).strip()
            dates[name] = None
            if raw:
                try:
                    if not _DATE.fullmatch(raw):
                        raise ValueError(raw)
                    dates[name] = date.fromisoformat(raw)
                except ValueError:
                    errors[name] = "Give a date as YYYY-MM-DD."
        return cls(
            text["q"], text["status"], text["model"], dates["enrolled_from"], dates["enrolled_to"]
        ), errors

    def args(self) -> dict[str, str]:
        """The query as request arguments (members that narrow only)."""
        values = {
            "q": self.q,
            "status": self.status,
            "model": self.model,
            "enrolled_from": self.enrolled_from.isoformat() if self.enrolled_from else "",
            "enrolled_to": self.enrolled_to.isoformat() if self.enrolled_to else "",
        }
        return {name: value for name, value in values.items() if value}

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions on :class:`DeviceRow` (status, model and dates use their indexes)."""
        found: list[ColumnElement[bool]] = []
        if self.q:
            pattern = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            found.append(
                or_(
                    col(DeviceRow.did).like(pattern, escape="\\"),
                    col(DeviceRow.model).like(pattern, escape="\\"),
                )
            )
        if self.status:
            found.append(col(DeviceRow.status) == self.status)
        if self.model:
            found.append(col(DeviceRow.model) == self.model)
        if self.enrolled_from:
            found.append(col(DeviceRow.enrolled_at) >= datetime.combine(self.enrolled_from, time(), UTC))
        if self.enrolled_to and self.enrolled_to < date.max:  # through 9999-12-31: no end at all
            end = datetime.combine(self.enrolled_to + timedelta(days=1), time(), UTC)
            found.append(col(DeviceRow.enrolled_at) < end)
        return found


def _cursor(row: DeviceRow) -> str:
    return f"{row.enrolled_at.isoformat()}|{row.did}"


def _after(cursor: str) -> ColumnElement[bool] | None:
    moment, _, did = cursor.partition("|")
    try:
        at = datetime.fromisoformat(moment)
        at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite: no zone
    except (ValueError, OverflowError):  # not a time, or one whose UTC falls outside the calendar
        return None
    enrolled = col(DeviceRow.enrolled_at)
    return or_(enrolled < at, and_(enrolled == at, col(DeviceRow.did) > did))


def device_page(
    db: Session, query: DeviceQuery, after: str | None, limit: int = PAGE_SIZE
) -> tuple[list[DeviceRow], str | None]:
    """Up to ``limit`` matching devices, newest first, after cursor ``after``; and the next cursor."""
    statement = select(DeviceRow).where(*query.conditions())
    if after:
        condition = _after(after)
        if condition is None:
            raise ValueError("not a cursor of this list")
        statement = statement.where(condition)
    statement = statement.order_by(col(DeviceRow.enrolled_at).desc(), col(DeviceRow.did)).limit(limit + 1)
    rows = list(db.exec(statement).all())
    page = rows[:limit]
    return page, (_cursor(page[-1]) if len(rows) > limit and page else None)


def _targets(db: Session, query: DeviceQuery, action: str) -> tuple[list[str], int]:
    """The DIDs a bulk ``action`` over ``query`` changes (at most :data:`BULK_CAP`) and their total count."""
    where = [*query.conditions(), col(DeviceRow.status).in_(sorted(ACTIONS[action]))]
    total = db.exec(select(func.count()).select_from(DeviceRow).where(*where)).one()
    dids = db.exec(select(DeviceRow.did).where(*where).order_by(col(DeviceRow.did)).limit(BULK_CAP)).all()
    return list(dids), int(total)


# -- changing devices ----------------------------------------------------------------------------
def _auditor(bulk: bool = False) -> Recorder:
    """What writes the audit entries of a change's events, in the change's own database transaction."""

    def record(db: Session, events: Sequence[StatusEvent]) -> None:
        for event in events:
            detail: dict[str, Any] = {"list": event.list}
            if bulk and event.requested:
                detail["bulk"] = True
            if event.found is not None:
                detail["found_on_ledger"] = event.found.to_json()
            actor = None if event.requested else RECONCILER
            audit.record(
                f"device.{event.action}", event.did, txn_id=event.txn, detail=detail, actor=actor, db=db
            )

    return record


def change_devices(dids: Sequence[str], action: str, *, bulk: bool = False) -> dict[str, str | None]:
    """Apply ``action`` to ``dids`` on the ledger and audit each; return each DID's ledger transaction id
    (a change asked for is always sent, even when the ledger shows it made already).

    Raises :class:`~web.enrolment_records.DeviceStateConflict` (409, nothing sent to the ledger) when a
    device's state, in the portal's record and as proven on the ledger, does not admit the action;
    :class:`~web.device_status.StatusStoreBusy` (503, nothing changed) when the database cannot be
    written; :class:`~web.organisation.LedgerUnreachable` or ``LedgerRefused`` when the ledger fails or
    refuses (a revocation is sent even when the proven state cannot be read; a suspension or a
    reinstatement is then refused with ``LedgerUnreachable``); :class:`~web.device_status.StatusNotRecorded` (503) when the ledger made the change but the
    portal could not record it (repeating the action records it).
    """
    enrolment = portal().services.enrolment
    result: dict[str, str | None] = {}
    auditor = _auditor(bulk)

    def record(db: Session, events: Sequence[StatusEvent]) -> None:
        auditor(db, events)
        result.update((event.did, event.txn) for event in events if event.requested)

    enrolment.change(action, list(dict.fromkeys(dids)), allowed=ACTIONS[action], record=record)
    return result


def _in_line(row: DeviceRow) -> DeviceRow:
    """``row`` after the portal's record of it was brought in line with the ledger (a change made there
    and not recorded); ``row`` itself when the ledger cannot be read or the record cannot be written."""
    try:
        portal().services.enrolment.reconcile([row.did], record=_auditor())
    except (PortalError, LedgerUnavailable) as exc:
        _log.warning("could not bring the record of %s in line with the ledger: %s", row.did, exc)
        return row
    return _device_row(row.did)


def _proven_state(bits: Mapping[str, int]) -> str | None:
    """A device's state from its bits proven on the ledger, or ``None`` when they are not known."""
    if "revocation" not in bits or "suspension" not in bits:
        return None
    return "revoked" if bits["revocation"] else "suspended" if bits["suspension"] else "active"


# -- reading one device --------------------------------------------------------------------------
def _issuer_of(credential: Mapping[str, Any]) -> str:
    issuer = credential.get("issuer")
    return str(issuer.get("id") if isinstance(issuer, Mapping) else issuer)


def _ledger_view(row: DeviceRow, credential: Mapping[str, Any]) -> dict[str, Any]:
    """What the ledger says about a device: proven record, status bits, quarantine; history from a node."""
    view: dict[str, Any] = {"record": None, "height": None, "bits": {}, "quarantine": None, "history": None}
    ledger = portal().services.ledger
    record, header = ledger.resolve_record(row.did)
    view["record"], view["height"] = record, header.height
    entries = [e for e in credential.get("credentialStatus", []) if isinstance(e, Mapping)]
    issuer = _issuer_of(credential)
    keys = [f"status:{issuer}:{str(e.get('statusListCredential', '')).rpartition('/')[2]}" for e in entries]
    # no older than the height the device's record stands on: a node behind cannot show it undone
    values, _ = ledger.prove_many([*keys, f"quarantine:{row.did}"], min_height=row.status_height)
    for entry, value in zip(entries, values, strict=False):
        if isinstance(value, Mapping):
            bits = BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"]))
            view["bits"][entry.get("statusPurpose")] = bits.get(int(entry.get("statusListIndex", 0)))
    view["quarantine"] = values[-1]
    history = node_reader().get("/audit/txns", {"did": row.did})
    view["history"] = history.get("txns", []) if history else []
    return view


def _device_row(did: str) -> DeviceRow:
    with Session(portal().engine) as db:
        row = db.get(DeviceRow, did)
    if row is None:
        raise UnknownDevice(f"no enrolled device {did}")
    return row


def device_json(row: DeviceRow) -> dict[str, Any]:
    """A device as the API serves it."""
    return {
        "did": row.did,
        "model": row.model,
        "firmware": row.firmware,
        "attributes": json.loads(row.attributes),
        "status": row.status,
        "enrolled": iso_utc(row.enrolled_at),
        "credential_id": row.credential_id,
        "status_index": row.status_index,
        "revocation_list": row.revocation_list,
        "suspension_list": row.suspension_list,
    }


# -- pages ---------------------------------------------------------------------------------------
@bp.get("")
@role_required()
def devices() -> ResponseReturnValue:
    """The device list: search, filters, keyset paging (``?after=<cursor>``)."""
    query, errors = DeviceQuery.from_args(request.args)
    rows: list[DeviceRow] = []
    following = None
    if not errors:
        with Session(portal().engine) as db:
            try:
                rows, following = device_page(db, query, request.args.get("after") or None)
            except ValueError:
                errors["after"] = "That page link is not valid; start again from the first page."
    models: list[str] = []
    with Session(portal().engine) as db:
        models = list(
            db.exec(select(DeviceRow.model).distinct().order_by(col(DeviceRow.model)).limit(200)).all()
        )
    status = 400 if errors else 200
    return render_template(
        "devices.html", query=query, rows=rows, following=following, errors=errors, models=models,
        first=not request.args.get("after"), states=("active", "suspended", "revoked"),
    ), status  # fmt: skip


@bp.get("/<did>")
@role_required()
def device(did: str) -> ResponseReturnValue:
    """One device: DID document, ledger history, credential and status bits, quarantine, authentications."""
    row = _device_row(did)
    credential = json.loads(row.credential)
    ledger: dict[str, Any] | None = None
    ledger_error = None
    try:
        ledger = _ledger_view(row, credential)
    except (PortalError, LedgerUnavailable) as exc:
        ledger_error = str(exc)
    if ledger is not None and _proven_state(ledger["bits"]) not in (None, row.status):
        row = _in_line(row)  # a change the ledger made and the portal did not record: recorded now
    with db_session() as db:
        seen = authentications.recent(db, row.did)
    return render_template(
        "device.html", row=row, credential=credential, ledger=ledger, ledger_error=ledger_error,
        attributes=json.loads(row.attributes), done=_done(row.did), authentications=seen,
    )  # fmt: skip


def _done(did: str) -> tuple[str, str] | None:
    """The action just made on ``did`` and its ledger transaction, told once after the redirect. Kept
    in the session, never in the URL: a crafted link could otherwise announce any change."""
    done = session.pop("device_done", None)
    if isinstance(done, list) and len(done) == 3 and done[0] == did and done[1] in ACTIONS:
        return str(done[1]), str(done[2])
    return None


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        abort(404, f"There is no device action {action!r}.")


@bp.route("/<did>/<action>", methods=["GET", "POST"])
@role_required(*_CHANGERS)
def device_action(did: str, action: str) -> ResponseReturnValue:
    """Confirm (GET) and then (POST) suspend, reinstate or revoke one device."""
    _check_action(action)
    row = _device_row(did)
    if row.status not in ACTIONS[action] and row.status != "revoked":
        row = _in_line(row)  # the ledger may have made a change the portal did not record
    refusal = None
    if row.status not in ACTIONS[action]:
        final = " Revocation is final." if row.status == "revoked" else ""
        refusal = f"This device is {row.status}; it cannot be {_PAST[action]}.{final} Nothing was changed."
    if refusal is not None or request.method == "GET":
        page = render_template("device_confirm.html", row=row, action=action, refusal=refusal)
        return page, 409 if refusal else 200
    txns = change_devices([did], action)
    session["device_done"] = [did, action, txns.get(did) or ""]
    return redirect(url_for("devices.device", did=did))


def _digest(dids: Sequence[str]) -> str:
    """What a bulk confirmation names: the SHA-256 of its devices' DIDs, sorted. The POST acts only on
    that very set (devices enrolled or changed since would otherwise be acted on unseen)."""
    return hashlib.sha256("\n".join(sorted(dids)).encode()).hexdigest()


@bp.route("/bulk/<action>", methods=["GET", "POST"])
@role_required(*_CHANGERS)
def bulk_action(action: str) -> ResponseReturnValue:
    """Confirm (GET, with the filter as query) and then (POST, filter as form) a bulk suspend or revoke."""
    if action not in ("suspend", "revoke"):
        abort(404, f"There is no bulk action {action!r}.")
    query, errors = DeviceQuery.from_args(request.args if request.method == "GET" else request.form)
    if errors:
        return render_template("devices_bulk.html", action=action, query=query, errors=errors, count=0,
                               done=None), 400  # fmt: skip
    with Session(portal().engine) as db:
        dids, total = _targets(db, query, action)
    targets = _digest(dids)
    changed = request.method == "POST" and not hmac.compare_digest(request.form.get("targets", ""), targets)
    if total > BULK_CAP or request.method == "GET" or not dids or changed:
        status = 409 if request.method == "POST" and (total > BULK_CAP or changed) else 200
        return render_template("devices_bulk.html", action=action, query=query, errors={}, count=total,
                               cap=BULK_CAP, done=None, targets=targets, changed=changed), status  # fmt: skip
    txns = change_devices(dids, action, bulk=True)
    return render_template("devices_bulk.html", action=action, query=query, errors={}, count=len(dids),
                           cap=BULK_CAP, done=sorted({t for t in txns.values() if t}))  # fmt: skip


# -- API -----------------------------------------------------------------------------------------
def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status, mimetype="application/json")


@api_bp.get("")
@role_required()
def api_devices() -> ResponseReturnValue:
    """Devices matching the filters, newest first; ``next`` is the following page's ``after``."""
    query, errors = DeviceQuery.from_args(request.args)
    if errors:
        field, message = next(iter(errors.items()))
        raise ApiProblem(400, "invalid_input", f"{field}: {message}", field=field)
    raw_limit = request.args.get("limit", str(PAGE_SIZE))
    if (
        not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 4)
        or not 1 <= int(raw_limit) <= 1000
    ):
        raise ApiProblem(400, "malformed", "query parameter 'limit' must be an integer from 1 to 1000")
    with Session(portal().engine) as db:
        try:
            rows, following = device_page(db, query, request.args.get("after") or None, int(raw_limit))
        except ValueError:
            raise ApiProblem(400, "malformed", "'after' is not a cursor this API returned") from None
    return _json({"devices": [device_json(row) for row in rows], "next": following})


@api_bp.get("/<did>")
@role_required()
def api_device(did: str) -> ResponseReturnValue:
    """One device, with its credential and the newest authentications services reported."""
    row = _device_row(did)
    with db_session() as db:
        seen = [authentications.event_json(e) for e in authentications.recent(db, row.did)]
    return _json({**device_json(row), "credential": json.loads(row.credential), "authentications": seen})


@api_bp.post("/<did>/<action>")
@role_required(*_CHANGERS)
def api_device_action(did: str, action: str) -> ResponseReturnValue:
    """Suspend, reinstate or revoke one device; answers the device and the ledger transaction id."""
    if action not in ACTIONS:
        raise ApiProblem(404, "not_found", f"there is no device action {action!r}")
    txns = change_devices([did], action)
    return _json({**device_json(_device_row(did)), "txn": txns.get(did)})

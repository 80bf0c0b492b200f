"""Device status: enrolled devices listed, suspended, reinstated and revoked on the ledger.

A change flips the devices' bits in the organisation's status lists on the ledger (one transaction
per list), then records it in the portal: the issuer's copy of the lists, the devices' rows and the
caller's own rows (its audit entries, through ``record``) in **one** database transaction (they live
in one database), so the portal's record of a change is all there or not there at all.

The ledger is where a change is made; the portal's record follows it. Before a change, the devices'
bits are read from the ledger with proofs (no older than the highest certified block a node gives,
nor than the height each device's record stands on), so a change the ledger made that the portal
failed to record (the answer timed out, the database was busy, the process stopped) is found and
recorded, and an action the proven state admits is allowed even when the portal's record (not yet in
line) does not. A change asked for is **always** sent to the ledger (``status_list.update`` brings bits
to a value, so sending one made already changes nothing there): what was found on the ledger may allow
an action, never stand in for its transaction. A revocation is sent even when the proven read fails
(it is one-way and must not wait for proofs); a suspension or reinstatement is then refused (503).

Each device's record keeps the ledger height it stands on (``DeviceRow.status_height``: the block that
committed the change recorded, or the block read when a change was found there), and a record is
never brought in line with a state read at a lower height, nor overwritten by a change committed
below it: a node that is behind (or a process that read before another recorded) cannot move a
record backwards. A revocation, final, is recorded whatever the height. Before anything is sent to the
ledger, the portal's database must be writable (:meth:`~wallet.issuer.Issuer.check_writable`), so a
busy database refuses the change with nothing changed, and a failure to record a committed change is
reported as such (:class:`StatusNotRecorded`, 503), never as a refusal.
:class:`web.enrolment.Enrolment` is built on this class.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NoReturn

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from did_registry.client import LedgerClient
from did_registry.identity.status_list_credential import StatusPurpose
from wallet.errors import IssuerError
from wallet.issuer import IssuedStatus, Issuer
from web.enrolment_records import (
    DeviceFilter,
    DeviceRecord,
    DeviceRow,
    DeviceStateConflict,
    StatusChange,
    UnknownDevice,
    record_of,
)
from web.organisation import LedgerUnreachable, Organisation, PortalError
from web.status_on_ledger import FoundOnLedger, ProvenStatus, commit_height, list_name, proven_status
from web.status_plans import Plan, Recorder, StatusEvent, in_line, standing, usable

__all__ = [
    "DeviceStatus",
    "FoundOnLedger",
    "Recorder",
    "StatusEvent",
    "StatusNotRecorded",
    "StatusStoreBusy",
]

_log = logging.getLogger("web.device_status")
_ACTIONS: Final = {
    "suspend": ("suspension", True),
    "reinstate": ("suspension", False),
    "revoke": ("revocation", True),
}
_PAST: Final = {"suspend": "suspended", "reinstate": "reinstated", "revoke": "revoked"}
_IN_CHUNK: Final = 500
_NAMED: Final = 5  # refused devices a refusal names


# -- errors and events -------------------------------------------------------------------------
class StatusStoreBusy(PortalError):
    """The portal's database cannot be written now (another writer kept it past the wait): the change
    was refused before anything was sent to the ledger, and nothing changed. Try again."""

    status = 503
    code = "database_busy"


class StatusNotRecorded(PortalError):
    """The ledger made the change (``txns``: the committed transactions, by list) but the portal could
    not record it: the devices keep their former status in the portal until it is. Repeating the action
    (its transaction is sent again, which changes nothing on the ledger) or opening the device's page
    records it."""

    status = 503
    code = "status_not_recorded"

    def __init__(self, message: str, dids: Sequence[str], txns: Mapping[str, str]) -> None:
        self.dids = tuple(dids)
        self.txns = dict(txns)
        super().__init__(message)


# -- the service -------------------------------------------------------------------------------
class DeviceStatus:
    """The enrolled devices of one portal database (``engine``) and their status on the network of
    ``ledger``, changed through ``organisation``'s lists."""

    engine: Engine
    ledger: LedgerClient
    organisation: Organisation
    timeout: float
    _changing: threading.Lock

    @property
    def issuer(self) -> Issuer:
        """The organisation's issuer, whose lists a change updates."""
        raise NotImplementedError

    def device(self, did: str) -> DeviceRecord:
        """One enrolled device."""
        with Session(self.engine) as session:
            row = session.get(DeviceRow, did)
        if row is None:
            raise UnknownDevice(f"no enrolled device {did}")
        return record_of(row)

    def devices(self, filter: DeviceFilter | None = None) -> list[DeviceRecord]:
        """Enrolled devices, newest first, narrowed by ``filter``."""
        filter = filter or DeviceFilter()
        query = select(DeviceRow).order_by(col(DeviceRow.enrolled_at).desc(), col(DeviceRow.did))
        if filter.status is not None:
            query = query.where(DeviceRow.status == filter.status)
        if filter.model is not None:
            query = query.where(DeviceRow.model == filter.model)
        with Session(self.engine) as session:
            rows = session.exec(query.offset(filter.offset).limit(filter.limit)).all()
        return [record_of(row) for row in rows]

    def change(
        self,
        action: str,
        dids: Sequence[str],
        *,
        allowed: Iterable[str] | None = None,
        record: Recorder | None = None,
    ) -> StatusChange:
        """``suspend``, ``reinstate`` or ``revoke`` devices on the ledger (one transaction per list);
        the devices as they are now and the committed transaction of each list. The transaction is
        sent even for a device the ledger shows changed already (it changes nothing there).

        With ``allowed``, every device must be in one of those states, in the portal's record or as
        proven on the ledger, or nothing changes (:class:`DeviceStateConflict`; the portal's record of
        a device found otherwise on the ledger is brought in line first). A revoked device is refused
        always. ``record`` writes the caller's rows for the events in the same database transaction as
        the change's record. When the proven state cannot be read, a revocation is sent all the same
        (checked against the portal's record alone); a suspension or reinstatement is refused
        (:class:`~web.organisation.LedgerUnreachable`)."""
        purpose, value = _ACTIONS[action]
        wanted = None if allowed is None else frozenset(allowed)
        with self._changing:  # check, ledger and record as one step: see _change
            return self._change_now(dids, action, purpose, value, wanted, record)

    def _change(
        self, dids: Sequence[str], purpose: str, value: bool, allowed: frozenset[str] | None = None
    ) -> StatusChange:
        """Check, write the ledger, then record, as one step: two changes at once (a suspension racing
        a revocation, two operators revoking one device) would otherwise both pass the check, and the
        later row written would undo the other's state."""
        action = next(name for name, how in _ACTIONS.items() if how == (purpose, value))
        with self._changing:
            return self._change_now(dids, action, purpose, value, allowed, None)

    def reconcile(self, dids: Sequence[str], *, record: Recorder | None = None) -> list[DeviceRecord]:
        """Bring the portal's record of devices (their rows and the issuer's bits) in line with their
        bits proven on the ledger, recording an event for each state found changed (``record``); the
        devices as they are now. A record is never brought back to a state read at a lower height than
        the one it stands on (a revocation excepted: it is final). Raises
        :class:`~web.organisation.LedgerUnreachable` when the ledger cannot be read as of those heights
        and :class:`StatusStoreBusy` when the record cannot be written (nothing changed)."""
        with self._changing:
            rows = self._rows(dids)
            issued = self._issued(rows)
            proven = self._proven(rows)
            plans = self._out_of_line(rows, issued, proven)
            if plans:
                try:
                    self._record(plans, record)
                except Exception as exc:
                    _log.exception("could not record the ledger's status of %d device(s)", len(plans))
                    raise StatusStoreBusy(
                        f"the portal could not record the devices' status proven on the ledger: {_why(exc)}"
                    ) from exc
            return self._fresh(rows)

    # -- the steps --------------------------------------------------------------------------
    def _change_now(
        self,
        dids: Sequence[str],
        action: str,
        purpose: str,
        value: bool,
        allowed: frozenset[str] | None,
        record: Recorder | None,
    ) -> StatusChange:
        target = "revoked" if purpose == "revocation" else "suspended" if value else "active"
        rows = self._rows(dids)
        issued = self._issued(rows)
        try:
            proven = self._proven(rows)
        except LedgerUnreachable as exc:
            if purpose != "revocation":
                raise
            # one-way and idempotent on the ledger: sent, checked against the portal's record alone
            _log.warning("revoking %d device(s) without their proven status: %s", len(rows), exc)
            proven = {}
        refusals: list[str] = []
        to_send: list[Plan] = []
        found: dict[str, FoundOnLedger] = {}
        for row in rows:
            mine, seen = issued[row.credential_id], usable(row, proven.get(row.did))
            state = seen.state if seen is not None else row.status
            if row.status == "revoked":
                refusals.append(f"{row.did} is revoked; revocation is final: it cannot be {_PAST[action]}")
                continue
            if state == "revoked" and target != "revoked":
                assert seen is not None
                refusals.append(
                    f"{row.did} is revoked on the ledger (block {seen.height}); revocation is final: "
                    f"it cannot be {_PAST[action]}"
                )
                continue
            if allowed is not None and row.status not in allowed and state not in allowed:
                ledger = f" (and {state} on the ledger)" if state != row.status else ""
                refusals.append(f"{row.did} is {row.status}{ledger}: it cannot be {_PAST[action]}")
                continue
            plan = in_line(row, mine, seen) or Plan(row, mine.revoked, mine.suspended, [])
            if purpose == "revocation":
                plan.revoked = True
            else:
                plan.suspended = value
            if seen is not None and state == target and row.status != target:
                # made on the ledger already, not recorded: sent again all the same (a node behind, or
                # lying, must never stand in for the transaction), and its event says what was found
                found[row.did] = seen.found(row.status)
                plan.events = []
            to_send.append(plan)
        if refusals:
            self._refuse(rows, issued, proven, refusals, record)
        txns = self._send(to_send, action, purpose, value) if to_send else {}
        for plan in to_send:
            name = list_name(
                plan.row.revocation_list if purpose == "revocation" else plan.row.suspension_list
            )
            plan.height = commit_height(self.ledger, txns[name])
            event = StatusEvent(
                plan.row.did, action, name, str(txns[name]["id"]), True, found.get(plan.row.did)
            )
            plan.events.append(event)
        try:
            self._record(to_send, record)
        except Exception as exc:
            _log.exception("the ledger made a status change the portal could not record")
            committed = {name: str(status["id"]) for name, status in txns.items()}
            raise StatusNotRecorded(
                f"the ledger committed the change (transaction {', '.join(sorted(committed.values()))}), "
                f"but the portal could not record it: {_why(exc)}. The device(s) keep their former status "
                f"in the portal until it is recorded: repeat the action (its transaction is sent again, "
                f"which changes nothing on the ledger) or open the device's page",
                [plan.row.did for plan in to_send],
                committed,
            ) from exc
        return StatusChange(self._fresh(rows), txns)

    def _refuse(
        self,
        rows: Sequence[DeviceRow],
        issued: Mapping[str, IssuedStatus],
        proven: Mapping[str, ProvenStatus],
        refusals: Sequence[str],
        record: Recorder | None,
    ) -> NoReturn:
        """Raise :class:`DeviceStateConflict` naming the refused devices, after recording the state
        found proven on the ledger for every device whose record is not in line with it."""
        more = f" (and {len(refusals) - _NAMED} more)" if len(refusals) > _NAMED else ""
        message = "; ".join(refusals[:_NAMED]) + more + ". Nothing was sent to the ledger"
        plans = self._out_of_line(rows, issued, proven)
        if plans:
            try:
                self._record(plans, record)
            except Exception:  # the refusal is the answer; the record is brought in line next time
                _log.exception("could not record the ledger's status of %d device(s)", len(plans))
            else:
                if any(plan.events for plan in plans):
                    message += "; the portal's record was brought in line with the ledger"
        raise DeviceStateConflict(message)

    def _send(
        self, plans: Sequence[Plan], action: str, purpose: str, value: bool
    ) -> dict[str, dict[str, Any]]:
        """Submit the change of ``plans``' devices to the ledger, one ``status_list.update`` per list, once
        the portal's database is known writable; each list's committed status."""
        try:
            self.issuer.check_writable()
        except (IssuerError, SQLAlchemyError) as exc:
            raise StatusStoreBusy(
                f"the portal's database is busy: {_why(exc)}. Nothing was sent to the ledger and nothing "
                f"changed; try again"
            ) from None
        by_list: dict[str, list[int]] = {}
        for plan in plans:
            url = plan.row.revocation_list if purpose == "revocation" else plan.row.suspension_list
            by_list.setdefault(list_name(url), []).append(plan.row.status_index)
        change = "set" if value else "clear"
        try:
            statuses = self.organisation.transact(
                self.ledger,
                [
                    ("status_list.update", {"list": name, change: sorted(set(indices))})
                    for name, indices in by_list.items()
                ],
                timeout=self.timeout,
            )
        except LedgerUnreachable as exc:
            raise LedgerUnreachable(
                f"{exc}. The ledger may still make the change: the portal records it when it finds it "
                f"there, when the action is repeated or the device's page is opened"
            ) from None
        return dict(zip(by_list, statuses, strict=True))

    def _record(self, plans: Sequence[Plan], record: Recorder | None) -> None:
        """Write ``plans``: the issuer's bits, the devices' rows and ``record``'s rows, in one database
        transaction (two when the issuer keeps its lists in another database: the issuer's first; each
        write brings bits to a value, so a record cut short between the two is completed next time).
        A plan whose device's record stands by now on a higher height than the plan's (another process
        recorded a later state meanwhile) is left out, but for the events of the change asked for (it
        was made on the ledger, and is audited)."""
        shared = self.issuer.engine is self.engine
        kept, events = list(plans), [event for plan in plans for event in plan.events]
        if not shared:
            with Session(self.engine) as own:
                kept, events = standing(own, plans)
        with self.issuer.changing() as session:
            if shared:  # read under the database's write lock (SQLite) or the rows' (FOR UPDATE)
                kept, events = standing(session, plans)
            ids = {
                (StatusPurpose.REVOCATION, True): [p.row.credential_id for p in kept if p.revoked],
                (StatusPurpose.SUSPENSION, True): [p.row.credential_id for p in kept if p.suspended],
                (StatusPurpose.SUSPENSION, False): [p.row.credential_id for p in kept if not p.suspended],
            }
            for (purpose, value), credential_ids in ids.items():
                if credential_ids:
                    self.issuer.set_status(session, credential_ids, purpose, value)
            if shared:
                self._write_rows(session, kept, events, record)
        if not shared:
            with Session(self.engine) as own:
                self._write_rows(own, kept, events, record)
                own.commit()

    @staticmethod
    def _write_rows(
        session: Session, plans: Sequence[Plan], events: Sequence[StatusEvent], record: Recorder | None
    ) -> None:
        by_state: dict[tuple[str, int], list[str]] = {}
        for plan in plans:
            by_state.setdefault((plan.state, plan.height), []).append(plan.row.did)
        for (state, height), dids in by_state.items():
            for start in range(0, len(dids), _IN_CHUNK):
                changed = (
                    update(DeviceRow)
                    .where(col(DeviceRow.did).in_(dids[start : start + _IN_CHUNK]))
                    .values(status=state, status_height=height)
                )
                if state != "revoked":  # a revocation made meanwhile by another process stands: it is final
                    stored = col(DeviceRow.status_height)
                    changed = changed.where(
                        col(DeviceRow.status) != "revoked", or_(stored.is_(None), stored <= height)
                    )
                session.execute(changed)
        if record is not None and events:
            record(session, events)
        session.flush()

    # -- reading ----------------------------------------------------------------------------
    def _rows(self, dids: Iterable[str]) -> list[DeviceRow]:
        """The devices' rows, each once, in order; :class:`UnknownDevice` for a DID not enrolled."""
        wanted = list(dict.fromkeys(dids))
        found: dict[str, DeviceRow] = {}
        with Session(self.engine) as session:
            for start in range(0, len(wanted), _IN_CHUNK):
                query = select(DeviceRow).where(col(DeviceRow.did).in_(wanted[start : start + _IN_CHUNK]))
                found.update((row.did, row) for row in session.exec(query).all())
        missing = next((did for did in wanted if did not in found), None)
        if missing is not None:
            raise UnknownDevice(f"no enrolled device {missing}")
        return [found[did] for did in wanted]

    def _issued(self, rows: Sequence[DeviceRow]) -> dict[str, IssuedStatus]:
        """The issuer's record of the devices' credentials, by credential id."""
        try:
            statuses = self.issuer.statuses([row.credential_id for row in rows])
        except IssuerError as exc:
            raise DeviceStateConflict(f"{exc}; nothing was changed") from None
        return {status.credential_id: status for status in statuses}

    def _proven(self, rows: Sequence[DeviceRow]) -> dict[str, ProvenStatus]:
        return proven_status(self.ledger, self.issuer.did, rows)

    def _out_of_line(
        self,
        rows: Sequence[DeviceRow],
        issued: Mapping[str, IssuedStatus],
        proven: Mapping[str, ProvenStatus],
    ) -> list[Plan]:
        """What brings the record of each device not in line with its bits proven on the ledger in line."""
        return [
            plan
            for row in rows
            if (plan := in_line(row, issued[row.credential_id], usable(row, proven.get(row.did)))) is not None
        ]

    def _fresh(self, rows: Sequence[DeviceRow]) -> list[DeviceRecord]:
        with Session(self.engine) as session:
            fresh = [session.get(DeviceRow, row.did) for row in rows]
        return [record_of(row) for row in fresh if row is not None]

    # -- shorthands -------------------------------------------------------------------------
    def suspend(self, *dids: str) -> list[DeviceRecord]:
        """Suspend devices: set their bits in the suspension lists on the ledger (one transaction per list)."""
        return self._change(dids, "suspension", True).devices

    def reinstate(self, *dids: str) -> list[DeviceRecord]:
        """Lift devices' suspension: clear their suspension bits on the ledger."""
        return self._change(dids, "suspension", False).devices

    def revoke(self, *dids: str) -> list[DeviceRecord]:
        """Revoke devices for good: set their bits in the revocation lists on the ledger."""
        return self._change(dids, "revocation", True).devices


def _why(exc: BaseException) -> str:
    """An error's reason in one line."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]

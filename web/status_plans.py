"""What a device status change or reconciliation writes: the events the portal records (its audit
entries), the plan of each device's record (bits, state, and the ledger height it stands on), and the
rule that a record never goes back to an older state of the ledger.

A device's record keeps the height it stands on (``DeviceRow.status_height``): the block that
committed the change recorded, or the block read when a change was found there. A state read below
that height says nothing of now (a node behind, or a read made before another process recorded a
later change) and is never recorded over it; a revocation, final on the ledger, stands whenever it is
read. :mod:`web.device_status` makes the plans and writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlmodel import Session, col, select

from wallet.issuer import IssuedStatus
from web.enrolment_records import DeviceRow
from web.status_on_ledger import FoundOnLedger, ProvenStatus, list_name

__all__ = ["Plan", "Recorder", "StatusEvent", "in_line", "standing", "usable"]

_INTO: Final = {"revoked": "revoke", "suspended": "suspend", "active": "reinstate"}  # state -> action
_IN_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One change of one device's state as the portal records it (one audit entry): ``action`` is
    ``suspend``, ``reinstate`` or ``revoke``; ``list`` the ledger name of the list holding the bit;
    ``txn`` the ledger transaction this change committed (always one for the change asked for; ``None``
    for a state the portal found on the ledger and recorded on its own); ``requested`` whether it is
    the change asked for (else the portal brought its record in line with the ledger on the way);
    ``found`` what the ledger showed that the record did not (for the change asked for: that the ledger
    had made it already, its transaction sent again)."""

    did: str
    action: str
    list: str
    txn: str | None
    requested: bool
    found: FoundOnLedger | None = None


Recorder = Callable[[Session, Sequence[StatusEvent]], None]
"""Writes the caller's rows for the events (its audit entries) in the session of the change, which the
change commits: called once per recorded change, with every event of it. Raising rolls the record
back (the portal's record of the change then stays as before, and
:class:`~web.device_status.StatusNotRecorded` says so)."""


@dataclass
class Plan:
    """What one device's record becomes: its bits and state, the ledger height that state stands on,
    and the events that say why."""

    row: DeviceRow
    revoked: bool
    suspended: bool
    events: list[StatusEvent]
    height: int = 0

    @property
    def state(self) -> str:
        """The device's state once the plan is written."""
        if self.row.status == "revoked":  # a revoked device's row never goes back
            return "revoked"
        return "revoked" if self.revoked else "suspended" if self.suspended else "active"


def usable(row: DeviceRow, seen: ProvenStatus | None) -> ProvenStatus | None:
    """``seen`` (``row``'s bits proven on the ledger) unless it was read below the height ``row``'s
    record stands on: an older state says nothing of now, but a revocation, final, stands whenever
    it is read."""
    if seen is None or seen.revoked or seen.height >= (row.status_height or 0):
        return seen
    return None


def in_line(row: DeviceRow, issued: IssuedStatus, seen: ProvenStatus | None) -> Plan | None:
    """What brings the record of ``row`` in line with ``seen`` (its bits proven on the ledger), with an
    event for a state found changed there; ``None`` when it is in line, when nothing is proven, or when
    ``seen`` was read below the height the record stands on (unless it shows a revocation, final)."""
    if seen is None:
        return None
    older = seen.height < (row.status_height or 0)
    if older and not seen.revoked:
        return None
    suspended = issued.suspended if older else seen.suspended
    plan = Plan(row, seen.revoked or issued.revoked, suspended, [], seen.height)
    if plan.state != row.status:
        list_url = row.revocation_list if plan.state == "revoked" else row.suspension_list
        event = StatusEvent(
            row.did, _INTO[plan.state], list_name(list_url), None, False, seen.found(row.status)
        )
        plan.events.append(event)
    elif (plan.revoked, plan.suspended) == (issued.revoked, issued.suspended):
        return None
    return plan


def standing(session: Session, plans: Sequence[Plan]) -> tuple[list[Plan], list[StatusEvent]]:
    """The plans to write, checked against the devices' records as they stand in ``session`` (another
    process may have recorded a later state since they were read), and the events to record. A plan
    whose record stands on a higher height, or is revoked, is left out, but for the events of the
    change asked for (made on the ledger, it is audited); a revocation is written whatever the height,
    at the higher of the two."""
    current: dict[str, tuple[str, int]] = {}
    dids = sorted({plan.row.did for plan in plans})  # rows locked in one order by every writer
    for start in range(0, len(dids), _IN_CHUNK):
        query = (
            select(DeviceRow.did, DeviceRow.status, DeviceRow.status_height)
            .where(col(DeviceRow.did).in_(dids[start : start + _IN_CHUNK]))
            .order_by(col(DeviceRow.did))
            .with_for_update()
        )
        current.update((did, (status, height or 0)) for did, status, height in session.exec(query).all())
    kept: list[Plan] = []
    events: list[StatusEvent] = []
    for plan in plans:
        status, height = current.get(plan.row.did, (plan.row.status, plan.row.status_height or 0))
        if plan.state == "revoked":
            plan.height = max(plan.height, height)
        elif status == "revoked" or height > plan.height:
            events.extend(event for event in plan.events if event.requested)
            continue
        kept.append(plan)
        events.extend(plan.events)
    return kept, events

"""Device status: enrolled devices listed, suspended, reinstated and revoked on the ledger.

A change flips the devices' bits in the organisation's status lists on the ledger (one transaction
per list), then in the issuer's copy of the lists and in the devices' rows, one change at a time.
:class:`web.enrolment.Enrolment` is built on this class.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Final

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from did_registry.client import LedgerClient
from wallet.errors import IssuerError
from wallet.issuer import Issuer
from web.enrolment_records import (
    DeviceFilter,
    DeviceRecord,
    DeviceRow,
    DeviceStateConflict,
    StatusChange,
    UnknownDevice,
    record_of,
)
from web.organisation import Organisation

__all__ = ["DeviceStatus"]

_ACTIONS: Final = {
    "suspend": ("suspension", True),
    "reinstate": ("suspension", False),
    "revoke": ("revocation", True),
}


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
        self, action: str, dids: Sequence[str], *, allowed: Iterable[str] | None = None
    ) -> StatusChange:
        """``suspend``, ``reinstate`` or ``revoke`` devices on the ledger (one transaction per list);
        the devices as they are now and the committed transaction of each list. With ``allowed``,
        every device must be in one of those states when the change is made, or nothing changes."""
        purpose, value = _ACTIONS[action]
        return self._change(dids, purpose, value, None if allowed is None else frozenset(allowed))

    def _change(
        self, dids: Sequence[str], purpose: str, value: bool, allowed: frozenset[str] | None = None
    ) -> StatusChange:
        """Check, write the ledger, then the issuer's lists and the devices' rows, as one step: two
        changes at once (a suspension racing a revocation, two operators revoking one device) would
        otherwise both pass the check, and the later row written would undo the other's state."""
        with self._changing:
            return self._change_now(dids, purpose, value, allowed)

    def _change_now(
        self, dids: Sequence[str], purpose: str, value: bool, allowed: frozenset[str] | None
    ) -> StatusChange:
        with Session(self.engine) as session:
            rows = []
            for did in dict.fromkeys(dids):
                row = session.get(DeviceRow, did)
                if row is None:
                    raise UnknownDevice(f"no enrolled device {did}")
                if row.status == "revoked":
                    raise DeviceStateConflict(f"{did} is revoked; revocation is final")
                if allowed is not None and row.status not in allowed:
                    raise DeviceStateConflict(f"{did} is {row.status}: the change does not apply")
                rows.append(row)
        by_list: dict[str, list[int]] = {}
        for row in rows:
            url = row.revocation_list if purpose == "revocation" else row.suspension_list
            by_list.setdefault(url.rpartition("/")[2], []).append(row.status_index)
        change = "set" if value else "clear"
        statuses = self.organisation.transact(
            self.ledger,
            [
                ("status_list.update", {"list": name, change: sorted(indices)})
                for name, indices in by_list.items()
            ],
            timeout=self.timeout,
        )
        ids = [row.credential_id for row in rows]
        try:
            if purpose == "revocation":
                self.issuer.revoke(*ids)
            elif value:
                self.issuer.suspend(*ids)
            else:
                self.issuer.reinstate(*ids)
        except IssuerError as exc:
            raise DeviceStateConflict(str(exc)) from None
        state = "revoked" if purpose == "revocation" else "suspended" if value else "active"
        changed = (
            update(DeviceRow).where(col(DeviceRow.did).in_([row.did for row in rows])).values(status=state)
        )
        if state != "revoked":  # a revocation made meanwhile by another process stands: it is final
            changed = changed.where(col(DeviceRow.status) != "revoked")
        with Session(self.engine) as session:
            session.execute(changed)
            session.commit()
            fresh = [session.get(DeviceRow, row.did) for row in rows]
            return StatusChange(
                [record_of(row) for row in fresh if row is not None],
                dict(zip(by_list, statuses, strict=True)),
            )

    def suspend(self, *dids: str) -> list[DeviceRecord]:
        """Suspend devices: set their bits in the suspension lists on the ledger (one transaction per list)."""
        return self._change(dids, "suspension", True).devices

    def reinstate(self, *dids: str) -> list[DeviceRecord]:
        """Lift devices' suspension: clear their suspension bits on the ledger."""
        return self._change(dids, "suspension", False).devices

    def revoke(self, *dids: str) -> list[DeviceRecord]:
        """Revoke devices for good: set their bits in the revocation lists on the ledger."""
        return self._change(dids, "revocation", True).devices

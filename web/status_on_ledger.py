"""A portal's devices' status as proven on the ledger: the bits of the organisation's status lists
read with proofs, as of a block no older than the highest certified one any node gives nor than any
height the devices' records stand on (``DeviceRow.status_height``), so a node that is behind cannot
show a change undone. :class:`web.device_status.DeviceStatus` checks and brings its record in line
with them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.identity.status_list import BitstringStatusList
from web.enrolment_records import DeviceRow
from web.organisation import LedgerUnreachable

__all__ = ["FoundOnLedger", "ProvenStatus", "commit_height", "list_name", "proven_status"]


@dataclass(frozen=True, slots=True)
class FoundOnLedger:
    """A device's state found proven on the ledger that the portal's record did not show: ``height``
    is the certified block read, ``list_height`` the block that last changed the device's list there
    (where the change was made), ``portal_status`` what the portal's record said."""

    height: int
    list_height: int | None
    portal_status: str

    def to_json(self) -> dict[str, Any]:
        """As an audit entry's detail holds it."""
        return {"height": self.height, "list_height": self.list_height, "portal_status": self.portal_status}


@dataclass(frozen=True, slots=True)
class ProvenStatus:
    """One device's bits as proven on the ledger at ``height``, and when each of its lists last changed."""

    revoked: bool
    suspended: bool
    height: int
    list_heights: tuple[int | None, int | None]  # (revocation, suspension)

    @property
    def state(self) -> str:
        return "revoked" if self.revoked else "suspended" if self.suspended else "active"

    def found(self, portal_status: str) -> FoundOnLedger:
        which = self.list_heights[0] if self.revoked else self.list_heights[1]
        return FoundOnLedger(self.height, which, portal_status)


def list_name(url: str) -> str:
    """The ledger name of a status list, the last segment of its URL."""
    return url.rpartition("/")[2]


def commit_height(ledger: LedgerClient, status: Mapping[str, Any]) -> int:
    """The height a committed transaction's status (a node's answer) names, never above the highest
    certified height ``ledger`` has seen (the commit was proven included in a certified block by then,
    so a node naming a height far ahead cannot make the portal wait for blocks that never come)."""
    height = status.get("height")
    seen = ledger.seen_height
    return min(height, seen) if type(height) is int and height >= 0 else seen


def _list_bits(value: object) -> tuple[BitstringStatusList, int | None] | None:
    """A proven status list's bits and the height of its last change, or ``None`` if it cannot be read."""
    if not isinstance(value, Mapping) or not isinstance(value.get("bits"), str):
        return None
    try:
        bits = BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"]))
    except (ValueError, binascii.Error):  # InvalidStatusList is a ValueError
        return None
    height = value.get("height")
    return bits, height if type(height) is int else None


def proven_status(ledger: LedgerClient, issuer: str, rows: Sequence[DeviceRow]) -> dict[str, ProvenStatus]:
    """The devices' bits proven on the ledger, as of a block no older than the highest certified one
    a node gives, nor than the height any of their records stands on (a node behind cannot show a
    change undone, even when it is the only one answering); a device whose lists cannot be read there
    is left out. :class:`~web.organisation.LedgerUnreachable` when no node answers as of that block."""
    names = sorted(
        {list_name(row.revocation_list) for row in rows} | {list_name(row.suspension_list) for row in rows}
    )
    if not names:
        return {}
    try:
        floor = max([ledger.highest_head().height, *(row.status_height or 0 for row in rows)])
        values, header = ledger.prove_many([f"status:{issuer}:{name}" for name in names], min_height=floor)
    except LedgerUnavailable as exc:
        raise LedgerUnreachable(
            f"the devices' status cannot be read from the ledger: {exc}; nothing was changed"
        ) from None
    lists = dict(zip(names, (_list_bits(value) for value in values), strict=True))
    proven: dict[str, ProvenStatus] = {}
    for row in rows:
        revocation, suspension = lists[list_name(row.revocation_list)], lists[list_name(row.suspension_list)]
        if revocation is None or suspension is None:
            continue
        try:
            bits = (revocation[0].get(row.status_index), suspension[0].get(row.status_index))
        except ValueError:  # StatusIndexError: an index beyond the list
            continue
        proven[row.did] = ProvenStatus(
            bool(bits[0]), bool(bits[1]), header.height, (revocation[1], suspension[1])
        )
    return proven

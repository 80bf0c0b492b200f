"""Enrolment requests checked before anything changes: each item's token and self-signed ``did.create``.

A part of :class:`~web.enrolment.Enrolment`: a batch's token rows and devices are read in a few
queries; each item comes out as its usable token row with its checked transaction, as the error
naming what is wrong with it, or, for a device repeating a completed enrolment, as the earlier
result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from sqlmodel import Session, col, select

from did_registry.ledger.txn import Transaction
from wallet.enroll import EnrollmentError, check_enrolment_transaction
from web.enrolment_records import (
    DeviceRow,
    EnrolmentError,
    EnrolmentResult,
    InvalidEnrolmentRequest,
    ProvisioningTokenRow,
    TokenUsed,
    token_hash,
)
from web.provisioning import IN_CHUNK, ProvisioningTokens

__all__ = ["EnrolmentRequests"]


def _signed_by(txn_json: object, network: str, did: str | None) -> bool:
    """Whether ``txn_json`` is a valid enrolment transaction of ``did`` on ``network`` (its signature
    proves the device's key again; the transaction alone is public on the ledger)."""
    try:
        return did is not None and check_enrolment_transaction(txn_json, network).submitter == did
    except EnrollmentError:
        return False


class EnrolmentRequests(ProvisioningTokens):
    """The checks of :class:`~web.enrolment.Enrolment` on what devices send, before it changes anything."""

    def _enrolled(self, dids: Iterable[str]) -> set[str]:
        """Which of ``dids`` are enrolled devices already."""
        wanted, found = list(dict.fromkeys(dids)), set[str]()
        with Session(self.engine) as session:
            for start in range(0, len(wanted), IN_CHUNK):
                query = select(DeviceRow.did).where(col(DeviceRow.did).in_(wanted[start : start + IN_CHUNK]))
                found.update(session.exec(query).all())
        return found

    def _prepare(
        self, token: object, txn_json: object
    ) -> tuple[ProvisioningTokenRow, Transaction] | EnrolmentResult:
        prepared = self._prepare_many([(token, txn_json)])[0]
        if isinstance(prepared, EnrolmentError):
            raise prepared
        return prepared

    def _prepare_many(
        self, items: Sequence[tuple[object, object]]
    ) -> list[tuple[ProvisioningTokenRow, Transaction] | EnrolmentResult | EnrolmentError]:
        """Each item's usable token row and checked transaction, or the error naming what is wrong
        with it (the token first, then the transaction, then a device enrolled already), or, for a
        device repeating its completed enrolment with the same token, the earlier result (its answer
        was lost); nothing is changed. The rows are read in a few queries for the whole batch."""
        hashes = [token_hash(token) if isinstance(token, str) and token else "" for token, _ in items]
        rows = self._token_rows(h for h in hashes if h)
        network = self.ledger.genesis.network
        prepared: list[tuple[ProvisioningTokenRow, Transaction] | EnrolmentResult | EnrolmentError] = []
        repeats: dict[int, ProvisioningTokenRow] = {}  # position -> its used token's row
        for (token, txn_json), hashed in zip(items, hashes, strict=True):
            found = rows.get(hashed)
            try:
                row = self._usable(token, found)
                try:
                    txn = check_enrolment_transaction(txn_json, network)
                except EnrollmentError as exc:
                    raise InvalidEnrolmentRequest(exc.detail) from None
            except TokenUsed as exc:
                if (
                    found is not None
                    and found.status == "used"
                    and _signed_by(txn_json, network, found.device_did)
                ):
                    repeats[len(prepared)] = found  # the same device again, if its row says so
                prepared.append(exc)
                continue
            except EnrolmentError as exc:
                prepared.append(exc)
                continue
            prepared.append((row, txn))
        for position, result in self._earlier_results(repeats).items():
            prepared[position] = result
        enrolled = self._enrolled(p[1].submitter for p in prepared if isinstance(p, tuple))
        return [
            InvalidEnrolmentRequest(f"{p[1].submitter} is enrolled already")
            if isinstance(p, tuple) and p[1].submitter in enrolled
            else p
            for p in prepared
        ]

    def _earlier_results(self, repeats: Mapping[int, ProvisioningTokenRow]) -> dict[int, EnrolmentResult]:
        """The earlier results of the completed enrolments ``repeats`` (used token rows whose device
        signed the item's creation again), by position: those whose device row was recorded with
        that token. The device rows are read in a few queries."""
        dids = [row.device_did for row in repeats.values() if row.device_did is not None]
        devices: dict[str, DeviceRow] = {}
        with Session(self.engine) as session:
            for start in range(0, len(dids), IN_CHUNK):
                query = select(DeviceRow).where(col(DeviceRow.did).in_(dids[start : start + IN_CHUNK]))
                devices.update((device.did, device) for device in session.exec(query).all())
        results = {}
        for position, row in repeats.items():
            device = devices.get(row.device_did or "")
            if device is not None and device.token_hash == row.token_hash:
                results[position] = EnrolmentResult(
                    device.did,
                    json.loads(device.credential),
                    device.credential_id,
                    device.status_index,
                    device.enrolled_at,
                    repeated=True,
                )
        return results

"""Devices whose creations are on the ledger: their credentials issued, and the devices recorded with
their tokens used, in one database transaction.

A part of :class:`~web.enrolment.Enrolment`, for its single and its batch paths. :data:`Enrolled` is
importable from :mod:`web.enrolment` too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Connection
from sqlmodel import col

from did_registry.client import LedgerClient
from did_registry.ledger.txn import Transaction
from wallet.issuer import IssuedStatus
from web.enrolment_records import DeviceRow, EnrolmentResult, ProvisioningTokenRow, TokenUsed, profile_of
from web.organisation import DEVICE_CREDENTIAL, Organisation, PortalError
from web.undelivered import UndeliveredCredentials, credential_id

__all__ = ["Enrolled", "EnrolledDevices"]

Enrolled: TypeAlias = Callable[[Connection, Sequence[tuple[EnrolmentResult, str, str]]], None]
"""Told of devices as they are recorded, each with its token's hash and its transaction id, inside
the database transaction that records them (on its connection): what it writes there commits with
the devices, and if it raises, nothing of it or of them is recorded (where an audit is kept)."""


class EnrolledDevices(UndeliveredCredentials):
    """The devices :class:`~web.enrolment.Enrolment` records once their creations are on the ledger
    (its constructor sets the attributes declared here)."""

    organisation: Organisation
    ledger: LedgerClient
    timeout: float
    credential_validity: timedelta | None

    def _complete(
        self,
        anchored: Sequence[tuple[ProvisioningTokenRow, Transaction]],
        claim: str,
        on_enrolled: Enrolled | None = None,
    ) -> list[EnrolmentResult | PortalError]:
        """Issue the credentials of devices now on the ledger, and record them with their tokens used
        (one database transaction for the devices and tokens); ``anchored`` pairs each token's row,
        as read before claim ``claim`` took it, with the device's creation. A device whose token is
        no longer held by ``claim`` (taken over since) is not recorded: :class:`TokenUsed`."""
        if not anchored:
            return []
        self._withdraw_abandoned([row for row, _ in anchored if row.status == "claimed"])
        self._withdraw_strays({txn.submitter for _, txn in anchored}, {row.token_hash for row, _ in anchored})
        now = self.clock()
        valid_until = now + self.credential_validity if self.credential_validity is not None else None
        issued_all = self.issuer.issue_many(
            [profile_of(row).claims(txn.submitter) for row, txn in anchored],
            types=[DEVICE_CREDENTIAL],
            valid_until=valid_until,
            credential_ids=[credential_id(row.token_hash, claim) for row, _ in anchored],
            now=now,
        )
        try:
            results = self._record_enrolled(anchored, issued_all, now, claim, on_enrolled)
        except BaseException:  # no device holds these credentials: nothing may claim they were given
            self._withdraw([issued.credential_id for _, issued in issued_all])
            raise
        self._withdraw(
            [
                issued.credential_id
                for result, (_, issued) in zip(results, issued_all, strict=True)
                if not isinstance(result, EnrolmentResult)
            ]
        )
        return results

    def _record_enrolled(
        self,
        anchored: Sequence[tuple[ProvisioningTokenRow, Transaction]],
        issued_all: Sequence[tuple[dict[str, Any], IssuedStatus]],
        now: datetime,
        claim: str,
        on_enrolled: Enrolled | None = None,
    ) -> list[EnrolmentResult | PortalError]:
        """Publish the credentials' status lists, then, in one database transaction, mark used the
        tokens claim ``claim`` still holds, record their devices and tell ``on_enrolled``."""
        lists = {url for _, issued in issued_all for url in (issued.revocation_list, issued.suspension_list)}
        self.organisation.ensure_status_lists(
            self.ledger, {url.rpartition("/")[2] for url in lists}, timeout=self.timeout
        )
        results = [
            EnrolmentResult(txn.submitter, credential, credential["id"], issued.index, now)
            for (_, txn), (credential, issued) in zip(anchored, issued_all, strict=True)
        ]
        used = (
            update(ProvisioningTokenRow)
            .where(
                col(ProvisioningTokenRow.token_hash) == bindparam("used_hash"),
                col(ProvisioningTokenRow.status) == "claimed",
                col(ProvisioningTokenRow.claim_id) == bindparam("claim"),
            )
            .values(status="used", used_at=now)
        )
        kept: dict[int, bool] = {}
        with self.engine.begin() as connection:  # in token order, as claims are taken
            for position in sorted(range(len(anchored)), key=lambda p: anchored[p][0].token_hash):
                params = {"used_hash": anchored[position][0].token_hash, "claim": claim}
                kept[position] = connection.execute(used, params).rowcount == 1
            recorded = [p for p in range(len(anchored)) if kept[p]]
            if recorded:
                connection.execute(
                    insert(DeviceRow),
                    [_device_row(anchored[p][0], results[p], issued_all[p][1], now) for p in recorded],
                )
                if on_enrolled is not None:
                    on_enrolled(
                        connection,
                        [(results[p], anchored[p][0].token_hash, anchored[p][1].id) for p in recorded],
                    )
        return [
            result
            if kept[position]
            else TokenUsed(
                "this provisioning token is no longer held by this enrolment (taken over, or expired)"
            )
            for position, result in enumerate(results)
        ]


def _device_row(
    row: ProvisioningTokenRow, result: EnrolmentResult, issued: IssuedStatus, now: datetime
) -> dict[str, Any]:
    """The device row of ``result``, enrolled with the token of ``row``."""
    return {
        "did": result.did,
        "model": row.model,
        "firmware": row.firmware,
        "attributes": row.attributes,
        "token_hash": row.token_hash,
        "credential_id": result.credential_id,
        "credential": json.dumps(result.credential),
        "status_index": result.status_index,
        "revocation_list": issued.revocation_list,
        "suspension_list": issued.suspension_list,
        "status": "active",
        "enrolled_at": now,
    }

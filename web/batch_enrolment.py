"""Batch enrolment (:meth:`BatchEnrolment.enrol_many`): a factory line's devices, with batched ledger
writes in chunks of :data:`BULK_CHUNK`.

A part of :class:`~web.enrolment.Enrolment`, built on its checks of the requests
(:mod:`web.enrolment_requests`), the devices' creations on the ledger (:mod:`web.device_creations`)
and the recording of enrolled devices (:mod:`web.enrolled_devices`). :data:`BULK_CHUNK` is
importable from :mod:`web.enrolment` too, but read here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from did_registry.client import LedgerUnavailable
from did_registry.ledger.txn import Transaction, TxnRejected
from web.device_creations import DeviceCreations, _may_be_anchored
from web.enrolled_devices import Enrolled, EnrolledDevices
from web.enrolment_records import (
    EnrolmentError,
    EnrolmentResult,
    InvalidEnrolmentRequest,
    ProvisioningTokenRow,
    TokenUsed,
)
from web.enrolment_requests import EnrolmentRequests
from web.organisation import LedgerRefused, LedgerUnreachable, PortalError
from web.provisioning import IN_CHUNK, new_claim_id

__all__ = ["BULK_CHUNK", "BatchEnrolment"]

BULK_CHUNK: Final = 1000
"""Most did.create transactions in one ``POST /txns`` of :meth:`~web.enrolment.Enrolment.enrol_many`."""


class BatchEnrolment(DeviceCreations, EnrolledDevices, EnrolmentRequests):
    """The batch path of :class:`~web.enrolment.Enrolment` (:meth:`enrol_many`)."""

    def enrol_many(
        self,
        items: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        on_enrolled: Enrolled | None = None,
    ) -> list[EnrolmentResult | PortalError]:
        """Enrol many devices with batched ledger writes; one result or error per item, in order.
        ``on_enrolled`` (:data:`Enrolled`) hears each chunk's devices in the transaction that records
        them, so they stay recorded (and heard of) when a later chunk fails.

        Every item is checked (the batch's tokens and devices read in a few queries) and the tokens
        are claimed in one database transaction. The endorsed did.create transactions go to the
        ledger in chunks of :data:`BULK_CHUNK` (a transaction the ledger refuses at the door is
        dropped from its chunk, which is sent again); while the ledger orders one chunk, the
        credentials of the chunk before it, committed by then, are issued, so the portal's work and
        the ledger's overlap. Tokens of devices not enrolled are released. The batch renews its claims
        before each further chunk, so they never look abandoned while it goes on; a token whose claim
        was abandoned is taken over for the device it is reserved for, as by :meth:`enrol`.
        """
        results: list[EnrolmentResult | PortalError | None] = [None] * len(items)
        candidates: list[tuple[int, ProvisioningTokenRow, Transaction]] = []
        dids: set[str] = set()
        for position, prepared in enumerate(self._prepare_many(items)):
            if isinstance(prepared, (EnrolmentError, EnrolmentResult)):
                results[position] = prepared  # an error, or a completed enrolment repeated
            elif prepared[1].submitter in dids:
                results[position] = InvalidEnrolmentRequest(
                    f"{prepared[1].submitter} appears twice in the batch"
                )
            else:
                dids.add(prepared[1].submitter)
                candidates.append((position, *prepared))
        claim = new_claim_id()
        won = self._claim_many(
            [(row.token_hash, txn.submitter) for _, row, txn in candidates],
            claim=claim,
            abandoned={
                row.token_hash: row.claim_id or "" for _, row, _ in candidates if row.status == "claimed"
            },
        )
        claimed: dict[str, tuple[int, ProvisioningTokenRow, Transaction]] = {}
        for (position, row, txn), taken in zip(candidates, won, strict=True):
            if taken:
                claimed[txn.id] = (position, row, txn)
            else:
                results[position] = TokenUsed("this provisioning token was used already")
        # a token reserved for its DID, or whose abandoned claim was taken over: its creation may be on
        # the ledger from an earlier run (it counts as sent: never freed for another device)
        reserved = [txn for _, row, txn in claimed.values() if row.device_did is not None]
        sent = {txn.id for txn in reserved}  # and those a node admitted: their DIDs may reach the ledger
        try:
            anchored = self._anchored(reserved)  # one proven read per 500: not sent again
            queue = [txn for _, _, txn in claimed.values()]
            held = [row.token_hash for _, row, _ in claimed.values()]
            in_flight: list[str] = []
            for start in range(0, len(queue), BULK_CHUNK):
                if start:
                    self._renew(held, claim)  # those recorded already are used: left alone
                chunk = queue[start : start + BULK_CHUNK]
                sent.update(t.id for t in chunk)  # from the moment it is sent (an answer can be lost)
                submitted = self._submit_chunk(chunk, claimed, results, anchored)
                self._settle(in_flight, claimed, results, claim, on_enrolled)
                in_flight = submitted
            if len(queue) > BULK_CHUNK:
                self._renew(held, claim)
            self._settle(in_flight, claimed, results, claim, on_enrolled)
        except BaseException:
            free = [  # never sent, or refused in a way that says it is not on the ledger
                row.token_hash
                for txn_id, (position, row, _) in claimed.items()
                if txn_id not in sent
                or (isinstance(results[position], PortalError) and not _may_be_anchored(results[position]))
            ]
            self._release(free, claim, reserved=False)
            freed = set(free)
            self._release(
                (row.token_hash for _, row, _ in claimed.values() if row.token_hash not in freed), claim
            )
            raise
        failed = [(row, results[position]) for position, row, _ in claimed.values()]
        failed = [(row, result) for row, result in failed if not isinstance(result, EnrolmentResult)]
        self._release(
            [row.token_hash for row, result in failed if not _may_be_anchored(result)], claim, reserved=False
        )
        self._release((row.token_hash for row, result in failed if _may_be_anchored(result)), claim)
        return [r if r is not None else EnrolmentError("not enrolled") for r in results]

    def _anchored(self, txns: Sequence[Transaction]) -> set[str]:
        """The ids of the creations ``txns`` already committed (each DID's proven record names its
        transaction), read in batched proven reads of :data:`~web.provisioning.IN_CHUNK` DIDs."""
        found: set[str] = set()
        for start in range(0, len(txns), IN_CHUNK):
            part = txns[start : start + IN_CHUNK]
            try:
                records, _ = self.ledger.prove_many([f"did:{txn.submitter}" for txn in part])
            except LedgerUnavailable as exc:
                raise LedgerUnreachable(f"reading which device creations are on the ledger: {exc}") from None
            found.update(
                txn.id
                for txn, record in zip(part, records, strict=True)
                if isinstance(record, Mapping) and record.get("txn") == txn.id
            )
        return found

    def _submit_chunk(
        self,
        chunk: Sequence[Transaction],
        claimed: Mapping[str, tuple[int, ProvisioningTokenRow, Transaction]],
        results: list[EnrolmentResult | PortalError | None],
        anchored: Collection[str] = (),
    ) -> list[str]:
        """Endorse and submit one chunk of creations, but for those ``anchored`` (committed already);
        the ids the ledger admitted or has committed. The ledger refuses a batch for its first bad
        transaction: that one is recorded in ``results`` and the rest sent again, whole after the
        first refusal and in halves after each further one (a few refusals cost a few requests, many
        a logarithmic number each, never the rest of the chunk each). At the first conflict or replay,
        one batched proven read finds every creation of the chunk committed already (a chunk sent
        again), and none of them is sent again; one a node answers ``replay`` for and says it holds
        pending is waited for with those admitted."""
        done = [txn.id for txn in chunk if txn.id in anchored]
        parts = [[self._endorsed(txn) for txn in chunk if txn.id not in anchored]]
        read, refusals = False, 0
        while parts:
            part = parts.pop()
            if not part:
                continue
            try:
                done.extend(self.ledger.submit(part))
                continue
            except LedgerUnavailable as exc:
                raise LedgerUnreachable(f"a batch of device creations: {exc}") from None
            except TxnRejected as exc:
                if exc.txn_id is None or exc.txn_id not in {t.id for t in part}:
                    raise LedgerRefused("a batch of device creations", exc) from None
                rejection, refused = exc, exc.txn_id
            txn = claimed[refused][2]
            rest = [t for t in part if t.id != txn.id]
            if rejection.code in ("conflict", "replay"):
                if not read:  # every creation of the chunk not admitted yet, in one read
                    read = True
                    found = self._anchored([claimed[t.id][2] for p in (part, *parts) for t in p])
                    done.extend(found)
                    parts = [[t for t in p if t.id not in found] for p in parts]
                    rest = [t for t in rest if t.id not in found]
                    anchored_now = txn.id in found
                else:
                    anchored_now = self._anchored_before(txn)
                    if anchored_now:
                        done.append(txn.id)
                if not anchored_now and rejection.code == "replay" and self._held(txn):
                    anchored_now = True  # pending: waited for with those admitted
                    done.append(txn.id)
                if anchored_now:  # a retry after the answer was lost, or racing it: complete it
                    parts.append(rest)
                    continue
            results[claimed[txn.id][0]] = LedgerRefused(f"the creation of {txn.submitter}", rejection)
            refusals += 1
            half = len(rest) // 2 if refusals > 1 else 0
            parts.extend((rest[half:], rest[:half]))  # the first half is sent first
        return done

    def _settle(
        self,
        submitted: Sequence[str],
        claimed: Mapping[str, tuple[int, ProvisioningTokenRow, Transaction]],
        results: list[EnrolmentResult | PortalError | None],
        claim: str,
        on_enrolled: Enrolled | None = None,
    ) -> None:
        """Wait for the creations ``submitted``; complete those proven committed and record the others:
        a rejection as the ledger's refusal; one still pending, or said committed but not proven on
        the ledger (a node's word), as :class:`LedgerUnreachable`, its token kept for its device (the
        creation may commit yet)."""
        if not submitted:
            return
        try:
            statuses = self.ledger.wait(submitted, self.timeout)
        except LedgerUnavailable as exc:
            raise LedgerUnreachable(f"waiting for device creations: {exc}") from None
        said = [s["id"] for s in statuses if s.get("status") == "committed"]
        proven = self._anchored([claimed[i][2] for i in said])  # batched proven reads
        committed = [i for i in said if i in proven]
        for status in statuses:
            txn_id = status["id"]
            position, _, txn = claimed[txn_id]
            what = f"the creation of {txn.submitter}"
            if status.get("status") == "rejected":
                rejection = TxnRejected(status.get("code", "rejected"), status.get("detail", ""))
                results[position] = LedgerRefused(what, rejection)
            elif txn_id not in proven:
                state = "not proven on the ledger" if status.get("status") == "committed" else "not committed"
                results[position] = LedgerUnreachable(f"{what}: {state} within {self.timeout} s")
        done = self._complete([(claimed[i][1], claimed[i][2]) for i in committed], claim, on_enrolled)
        for txn_id, result in zip(committed, done, strict=True):
            results[claimed[txn_id][0]] = result

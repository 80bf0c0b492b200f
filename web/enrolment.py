"""Device enrolment: one-time provisioning tokens, endorsed DID creation, device credentials, status.

The flow and the QR payload are specified in ``docs/enrolment.md``. :class:`Enrolment` is the
portal's one service for it, built on :class:`web.provisioning.ProvisioningTokens` (tokens made,
claimed and released) and :class:`web.device_status.DeviceStatus` (devices listed, suspended,
reinstated and revoked); what they store and the errors they raise are in
:mod:`web.enrolment_records`, and are exported here too.

:meth:`Enrolment.enrol` checks the token and the device's self-signed ``did.create`` (the proof of
possession, :func:`wallet.enroll.check_enrolment_transaction`) before changing anything, then claims
the token with one conditional ``UPDATE`` (of two concurrent enrolments with one token exactly one
wins), co-signs the transaction as endorser, waits for the ledger to commit it, issues the
``DeviceCredential`` with revocation and suspension entries (:class:`wallet.issuer.Issuer`) and
records the device. If the ledger refuses, the claim is released. :meth:`Enrolment.enrol_many`
does the same for a factory line with batched ledger writes. Suspension, reinstatement and
revocation flip bits in the organisation's status lists on the ledger, one transaction per list.

If the portal's process dies while it holds a claim, the claim is abandoned: once it is older than
``claim_timeout`` the same device (the holder of the key that signed the creation the token is
reserved for) takes it over by enrolling again, and the enrolment completes as any retry does (a
creation already on the ledger is recognised as this very transaction). The credential the dead
process may have issued is withdrawn first: its id derives from the token and the claim
(:func:`web.undelivered.credential_id`), so no other credential is touched; so is the credential of a
claim left on a token that expired, when the token is expired or when its device enrols with another
token (:mod:`web.undelivered`). Marking the token used (with the device's row, in one database
transaction) and giving it back are conditional on the claim still being the enrolment's own, so a
process taken over, if alive after all, records nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, TypeAlias

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.ledger.txn import Transaction, TxnRejected
from wallet.enroll import EnrollmentError, check_enrolment_transaction
from wallet.issuer import IssuedStatus, Issuer
from web.device_status import DeviceStatus
from web.enrolment_records import (
    DeviceRow,
    EnrolmentError,
    EnrolmentResult,
    InvalidEnrolmentRequest,
    ProvisioningTokenRow,
    TokenUsed,
    create_tables,
    profile_of,
    token_hash,
)
from web.organisation import (
    DEVICE_CREDENTIAL,
    LedgerRefused,
    LedgerUnreachable,
    Organisation,
    PortalError,
    committed,
    submit,
)
from web.provisioning import CLAIM_TIMEOUT_FLOOR, IN_CHUNK, ProvisioningTokens, new_claim_id
from web.undelivered import UndeliveredCredentials, credential_id

__all__ = ["BULK_CHUNK", "Enrolled", "Enrolment"]

BULK_CHUNK: Final = 1000
"""Most did.create transactions in one ``POST /txns`` of :meth:`Enrolment.enrol_many`."""
_log = logging.getLogger("web.enrolment")
Enrolled: TypeAlias = Callable[[Connection, Sequence[tuple[EnrolmentResult, str, str]]], None]
"""Told of devices as they are recorded, each with its token's hash and its transaction id, inside
the database transaction that records them (on its connection): what it writes there commits with
the devices, and if it raises, nothing of it or of them is recorded (where an audit is kept)."""


# -- the service -------------------------------------------------------------------------------
def _signed_by(txn_json: object, network: str, did: str | None) -> bool:
    """Whether ``txn_json`` is a valid enrolment transaction of ``did`` on ``network`` (its signature
    proves the device's key again; the transaction alone is public on the ledger)."""
    try:
        return did is not None and check_enrolment_transaction(txn_json, network).submitter == did
    except EnrollmentError:
        return False


def _may_be_anchored(outcome: object) -> bool:
    """Whether a device's creation may be on the ledger after ``outcome``: anything but a refusal
    that says it is not (a conflict or replay may be the same creation, still pending or committed)."""
    return not (isinstance(outcome, LedgerRefused) and outcome.rejection.code not in ("conflict", "replay"))


class Enrolment(UndeliveredCredentials, ProvisioningTokens, DeviceStatus):
    """Provisioning tokens, enrolment and device status for one organisation on one network.

    ``store`` is the portal database's engine (its enrolment and issuer tables are created if
    missing); ``ledger`` a client of the network; ``portal_url`` the base URL devices post to;
    ``nodes`` the node URLs put in QR payloads (default: the client's). ``timeout`` bounds each wait
    for the ledger. ``claim_timeout`` is how old a token's claim is when it counts as abandoned (its
    enrolment died with its process): by default five times ``timeout``, and at least
    :data:`~web.provisioning.CLAIM_TIMEOUT_FLOOR` (10 minutes), well beyond what a live enrolment
    takes between claiming and recording (two ledger waits: the creation and, rarely, a new pair of
    status lists) or a batch between renewing its claims (one chunk).
    """

    STATES: ClassVar[tuple[str, ...]] = ("active", "suspended", "revoked")

    def __init__(
        self,
        organisation: Organisation,
        store: Engine,
        *,
        ledger: LedgerClient,
        portal_url: str,
        nodes: Sequence[str] | None = None,
        credential_validity: timedelta | None = timedelta(days=365),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 60.0,
        claim_timeout: timedelta | None = None,
    ) -> None:
        self.organisation = organisation
        self.engine = store
        create_tables(store)
        self.ledger = ledger
        self.portal_url = portal_url.rstrip("/")
        self.nodes = tuple(nodes if nodes is not None else ledger.nodes)
        self.credential_validity = credential_validity
        self.clock = clock
        self.timeout = timeout
        self.claim_timeout = (
            claim_timeout
            if claim_timeout is not None
            else max(CLAIM_TIMEOUT_FLOOR, timedelta(seconds=5 * timeout))
        )
        if self.claim_timeout <= timedelta(0):
            raise ValueError("claim_timeout must be positive")
        self._time_untimed_claims()
        self._issuer: Issuer | None = None
        self._changing = threading.Lock()  # one status change at a time: see _change

    @property
    def issuer(self) -> Issuer:
        """The organisation's issuer on the portal database (made when first needed)."""
        if self._issuer is None:
            self._issuer = self.organisation.issuer(self.engine, self.nodes[0])
        return self._issuer

    def _enrolled(self, dids: Iterable[str]) -> set[str]:
        """Which of ``dids`` are enrolled devices already."""
        wanted, found = list(dict.fromkeys(dids)), set[str]()
        with Session(self.engine) as session:
            for start in range(0, len(wanted), IN_CHUNK):
                query = select(DeviceRow.did).where(col(DeviceRow.did).in_(wanted[start : start + IN_CHUNK]))
                found.update(session.exec(query).all())
        return found

    # -- enrolment --------------------------------------------------------------------------
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

    def _endorsed(self, txn: Transaction) -> Transaction:
        me = self.organisation.signer
        return txn.signed(me.key, me.method)

    def _anchored_before(self, txn: Transaction) -> bool:
        """Whether ``txn`` itself is already committed (a retried enrolment whose answer was lost)."""
        record, _ = self.ledger.resolve_record(txn.submitter)
        return record is not None and record.get("txn") == txn.id

    def _held(self, txn: Transaction) -> bool:
        """Whether a node holds ``txn`` itself, pending or committed: what its ``replay`` refusal means
        unless the device's nonce was used by another transaction."""
        try:
            [status] = self.ledger.statuses([txn.id])
        except LedgerUnavailable as exc:
            raise LedgerUnreachable(f"the creation of {txn.submitter}: {exc}") from None
        return status.get("status") in ("pending", "committed")

    def enrol(
        self, token: str, txn_json: Mapping[str, Any], *, on_enrolled: Enrolled | None = None
    ) -> EnrolmentResult:
        """Enrol the device whose self-signed did.create is ``txn_json``, with provisioning ``token``.
        ``on_enrolled`` (:data:`Enrolled`) hears of the device in the transaction that records it.

        The same device repeating its enrolment with the same token gets the same answer again; the
        same device enrolling again after an enrolment cut short (its claim abandoned) completes it.
        """
        prepared = self._prepare(token, txn_json)
        if isinstance(prepared, EnrolmentResult):
            return prepared
        row, txn = prepared
        claim = new_claim_id()
        self._claim(row, txn.submitter, claim)
        reserved = True  # until a refusal says the creation is not on the ledger: kept for this device
        try:
            try:
                submit(self.ledger, f"the creation of {txn.submitter}", [self._endorsed(txn)], self.timeout)
            except LedgerRefused as exc:
                if exc.rejection.code == "replay" and self._held(txn):
                    try:  # the ledger holds this very creation (a retry racing it): wait for it
                        committed(self.ledger, f"the creation of {txn.submitter}", [txn.id], self.timeout)
                    except LedgerRefused as rejected:
                        reserved = _may_be_anchored(rejected)
                        raise
                elif exc.rejection.code not in ("conflict", "replay") or not self._anchored_before(txn):
                    reserved = _may_be_anchored(exc)
                    raise
            [result] = self._complete([(row, txn)], claim, on_enrolled)
            if isinstance(result, PortalError):
                raise result
            return result
        except BaseException:
            self._release([row.token_hash], claim, reserved=reserved)  # only while the claim is ours
            raise

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

"""Device enrolment: one-time provisioning tokens, endorsed DID creation, device credentials, status.

The flow and the QR payload are specified in ``docs/enrolment.md``. A provisioning token is 32
random bytes (base64url without padding) handed out once, in a QR code; the portal keeps only its
SHA-256, with the device profile, expiry and status (``issued``, ``claimed`` while an enrolment is
under way, ``used``; ``expired`` is computed, or written by :meth:`Enrolment.expire_tokens`).

:meth:`Enrolment.enrol` checks the token and the device's self-signed ``did.create`` (the proof of
possession, :func:`wallet.enroll.check_enrolment_transaction`) before changing anything, then claims
the token with one conditional ``UPDATE`` (of two concurrent enrolments with one token exactly one
wins), co-signs the transaction as endorser, waits for the ledger to commit it, issues the
``DeviceCredential`` with revocation and suspension entries (:class:`wallet.issuer.Issuer`) and
records the device. If the ledger refuses, the claim is released. :meth:`Enrolment.enrol_many`
does the same for a factory line with batched ledger writes. Suspension, reinstatement and
revocation flip bits in the organisation's status lists on the ledger, one transaction per list.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from sqlalchemy import Index, and_, bindparam, insert, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.errors import CanonicalizationError
from did_registry.identity.jcs import canonicalize, holds_nul
from did_registry.ledger.txn import Transaction, TxnRejected
from wallet.enroll import EnrollmentError, EnrolmentPayload, check_enrolment_transaction
from wallet.errors import IssuerError
from wallet.issuer import IssuedStatus, Issuer
from wallet.storage import IssuedCredentialRow, StatusListRow, open_engine
from web.organisation import (
    DEVICE_CREDENTIAL,
    LedgerRefused,
    LedgerUnreachable,
    Organisation,
    PortalError,
    submit,
)

__all__ = [
    "BULK_CHUNK",
    "MAX_ATTRIBUTES_BYTES",
    "ProvisioningTokenRow",
    "DeviceRow",
    "create_tables",
    "open_store",
    "EnrolmentError",
    "InvalidToken",
    "UnknownToken",
    "TokenUsed",
    "TokenExpired",
    "InvalidEnrolmentRequest",
    "UnknownDevice",
    "DeviceStateConflict",
    "DeviceProfile",
    "ProvisioningToken",
    "EnrolmentResult",
    "DeviceRecord",
    "DeviceFilter",
    "StatusChange",
    "Enrolment",
]

BULK_CHUNK: Final = 1000
"""Most did.create transactions in one ``POST /txns`` of :meth:`Enrolment.enrol_many`."""
_log = logging.getLogger("web.enrolment")
_RESERVED_CLAIMS = frozenset({"id", "model", "firmware"})
MAX_ATTRIBUTES_BYTES: Final = 4096
"""Most bytes a device profile's attributes take as canonical JSON: they ride in every credential and
in every token's row (a request may make 10,000 tokens)."""
_IN_CHUNK: Final = 500  # members of one SQL IN (...) list when reading a batch's rows


# -- storage -----------------------------------------------------------------------------------
class ProvisioningTokenRow(SQLModel, table=True):
    """A provisioning token, by the SHA-256 of its value (the value itself is never stored)."""

    __tablename__ = "portal_provisioning_token"

    token_hash: str = Field(primary_key=True)
    model: str
    firmware: str
    attributes: str  # JSON object
    created_at: datetime
    expires_at: datetime = Field(index=True)
    status: str = Field(default="issued", index=True)
    device_did: str | None = None
    used_at: datetime | None = None


class DeviceRow(SQLModel, table=True):
    """An enrolled device: its DID, profile, credential and where its status bits are."""

    __tablename__ = "portal_device"
    __table_args__ = (  # the device list's keyset pages: newest first, filtered by status or model
        Index("ix_portal_device_page", "enrolled_at", "did"),
        Index("ix_portal_device_status_page", "status", "enrolled_at", "did"),
        Index("ix_portal_device_model_page", "model", "enrolled_at", "did"),
    )

    did: str = Field(primary_key=True)
    model: str = Field(index=True)
    firmware: str
    attributes: str  # JSON object
    token_hash: str = Field(unique=True)
    credential_id: str = Field(unique=True)
    credential: str  # the secured credential, JSON
    status_index: int
    revocation_list: str
    suspension_list: str
    status: str = Field(default="active", index=True)  # active | suspended | revoked
    enrolled_at: datetime = Field(index=True)


def create_tables(engine: Engine) -> None:
    """Create the enrolment tables and the issuer's (status lists, issued credentials) that are missing."""
    rows = (StatusListRow, IssuedCredentialRow, ProvisioningTokenRow, DeviceRow)
    SQLModel.metadata.create_all(
        engine, tables=[SQLModel.metadata.tables[str(r.__tablename__)] for r in rows]
    )


def open_store(url: str = "sqlite://") -> Engine:
    """Open the portal database at ``url`` (SQLite in WAL mode by default) with the enrolment tables."""
    engine = open_engine(url)
    create_tables(engine)
    return engine


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", errors="replace")).hexdigest()


# -- errors ------------------------------------------------------------------------------------
class EnrolmentError(PortalError):
    """An enrolment or a device change was refused."""

    status = 400
    code = "enrolment"


class InvalidToken(EnrolmentError):
    """The provisioning token cannot be used."""

    status = 403
    code = "invalid_token"


class UnknownToken(InvalidToken):
    """No token with this value was issued (forged, mistyped or from another portal)."""

    code = "unknown_token"


class TokenUsed(InvalidToken):
    """The token was used already (or is being used by another enrolment right now)."""

    status = 409
    code = "token_used"


class TokenExpired(InvalidToken):
    """The token's lifetime is over."""

    status = 410
    code = "token_expired"


class InvalidEnrolmentRequest(EnrolmentError):
    """The device's transaction is not a self-signed did.create of this network."""

    code = "invalid_request"


class UnknownDevice(EnrolmentError):
    """No enrolled device has this DID."""

    status = 404
    code = "unknown_device"


class DeviceStateConflict(EnrolmentError):
    """The change does not apply to the device's state (e.g. reinstating a revoked device)."""

    status = 409
    code = "device_state"


# -- values ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What the portal says about the devices a token enrols: model, firmware and more claims."""

    model: str
    firmware: str
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model or not self.firmware:
            raise EnrolmentError("a device profile needs a model and a firmware version")
        clash = _RESERVED_CLAIMS & set(self.attributes)
        if clash:
            raise EnrolmentError(f"attributes may not redefine {', '.join(sorted(clash))}")
        try:  # what the credential's proof will canonicalize (RFC 8785): refused now, not at enrolment
            canonical = canonicalize(dict(self.attributes))
        except CanonicalizationError as exc:
            raise EnrolmentError(f"attributes cannot be signed: {exc}") from None
        size = len(canonical)
        if holds_nul(canonical) or "\x00" in self.model + self.firmware:
            raise EnrolmentError("a device profile may not hold U+0000 (NUL): a database cannot store it")
        if size > MAX_ATTRIBUTES_BYTES:
            raise EnrolmentError(f"attributes take {size} bytes as JSON; at most {MAX_ATTRIBUTES_BYTES}")

    def claims(self, did: str) -> dict[str, Any]:
        """The credential subject for the device ``did``."""
        return {"id": did, "model": self.model, "firmware": self.firmware, **self.attributes}


@dataclass(frozen=True, slots=True)
class ProvisioningToken:
    """A token as the portal knows it; ``token`` and ``payload`` only when it was just created."""

    token_hash: str
    profile: DeviceProfile
    created: datetime
    expires: datetime
    status: str
    device_did: str | None = None
    token: str | None = None
    payload: EnrolmentPayload | None = None


@dataclass(frozen=True, slots=True)
class EnrolmentResult:
    """A device enrolled: its DID, its credential and its status index."""

    did: str
    credential: dict[str, Any]
    credential_id: str
    status_index: int
    enrolled: datetime

    def to_json(self) -> dict[str, Any]:
        """The answer the portal sends the device."""
        return {"did": self.did, "credential": self.credential}


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """An enrolled device as listed by the portal."""

    did: str
    profile: DeviceProfile
    credential_id: str
    status_index: int
    status: str
    enrolled: datetime


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Devices suspended, reinstated or revoked: as they are now, and the committed ledger
    transaction (its status: ``id``, ``height`` …) of each status list changed, by list name."""

    devices: list[DeviceRecord]
    txns: dict[str, dict[str, Any]]


_ACTIONS: Final = {
    "suspend": ("suspension", True),
    "reinstate": ("suspension", False),
    "revoke": ("revocation", True),
}


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Which devices :meth:`Enrolment.devices` lists."""

    status: str | None = None
    model: str | None = None
    limit: int = 100
    offset: int = 0


def _profile(row: ProvisioningTokenRow | DeviceRow) -> DeviceProfile:
    return DeviceProfile(row.model, row.firmware, json.loads(row.attributes))


def _record(row: DeviceRow) -> DeviceRecord:
    return DeviceRecord(
        row.did, _profile(row), row.credential_id, row.status_index, row.status, row.enrolled_at
    )


# -- the service -------------------------------------------------------------------------------
def _may_be_anchored(outcome: object) -> bool:
    """Whether a device's creation may be on the ledger after ``outcome``: anything but a refusal
    that says it is not (a conflict or replay may be the same creation, still pending or committed)."""
    return not (isinstance(outcome, LedgerRefused) and outcome.rejection.code not in ("conflict", "replay"))


class Enrolment:
    """Provisioning tokens, enrolment and device status for one organisation on one network.

    ``store`` is the portal database's engine (its enrolment and issuer tables are created if
    missing); ``ledger`` a client of the network; ``portal_url`` the base URL devices post to;
    ``nodes`` the node URLs put in QR payloads (default: the client's).
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
        self._issuer: Issuer | None = None
        self._changing = threading.Lock()  # one status change at a time: see _change

    @property
    def issuer(self) -> Issuer:
        """The organisation's issuer on the portal database (made when first needed)."""
        if self._issuer is None:
            self._issuer = self.organisation.issuer(self.engine, self.nodes[0])
        return self._issuer

    # -- tokens -----------------------------------------------------------------------------
    def payload(self, token: str) -> EnrolmentPayload:
        """What the QR code of ``token`` encodes."""
        genesis = self.ledger.genesis
        return EnrolmentPayload(self.portal_url, token, genesis.network, genesis.hash.hex(), self.nodes)

    def create_tokens(
        self, profile: DeviceProfile, count: int = 1, ttl: timedelta = timedelta(hours=24)
    ) -> list[ProvisioningToken]:
        """Create ``count`` one-time tokens for devices of ``profile``, valid for ``ttl``."""
        if count < 1 or ttl <= timedelta(0):
            raise EnrolmentError("create at least one token, with a positive lifetime")
        now = self.clock()
        expires = now + ttl
        values = [
            base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode() for _ in range(count)
        ]
        attributes = json.dumps(dict(profile.attributes))
        rows = [
            {
                "token_hash": _hash(value),
                "model": profile.model,
                "firmware": profile.firmware,
                "attributes": attributes,
                "created_at": now,
                "expires_at": expires,
                "status": "issued",
            }
            for value in values
        ]
        with self.engine.begin() as connection:
            connection.execute(insert(ProvisioningTokenRow), rows)
        return [
            ProvisioningToken(_hash(v), profile, now, expires, "issued", token=v, payload=self.payload(v))
            for v in values
        ]

    def _status_of(self, row: ProvisioningTokenRow, now: datetime) -> str:
        if row.status == "issued" and row.expires_at <= now:
            return "expired"
        return row.status

    def tokens(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ProvisioningToken]:
        """Tokens, newest first, with their current status (``issued``, ``claimed``, ``used``, ``expired``)."""
        now = self.clock()
        query = select(ProvisioningTokenRow).order_by(
            col(ProvisioningTokenRow.created_at).desc(), col(ProvisioningTokenRow.token_hash)
        )
        state, expiry = col(ProvisioningTokenRow.status), col(ProvisioningTokenRow.expires_at)
        if status == "issued":
            query = query.where(state == "issued", expiry > now)
        elif status == "expired":
            query = query.where(or_(state == "expired", and_(state == "issued", expiry <= now)))
        elif status is not None:
            query = query.where(state == status)
        with Session(self.engine) as session:
            rows = session.exec(query.offset(offset).limit(limit)).all()
        return [
            ProvisioningToken(
                r.token_hash, _profile(r), r.created_at, r.expires_at, self._status_of(r, now), r.device_did
            )
            for r in rows
        ]

    def progress(self, token_hashes: Sequence[str]) -> dict[str, int]:
        """How far the tokens ``token_hashes`` are: ``{"total", "issued", "claimed", "used", "expired"}``."""
        now = self.clock()
        counts = dict.fromkeys(("issued", "claimed", "used", "expired"), 0)
        with Session(self.engine) as session:
            for start in range(0, len(token_hashes), 500):
                chunk = list(token_hashes[start : start + 500])
                query = select(ProvisioningTokenRow).where(col(ProvisioningTokenRow.token_hash).in_(chunk))
                for row in session.exec(query).all():
                    counts[self._status_of(row, now)] += 1
        return {"total": len(token_hashes), **counts}

    def expire_tokens(self) -> int:
        """Mark issued tokens past their expiry as ``expired``; return how many."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(ProvisioningTokenRow)
                .where(
                    col(ProvisioningTokenRow.status) == "issued",
                    col(ProvisioningTokenRow.expires_at) <= self.clock(),
                )
                .values(status="expired")
            )
        return int(result.rowcount)

    def _check_token(self, token: object) -> ProvisioningTokenRow:
        """The row of a usable token; a typed error (and no change) otherwise."""
        hashed = _hash(token) if isinstance(token, str) and token else None
        return self._usable(token, self._token_rows([hashed] if hashed else []).get(hashed or ""))

    def _token_rows(self, hashes: Iterable[str]) -> dict[str, ProvisioningTokenRow]:
        """The stored rows of the token hashes ``hashes`` (absent ones left out), in few queries."""
        wanted, rows = list(dict.fromkeys(hashes)), dict[str, ProvisioningTokenRow]()
        with Session(self.engine) as session:
            for start in range(0, len(wanted), _IN_CHUNK):
                query = select(ProvisioningTokenRow).where(
                    col(ProvisioningTokenRow.token_hash).in_(wanted[start : start + _IN_CHUNK])
                )
                rows.update((row.token_hash, row) for row in session.exec(query).all())
        return rows

    def _usable(self, token: object, row: ProvisioningTokenRow | None) -> ProvisioningTokenRow:
        """``row`` when ``token`` is a usable token stored as ``row``; else the typed error naming why."""
        if not isinstance(token, str) or not token:
            raise UnknownToken("no provisioning token was given")
        if row is None:
            raise UnknownToken("this provisioning token was never issued")
        status = self._status_of(row, self.clock())
        if status in ("used", "claimed"):
            raise TokenUsed("this provisioning token was used already")
        if status == "expired":
            raise TokenExpired(f"this provisioning token expired at {row.expires_at:%Y-%m-%dT%H:%M:%SZ}")
        return row

    def _enrolled(self, dids: Iterable[str]) -> set[str]:
        """Which of ``dids`` are enrolled devices already."""
        wanted, found = list(dict.fromkeys(dids)), set[str]()
        with Session(self.engine) as session:
            for start in range(0, len(wanted), _IN_CHUNK):
                query = select(DeviceRow.did).where(col(DeviceRow.did).in_(wanted[start : start + _IN_CHUNK]))
                found.update(session.exec(query).all())
        return found

    def _claim(self, token_hash: str, did: str) -> None:
        """Take the token for ``did`` in one conditional update; the loser of a race gets :class:`TokenUsed`."""
        if not self._claim_many([(token_hash, did)])[0]:
            raise TokenUsed("this provisioning token was used already")

    def _claim_many(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """Take each token ``(hash, did)`` with its own conditional update, all in one database
        transaction; whether each was won (of two concurrent claims of one token exactly one wins).
        A token released after its device's DID may have reached the ledger stays reserved for that
        DID (:meth:`_release`): only the same device, which alone can sign its creation, takes it."""
        if not claims:
            return []
        statement = (
            update(ProvisioningTokenRow)
            .where(
                col(ProvisioningTokenRow.token_hash) == bindparam("claimed_hash"),
                col(ProvisioningTokenRow.status) == "issued",
                col(ProvisioningTokenRow.expires_at) > bindparam("claimed_at"),
                or_(
                    col(ProvisioningTokenRow.device_did).is_(None),
                    col(ProvisioningTokenRow.device_did) == bindparam("reserved_for"),
                ),
            )
            .values(status="claimed", device_did=bindparam("claimed_by"))
        )
        now = self.clock()
        won: dict[int, bool] = {}
        with self.engine.begin() as connection:  # in token order: concurrent batches lock rows alike
            for position in sorted(range(len(claims)), key=lambda p: claims[p][0]):
                token_hash, did = claims[position]
                params = {
                    "claimed_hash": token_hash,
                    "claimed_at": now,
                    "claimed_by": did,
                    "reserved_for": did,
                }
                won[position] = connection.execute(statement, params).rowcount == 1
        return [won[position] for position in range(len(claims))]

    def _release(self, token_hashes: Iterable[str], *, reserved: bool = True) -> None:
        """Give claimed tokens back. ``reserved`` (whenever the device's creation may have reached the
        ledger) keeps each bound to the DID that claimed it, so only that device enrols with it again;
        otherwise any device may."""
        values: dict[str, Any] = {"status": "issued"}
        if not reserved:
            values["device_did"] = None
        with self.engine.begin() as connection:
            connection.execute(
                update(ProvisioningTokenRow)
                .where(
                    col(ProvisioningTokenRow.token_hash).in_(list(token_hashes)),
                    col(ProvisioningTokenRow.status) == "claimed",
                )
                .values(**values)
            )

    # -- enrolment --------------------------------------------------------------------------
    def _prepare(self, token: object, txn_json: object) -> tuple[ProvisioningTokenRow, Transaction]:
        prepared = self._prepare_many([(token, txn_json)])[0]
        if isinstance(prepared, EnrolmentError):
            raise prepared
        return prepared

    def _prepare_many(
        self, items: Sequence[tuple[object, object]]
    ) -> list[tuple[ProvisioningTokenRow, Transaction] | EnrolmentError]:
        """Each item's usable token row and checked transaction, or the error naming what is wrong
        with it (the token first, then the transaction, then a device enrolled already); nothing
        is changed. The rows are read in a few queries for the whole batch."""
        hashes = [_hash(token) if isinstance(token, str) and token else "" for token, _ in items]
        rows = self._token_rows(h for h in hashes if h)
        network = self.ledger.genesis.network
        prepared: list[tuple[ProvisioningTokenRow, Transaction] | EnrolmentError] = []
        for (token, txn_json), hashed in zip(items, hashes, strict=True):
            try:
                row = self._usable(token, rows.get(hashed))
                try:
                    txn = check_enrolment_transaction(txn_json, network)
                except EnrollmentError as exc:
                    raise InvalidEnrolmentRequest(exc.detail) from None
            except EnrolmentError as exc:
                prepared.append(exc)
                continue
            prepared.append((row, txn))
        enrolled = self._enrolled(p[1].submitter for p in prepared if not isinstance(p, EnrolmentError))
        return [
            InvalidEnrolmentRequest(f"{p[1].submitter} is enrolled already")
            if not isinstance(p, EnrolmentError) and p[1].submitter in enrolled
            else p
            for p in prepared
        ]

    def _endorsed(self, txn: Transaction) -> Transaction:
        me = self.organisation.signer
        return txn.signed(me.key, me.method)

    def _anchored_before(self, txn: Transaction) -> bool:
        """Whether ``txn`` itself is already committed (a retried enrolment whose answer was lost)."""
        record, _ = self.ledger.resolve_record(txn.submitter)
        return record is not None and record.get("txn") == txn.id

    def _repeated(self, token: object, txn_json: object) -> EnrolmentResult | None:
        """The earlier result when a device repeats its own successful enrolment (its answer was lost)."""
        if not isinstance(token, str):
            return None
        with Session(self.engine) as session:
            row = session.get(ProvisioningTokenRow, _hash(token))
            if row is None or row.status != "used" or row.device_did is None:
                return None
            try:  # the signature proves the key again; the transaction alone is public on the ledger
                txn = check_enrolment_transaction(txn_json, self.ledger.genesis.network)
            except EnrollmentError:
                return None
            device = session.get(DeviceRow, row.device_did)
            if txn.submitter != row.device_did or device is None or device.token_hash != row.token_hash:
                return None
            return EnrolmentResult(
                device.did,
                json.loads(device.credential),
                device.credential_id,
                device.status_index,
                device.enrolled_at,
            )

    def enrol(self, token: str, txn_json: Mapping[str, Any]) -> EnrolmentResult:
        """Enrol the device whose self-signed did.create is ``txn_json``, with provisioning ``token``.

        The same device repeating its enrolment with the same token gets the same answer again.
        """
        repeated = self._repeated(token, txn_json)
        if repeated is not None:
            return repeated
        row, txn = self._prepare(token, txn_json)
        self._claim(row.token_hash, txn.submitter)
        reserved = True  # until a refusal says the creation is not on the ledger: kept for this device
        try:
            try:
                submit(self.ledger, f"the creation of {txn.submitter}", [self._endorsed(txn)], self.timeout)
            except LedgerRefused as exc:
                if exc.rejection.code not in ("conflict", "replay") or not self._anchored_before(txn):
                    reserved = _may_be_anchored(exc)
                    raise
            return self._complete([(row, txn)])[0]
        except BaseException:
            self._release([row.token_hash], reserved=reserved)  # once: a second could undo another's claim
            raise

    def enrol_many(
        self,
        items: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        on_enrolled: Callable[[Sequence[tuple[EnrolmentResult, str, str]]], None] | None = None,
    ) -> list[EnrolmentResult | PortalError]:
        """Enrol many devices with batched ledger writes; one result or error per item, in order.
        ``on_enrolled`` hears each chunk's devices as they are recorded (each with its token's hash
        and its transaction id), also when a later chunk fails: where an audit is kept.

        Every item is checked (the batch's tokens and devices read in a few queries) and the tokens
        are claimed in one database transaction. The endorsed did.create transactions go to the
        ledger in chunks of :data:`BULK_CHUNK` (a transaction the ledger refuses at the door is
        dropped from its chunk, which is sent again); while the ledger orders one chunk, the
        credentials of the chunk before it, committed by then, are issued, so the portal's work and
        the ledger's overlap. Tokens of devices not enrolled are released.
        """
        results: list[EnrolmentResult | PortalError | None] = [None] * len(items)
        candidates: list[tuple[int, ProvisioningTokenRow, Transaction]] = []
        dids: set[str] = set()
        for position, prepared in enumerate(self._prepare_many(items)):
            if isinstance(prepared, EnrolmentError):
                results[position] = prepared
            elif prepared[1].submitter in dids:
                results[position] = InvalidEnrolmentRequest(
                    f"{prepared[1].submitter} appears twice in the batch"
                )
            else:
                dids.add(prepared[1].submitter)
                candidates.append((position, *prepared))
        won = self._claim_many([(row.token_hash, txn.submitter) for _, row, txn in candidates])
        claimed: dict[str, tuple[int, ProvisioningTokenRow, Transaction]] = {}
        for (position, row, txn), taken in zip(candidates, won, strict=True):
            if taken:
                claimed[txn.id] = (position, row, txn)
            else:
                results[position] = TokenUsed("this provisioning token was used already")
        sent: set[str] = set()  # transactions a node admitted: their DIDs may reach the ledger
        try:
            queue = [txn for _, _, txn in claimed.values()]
            in_flight: list[str] = []
            for start in range(0, len(queue), BULK_CHUNK):
                chunk = queue[start : start + BULK_CHUNK]
                sent.update(t.id for t in chunk)  # from the moment it is sent (an answer can be lost)
                submitted = self._submit_chunk(chunk, claimed, results)
                self._settle(in_flight, claimed, results, on_enrolled)
                in_flight = submitted
            self._settle(in_flight, claimed, results, on_enrolled)
        except BaseException:
            free = [  # never sent, or refused in a way that says it is not on the ledger
                row.token_hash
                for txn_id, (position, row, _) in claimed.items()
                if txn_id not in sent
                or (isinstance(results[position], PortalError) and not _may_be_anchored(results[position]))
            ]
            self._release(free, reserved=False)
            freed = set(free)
            self._release(row.token_hash for _, row, _ in claimed.values() if row.token_hash not in freed)
            raise
        failed = [(row, results[position]) for position, row, _ in claimed.values()]
        failed = [(row, result) for row, result in failed if not isinstance(result, EnrolmentResult)]
        self._release(
            [row.token_hash for row, result in failed if not _may_be_anchored(result)], reserved=False
        )
        self._release(row.token_hash for row, result in failed if _may_be_anchored(result))
        return [r if r is not None else EnrolmentError("not enrolled") for r in results]

    def _submit_chunk(
        self,
        chunk: Sequence[Transaction],
        claimed: Mapping[str, tuple[int, ProvisioningTokenRow, Transaction]],
        results: list[EnrolmentResult | PortalError | None],
    ) -> list[str]:
        """Endorse and submit one chunk of creations; the ids the ledger admitted (a refused one is
        recorded in ``results`` and the rest sent again)."""
        batch = [self._endorsed(txn) for txn in chunk]
        anchored: list[str] = []
        while batch:
            try:
                return [*anchored, *self.ledger.submit(batch)]
            except LedgerUnavailable as exc:
                raise LedgerUnreachable(f"a batch of device creations: {exc}") from None
            except TxnRejected as exc:
                if exc.txn_id is None or exc.txn_id not in claimed:
                    raise LedgerRefused("a batch of device creations", exc) from None
                txn = claimed[exc.txn_id][2]
                batch = [t for t in batch if t.id != exc.txn_id]
                if exc.code in ("conflict", "replay") and self._anchored_before(txn):
                    anchored.append(txn.id)  # a retry after the answer was lost: complete it
                    continue
                results[claimed[exc.txn_id][0]] = LedgerRefused(f"the creation of {txn.submitter}", exc)
        return anchored

    def _settle(
        self,
        submitted: Sequence[str],
        claimed: Mapping[str, tuple[int, ProvisioningTokenRow, Transaction]],
        results: list[EnrolmentResult | PortalError | None],
        on_enrolled: Callable[[Sequence[tuple[EnrolmentResult, str, str]]], None] | None = None,
    ) -> None:
        """Wait for the creations ``submitted``; complete the committed ones and record the others."""
        if not submitted:
            return
        try:
            statuses = self.ledger.wait(submitted, self.timeout)
        except LedgerUnavailable as exc:
            raise LedgerUnreachable(f"waiting for device creations: {exc}") from None
        committed = []
        for status in statuses:
            if status.get("status") == "committed":
                committed.append(status["id"])
            else:
                rejection = TxnRejected(status.get("code", "rejected"), status.get("detail", "not committed"))
                txn = claimed[status["id"]][2]
                results[claimed[status["id"]][0]] = LedgerRefused(
                    f"the creation of {txn.submitter}", rejection
                )
        done = self._complete([(claimed[i][1], claimed[i][2]) for i in committed])
        for txn_id, result in zip(committed, done, strict=True):
            results[claimed[txn_id][0]] = result
        if on_enrolled is not None and done:
            on_enrolled([(r, claimed[i][1].token_hash, i) for i, r in zip(committed, done, strict=True)])

    def _complete(
        self, anchored: Sequence[tuple[ProvisioningTokenRow, Transaction]]
    ) -> list[EnrolmentResult]:
        """Issue the credentials of devices now on the ledger, and record them with their tokens used
        (one database transaction for the devices and tokens)."""
        if not anchored:
            return []
        now = self.clock()
        valid_until = now + self.credential_validity if self.credential_validity is not None else None
        issued_all = self.issuer.issue_many(
            [_profile(row).claims(txn.submitter) for row, txn in anchored],
            types=[DEVICE_CREDENTIAL],
            valid_until=valid_until,
            now=now,
        )
        try:
            return self._record_enrolled(anchored, issued_all, now)
        except BaseException:  # no device holds these credentials: nothing may claim they were given
            try:
                self.issuer.withdraw_undelivered([issued.credential_id for _, issued in issued_all])
            except Exception:  # the failure that brought us here is the one to report
                _log.exception("could not withdraw %d undelivered credentials", len(issued_all))
            raise

    def _record_enrolled(
        self,
        anchored: Sequence[tuple[ProvisioningTokenRow, Transaction]],
        issued_all: Sequence[tuple[dict[str, Any], IssuedStatus]],
        now: datetime,
    ) -> list[EnrolmentResult]:
        """Publish the credentials' status lists, then record the devices with their tokens used."""
        lists = {url for _, issued in issued_all for url in (issued.revocation_list, issued.suspension_list)}
        self.organisation.ensure_status_lists(
            self.ledger, {url.rpartition("/")[2] for url in lists}, timeout=self.timeout
        )
        results = [
            EnrolmentResult(txn.submitter, credential, credential["id"], issued.index, now)
            for (_, txn), (credential, issued) in zip(anchored, issued_all, strict=True)
        ]
        devices = [
            {
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
            for (row, _), result, (_, issued) in zip(anchored, results, issued_all, strict=True)
        ]
        used = (
            update(ProvisioningTokenRow)
            .where(col(ProvisioningTokenRow.token_hash) == bindparam("used_hash"))
            .values(status="used", used_at=now)
        )
        with self.engine.begin() as connection:
            connection.execute(insert(DeviceRow), devices)
            connection.execute(used, [{"used_hash": row.token_hash} for row, _ in anchored])
        return results

    # -- devices ----------------------------------------------------------------------------
    def device(self, did: str) -> DeviceRecord:
        """One enrolled device."""
        with Session(self.engine) as session:
            row = session.get(DeviceRow, did)
        if row is None:
            raise UnknownDevice(f"no enrolled device {did}")
        return _record(row)

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
        return [_record(row) for row in rows]

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
                [_record(row) for row in fresh if row is not None], dict(zip(by_list, statuses, strict=True))
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

"""The records of enrolment: provisioning tokens and enrolled devices as stored, their values, and
the errors enrolment and device changes raise (see :mod:`web.enrolment` for the flow)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import BigInteger, Index, Table, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Field, SQLModel

from did_registry.errors import CanonicalizationError
from did_registry.identity.jcs import canonicalize, holds_nul
from wallet.enroll import EnrolmentPayload
from wallet.storage import IssuedCredentialRow, StatusListRow, open_engine
from web.organisation import PortalError

__all__ = [
    "MAX_ATTRIBUTES_BYTES",
    "ProvisioningTokenRow",
    "DeviceRow",
    "create_tables",
    "open_store",
    "token_hash",
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
    "profile_of",
    "record_of",
]

_RESERVED_CLAIMS = frozenset({"id", "model", "firmware"})
MAX_ATTRIBUTES_BYTES: Final = 4096
"""Most bytes a device profile's attributes take as canonical JSON: they ride in every credential and
in every token's row (a request may make 10,000 tokens)."""


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
    device_did: str | None = Field(default=None, index=True)  # the DID a claim or reservation is for
    used_at: datetime | None = None
    claimed_at: datetime | None = None  # while claimed: when (renewed as a batch goes on)
    claim_id: str | None = None  # while claimed: the claim's own random id (see web.provisioning)


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
    status_height: int | None = Field(default=None, sa_type=BigInteger)
    """The ledger height ``status`` stands on: the block that committed the change recorded, or the
    block read when the change was found there; ``None`` while no change was recorded (or it was
    recorded by an earlier version). The record never goes back to a state read at a lower height."""


def create_tables(engine: Engine) -> None:
    """Create the enrolment tables and the issuer's (status lists, issued credentials) that are
    missing, and add to token and device tables made by an earlier version the columns and indexes
    they lack."""
    rows = (StatusListRow, IssuedCredentialRow, ProvisioningTokenRow, DeviceRow)
    SQLModel.metadata.create_all(
        engine, tables=[SQLModel.metadata.tables[str(r.__tablename__)] for r in rows]
    )
    for table, names in _ADDED_COLUMNS.items():
        _add_columns(engine, SQLModel.metadata.tables[table], names)
        _add_indexes(engine, SQLModel.metadata.tables[table])


_ADDED_COLUMNS: Final = {
    str(ProvisioningTokenRow.__tablename__): ("claimed_at", "claim_id"),
    str(DeviceRow.__tablename__): ("status_height",),
}
"""Nullable columns of the token and device tables that earlier versions did not have."""


def _add_columns(engine: Engine, table: Table, names: tuple[str, ...]) -> None:
    """Add the nullable columns ``names`` of ``table`` that the database's table lacks."""
    missing = [name for name in names if name not in _columns(engine, table.name)]
    quote = engine.dialect.identifier_preparer.quote
    for name in missing:
        column = table.columns[name]
        ddl = (
            f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(name)} {column.type.compile(engine.dialect)}"
        )
        try:
            with engine.begin() as connection:
                connection.execute(text(ddl))
        except DBAPIError:  # another process added it at the same moment: fine if it is there now
            if name not in _columns(engine, table.name):
                raise


def _add_indexes(engine: Engine, table: Table) -> None:
    """Create the indexes of ``table`` that the database's table lacks (made by an earlier version)."""
    present = {index["name"] for index in inspect(engine).get_indexes(table.name)}
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if index.name in present:
            continue
        try:
            index.create(engine)
        except DBAPIError:  # another process made it at the same moment: fine if it is there now
            if index.name not in {found["name"] for found in inspect(engine).get_indexes(table.name)}:
                raise


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def open_store(url: str = "sqlite://") -> Engine:
    """Open the portal database at ``url`` (SQLite in WAL mode by default) with the enrolment tables."""
    engine = open_engine(url)
    create_tables(engine)
    return engine


def token_hash(token: str) -> str:
    """How a provisioning token is stored: the SHA-256 of its value, in hex."""
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
    repeated: bool = False
    """The earlier answer given again (a device repeating its enrolment whose answer it lost)."""

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


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Which devices :meth:`Enrolment.devices` lists."""

    status: str | None = None
    model: str | None = None
    limit: int = 100
    offset: int = 0


def profile_of(row: ProvisioningTokenRow | DeviceRow) -> DeviceProfile:
    return DeviceProfile(row.model, row.firmware, json.loads(row.attributes))


def record_of(row: DeviceRow) -> DeviceRecord:
    return DeviceRecord(
        row.did, profile_of(row), row.credential_id, row.status_index, row.status, row.enrolled_at
    )

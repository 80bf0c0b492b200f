"""The portal's tables (SQLModel): operators, their API tokens, the audit log, failed logins and the
authentications services report.

Rows are the storage edge only. Times are aware UTC datetimes (:func:`utcnow`); SQLModel stores them
as UTC and gives them back in UTC on SQLite and PostgreSQL alike. Audit entries name their actor by username, so they outlive the account.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

__all__ = [
    "Role",
    "Operator",
    "ApiToken",
    "AuditEntry",
    "LoginFailure",
    "AuthenticationRow",
    "SessionEpoch",
    "TABLES",
    "utcnow",
    "iso_utc",
]


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 to the second, with ``Z`` (``2026-11-24T05:00:00Z``)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


class Role(StrEnum):
    """What an operator may do: admins manage operators and the organisation, operators manage devices,
    auditors read everything and change nothing."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Operator(SQLModel, table=True):
    """A person who signs in to the portal."""

    __tablename__ = "portal_operator"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=64)
    password_hash: str
    role: str = Field(max_length=16)  # a Role value
    created: datetime = Field(default_factory=utcnow)
    disabled: bool = False


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API, stored as the SHA-256 of the token (the token is shown once)."""

    __tablename__ = "portal_api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    operator_id: int = Field(foreign_key="portal_operator.id", index=True)
    label: str = Field(default="", max_length=100)
    created: datetime = Field(default_factory=utcnow)
    last_used: datetime | None = None
    revoked: bool = False


class AuditEntry(SQLModel, table=True):
    """One state-changing action: who did what to which target, when, and the ledger transaction if any."""

    __tablename__ = "portal_audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(index=True, max_length=64)
    action: str = Field(index=True, max_length=64)
    target: str | None = Field(default=None, max_length=512)
    at: datetime = Field(default_factory=utcnow, index=True)
    txn_id: str | None = Field(default=None, max_length=128)
    detail: str = "{}"  # a JSON object


class LoginFailure(SQLModel, table=True):
    """A failed sign-in, counted by the login rate limit under ``user:<name>`` and ``addr:<address>``."""

    __tablename__ = "portal_login_failure"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True, max_length=200)
    at: datetime = Field(default_factory=utcnow, index=True)


class AuthenticationRow(SQLModel, table=True):
    """One authentication decision a verifier-protected service reported (``POST /api/v1/authentications``)."""

    __tablename__ = "portal_authentication"

    id: int | None = Field(default=None, primary_key=True)
    did: str = Field(index=True, max_length=512)
    service: str = Field(max_length=100)
    outcome: str = Field(max_length=16)  # "admitted" or "refused"
    reason: str | None = Field(default=None, max_length=64)
    at: datetime = Field(index=True)
    """When the service decided (as it reported)."""
    reporter: str = Field(max_length=64)
    """The operator whose API token reported it."""


class SessionEpoch(SQLModel, table=True):
    """How many times an operator's sessions were ended all at once (disabling the account does it):
    part of every session's stamp, so a session from before no longer matches (no row: 0)."""

    __tablename__ = "portal_session_epoch"

    operator_id: int = Field(foreign_key="portal_operator.id", primary_key=True)
    epoch: int = 0


TABLES: tuple[type[SQLModel], ...] = (
    Operator,
    ApiToken,
    AuditEntry,
    LoginFailure,
    AuthenticationRow,
    SessionEpoch,
)
"""Every portal table, created by :func:`web.db.open_engine`."""

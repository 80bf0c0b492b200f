"""The portal's tables (SQLModel): operators, their API tokens and signed-in sessions, the audit log,
failed logins and the authentications services report.

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
    "OperatorSession",
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
    """A failed sign-in, counted by the login rate limit under ``pair:<digest of name and address>``,
    ``addr:<address>`` and ``user:<name>`` (one row per key, all at the same instant)."""

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


class OperatorSession(SQLModel, table=True):
    """A signed-in session, kept on the server: the SHA-256 of the random id the session cookie carries,
    whose session it is, when it began and when it was last used (to the minute). A cookie whose row is
    gone is refused: signing out deletes the row, so a copy of the cookie ends with it; a password
    change or disabling the account deletes all of the operator's rows."""

    __tablename__ = "portal_operator_session"

    id: int | None = Field(default=None, primary_key=True)
    id_hash: str = Field(index=True, unique=True, max_length=64)
    operator_id: int = Field(foreign_key="portal_operator.id", index=True)
    created: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow, index=True)


TABLES: tuple[type[SQLModel], ...] = (
    Operator,
    ApiToken,
    AuditEntry,
    LoginFailure,
    AuthenticationRow,
    OperatorSession,
)
"""Every portal table, created by :func:`web.db.open_engine`."""

"""Operator accounts and API tokens: create, authenticate, change password, disable, issue and revoke tokens.

Functions take an open :class:`~sqlmodel.Session` and commit their own change, so views stay thin.
Bad input raises :class:`InvalidInput` naming the field, before anything is written.
API tokens are 256-bit random strings; the database keeps only their SHA-256, which is enough for a
secret of that entropy (a slow hash protects guessable secrets such as passwords, not random ones).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import ClassVar, Final

from sqlalchemy import update
from sqlmodel import Session, col, delete, select

from web.models import ApiToken, Operator, OperatorSession, Role, utcnow
from web.organisation import PortalError
from web.passwords import Passwords, password_problem

__all__ = [
    "TOKEN_PREFIX",
    "RESERVED_USERNAMES",
    "AccountError",
    "InvalidInput",
    "UnknownOperator",
    "username_problem",
    "create_operator",
    "find_operator",
    "authenticate",
    "change_password",
    "set_disabled",
    "issue_token",
    "revoke_token",
    "token_holder",
    "token_hash",
]

TOKEN_PREFIX: Final = "trellis_"  # noqa: S105 (a prefix, not a secret)
"""Every API token starts with this, so secret scanners and people recognise one."""
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
RESERVED_USERNAMES: Final = frozenset({"system", "device", "cli", "portal", "ledger"})
"""Names the audit log gives actions no operator made (``audit.SYSTEM_ACTOR``, a device enrolling)."""


class AccountError(PortalError):
    """An operator or token operation was refused."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "account"


class InvalidInput(AccountError):
    """A submitted value is not acceptable; ``field`` names it and ``message`` says why, for a person."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownOperator(AccountError):
    """No operator (or token) has that id."""

    status = 404
    code = "not_found"


def username_problem(username: str) -> str | None:
    """Why ``username`` is not acceptable, or ``None`` when it is."""
    if not _USERNAME.fullmatch(username):
        return (
            "The username must be 2 to 64 characters: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    if username in RESERVED_USERNAMES:
        return f"The username {username!r} names the portal's own actors in the audit log; choose another."
    return None


def find_operator(db: Session, username: str) -> Operator | None:
    """The operator called ``username``, if any."""
    return db.exec(select(Operator).where(Operator.username == username)).first()


def create_operator(db: Session, passwords: Passwords, username: str, password: str, role: str) -> Operator:
    """A new operator; :class:`InvalidInput` for a bad or taken username, a weak password or an unknown role."""
    if problem := username_problem(username):
        raise InvalidInput("username", problem)
    if role not in set(Role):
        raise InvalidInput("role", f"The role must be one of: {', '.join(Role)}.")
    if problem := password_problem(password):
        raise InvalidInput("password", problem)
    if find_operator(db, username) is not None:
        raise InvalidInput("username", f"An operator called {username!r} already exists.")
    operator = Operator(username=username, password_hash=passwords.hash(password), role=role)
    db.add(operator)
    db.commit()
    db.refresh(operator)
    return operator


def authenticate(db: Session, passwords: Passwords, username: str, password: str) -> Operator | None:
    """The enabled operator ``username`` when ``password`` is theirs, else ``None`` (in about the same time)."""
    operator = find_operator(db, username) if len(password) <= 4096 else None
    if operator is None:
        passwords.verify_nobody(password[:4096])
        return None
    if not passwords.verify(operator.password_hash, password) or operator.disabled:
        return None
    if passwords.needs_rehash(operator.password_hash):
        operator.password_hash = passwords.hash(password)
        db.add(operator)
        db.commit()
    return operator


def change_password(
    db: Session, passwords: Passwords, operator: Operator, current: str, new: str, confirm: str
) -> None:
    """Replace ``operator``'s password after checking the current one, ending all of their sessions
    (the caller starts a new one for the person who changed it); :class:`InvalidInput` otherwise."""
    if not passwords.verify(operator.password_hash, current):
        raise InvalidInput("current", "The current password is not correct.")
    if problem := password_problem(new):
        raise InvalidInput("new", problem)
    if new != confirm:
        raise InvalidInput("confirm", "The two new passwords are not the same.")
    operator.password_hash = passwords.hash(new)
    db.add(operator)
    _end_sessions(db, operator.id)
    db.commit()


def _end_sessions(db: Session, operator_id: int | None) -> None:
    """Delete every session of an operator (in the caller's transaction): each cookie stops working."""
    db.exec(delete(OperatorSession).where(col(OperatorSession.operator_id) == operator_id))


def _operator(db: Session, operator_id: int) -> Operator:
    operator = db.get(Operator, operator_id)
    if operator is None:
        raise UnknownOperator(f"no operator has id {operator_id}")
    return operator


def set_disabled(db: Session, operator_id: int, disabled: bool, *, by: Operator) -> Operator:
    """Disable (or enable again) an operator, as the admin ``by``.

    Refused (nothing changed) when ``by`` disables their own account or is no longer an enabled
    admin, so an enabled admin always remains. The admins' rows are held first (PostgreSQL row
    locks; SQLite's one writer), so two admins disabling each other at once cannot both pass.
    Disabling ends the operator's sessions and revokes its API tokens for good, not only while it
    stays disabled."""
    db.exec(
        update(Operator).where(col(Operator.role) == Role.ADMIN.value).values(disabled=col(Operator.disabled))
    )
    fresh = select(Operator).execution_options(populate_existing=True)
    operator = db.exec(fresh.where(col(Operator.id) == operator_id)).first()
    actor = db.exec(fresh.where(col(Operator.id) == by.id)).first()
    if operator is None:
        raise UnknownOperator(f"no operator has id {operator_id}")
    if actor is None or actor.disabled or actor.role != Role.ADMIN.value:
        raise InvalidInput("operator", "Only an enabled admin may disable or enable accounts.")
    if disabled and operator.id == by.id:
        raise InvalidInput("operator", "You cannot disable your own account.")
    operator.disabled = disabled
    db.add(operator)
    if disabled:
        _end_sessions(db, operator_id)
        db.exec(update(ApiToken).where(col(ApiToken.operator_id) == operator_id).values(revoked=True))
    db.commit()
    return operator


def token_hash(token: str) -> str:
    """The stored form of an API token: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(db: Session, operator_id: int, label: str) -> tuple[ApiToken, str]:
    """A new API token for an operator: its row and the token itself, which is shown once and not stored."""
    label = label.strip()
    if len(label) > 100:
        raise InvalidInput("label", "The label must be at most 100 characters.")
    operator = _operator(db, operator_id)
    if operator.disabled:
        raise InvalidInput("operator", f"{operator.username} is disabled.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert operator.id is not None
    row = ApiToken(token_hash=token_hash(token), operator_id=operator.id, label=label)
    db.add(row)
    db.commit()
    db.refresh(row)
    return row, token


def revoke_token(db: Session, token_id: int) -> ApiToken:
    """Revoke an API token for good."""
    row = db.get(ApiToken, token_id)
    if row is None:
        raise UnknownOperator(f"no API token has id {token_id}")
    row.revoked = True
    db.add(row)
    db.commit()
    return row


def token_holder(db: Session, token: str) -> tuple[Operator, int] | None:
    """The enabled operator a live token belongs to and the token's id (recording its use), else ``None``."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = db.exec(select(ApiToken).where(col(ApiToken.token_hash) == token_hash(token))).first()
    if row is None or row.revoked or row.id is None:
        return None
    operator = db.get(Operator, row.operator_id)
    if operator is None or operator.disabled:
        return None
    row.last_used = utcnow()
    db.add(row)
    db.commit()
    return operator, row.id

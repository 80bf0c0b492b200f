"""Password hashing with Argon2id (RFC 9106) through argon2-cffi, and the portal's password rules.

Hashes are PHC strings (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``) carrying their own cost, so
a change of :attr:`web.config.PortalConfig.password_parameters` applies to new hashes and old ones
are upgraded at the next successful sign-in (:meth:`Passwords.needs_rehash`).
"""

from __future__ import annotations

import secrets
from typing import Final

from argon2 import Parameters, PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MIN_PASSWORD_LENGTH", "MAX_PASSWORD_LENGTH", "Passwords", "password_problem"]

MIN_PASSWORD_LENGTH: Final = 12
"""The shortest password accepted (characters)."""
MAX_PASSWORD_LENGTH: Final = 1024
"""The longest password accepted (characters); bounds the work one request can ask for."""


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, or ``None`` when it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must be at most {MAX_PASSWORD_LENGTH} characters long."
    if not password.strip():
        return "The password must not be only spaces."
    if not _encodable(password):
        return "The password holds a character that is not text (a lone surrogate); type it again."
    return None


def _encodable(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (which the hash needs): no lone surrogate, such as a
    JSON ``"\\ud800"`` or an environment variable's undecodable byte, in it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Passwords:
    """Hashes and checks passwords with Argon2id at the given cost."""

    def __init__(self, parameters: Parameters) -> None:
        if parameters.type is not Type.ID:
            raise ValueError("the portal hashes passwords with Argon2id only")
        self._hasher = PasswordHasher.from_parameters(parameters)
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """The Argon2id PHC string of ``password`` (a fresh random salt each time)."""
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """Whether ``password`` matches the hash ``stored`` (a malformed hash, or a password that is not
        text, matches nothing)."""
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return False

    def verify_nobody(self, password: str) -> None:
        """Spend the time of one check when there is no account, so timing does not tell names apart."""
        self.verify(self._decoy, password)

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

"""The portal's configuration: one typed value with defaults, read from the instance folder or the environment.

The instance folder (Flask's name for a deployment's private files) holds the SQLite database
``portal.db`` (unless :attr:`PortalConfig.database_url` names another, e.g. PostgreSQL) and the
session-signing key ``secret_key``, created on first run with mode 0600 and never printed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

from argon2 import Parameters
from argon2.profiles import RFC_9106_LOW_MEMORY

__all__ = [
    "SECRET_KEY_FILE",
    "DATABASE_FILE",
    "ENV_PREFIX",
    "PortalConfig",
    "load_secret_key",
]

SECRET_KEY_FILE: Final = "secret_key"  # noqa: S105 (a file name)
"""The session-signing key's file in the instance folder."""
DATABASE_FILE: Final = "portal.db"
"""The default SQLite database's file in the instance folder."""
ENV_PREFIX: Final = "TRELLIS_WEB_"
"""Prefix of the environment variables :meth:`PortalConfig.from_env` reads."""

_SECRET_BYTES: Final = 32
_USER_LIMIT_FACTOR: Final = 10


@dataclass(frozen=True, slots=True)
class PortalConfig:
    """Everything a portal needs to start; only ``instance_path`` has no default.

    ``secure_cookies`` sets the cookie's ``Secure`` flag: turn it on whenever the portal is served
    over TLS (directly or behind a TLS-terminating proxy). ``trusted_proxies`` is how many proxies in
    front of the portal set ``X-Forwarded-For`` (0: the socket's peer is the client address the login
    rate limit counts). ``password_parameters`` is the Argon2id cost of new password hashes.

    Sign-in is refused (429) for ``login_window`` after ``login_max_failures`` failures of one
    username from one client address, or of one address whatever the names, and after
    :attr:`login_user_limit` failures of one username from all addresses together. An operator keeps
    at most ``sessions_per_operator`` sessions: signing in once more ends the least recently used.
    """

    instance_path: Path
    database_url: str | None = None
    node_urls: tuple[str, ...] = ()
    genesis_path: Path | None = None
    secure_cookies: bool = False
    session_lifetime: timedelta = timedelta(hours=8)
    login_max_failures: int = 5
    login_user_max_failures: int | None = None
    """Failures of one username from all addresses together before it is refused (``None``: ten times
    ``login_max_failures``; see :attr:`login_user_limit`)."""
    login_window: timedelta = timedelta(minutes=15)
    sessions_per_operator: int = 10
    trusted_proxies: int = 0
    page_size: int = 50
    organisation_passphrase: str | None = field(default=None, repr=False)
    """Opens the organisation's keystore (``<instance>/organisation.key``)."""
    portal_url: str | None = None
    """The portal's public base URL, written into enrolment QR codes (devices call it back)."""
    password_parameters: Parameters = field(default_factory=lambda: RFC_9106_LOW_MEMORY)

    def __post_init__(self) -> None:
        if self.login_max_failures < 1:
            raise ValueError("login_max_failures must be at least 1")
        if self.login_user_max_failures is not None and self.login_user_max_failures < 1:
            raise ValueError("login_user_max_failures must be at least 1")
        if self.sessions_per_operator < 1:
            raise ValueError("sessions_per_operator must be at least 1")
        if self.login_window <= timedelta(0) or self.session_lifetime <= timedelta(0):
            raise ValueError("login_window and session_lifetime must be positive")
        if not 1 <= self.page_size <= 1000:
            raise ValueError("page_size must be from 1 to 1000")
        if self.trusted_proxies < 0:
            raise ValueError("trusted_proxies must not be negative")

    @property
    def login_user_limit(self) -> int:
        """Failures of one username, from all addresses together, before it is refused: large, so that
        nobody can lock its owner out from a few addresses, yet still stopping a distributed guesser."""
        if self.login_user_max_failures is not None:
            return self.login_user_max_failures
        return _USER_LIMIT_FACTOR * self.login_max_failures

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the portal's database (``sqlite:///<instance>/portal.db`` by default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.instance_path.resolve() / DATABASE_FILE}"

    @property
    def secret_key_path(self) -> Path:
        """Where the session-signing key lives."""
        return self.instance_path / SECRET_KEY_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PortalConfig:
        """A configuration from ``TRELLIS_WEB_*`` variables.

        ``INSTANCE`` (default ``./instance``), ``DATABASE_URL``, ``NODES`` (comma-separated URLs),
        ``GENESIS``, ``SECURE_COOKIES`` (``1``/``true``/``yes``), ``SESSION_HOURS``, ``TRUSTED_PROXIES``,
        ``ORG_PASSPHRASE`` (the organisation keystore's passphrase), ``URL`` (the public base URL).
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        nodes = tuple(url.strip() for url in (get("NODES") or "").split(",") if url.strip())
        genesis = get("GENESIS")
        hours = get("SESSION_HOURS")
        return cls(
            instance_path=Path(get("INSTANCE") or "instance"),
            database_url=get("DATABASE_URL"),
            node_urls=nodes,
            genesis_path=Path(genesis) if genesis else None,
            secure_cookies=(get("SECURE_COOKIES") or "").lower() in ("1", "true", "yes", "on"),
            session_lifetime=timedelta(hours=float(hours)) if hours else timedelta(hours=8),
            trusted_proxies=int(get("TRUSTED_PROXIES") or 0),
            organisation_passphrase=get("ORG_PASSPHRASE"),
            portal_url=get("URL"),
        )


def load_secret_key(path: Path) -> bytes:
    """The key in ``path``, created (random, mode 0600, its folder 0700) when the file does not exist."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_hex(_SECRET_BYTES).encode("ascii")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return load_secret_key(path)
        with os.fdopen(fd, "wb") as out:
            out.write(key + b"\n")
        return key
    if len(key) < _SECRET_BYTES:
        raise ValueError(f"the secret key in {path} is too short (at least {_SECRET_BYTES} characters)")
    return key

"""What one portal app holds while it runs: its configuration, database engine and password hasher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from flask import current_app
from sqlalchemy.engine import Engine

from web.config import PortalConfig
from web.passwords import Passwords
from web.services import LedgerServices

__all__ = ["EXTENSION", "Portal", "portal"]

EXTENSION: Final = "trellis.portal"
"""Key under ``app.extensions`` holding the app's :class:`Portal`."""


@dataclass(frozen=True, slots=True)
class Portal:
    """The running portal's configuration and shared services."""

    config: PortalConfig
    engine: Engine
    passwords: Passwords
    services: LedgerServices
    """The ledger client, the organisation and the enrolment service (built on first use)."""


def portal() -> Portal:
    """The :class:`Portal` of the app handling the current request."""
    return cast(Portal, current_app.extensions[EXTENSION])

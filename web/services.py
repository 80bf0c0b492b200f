"""The portal's link to the ledger: its client, the organisation's issuer and the enrolment service.

Built lazily on first use (a portal can start, and its operators sign in, before the ledger is
reachable or the organisation is set up) and shared by every request of one app. The ledger client
checks every answer against the network's genesis (``PortalConfig.genesis_path``); the
organisation's keys live in the encrypted keystore ``<instance>/organisation.key``, opened with
``PortalConfig.organisation_passphrase`` (``TRELLIS_WEB_ORG_PASSPHRASE``).
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from sqlalchemy.engine import Engine

from did_registry.client import LedgerClient
from did_registry.genesis_file import read_genesis_file
from web.config import PortalConfig
from web.enrolment import Enrolment
from web.enrolment_records import create_tables
from web.organisation import Organisation, PortalError

__all__ = ["DEFAULT_PORTAL_URL", "LedgerServices", "LedgerNotConfigured"]

DEFAULT_PORTAL_URL: Final = "http://127.0.0.1:8000"
"""Where QR codes send devices when ``TRELLIS_WEB_URL`` is not set (the demo's address)."""
_log = logging.getLogger("web.services")


class LedgerNotConfigured(PortalError):
    """The portal has no ledger nodes, genesis or organisation passphrase configured (names which)."""

    status = 503
    code = "not_configured"


class LedgerServices:
    """The ledger client, organisation and enrolment service of one portal app (thread-safe)."""

    def __init__(self, config: PortalConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self._lock = threading.Lock()
        self._ledger: LedgerClient | None = None
        self._organisation: Organisation | None = None
        self._enrolment: Enrolment | None = None
        create_tables(engine)

    @property
    def configured(self) -> bool:
        """Whether node URLs, a genesis and the organisation passphrase are all configured."""
        c = self.config
        return bool(c.node_urls and c.genesis_path and c.organisation_passphrase)

    def _require(self) -> None:
        c = self.config
        missing = [
            name
            for name, value in (
                ("TRELLIS_WEB_NODES", c.node_urls),
                ("TRELLIS_WEB_GENESIS", c.genesis_path),
                ("TRELLIS_WEB_ORG_PASSPHRASE", c.organisation_passphrase),
            )
            if not value
        ]
        if missing:
            raise LedgerNotConfigured(f"the portal is not connected to a ledger: set {', '.join(missing)}")

    @property
    def ledger(self) -> LedgerClient:
        """The client of the configured network (every answer proven)."""
        with self._lock:
            if self._ledger is None:
                self._require()
                assert self.config.genesis_path is not None
                genesis = read_genesis_file(self.config.genesis_path)  # GenesisFileError names the file
                self._ledger = LedgerClient(list(self.config.node_urls), genesis)
            return self._ledger

    @property
    def organisation(self) -> Organisation:
        """The portal's organisation (its issuer identity and keystore)."""
        with self._lock:
            if self._organisation is None:
                self._require()
                assert self.config.organisation_passphrase is not None
                self._organisation = Organisation.in_instance(
                    self.config.instance_path, self.config.organisation_passphrase
                )
            return self._organisation

    @property
    def enrolment(self) -> Enrolment:
        """Provisioning tokens, enrolment, device status changes."""
        organisation, ledger = self.organisation, self.ledger
        with self._lock:
            if self._enrolment is None:
                if self.config.portal_url is None:
                    _log.warning(
                        "TRELLIS_WEB_URL is not set: QR codes tell devices to enrol at %s, which is each "
                        "device's own loopback; set it to the portal's public https address",
                        DEFAULT_PORTAL_URL,
                    )
                self._enrolment = Enrolment(
                    organisation,
                    self.engine,
                    ledger=ledger,
                    portal_url=self.config.portal_url or DEFAULT_PORTAL_URL,
                    nodes=list(self.config.node_urls),
                )
            return self._enrolment

    def close(self) -> None:
        """Close the ledger client."""
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

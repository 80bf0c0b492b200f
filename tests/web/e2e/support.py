"""What the end-to-end fixtures and tests share: fixed names and passphrases, the running processes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from verifier import Verifier

REPO = Path(__file__).resolve().parents[3]
"""The repository's root."""
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
"""Where screenshots go (one folder per test); git ignores ``test-artifacts/``."""
CHROMIUM = Path(os.environ.get("TRELLIS_CHROMIUM") or "/usr/bin/chromium")
"""The browser Playwright drives: Debian's Chromium unless ``TRELLIS_CHROMIUM`` names another."""

NETWORK = "e2e"
"""The local network's name (``did:trellis:e2e:…``)."""
NETWORK_PASSPHRASE = "e2e trustee passphrase"
ORG_PASSPHRASE = "e2e organisation passphrase"
DEVICE_PASSPHRASE = "e2e device passphrase"
ADMIN = "admin"
ADMIN_PASSWORD = "e2e admin password, long enough"
START_TIMEOUT = 30.0
"""Seconds the portal may take to serve."""
UI_TIMEOUT_MS = 20_000
"""Milliseconds a page may take to load or an element to appear (a ledger write takes a few blocks)."""


@dataclass(frozen=True)
class PortalProcess:
    """A running ``trellis web serve``: its base URL, instance folder and log file."""

    url: str
    instance: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        """The end of what the portal printed."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Service:
    """The example service on loopback (``POST /readings`` lets in authenticated devices only)."""

    url: str
    verifier: Verifier

    def catch_up(self) -> None:
        """Make the verifier read the ledger's newest blocks now (it does not follow the stream here)."""
        self.verifier.caches[NETWORK].catch_up()

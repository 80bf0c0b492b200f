"""Reporting a service's authentication decisions to the operators' portal, in batches, off the hot path.

::

    reporter = AuthenticationReporter("https://portal.example", api_token, service="telemetry")
    auth = DeviceAuth(app, verifier=verifier, audience=origin, reporter=reporter)  # or reporter.observe(result, did)

Each decision becomes an event ``{"did", "service", "outcome", "reason", "at"}``; a background
thread posts the queued events every ``interval`` seconds to the portal's
``POST /api/v1/authentications`` (at most ``batch`` per request), where each device's page lists
its recent ones. The queue is bounded: while the portal cannot be reached the oldest events are
dropped first (:attr:`AuthenticationReporter.dropped` counts them), so a service never slows down
or grows for its portal. A batch the portal refuses (4xx) is dropped and counted too. Refusals that
name no device (a malformed request) are not reported, nor are those whose DID is not proven
(``Refused.authenticated`` false: a bad signature, an unknown key, an expired signature, a
deactivated or quarantined DID...): such a DID is only what the sender claims, and reporting it would
let anyone fill a device's page with refusals it never caused. A ``replayed`` refusal is reported: the
signature is the device's, though whoever captured one of its requests can replay it too.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from verifier.errors import ConfigurationError, Refused

__all__ = ["AuthenticationReporter", "REPORT_PATH"]

REPORT_PATH: Final = "/api/v1/authentications"
"""The portal route that takes the events."""


class AuthenticationReporter:
    """Queues authentication decisions and posts them to the portal (see the module docstring)."""

    def __init__(
        self,
        portal_url: str,
        token: str,
        service: str,
        *,
        interval: float = 1.0,
        batch: int = 500,
        capacity: int = 10_000,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not service or len(service) > 100:
            raise ConfigurationError("service must be a name of 1 to 100 characters")
        if interval <= 0 or not 0 < batch <= 1_000 or capacity < batch:
            raise ConfigurationError("interval > 0, 0 < batch <= 1000 and capacity >= batch are required")
        self.service = service
        self.interval = interval
        self.batch = batch
        self.clock = clock
        self.sent = 0
        self.dropped = 0
        self.errors: list[str] = []
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=portal_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
            transport=transport,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- collecting -------------------------------------------------------------------------
    def observe(self, result: object, did: str | None = None) -> None:
        """Queue one decision: an :class:`~verifier.AuthenticatedDevice` (its ``did``) or a
        :class:`~verifier.Refused` (its ``did`` when that is proven, ``Refused.authenticated``; else
        ``did`` given here, which the caller vouches for; else nothing is queued)."""
        if isinstance(result, Refused):
            proven = result.did if result.authenticated else None
            who, outcome, reason = proven or did, "refused", result.reason.value
        else:
            who, outcome, reason = getattr(result, "did", did), "admitted", None
        if not isinstance(who, str) or not who.startswith("did:"):
            return
        event = {
            "did": who,
            "service": self.service,
            "outcome": outcome,
            "reason": reason,
            "at": datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds"),
        }
        with self._lock:
            if len(self._events) >= self._capacity:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)

    def pending(self) -> int:
        """Events queued and not sent yet."""
        with self._lock:
            return len(self._events)

    # -- sending ----------------------------------------------------------------------------
    def flush(self) -> int:
        """Post what is queued now, a batch at a time; how many events the portal stored."""
        stored = 0
        while True:
            with self._lock:
                chunk = [self._events.popleft() for _ in range(min(self.batch, len(self._events)))]
            if not chunk:
                return stored
            try:
                response = self._http.post(REPORT_PATH, json={"events": chunk})
            except httpx.HTTPError as exc:
                self._requeue(chunk, f"portal unreachable: {exc}")
                return stored
            if response.status_code >= 500:
                self._requeue(chunk, f"portal answered {response.status_code}")
                return stored
            if response.status_code != 201:
                self._note(f"portal refused a batch: {response.status_code} {response.text[:200]}")
                with self._lock:
                    self.dropped += len(chunk)
                continue
            stored += len(chunk)
            self.sent += len(chunk)

    def _requeue(self, chunk: list[dict[str, Any]], why: str) -> None:
        self._note(why)
        with self._lock:
            room = self._capacity - len(self._events)
            kept = chunk[len(chunk) - max(0, room) :] if room < len(chunk) else chunk
            self.dropped += len(chunk) - len(kept)
            self._events.extendleft(reversed(kept))

    def _note(self, why: str) -> None:
        self.errors = [*self.errors[-99:], why]

    def start(self) -> AuthenticationReporter:
        """Send every ``interval`` seconds in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="trellis-reporter", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the thread, send what is left (once), and close the HTTP client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 15)
            self._thread = None
        self.flush()
        self._http.close()

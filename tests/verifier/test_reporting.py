"""Reporting decisions to the portal (verifier.reporting): batches, bounded queue, failures."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from verifier import ConfigurationError, Reason, Refused
from verifier.reporting import REPORT_PATH, AuthenticationReporter


class Portal:
    """A fake portal that stores what it is sent, or answers ``status``."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.status = 201
        self.auth: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == REPORT_PATH
        self.auth.append(request.headers["authorization"])
        if self.status != 201:
            return httpx.Response(self.status, json={"detail": "no"})
        events = json.loads(request.content)["events"]
        self.batches.append(events)
        return httpx.Response(201, json={"stored": len(events)})


class _Admitted:
    did = "did:trellis:fleet:device-1"


def _reporter(portal: Portal, **options: Any) -> AuthenticationReporter:
    return AuthenticationReporter(
        "https://portal.test", "tok", "telemetry", transport=httpx.MockTransport(portal.handler), **options
    )


def test_decisions_are_posted_in_batches_with_the_token() -> None:
    portal = Portal()
    reporter = _reporter(portal, batch=2)
    reporter.observe(_Admitted())
    reporter.observe(Refused(Reason.REVOKED, "bit set", did="did:trellis:fleet:device-2", authenticated=True))
    reporter.observe(_Admitted())
    assert reporter.flush() == 3
    assert [len(b) for b in portal.batches] == [2, 1]
    assert portal.auth == ["Bearer tok", "Bearer tok"]
    first, second = portal.batches[0]
    assert (first["outcome"], first["reason"], first["service"]) == ("admitted", None, "telemetry")
    assert (second["did"], second["outcome"], second["reason"]) == (
        "did:trellis:fleet:device-2",
        "refused",
        "revoked",
    )
    reporter.close()


def test_a_refusal_that_names_no_device_is_not_reported() -> None:
    portal = Portal()
    reporter = _reporter(portal)
    reporter.observe(Refused(Reason.MALFORMED, "no signature"))
    assert reporter.pending() == 0
    reporter.close()


def test_events_wait_while_the_portal_is_down_and_go_once_it_is_back() -> None:
    portal = Portal()
    reporter = _reporter(portal)
    portal.status = 503
    reporter.observe(_Admitted())
    assert reporter.flush() == 0
    assert reporter.pending() == 1 and "503" in reporter.errors[-1]
    portal.status = 201
    assert reporter.flush() == 1
    reporter.close()


def test_a_full_queue_drops_the_oldest_events() -> None:
    portal = Portal()
    reporter = _reporter(portal, batch=2, capacity=3)
    for n in range(5):
        reporter.observe(Refused(Reason.REVOKED, "x", did=f"did:trellis:fleet:d{n}", authenticated=True))
    assert reporter.dropped == 2
    reporter.flush()
    assert [e["did"] for b in portal.batches for e in b] == [f"did:trellis:fleet:d{n}" for n in (2, 3, 4)]
    reporter.close()


def test_a_batch_the_portal_refuses_is_dropped_and_counted() -> None:
    portal = Portal()
    reporter = _reporter(portal)
    portal.status = 400
    reporter.observe(_Admitted())
    assert reporter.flush() == 0
    assert (reporter.pending(), reporter.dropped) == (0, 1)
    reporter.close()


@pytest.mark.parametrize(
    "options", [{"service": ""}, {"interval": 0}, {"batch": 1001}, {"batch": 10, "capacity": 5}]
)
def test_bad_settings_are_refused_naming_them(options: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"service": "svc", **options}
    service = settings.pop("service")
    with pytest.raises(ConfigurationError):
        AuthenticationReporter("https://portal.test", "tok", service, **settings)


def test_the_thread_sends_on_its_own_and_close_sends_the_rest() -> None:
    portal = Portal()
    reporter = _reporter(portal, interval=0.05).start()
    reporter.observe(_Admitted())
    deadline = time.monotonic() + 5
    while not portal.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert portal.batches
    reporter.observe(_Admitted())
    reporter.close()
    assert sum(len(b) for b in portal.batches) == 2

"""Device traffic: devices authenticating to the services, and every decision the services made.

A :class:`Traffic` runs ``clients`` threads; each picks a random device and a random service and
authenticates the way devices do:

- within its session, when it has one (``hmac-sha256`` signed ``POST /readings``); a session the
  service ended or forgot (restart, rotation, status change) sends the device back to a challenge;
- with an RFC 9421 ``ed25519`` signed request carrying its credential;
- by answering a challenge with a presentation, which opens a session.

Revoked, suspended and quarantined devices keep knocking, as real ones do. A *rogue* device also
replays its own signed requests; the services refuse the copies and count it as a suspect.
:meth:`Traffic.probe` measures, for a status change, the time from its submission until every
service refuses the device.

Every answer is a :class:`Decision`, kept with the height the service's verifier had applied
when the request arrived (``Trellis-View-Height``), so the invariants can judge it afterwards.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from fleet.devices import SimulatedDevice
from fleet.metrics import Recorder
from fleet.service import VIEW_HEIGHT
from wallet.device_client import (
    CREDENTIAL_HEADER,
    SIGNATURE_LIFETIME,
    SIGNED_COMPONENTS,
    DeviceClient,
    encode_device_credential,
    new_nonce,
)
from wallet.errors import WalletError
from wallet.http_signatures import HttpRequest, sign_request

__all__ = ["RENEWAL_REASONS", "Decision", "Endpoint", "ProbeResult", "Traffic"]

RENEWAL_REASONS: Final = frozenset({"session_ended", "session_expired", "session_unknown"})
"""Refusals of a session request that send a device back to a challenge (not a refusal of the device)."""
_PROBE_EVERY: Final = 0.05
_PROBE_LIMIT: Final = 60.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A service the devices talk to."""

    name: str
    url: str


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer of a service: to which device, by which flow, when (monotonic), and what."""

    device: SimulatedDevice
    service: str
    flow: str
    """``session``, ``signed``, ``presentation``, ``probe``, or ``replay`` (a rogue's copy)."""
    started: float
    ended: float
    view_height: int
    admitted: bool
    reason: str | None
    detail: str = ""
    """A refusal's problem detail (why the verifier refused), for the report."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """How long after its submission a change made a service refuse the device (``None``: it never did)."""

    kind: str
    did: str
    service: str
    submitted: float
    ms: float | None


class Traffic:
    """The fleet's devices talking to the services (see the module docstring)."""

    def __init__(
        self,
        devices: Sequence[SimulatedDevice],
        services: Sequence[Endpoint],
        recorder: Recorder,
        *,
        clients: int = 8,
        seed: int = 1,
        timeout: float = 10.0,
    ) -> None:
        self.devices = list(devices)
        self.services = list(services)
        self.recorder = recorder
        self.clients = clients
        self.seed = seed
        self.timeout = timeout
        self.decisions: list[Decision] = []
        self.probes: list[ProbeResult] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._probing: list[threading.Thread] = []
        self._abort_probes = threading.Event()

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the client threads."""
        self._stop.clear()
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, args=(n,), name=f"fleet-device-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the client threads and wait for them (probes go on: :meth:`finish_probes`)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self._threads.clear()

    def start_probe(self, device: SimulatedDevice, kind: str, submitted: float) -> None:
        """:meth:`probe` in the background."""
        thread = threading.Thread(target=self.probe, args=(device, kind, submitted), daemon=True)
        with self._lock:
            self._probing = [t for t in self._probing if t.is_alive()] + [thread]
        thread.start()

    def finish_probes(self, timeout: float = _PROBE_LIMIT + 30) -> None:
        """Wait for the probes under way (each ends when refused, or after a minute), then abort the rest."""
        deadline = time.monotonic() + timeout
        with self._lock:
            probing = list(self._probing)
        for thread in probing:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abort_probes.set()

    def _run(self, n: int) -> None:
        rng = random.Random(self.seed * 1_000 + n)  # noqa: S311 - a reproducible workload, not secrets
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.is_set():
                with self._lock:
                    device = self.devices[rng.randrange(len(self.devices))] if self.devices else None
                if device is None:
                    self._stop.wait(0.05)
                    continue
                if not device.lock.acquire(blocking=False):
                    continue
                try:
                    self.authenticate(http, device, rng.choice(self.services), rng)
                    if device.rogue and rng.random() < 0.5:
                        self.replay(http, device, rng.choice(self.services))
                except (httpx.HTTPError, WalletError, ValueError, KeyError) as exc:
                    self._error(f"{device.did}: {exc}")
                finally:
                    device.lock.release()

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors = [*self.errors[-999:], text]
        self.recorder.count("traffic_errors")

    # -- one authentication -----------------------------------------------------------------
    def authenticate(
        self, http: httpx.Client, device: SimulatedDevice, service: Endpoint, rng: random.Random
    ) -> Decision:
        """One authentication of ``device`` at ``service`` by a flow chosen as devices choose."""
        session = device.sessions.get(service.name)
        if session is not None and session.expires <= time.time() + 5:
            session = None
            device.sessions.pop(service.name, None)
        roll = rng.random()
        if session is not None and roll < 0.7:
            client = DeviceClient(device, service.url, http=http)
            client.session = session
            decision = self._send(
                device,
                service,
                "session",
                lambda: client.session_request("POST", "/readings", json=_reading(rng)),
            )
            if decision.reason in RENEWAL_REASONS:
                device.sessions.pop(service.name, None)
                return self.present(http, device, service)
            return decision
        if roll < 0.85 or session is not None:
            return self.signed(http, device, service, "signed")
        return self.present(http, device, service)

    def signed(self, http: httpx.Client, device: SimulatedDevice, service: Endpoint, flow: str) -> Decision:
        """An ``ed25519`` signed reading with the device's credential."""
        client = DeviceClient(device, service.url, http=http)
        return self._send(
            device, service, flow, lambda: client.signed_request("POST", "/readings", json={"t": 1})
        )

    def present(self, http: httpx.Client, device: SimulatedDevice, service: Endpoint) -> Decision:
        """Challenge, presentation, and (when admitted) the session the service offers."""
        client = DeviceClient(device, service.url, http=http)
        challenge = http.get(service.url + "/auth/challenge")
        challenge.raise_for_status()
        presentation = client.answer_challenge(challenge.json())
        answer: dict[str, Any] = {}

        def post() -> httpx.Response:
            response = http.post(service.url + "/auth/presentation", json=presentation)
            if response.status_code == 200:
                answer.update(response.json())
            return response

        decision = self._send(device, service, "presentation", post)
        if decision.admitted and answer.get("session"):
            client.start_session(answer["session"])
            if client.session is not None:
                device.sessions[service.name] = client.session
        return decision

    def replay(self, http: httpx.Client, device: SimulatedDevice, service: Endpoint) -> Decision:
        """A rogue device sends one signed request twice; the second is the one judged."""
        request = http.build_request(
            "POST",
            service.url + "/readings",
            json={"t": 2},
            headers={CREDENTIAL_HEADER: encode_device_credential(device.credential)},
        )
        message = HttpRequest(request.method, str(request.url), dict(request.headers), request.content)
        now = int(time.time())
        request.headers.update(
            sign_request(
                message,
                key=device.key,
                keyid=device.verification_method,
                components=SIGNED_COMPONENTS,
                created=now,
                expires=now + SIGNATURE_LIFETIME,
                nonce=new_nonce(),
            )
        )
        self._send(device, service, "signed", lambda: http.send(request))
        return self._send(device, service, "replay", lambda: http.send(request))

    def _send(self, device: SimulatedDevice, service: Endpoint, flow: str, send: Any) -> Decision:
        started = time.monotonic()
        response: httpx.Response = send()
        ended = time.monotonic()
        admitted = response.status_code == 200
        reason, detail = None, ""
        if not admitted:
            try:
                problem = response.json()
                reason = str(problem.get("reason", f"http_{response.status_code}"))
                detail = str(problem.get("detail") or "")
            except (ValueError, AttributeError):
                reason = f"http_{response.status_code}"
        view = int(response.headers.get(VIEW_HEIGHT, "-1"))
        decision = Decision(device, service.name, flow, started, ended, view, admitted, reason, detail)
        with self._lock:
            self.decisions.append(decision)
        if admitted:
            self.recorder.count("admitted", at=self.recorder.at(ended))
        elif reason not in RENEWAL_REASONS:
            self.recorder.count("refused", at=self.recorder.at(ended))
            self.recorder.count(f"refused:{reason}", at=self.recorder.at(ended))
        return decision

    # -- revocation to refusal --------------------------------------------------------------
    def probe(self, device: SimulatedDevice, kind: str, submitted: float) -> list[ProbeResult]:
        """Signed requests by ``device`` to each service (each on its own thread) every 50 ms from
        ``submitted`` until it refuses the device, for at most a minute; one result per service."""
        results: list[ProbeResult] = []
        threads = [
            threading.Thread(
                target=lambda s=s: results.append(self._probe(device, kind, submitted, s)), daemon=True
            )
            for s in self.services
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(_PROBE_LIMIT + 2 * self.timeout)
        return results

    def _probe(self, device: SimulatedDevice, kind: str, submitted: float, service: Endpoint) -> ProbeResult:
        refused_at = None
        deadline = time.monotonic() + _PROBE_LIMIT
        with httpx.Client(timeout=self.timeout) as http:
            while refused_at is None and time.monotonic() < deadline and not self._abort_probes.is_set():
                try:
                    with device.lock:
                        decision = self.signed(http, device, service, "probe")
                    if not decision.admitted and decision.reason not in RENEWAL_REASONS:
                        refused_at = decision.ended
                        break
                except (httpx.HTTPError, WalletError) as exc:
                    self._error(f"probe {device.did}: {exc}")
                time.sleep(_PROBE_EVERY)
        ms = None if refused_at is None else max(0.0, (refused_at - submitted) * 1000)
        result = ProbeResult(kind, device.did, service.name, submitted, ms)
        if ms is not None:
            self.recorder.sample("revocation_to_refusal_ms", ms, at=self.recorder.at(submitted))
        with self._lock:
            self.probes.append(result)
        return result


def _reading(rng: random.Random) -> dict[str, float]:
    return {"celsius": round(18 + rng.random() * 8, 2)}

"""An example device-facing service, protected by the verifier: what the simulation's devices talk to.

Each service is its own process (``python -m fleet.service``), as a third party's service would
be: a Flask app served by waitress on loopback, with a :class:`~verifier.Verifier` that follows the
ledger's certified header stream, sessions in memory, and a snapshot written every few seconds so
that it can start again while the ledger is unreachable (``--from-snapshot``).

Routes:

- ``GET /auth/challenge``: a single-use challenge for this service's audience (503 with ``Retry-After``
  while the nonce store holds as many outstanding challenges as it allows, or cannot be reached);
- ``POST /auth/presentation``: a presentation answering it; the answer holds the session offer;
- ``POST /readings``: a reading, as an RFC 9421 signed request (``ed25519`` with the device's
  credential in ``Device-Credential``, or ``hmac-sha256`` within a session);
- ``POST /prefetch``: ``{"dids": [...]}`` read into the cache (an edge gateway provisioned with its fleet);
- ``POST /snapshot``: write the snapshot now;
- ``GET /status``: the cache's height and staleness, counts, and *suspects*: devices refused at
  least :data:`SUSPECT_AFTER` times for replaying signed requests (a reporter quarantines them).
  Only refusals whose DID is proven count (``Refused.authenticated``): a forged signature
  (``bad_signature``) names a DID the sender merely claims, so it is counted by reason but held
  against nobody. A replayed request carries the device's own valid signature, which is how a rogue
  device replaying its requests is caught; the service cannot tell it from a third party replaying
  requests it captured from the device, which would make the device a suspect too (the devices'
  requests must travel where nobody else can read them, e.g. over TLS).

Every answer carries ``Trellis-View-Height``: the height the verifier's cache had applied when the
request arrived; a refusal is RFC 9457 problem details with the verifier's ``reason``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import flask

from verifier import NetworkTrust, Policy, Verifier
from verifier.errors import Reason, Refused, StoreUnavailable
from verifier.replay import ChallengeLimitReached
from verifier.sessions import MemorySessionStore
from verifier.wsgi import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    challenge_headers,
    problem_details,
    request_from_environ,
    store_unavailable_details,
)
from web.server import serve

__all__ = [
    "CHALLENGES_EXHAUSTED",
    "SUSPECT_AFTER",
    "VIEW_HEIGHT",
    "ServiceState",
    "create_service",
    "main",
    "edge_policy",
]

VIEW_HEIGHT: Final = "Trellis-View-Height"
"""The response header naming the height the verifier had applied when the request arrived."""
SUSPECT_AFTER: Final = 3
"""Refusals for replayed requests (the DID proven by their signature) after which a device is a suspect."""
_SUSPICIOUS: Final = frozenset({Reason.REPLAYED})
CHALLENGES_EXHAUSTED: Final = "challenges_exhausted"
"""The ``reason`` of the 503 answering ``GET /auth/challenge`` while the nonce store holds as many
outstanding challenges as it allows (:class:`~verifier.replay.ChallengeLimitReached`)."""


def _unavailable(exc: StoreUnavailable) -> flask.Response:
    """The 503 problem answering a request the nonce or session store could not serve, with
    ``Retry-After``: the exception's ``retry_after`` when the store holds all the challenges it
    allows (a challenge asked for), else one second."""
    if isinstance(exc, ChallengeLimitReached):
        details: dict[str, Any] = {
            "type": PROBLEM_BASE + CHALLENGES_EXHAUSTED,
            "title": "Challenges exhausted",
            "status": 503,
            "detail": "too many challenges are outstanding; try again later (signed requests are served)",
            "reason": CHALLENGES_EXHAUSTED,
        }
        retry_after = exc.retry_after
    else:
        details, retry_after = store_unavailable_details(), 1
    return flask.Response(
        json.dumps(details), status=503, mimetype=PROBLEM_JSON, headers=[("Retry-After", str(retry_after))]
    )


def edge_policy() -> Policy:
    """The services' policy: the defaults, but an edge gateway keeps deciding from its cache (or its
    snapshot) for ten minutes while no node answers."""
    return Policy(offline_max_staleness=600.0)


class ServiceState:
    """What a running service counts: decisions, refusals by reason, suspects."""

    def __init__(self, name: str, verifier: Verifier, network: str) -> None:
        self.name = name
        self.verifier = verifier
        self.network = network
        self.lock = threading.Lock()
        self.admitted = 0
        self.refused: Counter[str] = Counter()
        self.suspicious: Counter[str] = Counter()

    def view_height(self) -> int:
        """The height the verifier's cache has applied (-1 before it has any)."""
        height = self.verifier.caches[self.network].height
        return -1 if height is None else height

    def note(self, refused: Refused | None) -> None:
        """Count one decision."""
        with self.lock:
            if refused is None:
                self.admitted += 1
                return
            self.refused[refused.reason.value] += 1
            if refused.reason in _SUSPICIOUS and refused.authenticated and refused.did is not None:
                self.suspicious[refused.did] += 1

    def status(self) -> dict[str, Any]:
        """``GET /status``."""
        with self.lock:
            suspects = sorted(d for d, n in self.suspicious.items() if n >= SUSPECT_AFTER)
            return {
                "name": self.name,
                "height": self.view_height(),
                "staleness": self.verifier.staleness(),
                "admitted": self.admitted,
                "refused": dict(self.refused),
                "suspects": suspects,
                "cached": len(self.verifier.caches[self.network]),
            }


def create_service(state: ServiceState, audience: str, snapshot: Path | None = None) -> flask.Flask:
    """The service's Flask app (see the module docstring)."""
    app = flask.Flask(f"fleet-{state.name}")
    verifier = state.verifier

    def problem(refused: Refused, height: int) -> flask.Response:
        state.note(refused)
        body = json.dumps(problem_details(refused))
        headers = [
            (VIEW_HEIGHT, str(height)),
            *(challenge_headers(audience) if refused.status == 401 else []),
        ]
        return flask.Response(body, status=refused.status, mimetype=PROBLEM_JSON, headers=headers)

    def decide(check: Callable[[], Any], answer: Callable[[Any], dict[str, Any]]) -> flask.Response:
        height = state.view_height()
        try:
            device = check()
        except Refused as refused:
            return problem(refused, height)
        except StoreUnavailable as exc:  # nothing was decided about the device
            app.logger.warning("no decision: %s", exc)
            return _unavailable(exc)
        state.note(None)
        response = flask.jsonify(answer(device))
        response.headers[VIEW_HEIGHT] = str(height)
        return response

    @app.get("/auth/challenge")
    def challenge() -> flask.Response:
        try:
            issued = verifier.challenge(audience)
        except StoreUnavailable as exc:
            app.logger.warning("no challenge issued: %s", exc)
            return _unavailable(exc)
        return flask.jsonify(issued)

    @app.post("/auth/presentation")
    def presentation() -> flask.Response:
        body = flask.request.get_json(silent=True)
        return decide(
            lambda: verifier.authenticate_presentation(body, audience),
            lambda d: {"did": d.did, "height": d.height, "session": dict(d.session) if d.session else None},
        )

    @app.post("/readings")
    def readings() -> flask.Response:
        message = request_from_environ(flask.request.environ, flask.request.get_data(cache=True))
        return decide(
            lambda: verifier.authenticate_request(message, audience),
            lambda d: {"did": d.did, "height": d.height, "accepted": True},
        )

    @app.post("/prefetch")
    def prefetch() -> flask.Response:
        dids = (flask.request.get_json(silent=True) or {}).get("dids", [])
        if not isinstance(dids, list) or not all(isinstance(d, str) for d in dids):
            flask.abort(400)
        for start in range(0, len(dids), 2_000):
            verifier.prefetch(dids[start : start + 2_000])
        return flask.jsonify({"cached": len(verifier.caches[state.network])})

    @app.post("/snapshot")
    def take_snapshot() -> flask.Response:
        if snapshot is None:
            flask.abort(404)
        verifier.save_snapshot(snapshot)
        return flask.jsonify({"snapshot": str(snapshot), "height": state.view_height()})

    @app.get("/status")
    def status() -> flask.Response:
        return flask.jsonify(state.status())

    return app


def _snapshots(verifier: Verifier, path: Path, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            verifier.save_snapshot(path)
        except Exception as exc:
            print(f"snapshot not written: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m fleet.service --name N --port P --trust FILE --snapshot FILE [--from-snapshot]``."""
    parser = argparse.ArgumentParser(prog="python -m fleet.service", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trust", type=Path, required=True, help="JSON: {network, nodes, genesis}")
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument(
        "--snapshot-every", type=float, default=10.0, help="seconds; 0: only on POST /snapshot"
    )
    parser.add_argument("--from-snapshot", action="store_true", help="start from the snapshot")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    trust_json = json.loads(args.trust.read_text())
    trust = NetworkTrust(trust_json["network"], trust_json["nodes"], trust_json["genesis"])
    options: dict[str, Any] = {"sessions": MemorySessionStore()}
    if args.from_snapshot:
        verifier = Verifier.from_snapshot(args.snapshot, [trust], edge_policy(), **options)
    else:
        verifier = Verifier([trust], edge_policy(), **options)
    state = ServiceState(args.name, verifier, trust.network)
    audience = f"127.0.0.1:{args.port}"
    app = create_service(state, audience, args.snapshot)
    stop = threading.Event()
    if args.snapshot_every > 0:
        threading.Thread(
            target=_snapshots, args=(verifier, args.snapshot, args.snapshot_every, stop), daemon=True
        ).start()

    def shut_down(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shut_down)
    try:
        serve(app, "127.0.0.1", args.port, threads=args.threads)
    finally:
        stop.set()
        verifier.close()


if __name__ == "__main__":
    main()

"""A session store that cannot take a session never keeps a device out: it is let in without a session
offer; one device cannot fill the store; and the integrations answer a store they cannot reach with a
503 problem, not a server error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import flask

from tests.verifier.lifetime_world import World, make_world, refused
from verifier import MemoryNonceStore, MemorySessionStore, Reason, Session, StoreUnavailable, Verifier
from verifier.flask import DeviceAuth
from verifier.verifier import SESSIONS_PER_DEVICE
from verifier.wsgi import PROBLEM_JSON, STORE_UNAVAILABLE, DeviceAuthMiddleware
from wallet.http_signatures import HttpRequest

AUDIENCE = "https://service.example"


class _DownSessionStore(MemorySessionStore):
    """A session store whose writes fail, as a Redis that cannot be reached does."""

    def put(self, session: Session) -> None:
        raise StoreUnavailable("Redis failed while storing a session: connection refused")


class _DownNonceStore(MemoryNonceStore):
    """A nonce store that cannot be reached."""

    def use(self, namespace: str, value: str, expires_at: float) -> bool:
        raise StoreUnavailable("Redis failed while using a nonce: connection refused")


def test_a_full_session_store_lets_the_device_in_without_a_session() -> None:
    """max_sessions reached: the full authentication succeeds, with no session offer."""
    world = make_world()
    store = MemorySessionStore(max_sessions=1, clock=world.clock)
    verifier = world.verifier(store=store)
    store.put(_a_session_of("did:trellis:testnet:someone-else", world.clock()))
    device = verifier.authenticate_request(world.request())
    assert (device.did, device.session) == (world.device, None)


def test_an_unreachable_session_store_lets_the_device_in_without_a_session() -> None:
    """put raising StoreUnavailable: admitted without an offer, and the failure is noted."""
    world = make_world()
    verifier = world.verifier(store=_DownSessionStore(clock=world.clock))
    device = verifier.authenticate_request(world.request())
    assert (device.did, device.session) == (world.device, None)
    assert "connection refused" in verifier.session_errors[-1]


def test_one_device_cannot_fill_the_session_store() -> None:
    """However often a device authenticates fully, it holds at most SESSIONS_PER_DEVICE sessions."""
    world = make_world()
    store = MemorySessionStore(max_sessions=50, clock=world.clock)
    verifier = world.verifier(store=store)
    for _ in range(60):
        assert verifier.authenticate_request(world.request()).session is not None
    assert store.count() == SESSIONS_PER_DEVICE


def test_a_superseded_session_is_told_it_ended() -> None:
    """The oldest session of a device that opened one too many is ended, saying why."""
    world = make_world()
    verifier = world.verifier()
    first = verifier.authenticate_request(world.request()).session
    assert first is not None
    for _ in range(SESSIONS_PER_DEVICE):
        verifier.authenticate_request(world.request())
    refusal = refused(verifier, world.session_request(first))
    assert refusal.reason is Reason.SESSION_ENDED and "superseded" in refusal.detail


def test_the_newest_sessions_of_a_device_go_on() -> None:
    """The sessions kept are the newest: the last offer works."""
    world = make_world()
    verifier = world.verifier()
    offers = [verifier.authenticate_request(world.request()).session for _ in range(SESSIONS_PER_DEVICE + 2)]
    last = offers[-1]
    assert last is not None
    assert verifier.authenticate_request(world.session_request(last)).did == world.device


def _a_session_of(did: str, now: float) -> Session:
    return Session(id=f"s-{did}", did=did, key=b"k" * 32, key_id=f"{did}#key-1", audience=AUDIENCE,
                   created=now, expires_at=now + 300)  # fmt: skip


def _flask_app(verifier: Verifier) -> flask.Flask:
    app = flask.Flask("store-down")
    auth = DeviceAuth(app, verifier=verifier, audience=AUDIENCE)

    @app.post("/readings")
    @auth.device_required
    def readings() -> str:
        return "ok"

    return app


def _post(app: Callable[..., Any] | flask.Flask, request: HttpRequest) -> Any:
    wsgi = app if isinstance(app, flask.Flask) else flask.Flask("wrapped")
    if not isinstance(app, flask.Flask):
        wsgi.wsgi_app = app  # type: ignore[method-assign]
    return wsgi.test_client().post(
        "/readings", base_url=AUDIENCE, headers=dict(request.headers), data=request.body
    )


def _with_down_nonces(world: World) -> Verifier:
    return world.ledger.verifier(clock=world.clock, nonces=_DownNonceStore(clock=world.clock))


def test_device_auth_answers_an_unreachable_nonce_store_with_a_503_problem() -> None:
    """DeviceAuth: StoreUnavailable from the nonce store is a 503 problem, not a server error."""
    world = make_world()
    response = _post(_flask_app(_with_down_nonces(world)), world.request())
    assert (response.status_code, response.content_type) == (503, PROBLEM_JSON)
    assert response.get_json()["reason"] == STORE_UNAVAILABLE


def test_device_auth_does_not_tell_the_device_where_the_store_is() -> None:
    """The problem's detail does not repeat the store's error (which may name its address)."""
    world = make_world()
    response = _post(_flask_app(_with_down_nonces(world)), world.request())
    assert "connection refused" not in response.get_json()["detail"]


def _ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_the_middleware_answers_an_unreachable_nonce_store_with_a_503_problem() -> None:
    """DeviceAuthMiddleware: StoreUnavailable is a 503 problem, and the app is not reached."""
    world = make_world()
    middleware = DeviceAuthMiddleware(_ok, _with_down_nonces(world), audience=AUDIENCE)
    response = _post(middleware, world.request())
    assert (response.status_code, response.content_type) == (503, PROBLEM_JSON)
    assert json.loads(response.data)["reason"] == STORE_UNAVAILABLE


def test_device_auth_lets_a_device_in_when_the_session_store_is_down() -> None:
    """A session store that cannot be reached costs the session, not the request."""
    world = make_world()
    response = _post(_flask_app(world.verifier(store=_DownSessionStore(clock=world.clock))), world.request())
    assert response.status_code == 200

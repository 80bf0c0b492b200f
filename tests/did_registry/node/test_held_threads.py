"""Header streams and waiting requests hold worker threads: they are capped, and streams end, so
short requests (health, reads, writes, state transfer) are always served."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from flask import Flask

from did_registry.node.api import create_app
from did_registry.node.api_support import HOLDS, RETRY_AFTER_S, limit_held_threads
from did_registry.node.server import DEFAULT_MAX_STREAMS, DEFAULT_THREADS, NodeServer
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import PROBLEM_JSON, Node, make_node


def _held(app: Flask, kind: str) -> int:
    return int(app.extensions[HOLDS][kind].held)


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _idle_request(server: NodeServer, path: str) -> socket.socket:
    """A request whose answer is never read (the socket stays open)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def _status(sock: socket.socket) -> int:
    return int(sock.recv(64).split(b" ", 2)[1])


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets closed after the test."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _pending_txn_id(node: Node) -> str:
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    assert node.submit(txn).status_code == 202
    return txn.id


# -- over real sockets ------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/events", "/sync/blocks?from=99&wait=30"], ids=["streams", "long-polls"])
def test_idle_held_requests_leave_threads_for_health(path: str, sockets: list[socket.socket]) -> None:
    """As many never-read streams (or long-polls) as the server has threads leave /health answered."""
    node = make_node()
    with NodeServer(node.service, app=node.app) as server:
        sockets.extend(_idle_request(server, path) for _ in range(DEFAULT_THREADS))
        time.sleep(0.5)
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        for sock in sockets:
            sock.close()


def test_stream_beyond_the_cap_is_a_503_problem_over_the_wire(sockets: list[socket.socket]) -> None:
    """With max_streams streams open, another GET /events is 503 overloaded with Retry-After."""
    node = make_node()
    with NodeServer(node.service, app=node.app) as server:
        sockets.extend(_idle_request(server, "/events") for _ in range(DEFAULT_MAX_STREAMS))
        assert _until(lambda: _held(node.app, "streams") == DEFAULT_MAX_STREAMS)
        response = httpx.get(server.url + "/events", timeout=5)
        assert response.status_code == 503 and response.headers["Content-Type"] == PROBLEM_JSON
        assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert response.json()["code"] == "overloaded"
        for sock in sockets:
            sock.close()


def test_unread_stream_gives_its_thread_back_after_its_lifetime(sockets: list[socket.socket]) -> None:
    """A stream whose reader never reads ends after its lifetime, so the next stream is served."""
    node = make_node()
    app = create_app(node.service, heartbeat_s=0.05, stream_lifetime_s=0.5)
    with NodeServer(node.service, app=app, threads=4, max_streams=1, max_waits=1) as server:
        sockets.append(_idle_request(server, "/events"))
        assert _until(lambda: _held(app, "streams") == 1)
        sockets.append(_idle_request(server, "/events"))
        assert _status(sockets[-1]) == 503
        assert _until(lambda: _held(app, "streams") == 0, timeout=5)
        sockets.append(_idle_request(server, "/events"))
        assert _status(sockets[-1]) == 200


def test_caps_must_leave_threads_free() -> None:
    """A server whose caps would leave fewer than two threads for short requests is refused."""
    node = make_node()
    with pytest.raises(ValueError, match="short requests"):
        NodeServer(node.service, threads=4, max_streams=2, max_waits=1)


# -- through the test client ------------------------------------------------------------------
def test_stream_beyond_the_cap_is_503(node: Node) -> None:
    """Beyond the cap on streams, GET /events is an overloaded problem with Retry-After."""
    limit_held_threads(node.app, streams=1, waits=1)
    first = node.client.get("/events", buffered=False)
    assert first.status_code == 200
    refused = node.client.get("/events", buffered=False)
    assert refused.status_code == 503 and refused.mimetype == PROBLEM_JSON
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert refused.get_json()["code"] == "overloaded"
    first.close()


def test_closing_a_stream_gives_its_slot_back(node: Node) -> None:
    """A closed stream no longer counts against the cap."""
    limit_held_threads(node.app, streams=1, waits=1)
    node.client.get("/events", buffered=False).close()
    again = node.client.get("/events", buffered=False)
    assert again.status_code == 200
    again.close()


def test_stream_ends_after_its_lifetime() -> None:
    """A stream ends by itself once its lifetime passes (the reader resumes with Last-Event-ID)."""
    node = make_node()
    app = create_app(node.service, heartbeat_s=0.05, stream_lifetime_s=0.3)
    response = app.test_client().get("/events", buffered=False)
    started = time.monotonic()
    for _ in response.response:
        assert time.monotonic() - started < 3
    assert _held(app, "streams") == 0
    response.close()


@pytest.mark.parametrize("endpoint", ["txn", "statuses", "sync"])
def test_a_wait_beyond_the_cap_is_answered_at_once(node: Node, endpoint: str) -> None:
    """Beyond the cap on waiting requests, a request that would wait answers at once with what stands
    now (as a long-poll may end early; its client asks again): no thread held, no refusal."""
    limit_held_threads(node.app, streams=1, waits=0)
    txn_id = _pending_txn_id(node)
    started = time.monotonic()
    if endpoint == "txn":
        response = node.client.get(f"/txns/{txn_id}?wait=5")
        assert response.get_json()["status"] == "pending"
    elif endpoint == "statuses":
        response = node.client.post("/txns/status", json={"ids": [txn_id], "wait": 5})
        assert response.get_json()["txns"][0]["status"] == "pending"
    else:
        response = node.client.get(f"/sync/blocks?from={node.service.app.height + 1}&wait=5")
    assert response.status_code == 200 and time.monotonic() - started < 2
    assert _held(node.app, "waits") == 0


def test_settled_transaction_needs_no_wait_slot(node: Node) -> None:
    """A ?wait= request for a transaction already committed answers at once, even with no slot free."""
    limit_held_threads(node.app, streams=1, waits=0)
    txn_id = _pending_txn_id(node)
    node.service.produce_block()
    response = node.client.get(f"/txns/{txn_id}?wait=1")
    assert response.status_code == 200 and response.get_json()["status"] == "committed"

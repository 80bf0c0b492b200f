"""The waitress server on loopback: real sockets, the block producer, streams, and a clean stop."""

from __future__ import annotations

import gc
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from did_registry.node.api import MAX_BODY_BYTES
from did_registry.node.server import NodeServer, serve, serving_collector
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import Node, make_node


@pytest.fixture
def served() -> Iterator[tuple[Node, NodeServer]]:
    """A node served on a free loopback port, stopped afterwards."""
    node = make_node(block_interval=0.01)
    server = NodeServer(node.service, app=node.app)
    server.start()
    yield node, server
    server.stop()


def _raw(server: NodeServer, request: bytes, timeout: float = 10.0) -> bytes:
    """The first bytes of the answer to ``request`` sent on a fresh connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def test_listens_on_a_free_loopback_port(served: tuple[Node, NodeServer]) -> None:
    """Port 0 picks a free port, reported by the server, answering /health."""
    _, server = served
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    assert _get(server.url + "/health")["status"] == "ok"


def test_block_producer_commits_submissions(served: tuple[Node, NodeServer]) -> None:
    """A submitted transaction is committed by the running block producer, seen through ?wait=."""
    node, server = served
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    request = urllib.request.Request(
        server.url + "/txns",
        data=json.dumps(txn.to_json()).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
    assert _get(f"{server.url}/txns/{txn.id}?wait=10", timeout=20)["status"] == "committed"
    assert _get(f"{server.url}/1.0/identifiers/{device.did}")["didDocument"]["id"] == device.did


def test_errors_are_problems_over_the_wire(served: tuple[Node, NodeServer]) -> None:
    """An error answer keeps its problem media type through the server."""
    _, server = served
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "/blocks/99", timeout=10)
    assert info.value.code == 404 and info.value.headers["Content-Type"] == "application/problem+json"
    info.value.close()


def test_event_stream_delivers_then_ends_on_stop(served: tuple[Node, NodeServer]) -> None:
    """An open stream receives a new header at once and ends when the server stops."""
    node, server = served
    lines: list[bytes] = []
    opened = threading.Event()

    def read() -> None:
        with urllib.request.urlopen(server.url + "/events", timeout=20) as response:
            opened.set()
            for line in response:
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10)
    node.client.post("/txns", json=(d := new_actor()).txn("did.create", {"document": d.document()},
                                                           node.trustee).to_json())  # fmt: skip
    deadline = time.monotonic() + 10
    while b"event: header\n" not in lines and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"id: 1\n" in lines
    started = time.monotonic()
    server.stop()
    reader.join(10)
    assert not reader.is_alive() and time.monotonic() - started < 10


def test_stop_frees_the_port() -> None:
    """After stop the port refuses connections; stopping twice is harmless."""
    node = make_node()
    server = NodeServer(node.service)
    server.start()
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_stop_without_serving_closes_the_socket() -> None:
    """A server made but never run releases its port on stop."""
    server = NodeServer(make_node().service)
    port = server.port
    server.stop()
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_the_serving_collector_freezes_what_exists_and_collects_less_often() -> None:
    """While serving, the objects already alive are frozen out of every collection and the young
    generation collects after 50,000 allocations; both are restored afterwards."""
    before = gc.get_threshold()
    kept = [[n] for n in range(1000)]  # alive on entry
    with serving_collector():
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (50_000, 20, 100)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_serve_returns_when_the_node_halts() -> None:
    """A halted node (its store refused a committed block) stops serving, so ``trellis node start``
    exits and a supervisor restarts it; until then /health says why."""
    node = make_node()
    out = io.StringIO()
    thread = threading.Thread(
        target=serve, args=(node.service,), kwargs={"out": out, "handle_signals": False}
    )
    thread.start()
    deadline = time.monotonic() + 10
    while "serving on" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    url = out.getvalue().split()[-1]
    assert _get(f"{url}/health")["status"] == "ok"
    node.service.halt("block 7 could not be stored: disk full")
    thread.join(10)
    assert not thread.is_alive()
    health = node.app.test_client().get("/health").get_json()
    assert (health["status"], health["halted"]) == ("halted", "block 7 could not be stored: disk full")


class TestRequestSize:
    def test_a_body_over_the_api_limit_is_refused_before_it_is_sent(
        self, served: tuple[Node, NodeServer]
    ) -> None:
        """A Content-Length over the API's limit is answered 413 from the headers alone, without
        waiting for (and spooling) the body."""
        _, server = served
        head = (
            b"POST /txns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (64 << 20)
        )
        assert _raw(server, head, timeout=5).startswith(b"HTTP/1.1 413")

    def test_a_body_at_the_api_limit_reaches_the_app(self, served: tuple[Node, NodeServer]) -> None:
        """A body of exactly the API's limit is not refused by the server: the app reads it."""
        _, server = served
        head = (
            b"POST /txns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % MAX_BODY_BYTES
        )
        answer = _raw(server, head + b"[" + b" " * (MAX_BODY_BYTES - 1), timeout=30)
        assert answer.startswith(b"HTTP/1.1 400") and b"application/problem+json" in answer

    def test_headers_over_64_kib_are_refused(self, served: tuple[Node, NodeServer]) -> None:
        """Headers over 64 KiB (``MAX_HEADER_BYTES``; waitress's default is 256 KiB) are answered 431."""
        _, server = served
        padding = b"X-Pad: " + b"a" * (100 * 1024) + b"\r\n"
        answer = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + padding + b"\r\n")
        assert answer.split(b" ", 2)[1] == b"431"

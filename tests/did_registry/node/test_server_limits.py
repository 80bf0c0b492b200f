"""The server's connection limits on loopback: slow clients, one address's share, request sizes.

Slow clients come from 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux), honest ones from
127.0.0.1. Deadlines are short here (about a second); the server enforces them once a second.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from did_registry.node import server as server_module
from did_registry.node.server import FD_RESERVE, ConnectionLimits, NodeServer
from tests.did_registry.node.conftest import make_node

SLOW_SOURCE = ("127.0.0.2", 0)
"""Where the slow clients connect from."""
ServeWith = Callable[[ConnectionLimits], NodeServer]
"""Serves a fresh node with the given limits."""
PARTIAL = b"GET /health HTTP/1.1\r\nHost: x\r\n"
"""A request whose headers never end."""


@pytest.fixture
def serve_with() -> Iterator[ServeWith]:
    """A factory of servers with the given :class:`ConnectionLimits`, all stopped afterwards."""
    servers: list[NodeServer] = []

    def make(limits: ConnectionLimits) -> NodeServer:
        node = make_node()
        server = NodeServer(node.service, app=node.app, limits=limits)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _health(server: NodeServer, timeout: float = 5.0) -> int:
    with urllib.request.urlopen(server.url + "/health", timeout=timeout) as response:
        return int(response.status)


def _closed(sock: socket.socket, wait: float) -> bool:
    """Whether the server closed ``sock`` (end of stream, a reset, or a refusal) within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 503")


def _slow(
    stack: ExitStack, server: NodeServer, source: tuple[str, int] | None = SLOW_SOURCE
) -> socket.socket:
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 5, source))
    sock.sendall(PARTIAL)
    return sock


def _raw(server: NodeServer, request: bytes, timeout: float = 10.0) -> bytes:
    """The first bytes of the answer to ``request`` sent on a fresh connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout) as sock:
        sock.sendall(request)
        return sock.recv(65536)


class TestRequestDeadline:
    def test_a_trickled_request_is_closed_at_its_deadline(self, serve_with: ServeWith) -> None:
        """A request whose header lines trickle in (each byte resetting waitress's idle timer) is
        closed once its deadline passes, not held for as long as the bytes keep coming."""
        server = serve_with(ConnectionLimits(request_timeout_s=1.0))
        with ExitStack() as stack:
            sock = _slow(stack, server)
            started = time.monotonic()
            closed = False
            while not closed and time.monotonic() - started < 8:
                try:
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    closed = True
                    break
                closed = _closed(sock, 0.25)
            assert closed and time.monotonic() - started < 5

    def test_a_body_arriving_steadily_gets_through_past_the_deadline(
        self, serve_with: ServeWith, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The deadline moves on with the bytes that arrive (MIN_UPLOAD_RATE): a large body over a
        slow uplink is answered, not cut at request_timeout_s."""
        monkeypatch.setattr(server_module, "MIN_UPLOAD_RATE", 16 * 1024)
        server = serve_with(ConnectionLimits(request_timeout_s=1.0))
        body = b"[" + b" " * (60 * 1024) + b"]"  # 60 KiB at 24 KiB/s: 2.5 s, the deadline 1 s + 3.75 s
        with socket.create_connection(("127.0.0.1", server.port), 10) as sock:
            sock.sendall(
                b"POST /txns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            for start in range(0, len(body), 4096):
                sock.sendall(body[start : start + 4096])
                time.sleep(4096 / (24 * 1024))
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 4"), answer[:100]  # an answer (the empty batch refused)

    def test_a_silent_connection_is_closed_at_the_request_deadline(self, serve_with: ServeWith) -> None:
        """A connection that never sends a byte is closed at the request deadline, not the idle one."""
        server = serve_with(ConnectionLimits(request_timeout_s=1.0, idle_timeout_s=60))
        with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
            assert _closed(sock, 5)

    def test_a_kept_alive_connection_is_held_to_the_idle_timeout_only(self, serve_with: ServeWith) -> None:
        """Between requests a kept-alive connection is idle, not late: it outlives the request
        deadline and serves its next request."""
        server = serve_with(ConnectionLimits(request_timeout_s=1.0, idle_timeout_s=60))
        request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            assert not _closed(sock, 2.5)
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    def test_slow_clients_filling_every_slot_are_cut_and_an_honest_request_served(
        self, serve_with: ServeWith
    ) -> None:
        """Slow clients holding every connection the server takes (the rest wait in the listen
        backlog) are cut at the deadline, so an honest request queued behind them is served within
        seconds, and the late ones are cut in turn."""
        server = serve_with(ConnectionLimits(connections=12, per_address=12, request_timeout_s=1.0))
        with ExitStack() as stack:
            held = [_slow(stack, server) for _ in range(12)]
            started = time.monotonic()
            assert _health(server, timeout=8) == 200
            assert time.monotonic() - started < 6
            assert all(_closed(sock, 4) for sock in held)


class TestPerAddress:
    def test_one_address_holds_at_most_its_share(self, serve_with: ServeWith) -> None:
        """An address holding ``per_address`` connections has the next ones refused (503) and
        closed at once, while another address is served."""
        server = serve_with(ConnectionLimits(connections=40, per_address=5))
        with ExitStack() as stack:
            slow = [_slow(stack, server) for _ in range(15)]
            time.sleep(0.3)
            open_ones = [sock for sock in slow if not _closed(sock, 0.2)]
            assert len(open_ones) == 5
            assert _health(server) == 200  # from 127.0.0.1

    def test_an_address_is_served_again_once_its_connections_close(self, serve_with: ServeWith) -> None:
        """The share is of connections open now: closing them lets the address connect again."""
        server = serve_with(ConnectionLimits(connections=40, per_address=3))
        with ExitStack() as stack:
            for _ in range(3):
                _slow(stack, server, source=None)
            assert _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503")
        deadline = time.monotonic() + 5
        while (answer := _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))[:12] != b"HTTP/1.1 200":
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)

    def test_the_refusal_is_an_overloaded_problem(self, serve_with: ServeWith) -> None:
        """A connection over the share is answered 503 with an ``overloaded`` problem and Retry-After."""
        server = serve_with(ConnectionLimits(connections=40, per_address=1))
        with ExitStack() as stack:
            _slow(stack, server, source=None)
            with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 2" in head
        assert json.loads(body)["code"] == "overloaded"


class TestLimitsValues:
    def test_a_share_above_the_total_is_refused(self) -> None:
        """``per_address`` cannot exceed ``connections``, and timeouts must be positive."""
        with pytest.raises(ValueError, match="per_address"):
            ConnectionLimits(connections=10, per_address=11)
        with pytest.raises(ValueError, match="request_timeout_s"):
            ConnectionLimits(request_timeout_s=0)

    def test_connections_fit_the_open_file_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Under an open-file limit that cannot be raised, the server takes only the connections
        that leave :data:`FD_RESERVE` descriptors for everything else."""

        def refuse(resource: int, limits: tuple[int, int]) -> None:
            raise ValueError("not permitted")

        monkeypatch.setattr(server_module.resource, "getrlimit", lambda resource: (300, 300))
        monkeypatch.setattr(server_module.resource, "setrlimit", refuse)
        fitted = ConnectionLimits(connections=1000, per_address=100).within_fd_limit()
        assert (fitted.connections, fitted.per_address) == (300 - FD_RESERVE, 300 - FD_RESERVE)

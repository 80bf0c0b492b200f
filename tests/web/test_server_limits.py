"""The portal's waitress server is bounded as the node's is (``web.server``): a body over the 1 MiB cap
is refused before it is read, one client address holds at most its share of connections while others
are served, and a request trickling in is cut at its deadline.

The first tests run ``trellis web serve`` as a process, the production entry point with its default
limits; the deadline's test serves in this process with a short one. Crowding clients connect from
127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux), honest ones from 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from did_registry.node.server import DEFAULT_PER_ADDRESS, ConnectionLimits
from tests.did_registry.node.test_server_limits import _closed
from web import server as portal_server

if TYPE_CHECKING:
    from web.server import PortalServer

CAP = 1 << 20
"""The portal's request body limit (Flask's ``MAX_CONTENT_LENGTH``)."""
PARTIAL = b"GET /login HTTP/1.1\r\nHost: x\r\n"
"""A request whose headers have not ended."""
Address = tuple[str, int]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Address]:
    """``trellis web serve --port 0`` running as a process: the address it listens on."""
    instance = tmp_path_factory.mktemp("served") / "instance"
    env = {**os.environ, "TRELLIS_WEB_INSTANCE": str(instance)}
    command = [sys.executable, "-c", "from web.cli import main; main()", "web", "serve", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("serving on http://127.0.0.1:"), line
        yield "127.0.0.1", int(line.rsplit(":", 1)[1])
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes it (or a 10 s silence)."""
    sock.settimeout(10)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_a_body_over_the_cap_is_refused_before_it_is_sent(served: Address) -> None:
    """A request declaring a body one byte over 1 MiB is answered 413 by waitress as soon as its
    headers arrive, without a byte of the body sent (waitress's default read and spooled up to 1 GiB
    before the app's own limit applied)."""
    with socket.create_connection(served, timeout=10) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % (CAP + 1)
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_a_body_of_the_cap_reaches_the_portal(served: Address) -> None:
    """A body of exactly 1 MiB passes waitress and is the portal's to judge: here a problem saying
    the enrolment request lacks its transaction (400), not waitress's 413."""
    body = b'{"token": "x"' + b" " * (CAP - len(b'{"token": "x"}')) + b"}"
    assert len(body) == CAP
    with socket.create_connection(served, timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/enrol HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % CAP + body
        )
        head, _, problem = _answer(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(problem)["code"] == "malformed"


def test_one_address_holds_at_most_its_share_while_others_are_served(served: Address) -> None:
    """With ``per_address`` slow requests open from one address, its next connection is refused (503
    ``overloaded``) and closed, while the sign-in page still loads for another address (waitress's
    default took 100 connections from anyone, and the 101st waited)."""
    with ExitStack() as stack:
        for _ in range(DEFAULT_PER_ADDRESS):
            sock = stack.enter_context(socket.create_connection(served, 10, ("127.0.0.2", 0)))
            sock.sendall(PARTIAL)
        with socket.create_connection(served, 10, ("127.0.0.2", 0)) as one_more:
            head, _, refusal = _answer(one_more).partition(b"\r\n\r\n")
        with socket.create_connection(served, 10, ("127.0.0.1", 0)) as honest:
            honest.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            page = _answer(honest)
    assert head.startswith(b"HTTP/1.1 503") and json.loads(refusal)["code"] == "overloaded"
    assert json.loads(refusal)["title"] == "Portal overloaded"
    assert page.startswith(b"HTTP/1.1 200")


@pytest.fixture
def serve_with(app: Flask) -> Iterator[Callable[[ConnectionLimits], PortalServer]]:
    """A factory of in-process portal servers with the given limits, all stopped afterwards."""
    running: list[tuple[PortalServer, threading.Thread]] = []

    def make(limits: ConnectionLimits) -> PortalServer:
        server = portal_server.PortalServer(app, limits=limits)
        thread = threading.Thread(target=server.serve_forever, name="portal-server", daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield make
    for server, thread in running:
        server.request_stop()
        thread.join(10)


def test_a_trickled_request_is_closed_at_its_deadline(
    serve_with: Callable[[ConnectionLimits], PortalServer],
) -> None:
    """A request whose header lines keep trickling in (each byte restarted waitress's idle timer) is
    closed once its deadline passes, however long the bytes keep coming."""
    server = serve_with(ConnectionLimits(request_timeout_s=1.0))
    with socket.create_connection(("127.0.0.1", server.port), 10) as sock:
        sock.sendall(PARTIAL)
        closed = False
        for _ in range(120):  # a line every 0.25 s, for up to 30 s: well past the 1 s deadline
            try:
                sock.sendall(b"X-a: b\r\n")
            except OSError:
                closed = True
            if closed or _closed(sock, 0.25):
                closed = True
                break
    assert closed


def test_behind_a_proxy_one_address_may_hold_every_connection() -> None:
    """With trusted proxies every client connects from the proxy's address: the portal gives that
    address every connection (the proxy limits its clients); without, the node's share applies."""
    behind = portal_server.limits_for(trusted_proxies=1)
    assert behind.per_address == behind.connections
    assert portal_server.limits_for(trusted_proxies=0).per_address == DEFAULT_PER_ADDRESS

"""The fault-injecting relay: bytes pass both ways; cut resets, heal accepts; delay holds bytes in order."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from fleet.errors import NetworkFault
from fleet.relay import Relay, RelayHub


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A threaded echo server on loopback."""
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def hub() -> Iterator[RelayHub]:
    """A running relay hub, closed after the test."""
    with RelayHub() as running:
        yield running


@pytest.fixture
def relay(hub: RelayHub, echo_port: int) -> Relay:
    """A relay to the echo server."""
    return hub.relay("127.0.0.1", echo_port)


def _connect(relay: Relay) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    sock.settimeout(5)
    return sock


def _receive(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _round_trip(relay: Relay, payload: bytes = b"ping") -> bytes:
    with _connect(relay) as sock:
        sock.sendall(payload)
        return _receive(sock, len(payload))


def _refused(relay: Relay) -> bool:
    """Whether a new connection through ``relay`` is refused or closed before anything is echoed."""
    try:
        sock = _connect(relay)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    with sock:
        return _is_reset(sock)


def _is_reset(sock: socket.socket) -> bool:
    """Whether the relay closed ``sock`` (a reset, or at least an end of stream) instead of echoing."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_bytes_pass_both_ways(relay: Relay) -> None:
    """A megabyte sent through the relay comes back from the echo server unchanged."""
    payload = os.urandom(1 << 20)
    with _connect(relay) as sock:
        writer = threading.Thread(target=sock.sendall, args=(payload,))
        writer.start()
        echoed = _receive(sock, len(payload))
        writer.join(timeout=10)
    assert echoed == payload


def test_end_of_stream_passes_through(relay: Relay) -> None:
    """A client's half-close reaches the server, and the server's end of stream reaches the client."""
    with _connect(relay) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert _receive(sock, 1 << 16) == b"last words"  # returns at the end of stream


def test_cut_resets_open_connections(relay: Relay) -> None:
    """cut() closes a connection that was working, with a reset."""
    with _connect(relay) as sock:
        sock.sendall(b"hello")
        assert _receive(sock, 5) == b"hello"
        relay.cut()
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    assert relay.connections == 0


def test_cut_refuses_new_connections(relay: Relay) -> None:
    """While cut, every new connection is closed at once and nothing reaches the target."""
    relay.cut()
    for _ in range(3):
        assert _refused(relay)


def test_heal_accepts_again(relay: Relay) -> None:
    """After heal(), new connections are relayed again."""
    relay.cut()
    relay.heal()
    assert _round_trip(relay, b"back") == b"back"


def test_unreachable_target_resets_the_client(hub: RelayHub) -> None:
    """A connection to a relay whose target refuses is closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = int(probe.getsockname()[1])  # bound, never listening: connections are refused
        relay = hub.relay("127.0.0.1", closed_port)
        assert _refused(relay)


def test_delay_holds_each_direction(relay: Relay) -> None:
    """With a delay d, a round trip (two passes through the relay) takes at least 2d."""
    relay.set_delay(0.15)
    started = time.monotonic()
    assert _round_trip(relay) == b"ping"
    assert time.monotonic() - started >= 0.3


def test_delay_zero_forwards_at_once(relay: Relay) -> None:
    """Setting the delay back to 0 removes it."""
    relay.set_delay(0.5)
    relay.set_delay(0)
    started = time.monotonic()
    assert _round_trip(relay) == b"ping"
    assert time.monotonic() - started < 0.5


def test_shorter_delay_keeps_byte_order(relay: Relay) -> None:
    """Bytes sent after the delay shrinks do not overtake bytes still held back."""
    relay.set_delay(0.3)
    with _connect(relay) as sock:
        sock.sendall(b"first-")
        time.sleep(0.05)
        relay.set_delay(0)
        sock.sendall(b"second")
        assert _receive(sock, 12) == b"first-second"


def test_negative_delay_is_refused(relay: Relay) -> None:
    """A negative delay raises NetworkFault."""
    with pytest.raises(NetworkFault, match="delay"):
        relay.set_delay(-1)


def test_many_concurrent_connections(relay: Relay) -> None:
    """A hundred connections open at once each get their own bytes back."""
    sockets = [_connect(relay) for _ in range(100)]
    try:
        for index, sock in enumerate(sockets):
            sock.sendall(f"connection {index:03d}".encode())
        answers = [_receive(sock, 14) for sock in sockets]
        assert relay.connections == 100
    finally:
        for sock in sockets:
            sock.close()
    assert answers == [f"connection {index:03d}".encode() for index in range(100)]


def test_close_stops_the_thread_and_resets(echo_port: int) -> None:
    """Closing the hub resets relayed connections, stops listening and ends its thread."""
    before = set(threading.enumerate())
    hub = RelayHub().start()
    (thread,) = {t for t in threading.enumerate() if t.name == "fleet-relays"} - before
    relay = hub.relay("127.0.0.1", echo_port)
    sock = _connect(relay)
    try:
        assert _round_trip(relay) == b"ping"
        hub.close()
        assert _is_reset(sock)
    finally:
        sock.close()
    assert not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=5).close()


def test_relay_needs_a_running_hub(echo_port: int) -> None:
    """Opening a relay on a hub that is not running raises NetworkFault."""
    with pytest.raises(NetworkFault, match="not running"):
        RelayHub().relay("127.0.0.1", echo_port)

"""Exchanges with a node end in bounded time and memory (did_registry.bounded_http), whatever it sends.

The hostile nodes here are raw sockets on loopback: one sends its status line and headers a few
bytes at a time, one sends a body without end, one an event stream whose line never ends."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from werkzeug.serving import make_server

from did_registry.bounded_http import BOUNDS, AnswerTooLarge, BoundedTransport, bounded_lines
from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.node.sync import BlockSource
from tests.did_registry.validator_chain import SetChangeChain

Handler = Callable[[socket.socket], None]
_HOLD = 30.0  # how long a hostile node would hold a reader without the bounds


def _hostile(handler: Handler) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_answer, args=(conn, handler), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _answer(conn: socket.socket, handler: Handler) -> None:
    with conn:
        conn.settimeout(_HOLD)
        try:
            conn.recv(65536)
            handler(conn)
        except OSError:
            pass  # the reader gave up: what the bounds are for


def _trickle_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    end = time.monotonic() + _HOLD
    while time.monotonic() < end:
        conn.sendall(b"X-Pad: a\r\n")
        time.sleep(0.2)


def _trickle_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        conn.sendall(b" ")
        time.sleep(0.2)


def _endless_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" * 65536
    for _ in range(4096):  # 256 MiB at most
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def _declared_huge(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n[")
    time.sleep(_HOLD)


def _endless_event_line(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"data: " + b"x" * 65536
    for _ in range(1024):
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def _slow_events(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for n in range(6):
        line = b": heartbeat %d\n" % n
        conn.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        time.sleep(0.3)
    conn.sendall(b"0\r\n\r\n")


def _gzip_bomb(conn: socket.socket) -> None:
    """A 400 MB body of zeros in some 400 KB of gzip, whatever the request asked for."""
    bomb = gzip.compress(bytes(8 << 20), compresslevel=9) * 50  # concatenated members: 400 MB
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(bomb)
    )
    conn.sendall(bomb)


def _slow_honest(conn: socket.socket) -> None:
    """A 3 MiB body at about 1 MiB a second: longer than the timeout, steady all along."""
    body = b"[" + b"0," * (3 << 19) + b"0]"
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    for start in range(0, len(body), 64 * 1024):
        conn.sendall(body[start : start + 64 * 1024])
        time.sleep(1 / 16)


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _hostile(request.param)


@pytest.fixture
def honest() -> Iterator[tuple[SetChangeChain, str]]:
    """A node serving a chain of two blocks over real HTTP on loopback."""
    chain = SetChangeChain(4)
    chain.block()
    chain.block()
    server = make_server("127.0.0.1", 0, chain.wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield chain, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    try:
        return call(), time.monotonic() - start
    except Exception as exc:
        return exc, time.monotonic() - start


@pytest.mark.parametrize("hostile", [_trickle_headers, _trickle_body], indirect=True)
def test_a_trickling_answer_ends_at_the_requests_timeout(hostile: str) -> None:
    with httpx.Client(transport=BoundedTransport(), timeout=1.0) as client:
        outcome, took = _timed(lambda: client.get(hostile + "/blocks/head").read())
    assert isinstance(outcome, httpx.ReadTimeout)
    assert took < 5.0  # the node would have held the reader for _HOLD seconds


@pytest.mark.parametrize("hostile", [_endless_body], indirect=True)
def test_a_body_past_the_bound_is_refused(hostile: str) -> None:
    client = httpx.Client(transport=BoundedTransport(max_bytes=1 << 20), timeout=10.0)
    with client, pytest.raises(AnswerTooLarge, match="over 1048576 bytes"):
        client.get(hostile + "/sync/blocks")


@pytest.mark.parametrize("hostile", [_declared_huge], indirect=True)
def test_a_declared_length_past_the_bound_is_refused_before_reading(hostile: str) -> None:
    with httpx.Client(transport=BoundedTransport(max_bytes=1 << 20), timeout=10.0) as client:
        outcome, took = _timed(lambda: client.get(hostile + "/blocks/head"))
    assert isinstance(outcome, AnswerTooLarge)
    assert took < 5.0


@pytest.mark.parametrize("hostile", [_slow_events], indirect=True)
def test_a_stream_with_no_bounds_outlasts_the_timeout(hostile: str) -> None:
    client = httpx.Client(transport=BoundedTransport(max_bytes=16), timeout=0.5)
    with client, client.stream("GET", hostile + "/events", extensions={BOUNDS: (None, None)}) as stream:
        lines = list(bounded_lines(stream, 1024))
    assert [line for line in lines if line] == [f": heartbeat {n}" for n in range(6)]


@pytest.mark.parametrize("hostile", [_slow_events], indirect=True)
def test_the_bounds_extension_overrides_the_timeout(hostile: str) -> None:
    with httpx.Client(transport=BoundedTransport(), timeout=30.0) as client:
        outcome, took = _timed(lambda: client.get(hostile + "/events", extensions={BOUNDS: (0.5, None)}))
    assert isinstance(outcome, httpx.ReadTimeout)
    assert took < 1.5


def _chunked(*chunks: bytes) -> httpx.MockTransport:
    class Chunks(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from chunks

    return httpx.MockTransport(lambda request: httpx.Response(200, stream=Chunks()))


def test_lines_end_at_crlf_lf_or_cr_across_chunks() -> None:
    transport = BoundedTransport(_chunked(b"data: a\r", b"\ndata: b\n", b"\ndata: c\rdata: \xc3", b"\xa9"))
    with httpx.Client(transport=transport) as client, client.stream("GET", "http://node/events") as stream:
        assert list(bounded_lines(stream, 64)) == ["data: a", "data: b", "", "data: c", "data: é"]


def test_a_line_past_the_bound_is_refused() -> None:
    transport = BoundedTransport(_chunked(b"data: ok\n", b"data: " + b"x" * 40, b"x" * 40))
    with httpx.Client(transport=transport) as client, client.stream("GET", "http://node/events") as stream:
        lines = bounded_lines(stream, 64)
        assert next(lines) == "data: ok"
        with pytest.raises(AnswerTooLarge, match="over 64 bytes"):
            next(lines)


def test_a_transport_that_is_not_the_networks_is_bounded_between_chunks() -> None:
    class Slow(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(50):
                time.sleep(0.05)
                yield b" "

    transport = BoundedTransport(httpx.MockTransport(lambda request: httpx.Response(200, stream=Slow())))
    with httpx.Client(transport=transport, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.get("http://node/blocks/head")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_max_bytes_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BoundedTransport(httpx.MockTransport(lambda request: httpx.Response(200)), max_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("hostile", [_trickle_headers, _endless_body], indirect=True)
def test_a_client_passes_over_a_node_that_holds_it(hostile: str, honest: tuple[SetChangeChain, str]) -> None:
    chain, node = honest
    client = LedgerClient([hostile, node], chain.genesis, timeout=1.0)
    try:
        outcome, took = _timed(client.head)
    finally:
        client.close()
    assert not isinstance(outcome, Exception), outcome
    assert outcome.height == 2  # type: ignore[attr-defined]
    assert took < 10.0
    assert any(failure.startswith(hostile) for failure in client.failures)


@pytest.mark.parametrize("hostile", [_endless_event_line], indirect=True)
def test_a_header_stream_with_an_endless_line_is_given_up(hostile: str) -> None:
    chain = SetChangeChain(4)
    client = LedgerClient([hostile], chain.genesis, timeout=1.0)
    try:
        with pytest.raises(LedgerUnavailable):
            next(client.follow(after=0))
    finally:
        client.close()
    assert any("over 1048576 bytes" in failure for failure in client.failures)


@pytest.mark.parametrize("hostile", [_trickle_body], indirect=True)
def test_state_transfer_passes_over_a_peer_that_holds_it(
    hostile: str, honest: tuple[SetChangeChain, str]
) -> None:
    _, node = honest
    source = BlockSource([hostile, node], timeout=1.0)
    try:
        outcome, took = _timed(lambda: source.fetch(1))
    finally:
        source.close()
    assert [block.block.header.height for block in outcome] == [1, 2]  # type: ignore[attr-defined]
    assert took < 10.0


@pytest.mark.parametrize("hostile", [_gzip_bomb], indirect=True)
def test_a_compressed_answer_is_not_expanded_past_the_bound(hostile: str) -> None:
    """Answers are asked for uncompressed, and a Content-Encoding sent anyway is not decoded: the
    bound counts what arrives, so 400 KB of gzip must not become 400 MB in memory."""
    with httpx.Client(transport=BoundedTransport(max_bytes=1 << 20), timeout=10.0) as client:
        response = client.get(hostile + "/blocks/head")
    assert len(response.content) < 1 << 20  # the gzip as it came, not 400 MB of zeros
    with pytest.raises(ValueError):
        response.json()


def test_answers_are_asked_for_uncompressed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(200, json={})

    with httpx.Client(transport=BoundedTransport(httpx.MockTransport(handler))) as client:
        client.get("http://node/blocks/head")
    assert seen == ["identity"]


@pytest.mark.parametrize("hostile", [_slow_honest], indirect=True)
def test_a_large_answer_arriving_steadily_gets_through_past_the_timeout(hostile: str) -> None:
    """The deadline moves on with what arrives (MIN_RATE): a 3 MiB page at 1 MiB/s over a 1 s timeout
    is read whole, where a trickle of the same length in time would not be."""
    with httpx.Client(transport=BoundedTransport(), timeout=1.0) as client:
        response = client.get(hostile + "/sync/blocks")
    assert response.status_code == 200 and len(response.json()) == (3 << 19) + 1

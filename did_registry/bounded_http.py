"""HTTP exchanges with a node that end in bounded time and memory, whatever the node does.

httpx's timeouts bound each network operation, not an exchange: a node sending a byte every few
seconds, in the status line, the headers or the body, holds a reader for as long as it likes, and a
body is read into memory however large it grows. A reader that trusts no single node must not let
one node hold it or fill its memory either. Through :class:`BoundedTransport`, a request's read
timeout bounds the whole exchange (the connection, the request, the status line, the headers and the
body, all together), extended by one second for each :data:`MIN_RATE` bytes received (an honest
node sending a large page over a slow link gets it through; one trickling gets nothing more), and a
body holds at most ``max_bytes``; past either, the exchange fails as a timeout
(``httpx.ReadTimeout``) or an :class:`AnswerTooLarge`, and the caller asks the next node. Answers
are asked for and read uncompressed (``Accept-Encoding: identity``; a ``Content-Encoding`` the node
sends anyway is not decoded): a few kilobytes of gzip would otherwise expand to gigabytes past the
bound, which counts the bytes that arrive.

A request may set other bounds with the extension :data:`BOUNDS`. A long-lived stream (Server-Sent
Events: the header stream) sets ``(None, None)``, no deadline and no size bound, and reads its lines
through :func:`bounded_lines`, which bounds each line instead.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import httpcore
import httpx

__all__ = ["BOUNDS", "MAX_ANSWER_BYTES", "MIN_RATE", "AnswerTooLarge", "BoundedTransport", "bounded_lines"]

BOUNDS: Final = "trellis.bounds"
"""Request extension: ``(seconds, max_bytes)`` for this exchange, either ``None`` for no bound (by
default: the request's read timeout, and the transport's ``max_bytes``)."""
MAX_ANSWER_BYTES: Final = 64 << 20
"""The most a node's answer holds by default. The largest a node gives is a page of blocks: 8 MiB,
and one block more, which a frame of the validators' transport carries (16 MiB by default)."""
MIN_RATE: Final = 256 * 1024
"""Bytes a second: an exchange's deadline moves one second later for each this many bytes received."""
_EOL: Final = re.compile(rb"\r\n|\r(?!$)|\n")  # a line ends at CRLF, LF or CR; a CR last may start a CRLF
_local = threading.local()  # the _Exchange this thread is in (its deadline), or None


class AnswerTooLarge(httpx.DecodingError):
    """A node's answer (or one line of its stream) is larger than the reader accepts."""


class _Exchange:
    """One exchange's deadline: ``seconds`` after it began, one more per :data:`MIN_RATE` bytes
    received."""

    __slots__ = ("began", "received", "seconds")

    def __init__(self, seconds: float) -> None:
        self.began, self.seconds, self.received = time.monotonic(), seconds, 0

    def left(self) -> float:
        return self.began + self.seconds + self.received / MIN_RATE - time.monotonic()


@contextmanager
def _within(exchange: _Exchange | None) -> Iterator[None]:
    before = getattr(_local, "exchange", None)
    _local.exchange = exchange
    try:
        yield
    finally:
        _local.exchange = before


def _left(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left of the current exchange's deadline; a timeout once it is past."""
    exchange: _Exchange | None = getattr(_local, "exchange", None)
    if exchange is None:
        return timeout
    left = exchange.left()
    if left <= 0:
        raise httpcore.ReadTimeout("the node's answer took longer than the reader allows")
    return left if timeout is None else min(timeout, left)


def _received(data: bytes) -> bytes:
    exchange: _Exchange | None = getattr(_local, "exchange", None)
    if exchange is not None:
        exchange.received += len(data)
    return data


class _Stream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the current exchange's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _received(self._inner.read(max_bytes, _left(timeout)))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's network backend, its connections wrapped in :class:`_Stream`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, _left(timeout), local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, _left(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _network_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its connections under the exchange's deadline."""
    transport = httpx.HTTPTransport()
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not isinstance(
        getattr(pool, "_network_backend", None), httpcore.NetworkBackend
    ):  # pragma: no cover - httpx's layout changed: the tests of this module say so
        raise RuntimeError(
            "httpx.HTTPTransport no longer holds an httpcore.ConnectionPool: update bounded_http"
        )
    pool._network_backend = _Backend(pool._network_backend)
    return transport


class _Body(httpx.SyncByteStream):
    """A response body read under its exchange's deadline, and at most ``max_bytes``."""

    def __init__(
        self,
        inner: httpx.SyncByteStream,
        exchange: _Exchange | None,
        max_bytes: int | None,
        url: httpx.URL,
        network: bool,
    ) -> None:
        self._inner, self._exchange, self._max_bytes, self._url = inner, exchange, max_bytes, url
        self._network = network  # whether the connection counts what arrives (else the chunks do)

    def __iter__(self) -> Iterator[bytes]:
        read = 0
        chunks = iter(self._inner)
        exchange = self._exchange
        while True:
            with _within(exchange):
                chunk = next(chunks, None)
            if chunk is None:
                return
            if exchange is not None:  # a transport not the network's reads outside the deadline:
                if not self._network:  # it is checked between its chunks
                    exchange.received += len(chunk)
                if exchange.left() <= 0:
                    raise httpx.ReadTimeout(f"the answer of {self._url} took longer than the reader allows")
            read += len(chunk)
            if self._max_bytes is not None and read > self._max_bytes:
                raise AnswerTooLarge(f"the answer of {self._url} is over {self._max_bytes} bytes")
            yield chunk

    def close(self) -> None:
        self._inner.close()


class BoundedTransport(httpx.BaseTransport):
    """Each exchange ends within the request's read timeout, and its body holds at most
    ``max_bytes``, unless the request's :data:`BOUNDS` extension says otherwise. ``inner``: the
    transport to bound (httpx's network transport by default; another, such as a WSGI transport in
    tests, is bounded between the chunks of its bodies)."""

    def __init__(
        self, inner: httpx.BaseTransport | None = None, *, max_bytes: int | None = MAX_ANSWER_BYTES
    ) -> None:
        if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 1):
            raise ValueError(f"max_bytes must be a positive integer or None, not {max_bytes!r}")
        self._network = inner is None
        self._inner = _network_transport() if inner is None else inner
        self.max_bytes = max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bounds = request.extensions.get(BOUNDS)
        if bounds is None:
            deadline, max_bytes = request.extensions.get("timeout", {}).get("read"), self.max_bytes
        else:
            deadline, max_bytes = bounds
        exchange = None if deadline is None else _Exchange(deadline)
        request.headers["Accept-Encoding"] = "identity"
        try:
            with _within(exchange):
                response = self._inner.handle_request(request)
        except httpcore.ReadTimeout as exc:  # a deadline past in a transport that does not map it
            raise httpx.ReadTimeout(str(exc), request=request) from None
        if max_bytes is not None:
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                response.close()
                raise AnswerTooLarge(
                    f"the answer of {request.url} is over {max_bytes} bytes", request=request
                )
        if "content-encoding" in response.headers:  # sent though not asked for: read as it came
            del response.headers["content-encoding"]
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        response.stream = _Body(stream, exchange, max_bytes, request.url, self._network)
        return response

    def close(self) -> None:
        self._inner.close()


def bounded_lines(response: httpx.Response, max_line: int) -> Iterator[str]:
    """The lines of a streamed ``response`` (ended by CRLF, LF or CR, as Server-Sent Events' are),
    decoded from UTF-8; :class:`AnswerTooLarge` once a line grows past ``max_line`` bytes."""
    pending = b""
    for chunk in response.iter_bytes():
        pending += chunk
        *lines, pending = _EOL.split(pending)
        for line in lines:
            if len(line) > max_line:
                raise AnswerTooLarge(f"a line of {response.url}'s stream is over {max_line} bytes")
            yield line.decode()
        if len(pending) > max_line:
            raise AnswerTooLarge(f"a line of {response.url}'s stream is over {max_line} bytes")
    if pending:
        yield pending.decode()

"""Serving the node API in production: waitress (a pure-Python WSGI server) and the block producer.

:class:`NodeServer` binds its socket when made (port 0 picks a free one; :attr:`NodeServer.port` is
the real one), runs the service's block producer while it serves, and stops cleanly from any thread:
:meth:`NodeServer.request_stop` only wakes the server's event loop (safe in a signal handler), which
then closes every socket; the service stops (ending every header stream) and the worker threads
finish. :func:`serve` is what ``trellis node start`` runs: it prints ``serving on <url>`` once the
socket listens, and stops on SIGTERM or SIGINT.

Each header stream (``GET /events``) and each request held open by ``wait`` keeps a worker thread
for as long as it lasts, so at most ``max_streams`` and ``max_waits`` of them are served at once
(more get a 503 problem with ``Retry-After``); the server refuses caps that leave fewer than
:data:`MIN_FREE_THREADS` threads for everything else (health, reads, writes, state transfer).

Connections are bounded as far as waitress allows (:class:`ConnectionLimits`, ``docs/replica.md``
"Connections"): at most ``connections`` open at once, at most ``per_address`` of them from one client
address (more are answered 503 ``overloaded`` and closed), a request's headers and body must arrive
within ``request_timeout_s`` of its first byte (a new connection's first request: of the accept),
however slowly its bytes trickle in, and a connection idle between requests closes after
``idle_timeout_s``. Waitress itself refuses a body over the API's :data:`~did_registry.node.api.MAX_BODY_BYTES`
(413 as soon as the headers say so, before reading it) and headers over :data:`MAX_HEADER_BYTES` (431).

A node process allocates many short-lived containers per transaction (parsed JSON, state views)
while keeping large long-lived ones (caches of map nodes, state values, parsed documents), so
:func:`serve` freezes what start-up built (never scanned by the cyclic garbage collector again) and
runs the collector's youngest generation less often; memory is still freed by reference counting.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

if TYPE_CHECKING:
    from waitress.wasyncore import _SocketMap  # the stubs' name for a socket map

from did_registry.node.api import MAX_BODY_BYTES, create_app
from did_registry.node.api_support import (
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_WAITS,
    PROBLEM_BASE,
    PROBLEM_JSON,
    RETRY_AFTER_S,
    limit_held_threads,
)
from did_registry.node.service import NodeService

__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_PER_ADDRESS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "FD_RESERVE",
    "MAX_HEADER_BYTES",
    "MIN_UPLOAD_RATE",
    "ConnectionLimits",
    "DEFAULT_THREADS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_WAITS",
    "MIN_FREE_THREADS",
    "BoundedServer",
    "LimitedServer",
    "NodeServer",
    "limited_server",
    "serve",
    "serving_collector",
]

DEFAULT_THREADS: Final = 16
"""Worker threads: each open header stream or ``?wait=`` request holds one while it lasts."""
MIN_FREE_THREADS: Final = 2
"""The fewest worker threads the caps on streams and waiting requests must leave for short requests."""

DEFAULT_CONNECTIONS: Final = 1000
"""Connections open at once (waitress's own default is 100, which 100 slow clients fill)."""
DEFAULT_PER_ADDRESS: Final = 100
"""Connections open at once from one client address: about twice what this project's own clients
(verifiers, the portal, peers, the fleet simulation, benchmarks) open to a node from one host."""
DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0
"""Seconds a request's headers and body (at most :data:`~did_registry.node.api.MAX_BODY_BYTES`) may
take to arrive, from their first byte (a new connection's first request: from the accept)."""
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
"""Seconds a kept-alive connection may stay idle between requests."""
FD_RESERVE: Final = 256
"""File descriptors kept for everything but client connections (stores, peers, logs, spooled bodies)."""
MIN_UPLOAD_RATE: Final = 64 * 1024
"""Bytes a second: a request's deadline moves one second later for each this many bytes received (a
large body over a slow uplink still arrives; a trickle does not)."""
MAX_HEADER_BYTES: Final = 64 * 1024
"""The largest request line plus headers waitress takes (431 beyond; its default is 256 KiB)."""

_GC_THRESHOLDS: Final = (50_000, 20, 100)
"""The collector's thresholds while serving (CPython's defaults are 700, 10, 10)."""
_MAINTENANCE_S: Final = 1
"""Seconds between two passes enforcing the deadlines (waitress's ``cleanup_interval``)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections the server keeps open, how many from one address, and how long a request
    may take to arrive or a connection may idle (``docs/replica.md``, "Connections")."""

    connections: int = DEFAULT_CONNECTIONS
    per_address: int = DEFAULT_PER_ADDRESS
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    """Seconds a request has to arrive, one more for each :data:`MIN_UPLOAD_RATE` bytes of it received."""
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S

    def __post_init__(self) -> None:
        if not 1 <= self.per_address <= self.connections:
            raise ValueError(
                f"per_address ({self.per_address}) must be from 1 to connections ({self.connections})"
            )
        for name in ("request_timeout_s", "idle_timeout_s"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds")

    def within_fd_limit(self) -> ConnectionLimits:
        """These limits with ``connections`` (and ``per_address``) cut to what the process's open-file
        limit leaves after :data:`FD_RESERVE`; the soft limit is first raised toward the hard one."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.connections + FD_RESERVE
        if soft != resource.RLIM_INFINITY and soft < wanted:
            raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (ValueError, OSError):
                pass
        if soft == resource.RLIM_INFINITY or soft >= wanted:
            return self
        connections = max(1, soft - FD_RESERVE)
        _log.warning(
            "open-file limit %d: serving at most %d connections instead of %d",
            soft,
            connections,
            self.connections,
        )
        return ConnectionLimits(
            connections, min(self.per_address, connections), self.request_timeout_s, self.idle_timeout_s
        )


def _host(addr: Any) -> str:
    """The client address of a peer address tuple (IPv4 or IPv6)."""
    return str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)


def _refused_answer(title: str) -> bytes:
    """The 503 ``overloaded`` answer (RFC 9457 problem, titled ``title``) to a connection over the cap."""
    body = json.dumps(
        {
            "type": PROBLEM_BASE + "overloaded",
            "title": title,
            "status": 503,
            "detail": "too many connections from this address",
            "code": "overloaded",
        }
    ).encode()
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {PROBLEM_JSON}\r\n"
        f"Retry-After: {RETRY_AFTER_S}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Channel(HTTPChannel):
    """A connection that remembers when its current request began and when it last went idle, which
    the server's maintenance pass holds against :class:`ConnectionLimits`; bytes do not reset them."""

    server: LimitedServer
    _counted = False

    def __init__(
        self,
        server: LimitedServer,
        sock: socket.socket,
        addr: Any,
        adj: Adjustments,
        map: _SocketMap | None = None,
    ) -> None:
        super().__init__(server, sock, addr, adj, map)
        self.began = self.idle_since = self.creation_time
        self.served = False
        self.arrived = 0  # bytes of the request arriving (its deadline moves on with them)
        self._timed: object | None = None
        self._host = server.client_of(_host(addr))
        self._counted = server.count_in(self._host)

    def received(self, data: bytes) -> bool:
        """Take ``data``; a request started now (on a connection that served one) starts its clock."""
        taken = super().received(data)
        if self.request is not None and self.request is not self._timed:
            self._timed = self.request
            self.arrived = 0
            if self.served:
                self.began = time.time()
        self.arrived += len(data)
        return taken

    def service(self) -> None:
        """Serve the first queued request (on a worker thread); the connection is idle from its end."""
        try:
            super().service()
        finally:
            self.served = True
            self.idle_since = time.time()

    def del_channel(self, map: _SocketMap | None = None) -> None:
        """Forget the channel (closing it), and count it out of its address's connections."""
        super().del_channel(map)
        if self._counted:
            self._counted = False
            self.server.count_out(self._host)

    def enforce(self, now: float, limits: ConnectionLimits) -> None:
        """Close the connection if its request is overdue or it has idled too long."""
        if self.requests or self.total_outbufs_len:  # being served, or its answer still going out
            self.began = self.idle_since = now
            return
        if self.request is not None or not self.served:  # a request (or the first) is arriving
            if now - self.began > limits.request_timeout_s + self.arrived / MIN_UPLOAD_RATE:
                _log.info("closing a connection from %s: its request is overdue", self._host)
                self.will_close = True
        elif now - self.idle_since > limits.idle_timeout_s:
            self.will_close = True


class LimitedServer(TcpWSGIServer):
    """Waitress's TCP server with a per-client cap at accept and deadlines in its maintenance pass.

    ``client_of`` maps a peer's address to the client it counts for (by default the address itself);
    a connection over the cap is answered 503 ``overloaded``, titled ``overloaded_title``."""

    channel_class = _Channel

    def __init__(
        self,
        *args: Any,
        limits: ConnectionLimits,
        client_of: Callable[[str], str] = str,
        overloaded_title: str = "Node overloaded",
        **kw: Any,
    ) -> None:
        self.limits = limits
        self.client_of = client_of
        self._refused = _refused_answer(overloaded_title)
        self._lock = threading.Lock()
        self._by_host: dict[str, int] = {}
        self._capped: set[str] = set()
        super().__init__(*args, **kw)

    def count_in(self, host: str) -> bool:
        """Count one more open connection from ``host``."""
        with self._lock:
            self._by_host[host] = self._by_host.get(host, 0) + 1
        return True

    def count_out(self, host: str) -> None:
        """Count one connection from ``host`` closed."""
        with self._lock:
            left = self._by_host.get(host, 1) - 1
            if left > 0:
                self._by_host[host] = left
            else:
                self._by_host.pop(host, None)
            if left < self.limits.per_address:
                self._capped.discard(host)

    def accept(self) -> tuple[socket.socket, Any] | None:
        """The next connection, unless its address already holds ``per_address``: that one is
        answered 503 ``overloaded`` and closed."""
        pair = super().accept()
        if pair is None:
            return None
        conn, addr = pair
        host = self.client_of(_host(addr))
        with self._lock:
            full = self._by_host.get(host, 0) >= self.limits.per_address
            first = full and host not in self._capped
            if full:
                self._capped.add(host)
        if not full:
            return pair
        if first:
            _log.warning("%s holds %d connections: refusing more", host, self.limits.per_address)
        try:
            conn.setblocking(False)
            conn.send(self._refused)
        except OSError:
            pass
        conn.close()
        return None

    def maintenance(self, now: float) -> None:
        """Waitress's pass (idle connections by last activity), then every connection's deadlines."""
        super().maintenance(int(now))
        channels = cast(dict[int, HTTPChannel], self.active_channels)
        for channel in list(channels.values()):
            if isinstance(channel, _Channel):
                channel.enforce(now, self.limits)


def limited_server(
    app: Flask,
    listener: socket.socket,
    socket_map: dict[int, Any],
    *,
    threads: int,
    limits: ConnectionLimits,
    ident: str,
    max_body_bytes: int,
    client_of: Callable[[str], str] = str,
    overloaded_title: str = "Node overloaded",
) -> LimitedServer:
    """Waitress serving ``app`` on the bound ``listener`` (its channels in ``socket_map``, which
    :func:`waitress.wasyncore.close_all` closes to stop it) with ``threads`` workers, its connections
    bounded by ``limits`` (counted per ``client_of`` the peer's address), bodies of more than
    ``max_body_bytes`` refused 413 before they are read, headers over :data:`MAX_HEADER_BYTES` 431."""
    adj = Adjustments(
        sockets=[listener],
        threads=threads,
        ident=ident,
        connection_limit=limits.connections,
        channel_timeout=math.ceil(limits.idle_timeout_s),
        cleanup_interval=_MAINTENANCE_S,
        max_request_body_size=max_body_bytes + 1,  # waitress refuses a body of at least this size
        max_request_header_size=MAX_HEADER_BYTES,
        asyncore_use_poll=True,  # select() cannot watch descriptors from 1024 on
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    return LimitedServer(
        app,
        socket_map,
        _sock=listener,
        dispatcher=dispatcher,
        adj=adj,
        bind_socket=False,
        sockinfo=(listener.family, listener.type, listener.proto, listener.getsockname()),
        limits=limits,
        client_of=client_of,
        overloaded_title=overloaded_title,
    )


class BoundedServer:
    """``app`` served by waitress on ``host:port`` (0: any free port; :attr:`port` is the real one),
    bound when made, its connections bounded by ``limits`` (:class:`ConnectionLimits`' defaults
    unless given) as :func:`limited_server` does."""

    def __init__(
        self,
        app: Flask,
        *,
        host: str,
        port: int,
        threads: int,
        limits: ConnectionLimits | None,
        ident: str,
        max_body_bytes: int,
        client_of: Callable[[str], str] = str,
        overloaded_title: str = "Node overloaded",
    ) -> None:
        self.limits = (limits or ConnectionLimits()).within_fd_limit()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=1024)
        self.host, self.port = host, int(listener.getsockname()[1])
        self._map: dict[int, Any] = {}
        self._server = limited_server(
            app, listener, self._map, threads=threads, limits=self.limits, ident=ident,
            max_body_bytes=max_body_bytes, client_of=client_of, overloaded_title=overloaded_title,
        )  # fmt: skip
        self._stop_requested = threading.Event()

    @property
    def url(self) -> str:
        """The base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def request_stop(self) -> None:
        """Ask the server to stop (returns at once; safe from a signal handler or another thread)."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        trigger = cast(Any, self._server).trigger
        trigger.pull_trigger(lambda: wasyncore.close_all(self._map))


class NodeServer(BoundedServer):
    """The node API on ``host:port`` (loopback by default), with the service's block producer;
    ``limits`` bound its connections (:class:`ConnectionLimits`' defaults unless given)."""

    def __init__(
        self,
        service: NodeService,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = DEFAULT_THREADS,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_waits: int = DEFAULT_MAX_WAITS,
        app: Flask | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        if threads - max_streams - max_waits < MIN_FREE_THREADS:
            raise ValueError(
                f"max_streams ({max_streams}) and max_waits ({max_waits}) must leave at least "
                f"{MIN_FREE_THREADS} of the {threads} threads for short requests"
            )
        self.service = service
        self.app = app if app is not None else create_app(service)
        limit_held_threads(self.app, streams=max_streams, waits=max_waits)
        super().__init__(
            self.app, host=host, port=port, threads=threads, limits=limits, ident="trellis",
            max_body_bytes=MAX_BODY_BYTES,
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        """Run the block producer and serve until :meth:`request_stop`; then stop the service."""
        self._serving.set()
        try:
            if not self._stop_requested.is_set():
                self.service.start()
                self._server.run()
        finally:
            self.service.stop()
            self._server.task_dispatcher.shutdown(timeout=5)
            self._stopped.set()

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="node-server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and wait until the server and the service have stopped (or ``timeout`` passes)."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._serving.is_set():
            self._stopped.wait(timeout)
        elif not self._stopped.is_set():  # never served: only the sockets to close
            wasyncore.close_all(self._map)
            self._stopped.set()

    def __enter__(self) -> NodeServer:
        """Start serving in the background."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving."""
        self.stop()


@contextmanager
def serving_collector() -> Iterator[None]:
    """CPython's cyclic garbage collector as a node runs it while serving, restored afterwards: what
    exists on entry is frozen (never walked again) and collections are rarer (:data:`_GC_THRESHOLDS`).

    A block's work allocates millions of short-lived objects; at CPython's default thresholds, those
    alive at a young collection are promoted, and every so often a full collection walks the whole
    heap. ``bench.storage`` runs its blocks in this mode too, so that it measures what a node does."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def serve(
    service: NodeService,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    out: TextIO | None = None,
    handle_signals: bool = True,
    threads: int = DEFAULT_THREADS,
    max_streams: int = DEFAULT_MAX_STREAMS,
    max_waits: int = DEFAULT_MAX_WAITS,
    limits: ConnectionLimits | None = None,
) -> None:
    """Serve ``service`` in this thread until SIGTERM or SIGINT; print ``serving on <url>`` when
    listening. ``threads``, ``max_streams``, ``max_waits`` and ``limits`` are :class:`NodeServer`'s."""
    server = NodeServer(
        service,
        host=host,
        port=port,
        threads=threads,
        max_streams=max_streams,
        max_waits=max_waits,
        limits=limits,
    )
    service.on_halt(lambda _reason: server.request_stop())  # fail-stop: the caller sees service.halted
    previous: dict[int, Any] = {}
    if handle_signals:

        def on_signal(signum: int, frame: FrameType | None) -> None:
            server.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        with serving_collector():
            print(f"serving on {server.url}", file=out or sys.stdout, flush=True)
            server.serve_forever()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

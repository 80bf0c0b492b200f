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

A node process allocates many short-lived containers per transaction (parsed JSON, state views)
while keeping large long-lived ones (caches of map nodes, state values, parsed documents), so
:func:`serve` freezes what start-up built (never scanned by the cyclic garbage collector again) and
runs the collector's youngest generation less often; memory is still freed by reference counting.
"""

from __future__ import annotations

import gc
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final, TextIO, cast

from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

from did_registry.node.api import create_app
from did_registry.node.api_support import DEFAULT_MAX_STREAMS, DEFAULT_MAX_WAITS, limit_held_threads
from did_registry.node.service import NodeService

__all__ = [
    "DEFAULT_THREADS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_WAITS",
    "MIN_FREE_THREADS",
    "NodeServer",
    "serve",
    "serving_collector",
]

DEFAULT_THREADS: Final = 16
"""Worker threads: each open header stream or ``?wait=`` request holds one while it lasts."""
MIN_FREE_THREADS: Final = 2
"""The fewest worker threads the caps on streams and waiting requests must leave for short requests."""

_GC_THRESHOLDS: Final = (50_000, 20, 100)
"""The collector's thresholds while serving (CPython's defaults are 700, 10, 10)."""


class NodeServer:
    """The node API on ``host:port`` (loopback by default), with the service's block producer."""

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
    ) -> None:
        if threads - max_streams - max_waits < MIN_FREE_THREADS:
            raise ValueError(
                f"max_streams ({max_streams}) and max_waits ({max_waits}) must leave at least "
                f"{MIN_FREE_THREADS} of the {threads} threads for short requests"
            )
        self.service = service
        self.app = app if app is not None else create_app(service)
        limit_held_threads(self.app, streams=max_streams, waits=max_waits)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=1024)
        self.host, self.port = host, int(listener.getsockname()[1])
        self._map: dict[int, Any] = {}
        self._server = create_server(
            self.app, map=self._map, sockets=[listener], threads=threads, ident="trellis", channel_timeout=60
        )
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        """The base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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

    def request_stop(self) -> None:
        """Ask the server to stop (returns at once; safe from a signal handler or another thread)."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        trigger = cast(Any, self._server).trigger
        trigger.pull_trigger(lambda: wasyncore.close_all(self._map))

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
) -> None:
    """Serve ``service`` in this thread until SIGTERM or SIGINT; print ``serving on <url>`` when
    listening. ``threads``, ``max_streams`` and ``max_waits`` are :class:`NodeServer`'s."""
    server = NodeServer(
        service, host=host, port=port, threads=threads, max_streams=max_streams, max_waits=max_waits
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

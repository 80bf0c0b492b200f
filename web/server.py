"""Serving the portal in production with waitress (a pure-Python WSGI server), bounded as the node API is.

Waitress's defaults let anyone, without signing in, make the portal unavailable or fill its disk: it
took at most 100 connections, any number from one address, with an idle timer that every byte
restarted, and it read and spooled a body of up to 1 GiB before Flask's ``MAX_CONTENT_LENGTH`` saw
it. :class:`PortalServer` serves with the node's connection limits instead (the same
:class:`~did_registry.node.server.ConnectionLimits` and server, ``docs/replica.md`` "Connections";
``docs/portal.md`` "Running it"): at most ``connections`` open at once and ``per_address`` from one
client (an IPv4 address or an IPv6 /64, :func:`web.ratelimit.client`; more are answered 503
``overloaded``, "Portal overloaded", and closed), a request's headers and body must
arrive within ``request_timeout_s`` of its first byte however slowly they trickle in, and an idle
connection closes after ``idle_timeout_s``. Waitress itself refuses a body over the app's
``MAX_CONTENT_LENGTH`` (1 MiB; 413 as soon as the headers say so, before reading it) and headers over
:data:`~did_registry.node.server.MAX_HEADER_BYTES` (431).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Final, TextIO

from flask import Flask
from waitress import wasyncore

from did_registry.node.server import BoundedServer, ConnectionLimits
from web.ratelimit import client

__all__ = [
    "DEFAULT_THREADS",
    "DEFAULT_MAX_BODY_BYTES",
    "ConnectionLimits",
    "PortalServer",
    "limits_for",
    "serve",
]

DEFAULT_THREADS: Final = 8
"""Worker threads answering requests."""
DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
"""The largest request body waitress passes on, for an app without ``MAX_CONTENT_LENGTH`` (the
portal's app sets it to the same 1 MiB)."""


def limits_for(trusted_proxies: int) -> ConnectionLimits:
    """The portal's connection limits: the node's defaults, except behind ``trusted_proxies`` (the
    portal's setting), where every client connects from the proxy's address: there an address may
    hold every connection, and the proxy limits its clients."""
    limits = ConnectionLimits()
    return ConnectionLimits(per_address=limits.connections) if trusted_proxies else limits


class PortalServer(BoundedServer):
    """``app`` served by waitress on ``host:port`` (0: any free port; :attr:`port` is the real one),
    bound when made, its connections bounded by ``limits`` (:class:`ConnectionLimits`' defaults unless
    given, counted per client: :func:`web.ratelimit.client`) and its request bodies by the app's
    ``MAX_CONTENT_LENGTH``."""

    def __init__(
        self,
        app: Flask,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        threads: int = DEFAULT_THREADS,
        limits: ConnectionLimits | None = None,
    ) -> None:
        max_body = app.config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY_BYTES
        super().__init__(
            app, host=host, port=port, threads=threads, limits=limits, ident="trellis-portal",
            max_body_bytes=int(max_body), client_of=client, overloaded_title="Portal overloaded",
        )  # fmt: skip

    def serve_forever(self) -> None:
        """Serve until :meth:`request_stop` (or an interrupt); then let the worker threads finish."""
        try:
            if not self._stop_requested.is_set():
                self._server.run()
        finally:
            wasyncore.close_all(self._map)
            self._server.task_dispatcher.shutdown(timeout=5)


def serve(
    app: Flask,
    host: str,
    port: int,
    *,
    threads: int = DEFAULT_THREADS,
    out: TextIO | None = None,
    limits: ConnectionLimits | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port) until interrupted, its connections bounded by
    ``limits`` (:class:`PortalServer`); print ``serving on <url>`` first."""
    server = PortalServer(app, host, port, threads=threads, limits=limits)
    print(f"serving on {server.url}", file=out or sys.stdout, flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # (waitress's loop stops on it by itself too)
        server.serve_forever()

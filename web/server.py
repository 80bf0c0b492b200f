"""Serving the portal in production with waitress (a pure-Python WSGI server)."""

from __future__ import annotations

import socket
import sys
from typing import Final, TextIO

from flask import Flask
from waitress.server import create_server

__all__ = ["DEFAULT_THREADS", "serve"]

DEFAULT_THREADS: Final = 8
"""Worker threads answering requests."""


def serve(
    app: Flask, host: str, port: int, *, threads: int = DEFAULT_THREADS, out: TextIO | None = None
) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port) until interrupted; print ``serving on <url>`` first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=128)
    server = create_server(app, sockets=[listener], threads=threads, ident="trellis-portal")
    shown = f"[{host}]" if ":" in host else host
    print(f"serving on http://{shown}:{listener.getsockname()[1]}", file=out or sys.stdout, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()

"""Device authentication for any WSGI application (PEP 3333), answering refusals with RFC 9457 problems.

::

    from verifier.wsgi import DeviceAuthMiddleware

    app = DeviceAuthMiddleware(app, verifier, audience="https://service.example", paths=("/api/",))

Each request whose path starts with one of ``paths`` is checked with
:meth:`~verifier.Verifier.authenticate_request` (an RFC 9421 signed request, the device's credential
in the ``Device-Credential`` header) for ``audience``, the service's own origin
(``scheme://host[:port]``) or authority (``host[:port]``). It is required: the target URI is rebuilt
as the client sent it, ``Host`` included, and checked against ``audience``, never the other way
round, so a request a device signed for another service is refused ``wrong_audience``. The
:class:`~verifier.AuthenticatedDevice` is put in ``environ["trellis.device"]`` for the application.
A refused request never reaches the application: it is answered ``application/problem+json`` (RFC
9457 §3) with ``type``, ``title``, ``status`` (``refused.status``), ``detail`` and the extension
member ``reason`` (a :class:`~verifier.Reason`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit
from wsgiref.util import request_uri

from verifier.errors import ConfigurationError, Refused
from verifier.verifier import Verifier
from wallet.http_signatures import HttpRequest

__all__ = [
    "DEVICE_KEY",
    "PROBLEM_JSON",
    "PROBLEM_BASE",
    "DeviceAuthMiddleware",
    "problem_details",
    "request_from_environ",
    "service_audience",
]

DEVICE_KEY: Final = "trellis.device"
"""The WSGI environ key under which the middleware puts the authenticated device."""
PROBLEM_JSON: Final = "application/problem+json"
"""The media type of an RFC 9457 problem details object."""
PROBLEM_BASE: Final = "https://trellis.dev/problems/"
"""A refusal's problem ``type`` is this base followed by its reason (as the ledger node's problems are)."""

_Environ = dict[str, Any]
_StartResponse = Callable[..., Any]
_WsgiApp = Callable[[_Environ, _StartResponse], Iterable[bytes]]


def problem_details(refused: Refused) -> dict[str, Any]:
    """The RFC 9457 problem details object answering ``refused``, with ``reason`` as an extension member."""
    return {
        "type": PROBLEM_BASE + refused.reason.value,
        "title": refused.reason.value.replace("_", " ").capitalize(),
        "status": refused.status,
        "detail": refused.detail,
        "reason": refused.reason.value,
    }


def service_audience(audience: object) -> str:
    """``audience`` when it is an origin (``https://host[:port]``) or an authority (``host[:port]``),
    what a signed request's target can be checked against; else :class:`~verifier.ConfigurationError`."""
    if not isinstance(audience, str) or not audience:
        raise ConfigurationError(
            "audience (the service's own origin, https://service.example, or authority) is required"
        )
    if not _is_origin_or_authority(audience):
        raise ConfigurationError(
            f"audience {audience!r} is neither an origin (https://host[:port]) nor an authority (host[:port])"
        )
    return audience


def _is_origin_or_authority(audience: str) -> bool:
    parts = urlsplit(audience if "://" in audience else "//" + audience)
    try:
        parts.port  # noqa: B018 (raises ValueError when the port is not a number in range)
    except ValueError:
        return False
    return (
        parts.scheme in ("", "http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not (parts.path or parts.query or parts.fragment or audience.endswith(("?", "#")))
    )


def _header_fields(environ: _Environ) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            fields.append((key[5:].replace("_", "-").lower(), str(value)))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            fields.append((key.replace("_", "-").lower(), str(value)))
    return fields


def request_from_environ(environ: _Environ, body: bytes) -> HttpRequest:
    """The signed parts of a WSGI request: method, target URI (as the client sent it), headers, body."""
    return HttpRequest.from_fields(
        str(environ.get("REQUEST_METHOD", "GET")), request_uri(environ), _header_fields(environ), body
    )


def _read_body(environ: _Environ) -> bytes:
    """Read the whole body and put it back, so the application can read it again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    body = stream.read(length) if stream is not None and length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class DeviceAuthMiddleware:
    """WSGI middleware letting in only authenticated devices under ``paths`` (see the module docstring).

    ``audience`` is the service's own origin or authority, which each request's must be (see
    :meth:`~verifier.Verifier.authenticate_request`); ``paths`` are path prefixes (default: every path).
    """

    def __init__(
        self,
        app: _WsgiApp,
        verifier: Verifier,
        *,
        audience: str,
        paths: Sequence[str] = ("/",),
    ) -> None:
        if isinstance(paths, str):
            raise TypeError("paths is a sequence of path prefixes, not one string")
        self.app = app
        self.verifier = verifier
        self.paths = tuple(paths)
        self.audience = service_audience(audience)

    def _protects(self, environ: _Environ) -> bool:
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        return any(path.startswith(prefix) for prefix in self.paths)

    def __call__(self, environ: _Environ, start_response: _StartResponse) -> Iterable[bytes]:
        """Authenticate the request (if its path is protected), then pass it on or answer the refusal."""
        if self._protects(environ):
            request = request_from_environ(environ, _read_body(environ))
            try:
                environ[DEVICE_KEY] = self.verifier.authenticate_request(request, self.audience)
            except Refused as refused:
                body = json.dumps(problem_details(refused)).encode()
                status = f"{refused.status} {_PHRASES.get(refused.status, 'Refused')}"
                start_response(status, [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


_PHRASES: Final = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}

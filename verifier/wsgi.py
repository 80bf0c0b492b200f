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
member ``reason`` (a :class:`~verifier.Reason`). A 401 also carries the challenge of
:func:`challenge_headers`: ``WWW-Authenticate`` (RFC 9110 §11.6.1, which a 401 must carry) with the
scheme :data:`AUTH_SCHEME` and the audience as its realm, and ``Accept-Signature`` (RFC 9421 §5.1)
naming the signature a device must send. When the verifier cannot decide because its replay or
session store cannot be reached (:class:`~verifier.StoreUnavailable`), the request is answered 503
with the problem of :func:`store_unavailable_details` (the error itself goes to ``wsgi.errors``).

A request body is read only to be checked, and only up to ``max_body_bytes`` (default
:data:`DEFAULT_MAX_BODY_BYTES`, 1 MiB). A request without ``Signature-Input`` or without
``Signature`` is refused whatever its body, so its body is never read: it is answered the 401 (with
the challenge) at once. A signed request whose ``Content-Length`` is over the limit is answered 413
with the problem of :func:`body_too_large_details`, its body unread; one without ``Content-Length``
(chunked) is read only from a server that ends the input itself (``wsgi.input_terminated``, as
waitress and Werkzeug's server set), at most one byte past the limit, and answered the same 413 when
it is longer; from another server it is taken as empty, as PEP 3333 has an application read no
further than ``Content-Length``. A body within the limit is kept for the application
(``wsgi.input`` reads it again).

The target URI checked is the one the client sent (RFC 9110 §7.1): the scheme (``wsgi.url_scheme``)
and ``Host`` with the request target as received, which WSGI servers pass on beside the decoded
``PATH_INFO`` (``RAW_URI``: gunicorn, Werkzeug; ``REQUEST_URI``: waitress, Werkzeug, uWSGI, mod_wsgi).
Without either it is rebuilt from ``SCRIPT_NAME``, ``PATH_INFO`` and ``QUERY_STRING``, which loses how
the path was written (see :func:`target_uri`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import quote, urlsplit

from verifier._signed import REQUIRED_COMPONENTS
from verifier.errors import ConfigurationError, Reason, Refused, StoreUnavailable
from verifier.verifier import Verifier
from wallet.http_signatures import HttpRequest, split_url

__all__ = [
    "ACCEPT_SIGNATURE",
    "AUTH_SCHEME",
    "BODY_TOO_LARGE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEVICE_KEY",
    "PROBLEM_JSON",
    "PROBLEM_BASE",
    "STORE_UNAVAILABLE",
    "BodyTooLarge",
    "DeviceAuthMiddleware",
    "body_too_large_details",
    "challenge_headers",
    "problem_details",
    "request_from_environ",
    "service_audience",
    "store_unavailable_details",
    "target_uri",
]

DEVICE_KEY: Final = "trellis.device"
"""The WSGI environ key under which the middleware puts the authenticated device."""
PROBLEM_JSON: Final = "application/problem+json"
"""The media type of an RFC 9457 problem details object."""
PROBLEM_BASE: Final = "https://trellis.dev/problems/"
"""A refusal's problem ``type`` is this base followed by its reason (as the ledger node's problems are)."""
AUTH_SCHEME: Final = "HttpMessageSignature"
"""The authentication scheme of the ``WWW-Authenticate`` challenge on a 401. No scheme is registered
for RFC 9421 signatures (they travel in ``Signature-Input`` and ``Signature``, not ``Authorization``);
the draft-cavage scheme ``Signature`` names another, incompatible protocol, so this one is our own."""
ACCEPT_SIGNATURE: Final = (
    "sig1=(" + " ".join(f'"{c}"' for c in REQUIRED_COMPONENTS) + ');created;alg="ed25519"'
)
"""The ``Accept-Signature`` (RFC 9421 §5.1) of a 401: label ``sig1``, the covered components the
verifier requires, a ``created`` time, ``ed25519``. That the key id is a DID URL and that a nonce is
required cannot be said here (``keyid`` and ``nonce`` would name one value); the challenge says the first."""

STORE_UNAVAILABLE: Final = "store_unavailable"
"""The ``reason`` of the 503 problem answering :class:`~verifier.StoreUnavailable`: not a
:class:`~verifier.Reason`, since nothing was decided about the device."""

BODY_TOO_LARGE: Final = "payload_too_large"
"""The ``reason`` of the 413 problem answering a body over the limit (the portal's code for a 413):
not a :class:`~verifier.Reason`, since nothing was decided about the device."""
DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
"""The largest request body (1 MiB) the middleware and :class:`verifier.flask.DeviceAuth` read to
check, unless given another ``max_body_bytes``."""


class BodyTooLarge(Exception):
    """A signed request's body is over ``limit`` bytes (``length``: its ``Content-Length``, or
    ``None`` when it came without one and more than ``limit`` bytes were read); it was not checked."""

    def __init__(self, limit: int, length: int | None = None) -> None:
        said = f"Content-Length {length}" if length is not None else "more bytes than that"
        super().__init__(f"the request body is over the limit of {limit} bytes ({said})")
        self.limit = limit
        self.length = length


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


def store_unavailable_details() -> dict[str, Any]:
    """The RFC 9457 problem details object (status 503) answering :class:`~verifier.StoreUnavailable`;
    its detail does not repeat the error, which may name the store's address."""
    return {
        "type": PROBLEM_BASE + STORE_UNAVAILABLE,
        "title": "Store unavailable",
        "status": 503,
        "detail": "the verifier's replay or session store cannot be reached; try again later",
        "reason": STORE_UNAVAILABLE,
    }


def body_too_large_details(limit: int) -> dict[str, Any]:
    """The RFC 9457 problem details object (status 413) answering a body over ``limit`` bytes, with
    ``reason`` (:data:`BODY_TOO_LARGE`) and the limit as ``max_body_bytes``."""
    return {
        "type": PROBLEM_BASE + BODY_TOO_LARGE,
        "title": "Payload too large",
        "status": 413,
        "detail": f"the request body is over this service's limit of {limit} bytes for device requests",
        "reason": BODY_TOO_LARGE,
        "max_body_bytes": limit,
    }


def checked_body_limit(value: object) -> int:
    """``value`` when it is a byte count (an ``int``, not below 0), else :class:`~verifier.ConfigurationError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_body_bytes must be a whole number of bytes, 0 or more, not {value!r}")
    return value


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
    if not (audience.isascii() and audience.isprintable()) or " " in audience:
        return False  # urlsplit drops tabs and line breaks; and the audience is the challenge's realm
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


_RAW_TARGETS: Final = ("RAW_URI", "REQUEST_URI")
"""The environ keys under which WSGI servers pass on the request target as received, first found wins."""
_ABSOLUTE_FORM: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_PATH_SAFE: Final = "/:@!$&'()*+,;="
"""What a path may hold unencoded besides unreserved characters (RFC 3986 §3.3 ``pchar``, and ``/``)."""


def _origin(environ: _Environ) -> str:
    """``scheme://authority`` of the request: ``Host`` when sent, else the server's name and port."""
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = environ.get("HTTP_HOST")
    if not host:
        host = str(environ.get("SERVER_NAME", ""))
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != ("443" if scheme == "https" else "80"):
            host += ":" + port
    return f"{scheme}://{host}"


def _quote_path(path: str) -> str:
    try:
        raw = path.encode("latin-1")  # a WSGI string: the request's bytes, one character each
    except UnicodeEncodeError:  # not a WSGI string (some test transports pass text): take it as UTF-8
        raw = path.encode("utf-8")
    return quote(raw, safe=_PATH_SAFE)


def target_uri(environ: _Environ) -> str:
    """The target URI of a WSGI request (RFC 9110 §7.1) as the client sent it, what ``@target-uri`` is.

    An origin-form request target (``/path?query``), from ``RAW_URI`` or ``REQUEST_URI``, is put after
    the scheme and ``Host`` as received, percent-encoding and all; an absolute-form one
    (``https://host/path``) is the target URI itself (RFC 9112 §3.3). When the server passes on
    neither, the URI is rebuilt from the decoded ``SCRIPT_NAME`` and ``PATH_INFO``, percent-encoding
    only what a path cannot hold (so ``:``, ``@`` and sub-delimiters stay as they are), and the raw
    ``QUERY_STRING``: right for clients that encode a path that way (httpx, requests, curl), wrong
    for a path written otherwise (``%2F``, ``%7E``, lowercase hex), whose signature then does not verify.
    """
    for key in _RAW_TARGETS:
        raw = environ.get(key)
        if isinstance(raw, str) and raw:
            if raw.startswith("/"):
                return _origin(environ) + raw
            if _ABSOLUTE_FORM.match(raw):
                _check_host(environ, raw)
                return raw
            break  # asterisk-form or authority-form: rebuilt below
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING")
    return _origin(environ) + _quote_path(path or "/") + (f"?{query}" if query else "")


def _authority(scheme: str, authority: str) -> str:
    """``authority`` lowercased, without the scheme's default port."""
    authority = authority.lower()
    default = ":443" if scheme == "https" else ":80"
    return authority[: -len(default)] if authority.endswith(default) else authority


def _check_host(environ: _Environ, target: str) -> None:
    """Refuse an absolute-form request target whose authority is not the ``Host`` sent with it: the
    signature and the audience are checked against the target, while the application (Werkzeug, for
    one) reads ``Host``, so the two must name one service (RFC 9112 §3.2.2 has a server take the
    target's; many do not)."""
    host = environ.get("HTTP_HOST")
    if not host:
        return
    parts = split_url(target)
    scheme = parts.scheme.lower()
    if _authority(scheme, parts.netloc) != _authority(scheme, str(host)):
        raise Refused(
            Reason.MALFORMED,
            f"the request target names {parts.netloc[:100]!r} but its Host header {str(host)[:100]!r}",
        )


def request_from_environ(environ: _Environ, body: bytes) -> HttpRequest:
    """The signed parts of a WSGI request: method, target URI (:func:`target_uri`), headers, body."""
    return HttpRequest.from_fields(
        str(environ.get("REQUEST_METHOD", "GET")), target_uri(environ), _header_fields(environ), body
    )


def challenge_headers(audience: str) -> list[tuple[str, str]]:
    """The header fields of a 401 refusal for ``audience`` (an origin or authority, see
    :func:`service_audience`): ``WWW-Authenticate``, scheme :data:`AUTH_SCHEME` with ``realm`` (the
    audience) and ``keyid-scheme="did"`` (the key id is a DID URL of one of the device's
    authentication keys), and ``Accept-Signature`` (:data:`ACCEPT_SIGNATURE`)."""
    realm = audience.replace("\\", "\\\\").replace('"', '\\"')
    return [
        ("WWW-Authenticate", f'{AUTH_SCHEME} realm="{realm}", keyid-scheme="did"'),
        ("Accept-Signature", ACCEPT_SIGNATURE),
    ]


def signature_sent(environ: _Environ) -> bool:
    """Whether the request carries both ``Signature-Input`` and ``Signature``: without either it is
    refused ``malformed`` before its body is looked at, so the body need not be read."""
    return "HTTP_SIGNATURE_INPUT" in environ and "HTTP_SIGNATURE" in environ


def read_at_most(stream: Any, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``, fewer only when it ends first (a read may return less than
    asked, so it is asked again; never for more than is still wanted)."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        part = stream.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _read_body(environ: _Environ, limit: int) -> bytes:
    """Read the body, at most ``limit`` bytes, and put it back so the application can read it again;
    :class:`BodyTooLarge` (nothing put back) when its ``Content-Length`` is over ``limit`` (the body
    is not read) or, without one, more than ``limit`` bytes come (``limit`` + 1 read)."""
    stream = environ.get("wsgi.input")
    given = environ.get("CONTENT_LENGTH")
    if given:
        try:
            length = int(given)
        except ValueError:
            length = 0
        if length > limit:
            raise BodyTooLarge(limit, length)
        body = read_at_most(stream, length) if stream is not None and length > 0 else b""
    elif stream is not None and "wsgi.input_terminated" in environ:
        body = read_at_most(stream, limit + 1)
        if len(body) > limit:
            raise BodyTooLarge(limit)
    else:  # PEP 3333: without Content-Length, read nothing from a server that does not end the input
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class DeviceAuthMiddleware:
    """WSGI middleware letting in only authenticated devices under ``paths`` (see the module docstring).

    ``audience`` is the service's own origin or authority, which each request's must be (see
    :meth:`~verifier.Verifier.authenticate_request`); ``paths`` are path prefixes (default: every path);
    ``max_body_bytes`` is the largest body read to be checked (default :data:`DEFAULT_MAX_BODY_BYTES`,
    1 MiB): a larger one is answered 413 (see the module docstring).
    """

    def __init__(
        self,
        app: _WsgiApp,
        verifier: Verifier,
        *,
        audience: str,
        paths: Sequence[str] = ("/",),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if isinstance(paths, str):
            raise TypeError("paths is a sequence of path prefixes, not one string")
        self.app = app
        self.verifier = verifier
        self.paths = tuple(paths)
        self.audience = service_audience(audience)
        self.max_body_bytes = checked_body_limit(max_body_bytes)
        self._challenge = challenge_headers(self.audience)

    def _protects(self, environ: _Environ) -> bool:
        # An empty path is the root: a request line's absolute-form target with no path (``POST
        # http://host``) reaches the app with PATH_INFO "", which starts with no prefix.
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "")) or "/"
        return any(path.startswith(prefix) for prefix in self.paths)

    def __call__(self, environ: _Environ, start_response: _StartResponse) -> Iterable[bytes]:
        """Authenticate the request (if its path is protected), then pass it on or answer the refusal."""
        if self._protects(environ):
            try:  # an unsigned request is refused whatever its body: it is not read
                body = _read_body(environ, self.max_body_bytes) if signature_sent(environ) else b""
            except BodyTooLarge as exc:
                return _problem(start_response, body_too_large_details(exc.limit), [])
            try:
                request = request_from_environ(environ, body)
                environ[DEVICE_KEY] = self.verifier.authenticate_request(request, self.audience)
            except Refused as refused:
                challenge = self._challenge if refused.status == 401 else []
                return _problem(start_response, problem_details(refused), challenge)
            except StoreUnavailable as exc:
                errors = environ.get("wsgi.errors")
                if errors is not None:
                    errors.write(f"trellis: device not authenticated, store unavailable: {exc}\n")
                return _problem(start_response, store_unavailable_details(), [])
        return self.app(environ, start_response)


def _problem(
    start_response: _StartResponse, problem: dict[str, Any], extra: list[tuple[str, str]]
) -> list[bytes]:
    body = json.dumps(problem).encode()
    status = problem["status"]
    headers = [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body))), *extra]
    start_response(f"{status} {_PHRASES.get(status, 'Refused')}", headers)
    return [body]


_PHRASES: Final = {
    401: "Unauthorized",
    403: "Forbidden",
    413: "Content Too Large",
    503: "Service Unavailable",
}

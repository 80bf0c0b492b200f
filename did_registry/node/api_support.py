"""What every part of the node API shares: RFC 9457 problem details, JSON answers, query parsing.

Every error the API gives is an RFC 9457 (Problem Details for HTTP APIs) object served as
``application/problem+json``: ``type`` (``https://trellis.dev/problems/<code>``), ``title``,
``status`` and ``detail`` (§3.1), with the extension members ``code`` (our code, the last segment of
``type``) and ``txn`` (the transaction concerned) where relevant (§3.2). Views raise
:class:`ApiProblem`; :func:`register_error_handlers` turns it, a refused transaction, any Werkzeug
HTTP error and, as a last resort, any other exception (a bug: logged, answered 500) into one.

Each header stream and each request that waits (``?wait=``, ``"wait"``) holds a server worker
thread for as long as it lasts, so the number of each held at once is capped
(:func:`limit_held_threads`, set by the server well below its thread count), and the other threads
stay free for short requests (health, reads, writes, state transfer). Beyond the cap a stream is
refused with a 503 ``overloaded`` problem and ``Retry-After``; a request that would wait is answered
at once with what stands now (:func:`waiting`), as a long-poll may be, and its client asks again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Literal, cast

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from did_registry.errors import DidRegistryError
from did_registry.ledger.txn import TxnRejected
from did_registry.node.service import NodeService

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_BASE",
    "EXTENSION",
    "HOLDS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_WAITS",
    "RETRY_AFTER_S",
    "ApiProblem",
    "AsciiIntegerConverter",
    "HeldThreads",
    "limit_held_threads",
    "held_threads",
    "holding",
    "waiting",
    "json_body",
    "problem_response",
    "register_error_handlers",
    "json_response",
    "node_service",
    "int_arg",
    "float_arg",
    "str_arg",
]

PROBLEM_JSON: Final = "application/problem+json"
"""The media type of an RFC 9457 problem details object."""
PROBLEM_BASE: Final = "https://trellis.dev/problems/"
"""Every problem ``type`` is this base followed by the problem's ``code``."""
EXTENSION: Final = "trellis.node"
"""Key under ``app.extensions`` holding the app's :class:`NodeService`."""
HOLDS: Final = "trellis.holds"
"""Key under ``app.extensions`` holding the app's :class:`HeldThreads`, by kind."""
DEFAULT_MAX_STREAMS: Final = 6
"""Header streams (``GET /events``) served at once unless the server says otherwise."""
DEFAULT_MAX_WAITS: Final = 4
"""Requests held open waiting (``?wait=``, ``"wait"``) at once unless the server says otherwise."""
RETRY_AFTER_S: Final = 2
"""The ``Retry-After`` (seconds) of a 503 refusing a stream or a wait over the cap."""

_log = logging.getLogger(__name__)

_TITLES: Final = {
    "malformed": "Malformed request",
    "bad_signature": "Bad signature",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "replay": "Replayed transaction",
    "conflict": "Conflict",
    "overloaded": "Node overloaded",
    "gone": "Gone",
    "method_not_allowed": "Method not allowed",
    "payload_too_large": "Payload too large",
    "unsupported_media_type": "Unsupported media type",
    "internal": "Internal error",
}
_HTTP_CODES: Final = {
    400: "malformed",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_STATUS_OF: Final = {"overloaded": 503}
_DIGITS = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")


class AsciiIntegerConverter(IntegerConverter):
    """The node API's ``<int:...>`` route parameter: 1 to 18 ASCII digits, as the query parameters
    take (:func:`int_arg`); Werkzeug's own converter matches ``\\d``, any Unicode decimal digit."""

    regex = _DIGITS.pattern


class ApiProblem(DidRegistryError):
    """An answer that is an RFC 9457 problem: HTTP ``status``, our ``code``, a human ``detail``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions
        super().__init__(f"{status} {code}: {detail}")


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A ``application/problem+json`` response (RFC 9457 §3) with our ``code`` as an extension."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or _TITLES.get(code, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extensions.items() if v is not None})
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON, headers=headers)


def _api_problem(exc: ApiProblem) -> Response:
    return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers or None, **exc.extensions)


def _txn_rejected(exc: TxnRejected) -> Response:
    status = _STATUS_OF.get(exc.code, exc.http_status)
    headers = {"Retry-After": "1"} if status == 503 else None
    return problem_response(status, exc.code, exc.detail, txn=exc.txn_id, headers=headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status < 400:  # a routing redirect is not an error
        return cast(Response, exc.get_response())
    code = _HTTP_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
    return problem_response(status, code, exc.description or exc.name, headers=headers)


def _bug(exc: Exception) -> Response:
    _log.exception("unhandled error answering %s %s", request.method, request.path, exc_info=exc)
    return problem_response(500, "internal", "the node failed to answer; the error is in its log")


def register_error_handlers(app: Flask) -> None:
    """Answer every error as a problem: ours, refused transactions, HTTP errors, then any bug."""
    app.register_error_handler(ApiProblem, _api_problem)
    app.register_error_handler(TxnRejected, _txn_rejected)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _bug)


def json_response(data: Any, status: int = 200, *, mimetype: str = "application/json") -> Response:
    """A JSON response (compact, UTF-8)."""
    return Response(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")), status=status, mimetype=mimetype
    )


def node_service() -> NodeService:
    """The :class:`NodeService` of the app handling the current request."""
    return cast(NodeService, current_app.extensions[EXTENSION])


def json_body() -> Any:
    """The request body parsed as JSON (400 when it is not JSON, or nests too deeply to parse)."""
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError) as exc:
        raise ApiProblem(400, "malformed", f"the body is not JSON: {exc}") from None


HoldKind = Literal["streams", "waits"]


class HeldThreads:
    """How many worker threads requests of one kind hold at once: at most ``limit``."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """How many are held now."""
        return self._held

    def hold(self) -> Callable[[], None]:
        """Take one, or raise a 503 ``overloaded`` problem with ``Retry-After`` when all are taken;
        return the function that gives it back (calling it again does nothing)."""
        with self._lock:
            if self._held >= self.limit:
                raise ApiProblem(
                    503,
                    "overloaded",
                    f"this node already serves {self.limit} {self.what}; retry in {RETRY_AFTER_S} s",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            self._held += 1
        given_back = False

        def release() -> None:
            nonlocal given_back
            with self._lock:
                if not given_back:
                    given_back = True
                    self._held -= 1

        return release


def limit_held_threads(app: Flask, *, streams: int, waits: int) -> None:
    """Cap the header streams and the waiting requests ``app`` serves at once."""
    if streams < 0 or waits < 0:
        raise ValueError("the caps on streams and waiting requests must not be negative")
    app.extensions[HOLDS] = {
        "streams": HeldThreads("header streams", streams),
        "waits": HeldThreads("waiting requests", waits),
    }


def held_threads(kind: HoldKind) -> HeldThreads:
    """The current app's cap on requests of ``kind``."""
    return cast(HeldThreads, current_app.extensions[HOLDS][kind])


@contextmanager
def holding(kind: HoldKind) -> Iterator[None]:
    """Hold one of the current app's ``kind`` slots while the block runs (503 when none is free)."""
    release = held_threads(kind).hold()
    try:
        yield
    finally:
        release()


@contextmanager
def waiting() -> Iterator[bool]:
    """A wait slot for the block: ``True`` while one is held; ``False`` when all are taken, and the
    request answers at once instead of waiting (a long-poll may end early; its client polls again)."""
    try:
        release = held_threads("waits").hold()
    except ApiProblem:
        yield False
        return
    try:
        yield True
    finally:
        release()


def str_arg(name: str, *, max_length: int = 2048, required: bool = False) -> str | None:
    """Query parameter ``name`` as text (400 when required and missing, or longer than ``max_length``)."""
    value = request.args.get(name)
    if value is None or value == "":
        if required:
            raise ApiProblem(400, "malformed", f"query parameter {name!r} is required")
        return None
    if len(value) > max_length:
        raise ApiProblem(400, "malformed", f"query parameter {name!r} is longer than {max_length}")
    return value


def int_arg(name: str, default: int | None, *, low: int = 0, high: int = 10**18) -> int | None:
    """Query parameter ``name`` as a decimal integer in ``[low, high]`` (400 otherwise)."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise ApiProblem(
            400, "malformed", f"query parameter {name!r} must be an integer from {low} to {high}"
        )
    return int(value)


def float_arg(name: str, *, high: float) -> float | None:
    """Query parameter ``name`` as a non-negative decimal number at most ``high`` (400 otherwise)."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if not _DECIMAL.fullmatch(value) or float(value) > high:
        raise ApiProblem(400, "malformed", f"query parameter {name!r} must be a number from 0 to {high}")
    return float(value)

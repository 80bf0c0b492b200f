"""Errors as pages for people and as RFC 9457 problems for the API (paths under ``/api/``).

Portal service errors (:class:`~web.organisation.PortalError`) carry their own status and code; HTTP
errors keep theirs; anything else is a bug: logged with its traceback and answered 500 without detail.
"""

from __future__ import annotations

import logging
from typing import Final

from flask import Flask, Response, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from web.organisation import PortalError
from web.problems import ApiProblem, problem_response
from web.security import is_api_request

__all__ = ["register_error_handlers"]

_log = logging.getLogger(__name__)
_HTTP_CODES: Final = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
_PASSED_HEADERS: Final = ("allow", "retry-after", "www-authenticate")


def _page(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> ResponseReturnValue:
    return render_template("error.html", status=status, title=title, detail=detail), status, headers or {}


def _api_problem(exc: ApiProblem) -> ResponseReturnValue:
    if is_api_request():
        return exc.response()
    return _page(exc.status_code, exc.problem_code.replace("_", " ").capitalize(), exc.detail, exc.headers)


def _portal_error(exc: PortalError) -> ResponseReturnValue:
    if is_api_request():
        return problem_response(exc.status, exc.code, str(exc))
    return _page(exc.status, exc.code.replace("_", " ").capitalize(), str(exc))


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if status < 400:  # a routing redirect is not an error
        return exc.get_response()
    headers = {k: v for k, v in exc.get_headers() if k.lower() in _PASSED_HEADERS}
    if is_api_request():
        code = _HTTP_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
        return problem_response(status, code, exc.description or exc.name, headers=headers)
    return _page(status, exc.name, exc.description or exc.name, headers)


def _bug(exc: Exception) -> ResponseReturnValue:
    _log.exception("unhandled error answering %s %s", request.method, request.path, exc_info=exc)
    detail = "The portal failed to answer; the error is in its log."
    if is_api_request():
        return problem_response(500, "internal", detail)
    try:
        return _page(500, "Internal error", detail)
    except Exception:  # the error page itself failed: answer in plain text
        return Response(detail, status=500, mimetype="text/plain")


def register_error_handlers(app: Flask) -> None:
    """Answer every error as a page or, under ``/api/``, as a problem."""
    app.register_error_handler(ApiProblem, _api_problem)
    app.register_error_handler(PortalError, _portal_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _bug)

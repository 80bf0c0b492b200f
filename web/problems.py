"""RFC 9457 problem details for the portal's JSON API, in the node API's shape.

Every API error is served as ``application/problem+json`` with ``type``
(``https://trellis.dev/problems/<code>``), ``title``, ``status`` and ``detail`` (RFC 9457 §3.1), and
the extension member ``code`` (the last segment of ``type``), plus ``field`` for bad input (§3.2).
"""

from __future__ import annotations

import json
from typing import Any, Final

from flask import Response

from web.organisation import PortalError

__all__ = ["PROBLEM_JSON", "PROBLEM_BASE", "ApiProblem", "problem_response"]

PROBLEM_JSON: Final = "application/problem+json"
"""The media type of an RFC 9457 problem details object."""
PROBLEM_BASE: Final = "https://trellis.dev/problems/"
"""Every problem ``type`` is this base followed by the problem's ``code``."""

_TITLES: Final = {
    "malformed": "Malformed request",
    "invalid_input": "Invalid input",
    "unauthorized": "Authentication required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "unsupported_media_type": "Unsupported media type",
    "too_many_requests": "Too many requests",
    "internal": "Internal error",
}


class ApiProblem(PortalError):
    """An API answer that is an RFC 9457 problem: HTTP ``status``, our ``code``, a human ``detail``."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        self.status_code = status
        self.problem_code = code
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions
        super().__init__(f"{status} {code}: {detail}")

    def response(self) -> Response:
        """This problem as a response."""
        return problem_response(
            self.status_code, self.problem_code, self.detail, headers=self.headers, **self.extensions
        )


def problem_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any
) -> Response:
    """An ``application/problem+json`` response (RFC 9457 §3) with our ``code`` as an extension."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": _TITLES.get(code, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({key: value for key, value in extensions.items() if value is not None})
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON, headers=headers)

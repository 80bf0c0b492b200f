"""Who is asking and what they may do: session sign-in, CSRF tokens, API bearer tokens and roles.

- **Sessions.** Flask's signed cookie session holds the operator's id and a stamp derived from their
  password hash, so changing a password ends every other session; a disabled operator's session ends at
  their next request. The cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` when configured.
- **CSRF.** Each session has a random token; every ``POST``/``PUT``/``PATCH``/``DELETE`` outside the
  JSON API must send it back (hidden field ``csrf_token`` or header ``X-CSRF-Token``), compared in
  constant time, or it is refused with 400 before the view runs. The API takes no cookies (only
  ``Authorization: Bearer``), so it needs no CSRF token.
- **Roles.** Every view is wrapped by :func:`role_required` (or marked :func:`public`); a test walks the
  URL map to keep it so.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar, cast

from flask import abort, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from web.accounts import token_holder
from web.db import session as db_session
from web.models import Operator, Role, SessionEpoch
from web.problems import ApiProblem

__all__ = [
    "API_PREFIX",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "is_api_request",
    "current_operator",
    "sign_in",
    "sign_out",
    "csrf_token",
    "load_session_operator",
    "check_csrf",
    "load_token_operator",
    "role_required",
    "public",
    "roles_of",
]

API_PREFIX: Final = "/api/"
"""Paths under this prefix are the token-authenticated JSON API."""
CSRF_FIELD: Final = "csrf_token"
"""The form field carrying the CSRF token."""
CSRF_HEADER: Final = "X-CSRF-Token"
"""The header that may carry the CSRF token instead."""
_UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ROLES_ATTR: Final = "_portal_roles"

P = ParamSpec("P")
R = TypeVar("R")


def is_api_request() -> bool:
    """Whether the current request is for the JSON API (answered with problem details)."""
    return request.path.startswith(API_PREFIX)


def current_operator() -> Operator | None:
    """The operator making the current request, if signed in (session or API token)."""
    return cast(Operator | None, g.get("operator"))


def _stamp(operator: Operator, epoch: int) -> str:
    """What a session must match: the password's hash and the operator's session epoch, so a
    password change or disabling the account ends every session made before."""
    return hashlib.sha256(f"{epoch}:{operator.password_hash}".encode()).hexdigest()[:32]


def _epoch(operator_id: int | None) -> int:
    if operator_id is None:
        return 0
    with db_session() as db:
        row = db.get(SessionEpoch, operator_id)
    return 0 if row is None else row.epoch


def sign_in(operator: Operator) -> None:
    """Start a fresh session for ``operator`` (a new CSRF token; nothing kept from before)."""
    session.clear()
    session.permanent = True
    session["operator_id"] = operator.id
    session["stamp"] = _stamp(operator, _epoch(operator.id))
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    g.operator = operator


def sign_out() -> None:
    """End the current session."""
    session.clear()
    g.operator = None


def csrf_token() -> str:
    """The current session's CSRF token (created on first use), for hidden form fields."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def load_session_operator() -> None:
    """Before each page request: find the signed-in operator, ending a session that is no longer valid."""
    g.operator = None
    if is_api_request():
        return
    operator_id = session.get("operator_id")
    if not isinstance(operator_id, int):
        return
    with db_session() as db:
        operator = db.get(Operator, operator_id)
        epoch_row = db.get(SessionEpoch, operator_id)
    epoch = 0 if epoch_row is None else epoch_row.epoch
    if (
        operator is None
        or operator.disabled
        or not hmac.compare_digest(session.get("stamp", ""), _stamp(operator, epoch))
    ):
        session.clear()
        return
    g.operator = operator


def check_csrf() -> None:
    """Before each page request: refuse a state-changing request without the session's CSRF token."""
    if request.method not in _UNSAFE or is_api_request():
        return
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form had expired or did not come from this portal. Reload the page and try again.")


def load_token_operator() -> None:
    """Before each API request: the operator of the ``Authorization: Bearer`` token, or a 401 problem."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    unauthorized = {"WWW-Authenticate": 'Bearer realm="trellis"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "unauthorized", "send an API token as 'Authorization: Bearer <token>'",
                         headers=unauthorized)  # fmt: skip
    with db_session() as db:
        held = token_holder(db, token.strip())
    if held is None:
        raise ApiProblem(401, "unauthorized", "the API token is unknown or revoked", headers=unauthorized)
    g.operator, g.api_token = held


def role_required(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R | ResponseReturnValue]]:
    """Let the view run only for a signed-in operator with one of ``roles`` (any role when none is given).

    Pages send a stranger to the sign-in page and answer a wrong role with 403; the API answers
    401 and 403 problems.
    """
    allowed = frozenset(roles or Role)

    def decorate(view: Callable[P, R]) -> Callable[P, R | ResponseReturnValue]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | ResponseReturnValue:
            operator = current_operator()
            if operator is None:
                if is_api_request():
                    raise ApiProblem(401, "unauthorized", "an API token is required")
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if operator.role not in allowed:
                needed = " or ".join(sorted(allowed))
                if is_api_request():
                    raise ApiProblem(
                        403, "forbidden", f"this needs the role {needed}; you are {operator.role}"
                    )
                abort(403, f"This page needs the role {needed}; you are signed in as {operator.role}.")
            return view(*args, **kwargs)

        setattr(wrapper, _ROLES_ATTR, allowed)
        return wrapper

    return decorate


def public(view: Callable[P, R]) -> Callable[P, R]:
    """Mark a view as open to everyone (the sign-in page, the OpenAPI document)."""
    setattr(view, _ROLES_ATTR, frozenset())
    return view


def roles_of(view: Callable[..., object]) -> frozenset[Role] | None:
    """The roles a view admits (empty: public), or ``None`` when it was never declared."""
    return cast(frozenset[Role] | None, getattr(view, _ROLES_ATTR, None))

"""Who is asking and what they may do: session sign-in, CSRF tokens, API bearer tokens and roles.

- **Sessions.** Flask's signed cookie session holds a random session id; the server keeps its SHA-256
  in ``portal_operator_session`` (:class:`~web.models.OperatorSession`) and refuses a cookie whose row
  is gone. Signing out deletes the session's row, so a copy of the cookie taken before stops working
  too, while the operator's other sessions (other browsers, other devices) go on. Changing the password
  or disabling the account deletes all of the operator's rows; a disabled operator's session also ends
  at their next request. A session idle longer than ``session_lifetime`` ends; signing in deletes every
  such row, and the operator's least recently used sessions beyond ``sessions_per_operator``. The
  cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` when configured.
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
from datetime import timedelta
from typing import Final, ParamSpec, TypeVar, cast

from flask import abort, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import update
from sqlmodel import Session, col, delete, select

from web.accounts import token_holder
from web.db import session as db_session
from web.models import Operator, OperatorSession, Role, utcnow
from web.portal import portal
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
_SESSION_ID: Final = "session_id"
_TOUCH_EVERY: Final = timedelta(minutes=1)
_ROLES_ATTR: Final = "_portal_roles"

P = ParamSpec("P")
R = TypeVar("R")


def is_api_request() -> bool:
    """Whether the current request is for the JSON API (answered with problem details)."""
    return request.path.startswith(API_PREFIX)


def current_operator() -> Operator | None:
    """The operator making the current request, if signed in (session or API token)."""
    return cast(Operator | None, g.get("operator"))


def _id_hash(session_id: str) -> str:
    """What the server keeps of a session id: its SHA-256 (256 random bits need no slow hash)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _end_session(db: Session) -> None:
    """Delete the current cookie's session row, if it has one (in ``db``'s transaction)."""
    session_id = session.get(_SESSION_ID)
    if isinstance(session_id, str):
        db.exec(delete(OperatorSession).where(col(OperatorSession.id_hash) == _id_hash(session_id)))


def sign_in(operator: Operator) -> None:
    """Start a fresh session for ``operator`` (a new session id and CSRF token; nothing kept from before).

    The session this browser had is ended; so are every operator's sessions idle past the lifetime,
    and ``operator``'s least recently used ones beyond ``sessions_per_operator``."""
    config = portal().config
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with db_session() as db:
        _end_session(db)
        db.exec(
            delete(OperatorSession).where(col(OperatorSession.last_seen) <= now - config.session_lifetime)
        )
        assert operator.id is not None
        db.add(
            OperatorSession(id_hash=_id_hash(session_id), operator_id=operator.id, created=now, last_seen=now)
        )
        db.flush()
        beyond = db.exec(
            select(OperatorSession.id)
            .where(OperatorSession.operator_id == operator.id)
            .order_by(col(OperatorSession.last_seen).desc(), col(OperatorSession.id).desc())
            .offset(config.sessions_per_operator)
        ).all()
        if beyond:
            db.exec(delete(OperatorSession).where(col(OperatorSession.id).in_(beyond)))
        db.commit()
    session.clear()
    session.permanent = True
    session[_SESSION_ID] = session_id
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    g.operator = operator


def sign_out() -> None:
    """End the current session: its row is deleted, so no copy of its cookie works any more. The
    operator's other sessions go on."""
    with db_session() as db:
        _end_session(db)
        db.commit()
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
    """Before each page request: find the signed-in operator, ending a session that is no longer valid
    (its row deleted or idle past the lifetime, or its operator disabled). The row's last use is
    written at most once a minute, so most requests only read."""
    g.operator = None
    if is_api_request():
        return
    session_id = session.get(_SESSION_ID)
    if not isinstance(session_id, str):
        return
    lifetime = portal().config.session_lifetime
    now = utcnow()
    stale = col(OperatorSession.last_seen) <= now - min(_TOUCH_EVERY, lifetime / 10)
    with db_session() as db:
        found = db.exec(
            select(Operator, OperatorSession.id, stale)
            .join(OperatorSession, col(OperatorSession.operator_id) == col(Operator.id))
            .where(
                OperatorSession.id_hash == _id_hash(session_id),
                col(OperatorSession.last_seen) > now - lifetime,
            )
        ).first()
        if found is None or found[0].disabled:
            session.clear()
            return
        operator, row_id, touch = found
        if touch:
            db.exec(update(OperatorSession).where(col(OperatorSession.id) == row_id).values(last_seen=now))
            db.commit()
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

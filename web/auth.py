"""The ``auth`` blueprint: sign in (rate limited), sign out, change one's own password."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from web import audit, ratelimit
from web.accounts import InvalidInput, authenticate, change_password
from web.db import session as db_session
from web.models import Operator, utcnow
from web.portal import portal
from web.security import current_operator, public, role_required, sign_in, sign_out

__all__ = ["bp"]

bp = Blueprint("auth", __name__)
"""Sign-in, sign-out and password pages."""


def _safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else the dashboard (no open redirects)."""
    if target and target.isascii() and target.isprintable() and "\\" not in target:  # urlsplit drops \r\n\t
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    """The sign-in form; after too many failures (of the name from this address, of this address, or
    of the name from every address: :mod:`web.ratelimit`) it answers 429."""
    if request.method == "GET":
        if current_operator() is not None:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", username="")
    config = portal().config
    username = request.form.get("username", "").strip().lower()[:200]
    password = request.form.get("password", "")
    address = request.remote_addr
    limits = ratelimit.login_limits(
        username, address, max_failures=config.login_max_failures, user_max_failures=config.login_user_limit
    )
    now = utcnow()
    with db_session() as db:
        wait = ratelimit.retry_after(
            db, limits.keys(), max_failures=limits, window=config.login_window, now=now
        )
        if wait is not None:
            minutes = max(1, round(wait / 60))
            error = (
                f"Too many failed sign-ins. Try again in about {minutes} minute{'s' if minutes > 1 else ''}."
            )
            page = render_template("login.html", username=username, error=error)
            return page, 429, {"Retry-After": str(wait)}
        attempt = ratelimit.begin_attempt(
            db, limits.keys(), max_failures=limits, window=config.login_window, now=now
        )
        if attempt is None:  # others counted first (requests sent together): over the limit now
            page = render_template("login.html", username=username, error="Too many failed sign-ins.")
            return page, 429, {"Retry-After": str(int(config.login_window.total_seconds()))}
        operator = authenticate(db, portal().passwords, username, password)
        if operator is None:  # the attempt stays counted: it is the failure
            error = "The username or password is not correct, or the account is disabled."
            return render_template("login.html", username=username, error=error), 401
        ratelimit.forget_attempt(db, attempt)
        ratelimit.clear_pair(db, username, address)
    sign_in(operator)
    audit.record("auth.login", operator.username)
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["POST"])
@role_required()
def logout() -> ResponseReturnValue:
    """End the session."""
    operator = current_operator()
    assert operator is not None
    audit.record("auth.logout", operator.username)
    sign_out()
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@role_required()
def password() -> ResponseReturnValue:
    """Change one's own password (the current one is asked again); other sessions end."""
    operator = current_operator()
    assert operator is not None
    if request.method == "GET":
        return render_template("password.html")
    config = portal().config
    keys = [f"password:{operator.id}"]  # guesses of the current password, from a session stolen or left open
    with db_session() as db:
        attempt = ratelimit.begin_attempt(
            db, keys, max_failures=config.login_max_failures, window=config.login_window, now=utcnow()
        )
        if attempt is None:
            error = {"current": "Too many wrong current passwords. Try again later."}
            seconds = str(int(config.login_window.total_seconds()))
            return render_template("password.html", errors=error), 429, {"Retry-After": seconds}
        me = db.get(Operator, operator.id)
        assert me is not None
        try:
            change_password(
                db,
                portal().passwords,
                me,
                request.form.get("current", ""),
                request.form.get("new", ""),
                request.form.get("confirm", ""),
            )
        except InvalidInput as exc:
            if exc.field != "current":  # the current password was right: not a guess
                ratelimit.forget_attempt(db, attempt)
            return render_template("password.html", errors={exc.field: exc.message}), 400
        ratelimit.forget_attempt(db, attempt)
    audit.record("auth.password_change", me.username)
    sign_in(me)
    return render_template("password.html", done=True)

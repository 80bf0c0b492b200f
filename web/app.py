"""The portal's app factory: :func:`create_app` builds the Flask app of one portal instance.

The app holds a :class:`~web.portal.Portal` (configuration, database engine, password hasher) under
``app.extensions``, signs sessions with the instance's secret key, checks the session and the CSRF
token before every page request and refuses a NUL in any request's path, query or form
(:mod:`web.input_guard`), takes route numbers as ASCII digits within the id columns' range
(:mod:`web.converters`), adds security headers to every answer, and registers one blueprint per
area: ``auth``, ``dashboard``, ``admin`` and the JSON ``api`` with its ``/openapi.json``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from web import admin, api, auth, dashboard
from web.config import PortalConfig, load_secret_key
from web.converters import RowIdConverter
from web.db import open_engine
from web.devices_pages import api_bp as devices_api_bp
from web.devices_pages import bp as devices_bp
from web.enrol_api import bp as tokens_api_bp
from web.enrol_api import device_bp as enrol_api_bp
from web.enrol_pages import bp as enrol_bp
from web.error_pages import register_error_handlers
from web.input_guard import refuse_nul
from web.ledger_pages import bp as ledger_bp
from web.models import Role, iso_utc
from web.passwords import Passwords
from web.portal import EXTENSION, Portal
from web.security import check_csrf, csrf_token, current_operator, load_session_operator
from web.services import LedgerServices
from web.setup_pages import bp as setup_bp

__all__ = ["SESSION_COOKIE", "CONTENT_SECURITY_POLICY", "create_app"]

SESSION_COOKIE: Final = "trellis_session"
"""The session cookie's name (``__Host-`` prefixed when cookies are Secure)."""
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
"""Every page may load only the portal's own assets, and may not be framed."""
_MAX_BODY: Final = 1 << 20


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "static":
        headers.setdefault("Cache-Control", "no-store")
    return response


class _JSON(DefaultJSONProvider):
    """Flask's JSON, with a body nested too deeply for the decoder refused as malformed JSON (a
    ``ValueError``, which ``get_json`` turns into its usual answer) rather than a ``RecursionError``
    that would make a 500 of a 1 MiB ``[[[[…``."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def _hsts(response: Response) -> Response:
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def create_app(config: PortalConfig | None = None) -> Flask:
    """A portal app for ``config`` (default: :meth:`PortalConfig.from_env`), its database tables created."""
    config = config if config is not None else PortalConfig.from_env()
    instance = config.instance_path.resolve()
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:  # an existing folder too: it holds the database (password hashes) and the keys
        instance.chmod(0o700)
    except OSError as exc:  # (not this user's folder): said, not fatal
        logging.getLogger(__name__).warning("cannot make %s private (0700): %s", instance, exc)
    app = Flask(__name__, instance_path=str(instance))
    app.url_map.converters["int"] = RowIdConverter  # before any route: ASCII digits within range
    app.json = _JSON(app)
    app.config.update(
        SECRET_KEY=load_secret_key(config.secret_key_path),
        SESSION_COOKIE_NAME=("__Host-" if config.secure_cookies else "") + SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=config.session_lifetime,
        MAX_CONTENT_LENGTH=_MAX_BODY,
        PREFERRED_URL_SCHEME="https" if config.secure_cookies else "http",
    )
    engine = open_engine(config.database)
    app.extensions[EXTENSION] = Portal(
        config, engine, Passwords(config.password_parameters), LedgerServices(config, engine)
    )
    if config.trusted_proxies:
        hops = config.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.before_request(load_session_operator)
    app.before_request(refuse_nul)  # before any view reads the path, query or form
    app.before_request(check_csrf)
    app.after_request(_security_headers)
    if config.secure_cookies:
        app.after_request(_hsts)
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    app.jinja_env.filters["iso"] = iso_utc
    app.jinja_env.globals.update(csrf_token=csrf_token, current_operator=current_operator, Role=Role)
    for blueprint in (auth.bp, dashboard.bp, admin.bp, api.bp, api.openapi_bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(devices_bp)
    app.register_blueprint(devices_api_bp)
    app.register_blueprint(ledger_bp)
    app.register_blueprint(setup_bp)
    app.register_blueprint(enrol_bp)
    app.register_blueprint(enrol_api_bp)
    app.register_blueprint(tokens_api_bp)
    register_error_handlers(app)
    return app

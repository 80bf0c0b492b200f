"""Cookie flags, CSRF refusal, security headers, and a role declaration on every route."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from flask import Flask

from tests.web.support import PASSWORD, Browser, operator_named, portal
from web.app import create_app
from web.config import PortalConfig
from web.models import Operator, Role
from web.security import roles_of


def _cookie(response_headers: list[str], name: str) -> str:
    matching = [header for header in response_headers if header.startswith(name + "=")]
    assert matching, response_headers
    return matching[-1]


def test_session_cookie_is_httponly_and_samesite_lax(
    browser: Browser, accounts: dict[Role, Operator]
) -> None:
    """The session cookie cannot be read by scripts, is not sent on cross-site posts, and has an expiry."""
    response = browser.login("admin")
    cookie = _cookie(response.headers.getlist("Set-Cookie"), "trellis_session")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Expires=" in cookie
    assert "Secure" not in cookie


def test_secure_cookies_set_the_secure_flag(config: PortalConfig) -> None:
    """With ``secure_cookies`` the cookie is ``Secure`` and ``__Host-`` prefixed, and HSTS is sent."""
    app = create_app(replace(config, secure_cookies=True))
    try:
        response = app.test_client().get("/login", base_url="https://portal.example")
        cookie = _cookie(response.headers.getlist("Set-Cookie"), "__Host-trellis_session")
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        portal(app).engine.dispose()


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
    app: Flask, signed_in: Callable[[Role], Browser]
) -> None:
    """An admin's browser posting the new-operator form without the token gets 400; no operator is made."""
    browser = signed_in(Role.ADMIN)
    form = {"username": "mallory", "password": PASSWORD, "role": "admin"}
    response = browser.post("/operators", form, csrf=False)
    assert response.status_code == 400
    assert "did not come from this portal" in response.text
    assert operator_named(app, "mallory") is None


def test_a_wrong_csrf_token_is_refused(app: Flask, signed_in: Callable[[Role], Browser]) -> None:
    """A token from elsewhere does not pass."""
    browser = signed_in(Role.ADMIN)
    form = {"username": "mallory", "password": PASSWORD, "role": "admin", "csrf_token": "x" * 43}
    assert browser.client.post("/operators", data=form).status_code == 400
    assert operator_named(app, "mallory") is None


def test_the_csrf_token_may_come_in_a_header(app: Flask, signed_in: Callable[[Role], Browser]) -> None:
    """``X-CSRF-Token`` is accepted in place of the form field."""
    browser = signed_in(Role.ADMIN)
    form = {"username": "carol", "password": PASSWORD, "role": "operator"}
    response = browser.client.post("/operators", data=form, headers={"X-CSRF-Token": browser.csrf()})
    assert response.status_code == 303
    assert operator_named(app, "carol") is not None


def test_sign_in_needs_the_csrf_token(browser: Browser, accounts: dict[Role, Operator]) -> None:
    """A sign-in form posted from another site (no token) is refused: no login CSRF."""
    response = browser.post("/login", {"username": "admin", "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert browser.get("/").status_code == 302


def test_signing_in_replaces_the_csrf_token(browser: Browser, accounts: dict[Role, Operator]) -> None:
    """The token a stranger's session had is not the token of the signed-in session."""
    before = browser.csrf()
    browser.login("admin")
    assert browser.csrf() != before


def test_pages_carry_security_headers(browser: Browser) -> None:
    """Every page forbids framing and sniffing, restricts sources to the portal, and is not cached."""
    response = browser.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_assets_are_served_locally(browser: Browser) -> None:
    """The stylesheet is served by the portal and pages link nothing from elsewhere."""
    page = browser.get("/login").text
    assert '<link rel="stylesheet" href="/static/portal.css">' in page
    assert "http://" not in page and "https://" not in page
    css = browser.get("/static/portal.css")
    assert css.status_code == 200
    assert ":focus-visible" in css.text
    css.close()


def test_every_route_declares_who_may_use_it(app: Flask) -> None:
    """Each view is wrapped by role_required or marked public: only sign-in, the OpenAPI document and the
    device enrolment endpoint (authenticated by its provisioning token) are public."""
    public = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        roles = roles_of(app.view_functions[rule.endpoint])
        assert roles is not None, f"{rule.endpoint} declares no roles"
        if not roles:
            public.add(rule.endpoint)
    assert public == {"auth.login", "openapi.openapi", "enrol_api.enrol"}


@pytest.mark.parametrize("path", ["/", "/operators", "/audit", "/password", "/setup", "/enrol"])
def test_pages_are_accessible_landmarks(signed_in: Callable[[Role], Browser], path: str) -> None:
    """Every page has a language, a viewport, a skip link to main, and labels for its inputs."""
    page = signed_in(Role.ADMIN).get(path).text
    assert '<html lang="en">' in page
    assert 'name="viewport"' in page
    assert '<a class="skip-link" href="#main">' in page
    assert '<main id="main"' in page
    assert '<nav aria-label="Main">' in page

    for input_id in re.findall(r'<input id="([^"]+)"', page):
        assert f'<label for="{input_id}">' in page, input_id


def test_unknown_page_is_a_404_page(browser: Browser) -> None:
    """Outside the API, errors are HTML pages with their status."""
    response = browser.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert 'Not Found <span class="status">(404)</span>' in response.text


def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(config: PortalConfig) -> None:
    """With ``trusted_proxies=1`` the rate limit counts X-Forwarded-For, so one client cannot lock out all."""
    app = create_app(replace(config, trusted_proxies=1))
    try:
        attacker = Browser(app.test_client())
        attacker.client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.9"
        for name in ("a1", "a2", "a3", "a4", "a5"):
            attacker.login(name, "wrong password!")
        assert attacker.login("a6", "wrong password!").status_code == 429
        honest = Browser(app.test_client())
        honest.client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.4"
        assert honest.login("a6", "wrong password!").status_code == 401
    finally:
        portal(app).engine.dispose()

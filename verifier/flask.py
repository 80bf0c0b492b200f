"""A Flask extension letting only authenticated devices into a view.

::

    from verifier.flask import DeviceAuth

    auth = DeviceAuth(app, verifier=verifier, audience="https://service.example")

    @app.post("/readings")
    @auth.device_required
    def readings():
        return {"did": flask.g.device.did}

:meth:`DeviceAuth.device_required` checks the current request with
:meth:`~verifier.Verifier.authenticate_request` (an RFC 9421 signed request, the device's credential
in the ``Device-Credential`` header) for ``audience``, the service's own origin (``scheme://host[:port]``)
or authority (``host[:port]``), and puts the :class:`~verifier.AuthenticatedDevice` on
``flask.g.device``. A refusal is answered ``application/problem+json`` (RFC 9457) with ``type``,
``title``, ``status`` (``refused.status``), ``detail`` and ``reason``
(see :func:`verifier.wsgi.problem_details`); a 401 also carries ``WWW-Authenticate`` and
``Accept-Signature`` (:func:`verifier.wsgi.challenge_headers`). A replay or session store that
cannot be reached (:class:`~verifier.StoreUnavailable`) is answered 503 with the problem of
:func:`verifier.wsgi.store_unavailable_details` (and logged to the app's logger), and is not
reported. The target URI checked is the one the
client sent (:func:`verifier.wsgi.target_uri`). The extension registers itself in
``app.extensions["trellis.device_auth"]``.

A request body is read only to be checked, and only up to ``max_body_bytes`` (default
:data:`verifier.wsgi.DEFAULT_MAX_BODY_BYTES`, 1 MiB), before any other ``before_request`` function
can read it. A request without ``Signature-Input`` or without ``Signature`` is refused whatever its
body, so the extension does not read it: the view's check answers the 401 (with the challenge) as
before. A signed request whose ``Content-Length`` is over the limit is answered 413 with the problem
of :func:`verifier.wsgi.body_too_large_details` before any other ``before_request`` function runs,
its body unread; one without ``Content-Length`` (chunked) is read only from a server that ends the
input itself (``wsgi.input_terminated``, as Werkzeug reads it), at most one byte past the limit,
and answered the same 413 when it is longer. Neither is reported (no device was decided on). A body
within the limit is kept for the view, the app's own ``MAX_CONTENT_LENGTH`` applying as before.

``audience`` is required and checked when the extension is made (:class:`~verifier.ConfigurationError`
when it is empty or not an origin or authority): it is never taken from the request, whose ``Host`` a
client chooses, so a request a device signed for another service is refused ``wrong_audience``.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

import flask

from verifier.errors import Reason, Refused, StoreUnavailable
from verifier.reporting import AuthenticationReporter
from verifier.verifier import AuthenticatedDevice, Verifier
from verifier.wsgi import (
    DEFAULT_MAX_BODY_BYTES,
    PROBLEM_JSON,
    BodyTooLarge,
    body_too_large_details,
    challenge_headers,
    checked_body_limit,
    problem_details,
    read_at_most,
    request_from_environ,
    service_audience,
    signature_sent,
    store_unavailable_details,
)

__all__ = ["EXTENSION", "DeviceAuth"]

EXTENSION: Final = "trellis.device_auth"
"""Key under ``app.extensions`` holding the app's :class:`DeviceAuth`."""

P = ParamSpec("P")
R = TypeVar("R")


class DeviceAuth:
    """Device authentication for a Flask app (see the module docstring); ``init_app`` for app factories.

    ``audience`` is the service's own origin (``https://host[:port]``) or authority (``host[:port]``),
    which each request's must be.
    ``reporter``, when given, gets every decision (:mod:`verifier.reporting`: to the portal).
    ``max_body_bytes`` is the largest body read to be checked (default
    :data:`verifier.wsgi.DEFAULT_MAX_BODY_BYTES`, 1 MiB): a larger one is answered 413.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        verifier: Verifier,
        audience: str,
        reporter: AuthenticationReporter | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.verifier = verifier
        self.audience = service_audience(audience)
        self._challenge = challenge_headers(self.audience)
        self.reporter = reporter
        self.max_body_bytes = checked_body_limit(max_body_bytes)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Register this extension with ``app``, and have each request to a :meth:`device_required`
        view keep its body before any other ``before_request`` function runs: one that reads the form
        first (a CSRF extension, say) would leave the stream empty, and the digest be checked against
        an empty body while the view reads the form."""
        app.extensions[EXTENSION] = self
        app.before_request_funcs.setdefault(None, []).insert(0, _keep_body)

    def authenticate(self) -> AuthenticatedDevice:
        """Authenticate the current request; the :class:`~verifier.AuthenticatedDevice`, or raise
        ``Refused`` (or :class:`~verifier.wsgi.BodyTooLarge`, its body over ``max_body_bytes``)."""
        request = flask.request
        environ = request.environ
        if (
            getattr(request, "_cached_data", None) is None
            and "form" in request.__dict__
            and not environ.get(_LEFT_UNREAD)
        ):
            # The form was parsed before the body was kept: what the view reads is not what can be
            # checked now. Refused rather than checked against what is left (nothing).
            raise Refused(Reason.MALFORMED, "the request's body was read before the device check")
        # An unsigned request is refused whatever its body (no Signature-Input or Signature): not read.
        body = self._keep_body(request) if signature_sent(environ) else b""
        message = request_from_environ(environ, body)
        return self.verifier.authenticate_request(message, self.audience)

    def _keep_body(self, request: flask.Request) -> bytes:
        """The request's body, read once and kept (later reads, the form's among them, read the kept
        bytes); :class:`~verifier.wsgi.BodyTooLarge`, nothing kept, when it is over ``max_body_bytes``:
        its ``Content-Length`` says so (nothing is read) or, without one, ``max_body_bytes`` + 1 bytes
        come."""
        limit = self.max_body_bytes
        length = request.content_length  # None when chunked or not given
        if length is not None and length > limit:
            raise BodyTooLarge(limit, length)
        cached = getattr(request, "_cached_data", None)
        if isinstance(cached, bytes):
            return cached
        environ = request.environ
        if length is None and "wsgi.input_terminated" in environ:
            # Werkzeug would read all of it: read no more than one byte past the limit here, and
            # leave Werkzeug those bytes to read (and the app's MAX_CONTENT_LENGTH to apply) instead.
            body = read_at_most(environ["wsgi.input"], limit + 1)
            if len(body) > limit:
                raise BodyTooLarge(limit)
            environ["wsgi.input"] = io.BytesIO(body)
            if "stream" in request.__dict__:  # made from the input already: made again from the bytes
                del request.stream
        return request.get_data(cache=True, parse_form_data=False)

    def _too_large(self, exc: BodyTooLarge) -> flask.Response:
        return flask.Response(
            json.dumps(body_too_large_details(exc.limit)), status=413, mimetype=PROBLEM_JSON
        )

    def device_required(self, view: Callable[P, R]) -> Callable[P, R | flask.Response]:
        """Decorate a view: only an authenticated device gets in (``flask.g.device``); others get a problem."""

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | flask.Response:
            try:
                flask.g.device = self.authenticate()
            except Refused as refused:
                if self.reporter is not None:
                    self.reporter.observe(refused)
                return flask.Response(
                    json.dumps(problem_details(refused)),
                    status=refused.status,
                    mimetype=PROBLEM_JSON,
                    headers=self._challenge if refused.status == 401 else None,
                )
            except BodyTooLarge as exc:
                return self._too_large(exc)
            except StoreUnavailable as exc:
                flask.current_app.logger.warning("device not authenticated, store unavailable: %s", exc)
                return flask.Response(
                    json.dumps(store_unavailable_details()), status=503, mimetype=PROBLEM_JSON
                )
            if self.reporter is not None:
                self.reporter.observe(flask.g.device)
            return view(*args, **kwargs)

        setattr(wrapper, _DEVICE_REQUIRED, self)  # a mark that _keep_body reads
        return wrapper


_DEVICE_REQUIRED: Final = "_trellis_device_required"
_LEFT_UNREAD: Final = "trellis.body_left_unread"
"""Environ key set by :func:`_keep_body` on an unsigned request, whose body it did not keep: a form
parsed later (a CSRF extension) then does not change the refusal to "read before the device check"."""


def _keep_body() -> flask.Response | None:
    """Before any other ``before_request`` function: keep the body of a signed request whose view is
    :meth:`DeviceAuth.device_required` (later reads, the form's among them, read the kept bytes), or
    answer 413 when it is over the limit; an unsigned one is left unread, for the view to refuse."""
    view = flask.current_app.view_functions.get(flask.request.endpoint or "")
    auth = getattr(view, _DEVICE_REQUIRED, None)
    if not isinstance(auth, DeviceAuth):
        return None
    request = flask.request
    if not signature_sent(request.environ):
        request.environ[_LEFT_UNREAD] = True
        return None
    try:
        auth._keep_body(request)
    except BodyTooLarge as exc:
        return auth._too_large(exc)
    return None

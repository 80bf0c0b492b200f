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

``audience`` is required and checked when the extension is made (:class:`~verifier.ConfigurationError`
when it is empty or not an origin or authority): it is never taken from the request, whose ``Host`` a
client chooses, so a request a device signed for another service is refused ``wrong_audience``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

import flask

from verifier.errors import Reason, Refused, StoreUnavailable
from verifier.reporting import AuthenticationReporter
from verifier.verifier import AuthenticatedDevice, Verifier
from verifier.wsgi import (
    PROBLEM_JSON,
    challenge_headers,
    problem_details,
    request_from_environ,
    service_audience,
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
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        verifier: Verifier,
        audience: str,
        reporter: AuthenticationReporter | None = None,
    ) -> None:
        self.verifier = verifier
        self.audience = service_audience(audience)
        self._challenge = challenge_headers(self.audience)
        self.reporter = reporter
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
        """Authenticate the current request; the :class:`~verifier.AuthenticatedDevice`, or raise ``Refused``."""
        request = flask.request
        if getattr(request, "_cached_data", None) is None and "form" in request.__dict__:
            # The form was parsed before the body was kept: what the view reads is not what can be
            # checked now. Refused rather than checked against what is left (nothing).
            raise Refused(Reason.MALFORMED, "the request's body was read before the device check")
        message = request_from_environ(request.environ, request.get_data(cache=True))
        return self.verifier.authenticate_request(message, self.audience)

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
            except StoreUnavailable as exc:
                flask.current_app.logger.warning("device not authenticated, store unavailable: %s", exc)
                return flask.Response(
                    json.dumps(store_unavailable_details()), status=503, mimetype=PROBLEM_JSON
                )
            if self.reporter is not None:
                self.reporter.observe(flask.g.device)
            return view(*args, **kwargs)

        setattr(wrapper, _DEVICE_REQUIRED, True)  # a mark that _keep_body reads
        return wrapper


_DEVICE_REQUIRED: Final = "_trellis_device_required"


def _keep_body() -> None:
    """Before any other ``before_request`` function: read and keep the body of a request whose view
    is :meth:`DeviceAuth.device_required` (later reads, the form's among them, read the kept bytes)."""
    view = flask.current_app.view_functions.get(flask.request.endpoint or "")
    if getattr(view, _DEVICE_REQUIRED, False):
        flask.request.get_data(cache=True, parse_form_data=False)

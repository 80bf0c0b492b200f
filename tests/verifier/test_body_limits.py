"""Request bodies are read only to be checked, and only up to ``max_body_bytes`` (1 MiB unless told),
by the WSGI middleware and the Flask extension alike: a larger ``Content-Length`` is answered 413
unread, a body without one is read one byte past the limit at most, and an unsigned request (refused
whatever its body) is answered 401 with its body unread."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import flask
import pytest

from tests.verifier.lifetime_world import World, make_world
from verifier import ConfigurationError, Verifier
from verifier.flask import DeviceAuth
from verifier.wsgi import (
    BODY_TOO_LARGE,
    DEFAULT_MAX_BODY_BYTES,
    DEVICE_KEY,
    PROBLEM_JSON,
    BodyTooLarge,
    DeviceAuthMiddleware,
)
from wallet.device_client import CREDENTIAL_HEADER, SIGNED_COMPONENTS
from wallet.http_signatures import HttpRequest, sign_request

HOST = "service.example"
AUDIENCE = f"https://{HOST}"
PATH = "/readings"
LIMIT = 1000
"""A small limit for the tests that read up to it."""


class CountingInput:
    """A ``wsgi.input`` over ``data`` that counts the bytes read from it and, with ``chunk``, hands out
    at most that many bytes a read (as a socket may)."""

    def __init__(self, data: bytes, chunk: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._chunk = chunk
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is negative), at most ``chunk`` at once."""
        if self._chunk is not None:
            size = self._chunk if size < 0 else min(size, self._chunk)
        part = self._data.read(size)
        self.bytes_read += len(part)
        return part


def signed_headers(world: World, body: bytes) -> dict[str, str]:
    """The header fields of a POST of ``body`` to PATH signed by the world's device, its credential added."""
    headers = {"content-type": "application/octet-stream", CREDENTIAL_HEADER: world.header}
    created = int(world.clock())
    added = sign_request(
        HttpRequest("POST", AUDIENCE + PATH, headers, body), key=world.device_key,
        keyid=f"{world.device}#key-1", components=SIGNED_COMPONENTS, created=created,
        expires=created + 60, nonce=secrets.token_urlsafe(16), alg="ed25519",
    )  # fmt: skip
    return {**headers, **added}


def environ_for(
    headers: dict[str, str], stream: CountingInput, *, content_length: int | None, terminated: bool = True
) -> dict[str, Any]:
    """A WSGI environ of a POST to PATH on HOST over https: ``headers``, ``stream`` as its input,
    ``Content-Length`` when given (else chunked), ``wsgi.input_terminated`` when ``terminated``."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
        "REQUEST_URI": PATH,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": HOST,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": stream,
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if terminated:
        environ["wsgi.input_terminated"] = True
    if content_length is None:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return environ


def call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Run ``app`` on ``environ``: the status code, the header fields (names lowercased) and the body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append((status, headers))

    chunks = app(environ, start_response)
    body = b"".join(chunks)
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    status, headers = started[-1]
    return int(status.split()[0]), {name.lower(): value for name, value in headers}, body


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A plain WSGI app answering the device's DID and how many bytes of body it could read."""
    device = environ.get(DEVICE_KEY)
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"did": device.did if device else None, "body": len(body)}).encode()]


def middleware(world: World, **options: Any) -> DeviceAuthMiddleware:
    """The middleware in front of :func:`echo`, for the world's verifier (no sessions)."""
    return DeviceAuthMiddleware(echo, world.verifier(sessions=False), audience=AUDIENCE, **options)


def flask_app(verifier: Verifier, **options: Any) -> flask.Flask:
    """A Flask service whose POST PATH needs a device and answers its DID and its body's length."""
    app = flask.Flask("body-limits")
    auth = DeviceAuth(app, verifier=verifier, audience=AUDIENCE, **options)

    @app.post(PATH)
    @auth.device_required
    def readings() -> dict[str, Any]:
        return {"did": flask.g.device.did, "body": len(flask.request.get_data())}

    return app


def flask_service(world: World, **options: Any) -> flask.Flask:
    """:func:`flask_app` for the world's verifier (no sessions)."""
    return flask_app(world.verifier(sessions=False), **options)


Integration = Callable[..., Callable[..., Iterable[bytes]]]
INTEGRATIONS: list[Any] = [
    pytest.param(middleware, id="wsgi"),
    pytest.param(flask_service, id="flask"),
]


def assert_too_large(answer: tuple[int, dict[str, str], bytes], limit: int) -> None:
    """A 413 RFC 9457 problem naming ``limit``, with no challenge."""
    status, headers, body = answer
    assert status == 413, body
    assert headers["content-type"] == PROBLEM_JSON
    assert "www-authenticate" not in headers
    problem = json.loads(body)
    assert problem["type"].endswith("/" + BODY_TOO_LARGE) and problem["title"]
    assert problem["status"] == 413 and problem["reason"] == BODY_TOO_LARGE
    assert f"{limit} bytes" in problem["detail"] and problem["max_body_bytes"] == limit


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_a_content_length_over_the_default_limit_is_answered_413_unread(integration: Integration) -> None:
    """A signed request whose Content-Length is one byte over 1 MiB (the default) gets a 413 problem
    naming the limit, and not one byte of its body is read."""
    world = make_world()
    body = b"x" * (DEFAULT_MAX_BODY_BYTES + 1)
    stream = CountingInput(body)
    environ = environ_for(signed_headers(world, body), stream, content_length=len(body))
    assert_too_large(call(integration(world), environ), DEFAULT_MAX_BODY_BYTES)
    assert stream.bytes_read == 0


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_a_chunked_body_over_the_limit_is_read_one_byte_past_it_at_most(integration: Integration) -> None:
    """A signed body without Content-Length, ten times the limit, is read no further than the limit
    plus one byte, then answered 413 (the input hands out 300 bytes a read, so it is read several times)."""
    world = make_world()
    body = b"x" * (10 * LIMIT)
    stream = CountingInput(body, chunk=300)
    environ = environ_for(signed_headers(world, body), stream, content_length=None)
    assert_too_large(call(integration(world, max_body_bytes=LIMIT), environ), LIMIT)
    assert 0 < stream.bytes_read <= LIMIT + 1


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("length", [10 * DEFAULT_MAX_BODY_BYTES, None], ids=["content-length", "chunked"])
def test_an_unsigned_request_is_answered_401_with_its_body_unread(
    integration: Integration, length: int | None
) -> None:
    """No Signature-Input and no Signature: the 401 with its challenge, whatever the body's size, and
    not one byte of the body read."""
    world = make_world()
    stream = CountingInput(b"x" * (2 * LIMIT))
    environ = environ_for({"content-type": "application/json"}, stream, content_length=length)
    status, headers, body = call(integration(world, max_body_bytes=LIMIT), environ)
    assert status == 401, body
    assert headers["www-authenticate"].startswith("HttpMessageSignature ")
    assert json.loads(body)["detail"] == "the request carries no Signature-Input and Signature"
    assert stream.bytes_read == 0


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("dropped", ["signature-input", "signature"])
def test_a_request_with_one_of_the_two_signature_fields_is_answered_401_unread(
    integration: Integration, dropped: str
) -> None:
    """Signature-Input without Signature (or the reverse) is refused whatever the body: 401, unread."""
    world = make_world()
    body = b"x" * (2 * LIMIT)
    headers = {name: value for name, value in signed_headers(world, body).items() if name.lower() != dropped}
    stream = CountingInput(body)
    status, _, answer = call(
        integration(world, max_body_bytes=LIMIT), environ_for(headers, stream, content_length=len(body))
    )
    assert status == 401 and "is present but" in json.loads(answer)["detail"]
    assert stream.bytes_read == 0


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_a_signed_request_under_the_limit_is_let_in_with_its_body(integration: Integration) -> None:
    """A signed body under the limit is checked and reaches the application, which reads all of it."""
    world = make_world()
    body = b"x" * (LIMIT - 1)
    stream = CountingInput(body)
    environ = environ_for(signed_headers(world, body), stream, content_length=len(body))
    status, _, answer = call(integration(world, max_body_bytes=LIMIT), environ)
    assert status == 200, answer
    assert json.loads(answer) == {"did": world.device, "body": len(body)}
    assert stream.bytes_read == len(body)


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("length", [LIMIT, None], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_let_in(integration: Integration, length: int | None) -> None:
    """The limit is the largest body taken: one of exactly that many bytes is let in, with or without
    Content-Length."""
    world = make_world()
    body = b"x" * LIMIT
    environ = environ_for(signed_headers(world, body), CountingInput(body), content_length=length)
    status, _, answer = call(integration(world, max_body_bytes=LIMIT), environ)
    assert status == 200, answer
    assert json.loads(answer) == {"did": world.device, "body": LIMIT}


def test_a_body_read_in_pieces_is_read_up_to_its_content_length() -> None:
    """An input that hands out fewer bytes than asked (300 a read) is read again until Content-Length
    bytes came, so the body checked and passed on is the whole body."""
    world = make_world()
    body = b"x" * (LIMIT - 1)
    stream = CountingInput(body, chunk=300)
    environ = environ_for(signed_headers(world, body), stream, content_length=len(body))
    status, _, answer = call(middleware(world, max_body_bytes=LIMIT), environ)
    assert status == 200, answer
    assert json.loads(answer) == {"did": world.device, "body": len(body)}


def test_a_chunked_signed_body_under_the_limit_reaches_the_wsgi_application() -> None:
    """From a server that ends the input (wsgi.input_terminated), a signed body without Content-Length
    is checked against its bytes and passed on to the application."""
    world = make_world()
    body = b'{"t": 21}'
    environ = environ_for(signed_headers(world, body), CountingInput(body), content_length=None)
    status, _, answer = call(middleware(world), environ)
    assert status == 200, answer
    assert json.loads(answer) == {"did": world.device, "body": len(body)}


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_without_content_length_nothing_is_read_from_a_server_that_does_not_end_the_input(
    integration: Integration,
) -> None:
    """No Content-Length and no wsgi.input_terminated: the input may never end (PEP 3333), so none of
    it is read; the body is taken as empty (and a signature over another body does not verify)."""
    world = make_world()
    body = b"x" * (10 * LIMIT)
    stream = CountingInput(body)
    environ = environ_for(signed_headers(world, body), stream, content_length=None, terminated=False)
    status, _, answer = call(integration(world, max_body_bytes=LIMIT), environ)
    assert status == 401 and json.loads(answer)["reason"] == "digest_mismatch"
    assert stream.bytes_read == 0


def test_a_413_in_flask_comes_before_other_before_request_functions() -> None:
    """A body over the limit is answered before a function reading the form (a CSRF extension) can
    read it, and the view is not reached."""
    world = make_world()
    app = flask.Flask("body-limits-csrf")
    ran: list[str] = []

    @app.before_request
    def read_the_form() -> None:
        ran.append("before_request")
        flask.request.form.to_dict()

    auth = DeviceAuth(app, verifier=world.verifier(sessions=False), audience=AUDIENCE, max_body_bytes=LIMIT)

    @app.post(PATH)
    @auth.device_required
    def readings() -> str:
        ran.append("view")
        return "in"

    body = b"x" * (10 * LIMIT)
    stream = CountingInput(body)
    headers = signed_headers(world, body) | {"content-type": "application/x-www-form-urlencoded"}
    assert_too_large(call(app, environ_for(headers, stream, content_length=None)), LIMIT)
    assert ran == [] and stream.bytes_read <= LIMIT + 1


def test_an_unsigned_request_keeps_its_refusal_when_a_before_request_function_reads_the_form() -> None:
    """The extension leaves an unsigned request's body alone; if another before_request function then
    parses the form, the refusal is still the verifier's (no signature), as before."""
    world = make_world()
    app = flask.Flask("body-limits-form")

    @app.before_request
    def read_the_form() -> None:
        flask.request.form.to_dict()

    auth = DeviceAuth(app, verifier=world.verifier(sessions=False), audience=AUDIENCE)

    @app.post(PATH)
    @auth.device_required
    def readings() -> str:
        return "in"

    answer = app.test_client().post(PATH, base_url=AUDIENCE, data={"cmd": "unlock"})
    assert answer.status_code == 401
    assert answer.get_json()["detail"] == "the request carries no Signature-Input and Signature"


def test_flask_authenticate_raises_body_too_large_unread() -> None:
    """Called by a view of its own, ``DeviceAuth.authenticate`` raises BodyTooLarge for a Content-Length
    over the limit, naming the limit, without reading the body."""
    world = make_world()
    app = flask.Flask("body-limits-manual")
    auth = DeviceAuth(app, verifier=world.verifier(sessions=False), audience=AUDIENCE, max_body_bytes=LIMIT)
    caught: list[BodyTooLarge] = []

    @app.post(PATH)
    def manual() -> str:
        try:
            auth.authenticate()
        except BodyTooLarge as exc:
            caught.append(exc)
        return "done"

    body = b"x" * (LIMIT + 1)
    stream = CountingInput(body)
    call(app, environ_for(signed_headers(world, body), stream, content_length=len(body)))
    assert [(exc.limit, exc.length) for exc in caught] == [(LIMIT, LIMIT + 1)]
    assert stream.bytes_read == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1024", True, None])
def test_max_body_bytes_must_be_a_byte_count(bad: object) -> None:
    """A limit that is not a whole number of bytes, 0 or more, fails at set-up with ConfigurationError."""
    verifier = make_world().verifier(sessions=False)
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        DeviceAuthMiddleware(echo, verifier, audience=AUDIENCE, max_body_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        DeviceAuth(verifier=verifier, audience=AUDIENCE, max_body_bytes=bad)  # type: ignore[arg-type]


def test_the_default_limit_is_one_mebibyte() -> None:
    """Both integrations read at most 1 MiB unless told otherwise."""
    verifier = make_world().verifier(sessions=False)
    assert DEFAULT_MAX_BODY_BYTES == 1 << 20
    assert DeviceAuthMiddleware(echo, verifier, audience=AUDIENCE).max_body_bytes == 1 << 20
    assert DeviceAuth(verifier=verifier, audience=AUDIENCE).max_body_bytes == 1 << 20

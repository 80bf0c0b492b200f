"""``@target-uri`` is the target URI the client sent (RFC 9421 §2.2.2, RFC 9110 §7.1), not one rebuilt
from the decoded path: a path written with ``:``, ``%2F``, lowercase hex or ``%7E`` still verifies."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import pytest
from waitress import wasyncore
from waitress.server import create_server

from tests.verifier.conftest_ledger import Device, Ledger, ledger  # noqa: F401
from verifier import Reason, Refused
from verifier.wsgi import DEVICE_KEY, DeviceAuthMiddleware, request_from_environ
from wallet.device import DeviceWallet
from wallet.device_client import DeviceClient
from wallet.keystore import KDF_TESTING

ORIGIN = "https://svc.example"
RAW_TARGETS = [
    "/users/did:trellis:abc/readings?q=1",
    "/files/a%2Fb?q=1",
    "/caf%c3%a9?q=1",
    "/x/%7Euser?q=1",
]


def environ_for(raw_target: str, **raw: str) -> dict[str, Any]:
    """What a WSGI server hands over for ``raw_target``: ``PATH_INFO`` percent-decoded (PEP 3333),
    ``QUERY_STRING`` as sent, plus the raw target under the keys given in ``raw``."""
    path, _, query = raw_target.partition("?")
    return {
        "REQUEST_METHOD": "POST",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "svc.example",
        "SERVER_NAME": "svc.example",
        "SERVER_PORT": "443",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(b""),
        **raw,
    }


@pytest.mark.parametrize("raw_target", RAW_TARGETS)
def test_request_uri_is_the_target_as_sent(raw_target: str) -> None:
    """REQUEST_URI (waitress, Werkzeug, uWSGI, mod_wsgi) is put after the scheme and Host unchanged."""
    request = request_from_environ(environ_for(raw_target, REQUEST_URI=raw_target), b"")
    assert request.url == ORIGIN + raw_target


@pytest.mark.parametrize("raw_target", RAW_TARGETS)
def test_raw_uri_is_the_target_as_sent(raw_target: str) -> None:
    """RAW_URI (gunicorn) is read the same way."""
    request = request_from_environ(environ_for(raw_target, RAW_URI=raw_target), b"")
    assert request.url == ORIGIN + raw_target


def test_an_absolute_form_target_is_the_target_uri() -> None:
    """A request target in absolute form is the target URI itself (RFC 9112 §3.3)."""
    environ = environ_for(
        "/a%2Fb?q=1", REQUEST_URI="https://svc.example:8443/a%2Fb?q=1", HTTP_HOST="svc.example:8443"
    )
    assert request_from_environ(environ, b"").url == "https://svc.example:8443/a%2Fb?q=1"


@pytest.mark.parametrize("host", ["SVC.example", "svc.example:443"])
def test_an_absolute_form_target_may_name_its_host_in_any_case_or_with_the_default_port(host: str) -> None:
    environ = environ_for("/r", REQUEST_URI="https://svc.example/r", HTTP_HOST=host)
    assert request_from_environ(environ, b"").url == "https://svc.example/r"


@pytest.mark.parametrize("host", ["other.example", "svc.example:8443", "svc.example.evil"])
def test_an_absolute_form_target_naming_another_host_than_host_is_refused(host: str) -> None:
    """The signature and audience are checked against the target, the application reads Host (as
    Werkzeug does): a request naming two services is refused, not let in for the one the app sees."""
    environ = environ_for("/r", REQUEST_URI="https://svc.example/r", HTTP_HOST=host)
    with pytest.raises(Refused) as refused:
        request_from_environ(environ, b"")
    assert refused.value.reason is Reason.MALFORMED and "Host" in refused.value.detail


def test_without_a_raw_target_a_path_keeps_its_colons_and_at_signs() -> None:
    """Rebuilt from PATH_INFO, only what a path cannot hold is encoded: ':' and '@' stay as sent."""
    environ = environ_for("/users/did:trellis:abc/@me/a%20b?q=1")
    assert request_from_environ(environ, b"").url == ORIGIN + "/users/did:trellis:abc/@me/a%20b?q=1"


def test_without_a_raw_target_a_default_port_is_left_out() -> None:
    """With no Host, the server's name is used, and its port when it is not the scheme's default."""
    environ = environ_for("/r")
    del environ["HTTP_HOST"]
    assert request_from_environ(environ, b"").url == ORIGIN + "/r"
    environ["SERVER_PORT"] = "8443"
    assert request_from_environ(environ, b"").url == ORIGIN + ":8443/r"


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A plain WSGI app answering the device's DID and the path it was routed on."""
    start_response("200 OK", [("Content-Type", "application/json")])
    device = environ.get(DEVICE_KEY)
    return [json.dumps({"did": device.did if device else None, "path": environ["PATH_INFO"]}).encode()]


@pytest.fixture
def served(ledger: Ledger) -> Iterator[str]:  # noqa: F811
    """The middleware in front of ``echo``, served by waitress on a free loopback port: its base URL."""
    verifier = ledger.verifier()
    listener = socket.create_server(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = DeviceAuthMiddleware(echo, verifier, audience=base)
    sockets: dict[int, Any] = {}
    server = create_server(app, map=sockets, sockets=[listener], threads=1)
    thread = threading.Thread(target=server.run, name="waitress-test", daemon=True)
    thread.start()
    try:
        yield base
    finally:
        cast(Any, server).trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
        thread.join(10)
        server.task_dispatcher.shutdown(timeout=5)
        verifier.close()


def device_client(ledger: Ledger, device: Device, base: str, tmp_path: Path) -> DeviceClient:  # noqa: F811
    """A DeviceClient of ``device`` talking HTTP to ``base`` (it closes its own HTTP client)."""
    wallet = DeviceWallet.create(
        tmp_path / "w", "pw", key=device.actor.key, did=device.did, params=KDF_TESTING
    )
    assert isinstance(wallet, DeviceWallet)
    wallet.store(device.credential)
    return DeviceClient(wallet, base, clock=ledger.clock)


@pytest.mark.parametrize("raw_target", RAW_TARGETS)
def test_a_device_reaches_the_app_behind_waitress_whatever_its_path_looks_like(
    ledger: Ledger,  # noqa: F811
    served: str,
    tmp_path: Path,
    raw_target: str,
) -> None:
    """The device signs the URL as it sends it; waitress's REQUEST_URI gives the verifier the same
    (and the app is still routed on the decoded path)."""
    device = ledger.enrol()
    with device_client(ledger, device, served, tmp_path) as client:
        response = client.signed_request("POST", raw_target, content=b'{"t": 21}')
    assert response.status_code == 200, response.text
    assert response.json() == {"did": device.did, "path": unquote(raw_target.partition("?")[0], "latin-1")}

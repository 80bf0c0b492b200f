"""The Flask extension: ``@auth.device_required`` lets in signed requests of good devices, answers others with problems."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest

from tests.verifier.conftest_ledger import Device, Ledger, ledger  # noqa: F401
from verifier import ConfigurationError, Verifier
from verifier.flask import EXTENSION, DeviceAuth
from wallet.device import DeviceWallet
from wallet.device_client import DeviceClient
from wallet.keystore import KDF_TESTING

BASE = "https://service.example"


@pytest.fixture
def verifier(ledger: Ledger) -> Iterator[Verifier]:  # noqa: F811
    """A verifier trusting the test ledger (no sessions: every request is fully checked)."""
    made = ledger.verifier()
    yield made
    made.close()


def make_app(verifier: Verifier, audience: str = "service.example") -> flask.Flask:
    """A service with one protected view (echoing the device) and one open view."""
    app = flask.Flask(__name__)
    auth = DeviceAuth(verifier=verifier, audience=audience)
    auth.init_app(app)

    @app.post("/readings")
    @auth.device_required
    def readings() -> dict[str, Any]:
        body = flask.request.get_json()
        return {"did": flask.g.device.did, "key_id": flask.g.device.key_id, "body": body}

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


def client_for(ledger: Ledger, device: Device, app: flask.Flask, tmp_path: Path) -> DeviceClient:  # noqa: F811
    """A DeviceClient of ``device`` talking to ``app`` in process."""
    wallet = DeviceWallet.create(
        tmp_path / device.did.rsplit(":", 1)[-1],
        "pw",
        key=device.actor.key,
        did=device.did,
        params=KDF_TESTING,
    )
    assert isinstance(wallet, DeviceWallet)
    wallet.store(device.credential)
    http = httpx.Client(transport=httpx.WSGITransport(app=app))
    return DeviceClient(wallet, BASE, http=http, clock=ledger.clock)


def test_init_app_registers_the_extension(verifier: Verifier) -> None:
    """Both ways of setting up register the extension on the app."""
    app = flask.Flask(__name__)
    auth = DeviceAuth(app, verifier=verifier, audience=BASE)
    assert app.extensions[EXTENSION] is auth


def test_a_good_device_gets_in_with_g_device(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """A request signed by an enrolled device with its credential reaches the view, g.device set."""
    device = ledger.enrol()
    with client_for(ledger, device, make_app(verifier), tmp_path) as client:
        response = client.signed_request("POST", "/readings?sensor=1", json={"t": 21})
    assert response.status_code == 200, response.text
    assert response.json() == {"did": device.did, "key_id": device.actor.method, "body": {"t": 21}}


def test_an_unsigned_request_gets_a_401_problem(verifier: Verifier) -> None:
    """No signature: 401 application/problem+json with type, title, status, detail and reason."""
    with httpx.Client(transport=httpx.WSGITransport(app=make_app(verifier)), base_url=BASE) as http:
        response = http.post("/readings", json={"t": 21})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401 and problem["reason"] == "malformed"
    assert problem["type"].endswith("/malformed") and problem["title"] and problem["detail"]


def test_a_garbled_signature_gets_a_401_problem(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """A signature whose bytes were changed does not verify: 401 bad_signature."""
    device = ledger.enrol()
    client = client_for(ledger, device, make_app(verifier), tmp_path)
    sent: list[httpx.Request] = []

    def garble(request: httpx.Request) -> None:
        label, _, value = request.headers["signature"].partition("=:")
        request.headers["signature"] = f"{label}=:{'A' if value[0] != 'A' else 'B'}{value[1:]}"
        sent.append(request)

    client.http.event_hooks["request"] = [garble]
    with client:
        response = client.signed_request("POST", "/readings", json={"t": 21})
    assert sent
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"


def test_a_revoked_device_gets_a_403_problem(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """Once the issuer revokes the credential, the device is refused with 403 revoked."""
    device = ledger.enrol()
    with client_for(ledger, device, make_app(verifier), tmp_path) as client:
        assert client.signed_request("POST", "/readings", json={"t": 21}).status_code == 200
        ledger.revoke(device)
        verifier.caches["testnet"].catch_up()
        response = client.signed_request("POST", "/readings", json={"t": 22})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "revoked" and response.json()["status"] == 403


def test_the_audience_is_enforced(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """A service for another audience refuses a request made to service.example."""
    device = ledger.enrol()
    with client_for(ledger, device, make_app(verifier, "other.example"), tmp_path) as client:
        response = client.signed_request("POST", "/readings", json={"t": 21})
    assert response.status_code == 401 and response.json()["reason"] == "wrong_audience"


def test_open_views_are_untouched(verifier: Verifier) -> None:
    """Views without the decorator need no signature."""
    with httpx.Client(transport=httpx.WSGITransport(app=make_app(verifier)), base_url=BASE) as http:
        assert http.get("/health").text == "ok"


def test_the_extension_cannot_be_made_without_the_service_s_audience(verifier: Verifier) -> None:
    """No default audience: a service must say which origin it is (else it would take the client's Host)."""
    with pytest.raises(TypeError, match="audience"):
        DeviceAuth(flask.Flask(__name__), verifier=verifier)  # type: ignore[call-arg]


@pytest.mark.parametrize("audience", ["", "https://service.example/readings", "service.example:port"])
def test_an_audience_that_is_no_origin_or_authority_fails_at_set_up(
    verifier: Verifier, audience: str
) -> None:
    """An empty audience, or one with a path or a port that is no number, is a ConfigurationError at once."""
    with pytest.raises(ConfigurationError, match="audience"):
        DeviceAuth(verifier=verifier, audience=audience)

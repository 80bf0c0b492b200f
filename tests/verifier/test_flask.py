"""The Flask extension: ``@auth.device_required`` lets in signed requests of good devices, answers others with problems."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList

from tests.verifier.conftest_ledger import Device, Ledger, ledger  # noqa: F401
from verifier import ConfigurationError, Verifier
from verifier.flask import EXTENSION, DeviceAuth
from wallet.device import DeviceWallet
from wallet.device_client import DeviceClient, encode_device_credential
from wallet.http_signatures import HttpRequest, sign_request
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


def test_a_401_carries_a_www_authenticate_challenge(verifier: Verifier) -> None:
    """RFC 9110 §15.5.2: a 401 names a scheme to authenticate with; the realm is the audience."""
    with httpx.Client(transport=httpx.WSGITransport(app=make_app(verifier)), base_url=BASE) as http:
        response = http.post("/readings", json={"t": 21})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'HttpMessageSignature realm="service.example", keyid-scheme="did"'
    )


def test_a_401_carries_accept_signature_naming_the_signature_required(verifier: Verifier) -> None:
    """RFC 9421 §5.1: label sig1 over @method, @target-uri and content-digest, with created, ed25519."""
    with httpx.Client(transport=httpx.WSGITransport(app=make_app(verifier)), base_url=BASE) as http:
        response = http.post("/readings", json={"t": 21})
    accepted = Dictionary()
    accepted.parse(response.headers["accept-signature"].encode("ascii"))
    assert list(accepted) == ["sig1"]
    requested = accepted["sig1"]
    assert isinstance(requested, InnerList)
    assert [item.value for item in requested] == ["@method", "@target-uri", "content-digest"]
    assert dict(requested.params) == {"created": True, "alg": "ed25519"}


@pytest.mark.parametrize(
    "raw_target",
    ["/users/did:trellis:abc/readings?q=1", "/files/a%2Fb?q=1", "/caf%c3%a9?q=1", "/x/%7Euser?q=1"],
)
def test_a_path_is_checked_as_the_device_sent_it(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
    raw_target: str,
) -> None:
    """Through Werkzeug's test client (REQUEST_URI as given), a signature over the path as written
    verifies, though the view is routed on the decoded path."""
    app = flask.Flask(__name__)
    auth = DeviceAuth(app, verifier=verifier, audience=BASE)

    @app.post("/<path:rest>")
    @auth.device_required
    def anything(rest: str) -> dict[str, Any]:
        return {"did": flask.g.device.did, "rest": rest}

    device = ledger.enrol()
    body = b'{"t": 21}'
    headers = {
        "content-type": "application/json",
        "device-credential": encode_device_credential(device.credential),
    }
    created = int(ledger.clock())
    headers |= sign_request(
        HttpRequest("POST", BASE + raw_target, headers, body),
        key=device.actor.key,
        keyid=device.actor.method,
        created=created,
        expires=created + 60,
        nonce=secrets.token_urlsafe(16),
    )
    response = app.test_client().post(raw_target, base_url=BASE, headers=headers, data=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["did"] == device.did


def test_a_form_read_before_the_check_cannot_replace_the_signed_body(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
) -> None:
    """A before_request function reading the form (a CSRF extension, say) must not leave the digest
    to be checked against an empty body: a request signed over no body, with a form added in
    flight, is refused digest_mismatch, and its view is not reached."""
    device = ledger.enrol()
    app = flask.Flask(__name__)

    @app.before_request
    def read_the_form() -> None:  # registered before the extension, so it would run first
        flask.request.form.to_dict()

    auth = DeviceAuth(app, verifier=verifier, audience="service.example")
    reached: list[dict[str, str]] = []

    @app.post("/readings")
    @auth.device_required
    def readings() -> str:
        reached.append(flask.request.form.to_dict())
        return "in"

    header = encode_device_credential(device.credential)
    signed = HttpRequest("POST", BASE + "/readings", {"device-credential": header}, b"")
    created = int(ledger.clock())
    added = sign_request(
        signed, key=device.actor.key, keyid=f"{device.did}#key-1",
        components=("@method", "@target-uri", "content-digest"), created=created, expires=created + 60,
        nonce=secrets.token_urlsafe(16), alg="ed25519",
    )  # fmt: skip
    answer = app.test_client().post(
        "/readings", base_url=BASE, headers={**signed.headers, **added}, data=b"cmd=unlock",
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert answer.get_json()["reason"] == "digest_mismatch"
    assert reached == []


def test_a_form_parsed_before_the_extension_was_set_up_is_refused(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
) -> None:
    """If the form was parsed before the body could be kept at all (here by the view's own code, before
    it calls authenticate), the check refuses, saying so: it cannot see the bytes the form came from."""
    app = flask.Flask(__name__)
    auth = DeviceAuth(app, verifier=verifier, audience="service.example")

    @app.post("/manual")
    def manual() -> tuple[str, int]:
        _ = flask.request.form
        try:
            auth.authenticate()
        except Exception as exc:  # the refusal
            return f"{getattr(exc, 'reason', '?').value}: {getattr(exc, 'detail', exc)}", 401
        return "in", 200

    answer = app.test_client().post(
        "/manual", base_url=BASE, data=b"cmd=unlock", content_type="application/x-www-form-urlencoded"
    )
    assert (answer.status_code, answer.get_data(as_text=True)) == (
        401,
        "malformed: the request's body was read before the device check",
    )

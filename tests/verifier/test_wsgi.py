"""The WSGI middleware: protected paths need an authenticated device (``environ["trellis.device"]``)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.verifier.conftest_ledger import Device, Ledger, ledger  # noqa: F401
from verifier import ConfigurationError, Reason, Refused, Verifier
from verifier.wsgi import (
    DEVICE_KEY,
    PROBLEM_JSON,
    DeviceAuthMiddleware,
    challenge_headers,
    problem_details,
)
from wallet.device import DeviceWallet
from wallet.device_client import DeviceClient
from wallet.keystore import KDF_TESTING

BASE = "https://service.example"


@pytest.fixture
def verifier(ledger: Ledger) -> Iterator[Verifier]:  # noqa: F811
    """A verifier trusting the test ledger."""
    made = ledger.verifier()
    yield made
    made.close()


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A plain WSGI app answering the device's DID (or null) and the body it could read."""
    device = environ.get(DEVICE_KEY)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length).decode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"did": device.did if device else None, "body": body}).encode()]


def client_for(ledger: Ledger, device: Device, app: Any, tmp_path: Path, base: str = BASE) -> DeviceClient:  # noqa: F811
    """A DeviceClient of ``device`` talking to ``app`` in process, its requests made out to ``base``."""
    wallet = DeviceWallet.create(
        tmp_path / "w", "pw", key=device.actor.key, did=device.did, params=KDF_TESTING
    )
    assert isinstance(wallet, DeviceWallet)
    wallet.store(device.credential)
    return DeviceClient(
        wallet, base, http=httpx.Client(transport=httpx.WSGITransport(app=app)), clock=ledger.clock
    )


def test_a_good_device_reaches_the_app(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """The device is in environ["trellis.device"] and the app can still read the signed body."""
    device = ledger.enrol()
    app = DeviceAuthMiddleware(echo, verifier, audience=BASE, paths=("/api/",))
    with client_for(ledger, device, app, tmp_path) as client:
        response = client.signed_request("POST", "/api/readings?x=1", content=b'{"t": 21}')
    assert response.status_code == 200, response.text
    assert response.json() == {"did": device.did, "body": '{"t": 21}'}


def test_unsigned_requests_to_protected_paths_get_a_401_problem(verifier: Verifier) -> None:
    """No signature under a protected prefix: 401 problem details; other paths pass through."""
    app = DeviceAuthMiddleware(echo, verifier, audience=BASE, paths=("/api/",))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as http:
        refused = http.post("/api/readings", content=b"{}")
        open_path = http.get("/public")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["reason"] == "malformed" and refused.json()["status"] == 401
    assert open_path.status_code == 200 and open_path.json()["did"] is None


def test_a_401_carries_a_www_authenticate_challenge(verifier: Verifier) -> None:
    """RFC 9110 §15.5.2: a 401 names a scheme to authenticate with; the realm is the audience."""
    app = DeviceAuthMiddleware(echo, verifier, audience=BASE)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as http:
        response = http.post("/readings", content=b"{}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'HttpMessageSignature realm="https://service.example", keyid-scheme="did"'
    )


def test_a_401_carries_accept_signature_naming_the_signature_required(verifier: Verifier) -> None:
    """RFC 9421 §5.1: label sig1 over @method, @target-uri and content-digest, with created, ed25519."""
    app = DeviceAuthMiddleware(echo, verifier, audience=BASE)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as http:
        response = http.post("/readings", content=b"{}")
    assert response.headers["accept-signature"] == (
        'sig1=("@method" "@target-uri" "content-digest");created;alg="ed25519"'
    )


def test_a_realm_is_written_as_a_quoted_string() -> None:
    """A quote or backslash in the audience is escaped in the realm (RFC 9110 §5.6.4)."""
    (_, challenge), _ = challenge_headers('a"b\\c.example')
    assert challenge == 'HttpMessageSignature realm="a\\"b\\\\c.example", keyid-scheme="did"'


def test_a_garbled_signature_gets_a_401_problem(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """A signature value that was changed in transit does not verify."""
    device = ledger.enrol()
    client = client_for(ledger, device, DeviceAuthMiddleware(echo, verifier, audience=BASE), tmp_path)

    def garble(request: httpx.Request) -> None:
        label, _, value = request.headers["signature"].partition("=:")
        request.headers["signature"] = f"{label}=:{'A' if value[0] != 'A' else 'B'}{value[1:]}"

    client.http.event_hooks["request"] = [garble]
    with client:
        response = client.signed_request("POST", "/readings", json={"t": 21})
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"


def test_a_revoked_device_gets_a_403_problem(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """After revocation the middleware answers 403 revoked and the app is not called."""
    device = ledger.enrol()
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        return echo(environ, start_response)

    with client_for(ledger, device, DeviceAuthMiddleware(app, verifier, audience=BASE), tmp_path) as client:
        assert client.signed_request("GET", "/readings").status_code == 200
        ledger.revoke(device)
        verifier.caches["testnet"].catch_up()
        response = client.signed_request("GET", "/readings")
    assert response.status_code == 403 and response.json()["reason"] == "revoked"
    assert calls == ["/readings"]


def test_a_403_carries_no_challenge(ledger: Ledger, verifier: Verifier, tmp_path: Path) -> None:  # noqa: F811
    """A device that proved who it is but may not come in is not asked to sign again."""
    device = ledger.enrol()
    ledger.revoke(device)
    with client_for(ledger, device, DeviceAuthMiddleware(echo, verifier, audience=BASE), tmp_path) as client:
        response = client.signed_request("GET", "/readings")
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers and "accept-signature" not in response.headers


def test_problem_details_members() -> None:
    """A refusal becomes an RFC 9457 object: type, title, status, detail, plus reason."""
    problem = problem_details(Refused(Reason.QUARANTINED, "on the quarantine list"))
    assert problem == {
        "type": "https://trellis.dev/problems/quarantined",
        "title": "Quarantined",
        "status": 403,
        "detail": "on the quarantine list",
        "reason": "quarantined",
    }


def test_paths_must_be_a_sequence_of_prefixes(verifier: Verifier) -> None:
    """A single string for paths is a mistake (it would be read as one-character prefixes)."""
    with pytest.raises(TypeError):
        DeviceAuthMiddleware(echo, verifier, audience=BASE, paths="/api/")


def test_the_middleware_cannot_be_made_without_the_service_s_audience(verifier: Verifier) -> None:
    """No default audience: a service must say which origin it is (else it would take the client's Host)."""
    with pytest.raises(TypeError, match="audience"):
        DeviceAuthMiddleware(echo, verifier)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "audience",
    [
        "",
        "https://service.example/",
        "ftp://service.example",
        "a@service.example",
        "service.example\n",
        "service .example",
    ],
)
def test_an_audience_that_is_no_origin_or_authority_fails_at_set_up(
    verifier: Verifier, audience: str
) -> None:
    """An empty audience, or one with a path, another scheme, user info, white space or a control
    character (it is the challenge's realm), is a ConfigurationError at once."""
    with pytest.raises(ConfigurationError, match="audience"):
        DeviceAuthMiddleware(echo, verifier, audience=audience)


def test_a_request_signed_for_another_service_is_refused(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
    tmp_path: Path,
) -> None:
    """A request a device made out to service A (its Host header kept), replayed to service B, is refused
    wrong_audience by B and never reaches B's app."""
    device = ledger.enrol()
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        return echo(environ, start_response)

    service_b = DeviceAuthMiddleware(app, verifier, audience="https://b.example")
    with client_for(ledger, device, service_b, tmp_path, base="https://a.example") as client:
        response = client.signed_request("POST", "/readings", json={"t": 21})
    assert response.status_code == 401 and response.json()["reason"] == "wrong_audience"
    assert calls == []


def _environ(body: bytes, **fields: str) -> dict[str, Any]:
    """A WSGI environ of an https POST of ``body`` to port 443, with ``fields`` (the path, Host...)."""
    return {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_PORT": "443",
        "wsgi.url_scheme": "https", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(), **fields,
    }  # fmt: skip


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    """The status line and body ``app`` answers ``environ`` with."""
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers, *_: statuses.append(status)))
    return statuses[0], body


def test_a_request_with_no_path_is_checked_as_the_root(verifier: Verifier) -> None:
    """A request line's absolute-form target without a path (``POST http://host``) reaches the app
    with an empty PATH_INFO; under the default prefix "/", it is checked like any other."""
    status, body = _call(
        DeviceAuthMiddleware(echo, verifier, audience=BASE),
        _environ(b"cmd=unlock", PATH_INFO="", SERVER_NAME="service.example"),
    )
    assert status.startswith("401"), body
    assert json.loads(body)["reason"] == "malformed"


def test_a_target_naming_another_service_than_its_host_is_refused_not_crashed(verifier: Verifier) -> None:
    """An absolute-form target whose authority is not the Host the app will read gets a 401 problem."""
    status, body = _call(
        DeviceAuthMiddleware(echo, verifier, audience=BASE),
        _environ(
            b"{}",
            PATH_INFO="/readings",
            REQUEST_URI="https://service.example/readings",
            HTTP_HOST="tenant-b.example",
            SERVER_NAME="tenant-b.example",
        ),
    )
    assert status.startswith("401"), body
    assert json.loads(body)["reason"] == "malformed" and "Host" in json.loads(body)["detail"]

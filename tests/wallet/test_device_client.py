"""The device client: signed requests, challenge answers and session requests, checked server-side."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from did_registry.identity.crypto import Ed25519PrivateKey, X25519PrivateKey, X25519PublicKey
from did_registry.identity.did_key import resolve_did_key
from did_registry.identity.multikey import encode_x25519_public_key
from wallet.credential import build_credential, issue_credential
from wallet.device import DeviceWallet
from wallet.device_client import (
    CREDENTIAL_HEADER,
    NONCE_SIZE,
    SIGNATURE_LIFETIME,
    DeviceClient,
    encode_device_credential,
)
from wallet.errors import (
    HttpSignatureError,
    InvalidSharedSecret,
    MalformedSessionOffer,
    NoSession,
    WalletError,
)
from wallet.holder import did_key_identity
from wallet.http_signatures import HttpRequest, SignatureInput, parse_signatures, verify_signature
from wallet.keystore import KDF_TESTING
from wallet.presentation import verify_presentation
from wallet.resolver import did_key_lookup
from wallet.session_keys import session_key

NOW = 1_800_000_000
BASE = "https://svc.example"


class Service:
    """A stand-in for a service behind the verifier: checks each request with the wallet's functions."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.seen: list[tuple[SignatureInput, HttpRequest]] = []
        self.verifier_key = X25519PrivateKey.generate()

    def handle(self, request: httpx.Request) -> httpx.Response:
        message = HttpRequest(request.method, str(request.url), dict(request.headers), request.read())
        try:
            (sig,) = parse_signatures(dict(request.headers))
            key = self.keys.get(sig.keyid or "") or self._key_for(sig)
            verify_signature(message, sig, key)
        except HttpSignatureError as exc:
            return httpx.Response(401, json={"error": exc.check, "detail": exc.detail})
        self.seen.append((sig, message))
        return httpx.Response(200, json={"keyid": sig.keyid})

    def _key_for(self, sig: SignatureInput) -> Any:
        """Resolve a did:key verification method to its authentication key."""
        did = (sig.keyid or "").partition("#")[0]
        return resolve_did_key(did).public_key_for(sig.keyid or "", "authentication")

    def add_session(self, session_id: str, device_did: str) -> dict[str, Any]:
        """Make an offer and keep the session key, found from the device's keyAgreement key."""
        document = resolve_did_key(device_did)
        (agreement,) = document.relationship("keyAgreement")
        device_x25519 = document.key_agreement_key(agreement)
        self.keys[session_id] = session_key(self.verifier_key, device_x25519, session_id)
        return {
            "session_id": session_id,
            "verifier_key": encode_x25519_public_key(self.verifier_key.public_key),
            "expires": NOW + 300,
        }


@pytest.fixture
def device(tmp_path: Path) -> DeviceWallet:
    """A did:key device wallet holding a device credential."""
    wallet = DeviceWallet.create(tmp_path / "device", "pass phrase", params=KDF_TESTING)
    assert isinstance(wallet, DeviceWallet)
    issuer_key = Ed25519PrivateKey.generate()
    issuer, method = did_key_identity(issuer_key)
    credential = build_credential(
        issuer=issuer, subject={"id": wallet.did}, types=["DeviceCredential"], credential_id="urn:x:dc"
    )
    wallet.store(issue_credential(credential, issuer_key, method))
    return wallet


@pytest.fixture
def service() -> Service:
    """An empty service."""
    return Service()


@pytest.fixture
def clock() -> list[float]:
    """A settable clock (one-element list so tests can move time)."""
    return [float(NOW)]


@pytest.fixture
def client(device: DeviceWallet, service: Service, clock: list[float]) -> Iterator[DeviceClient]:
    """A device client whose HTTP goes to the in-test service."""
    http = httpx.Client(transport=httpx.MockTransport(service.handle))
    with DeviceClient(device, BASE, http=http, clock=lambda: clock[0]) as client:
        yield client
    http.close()


def test_signed_request_verifies_against_the_device_did(client: DeviceClient, service: Service) -> None:
    """A JSON POST is signed by the device key; the service resolves its DID URL and verifies it."""
    response = client.signed_request("POST", "/readings?unit=c", json={"t": 21})
    assert response.status_code == 200, response.json()
    assert response.json()["keyid"] == client.wallet.verification_method


def test_signed_request_parameters(client: DeviceClient, service: Service) -> None:
    """The signature covers method, target URI and digest, expires a minute after created, has a nonce."""
    client.signed_request("PUT", "/config", content=b"raw bytes")
    sig, message = service.seen[-1]
    assert sig.components == ("@method", "@target-uri", "content-digest")
    assert (sig.alg, sig.created, sig.expires) == ("ed25519", NOW, NOW + SIGNATURE_LIFETIME)
    assert sig.nonce is not None and len(sig.nonce) == 22 and "=" not in sig.nonce  # base64url of 16 bytes
    assert NONCE_SIZE == 16
    assert message.url == f"{BASE}/config" and message.body == b"raw bytes"


def test_nonces_differ(client: DeviceClient, service: Service) -> None:
    """Every request gets a fresh nonce."""
    for _ in range(3):
        client.signed_request("GET", "/status")
    assert len({sig.nonce for sig, _ in service.seen}) == 3


def _decode(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def test_signed_request_carries_the_device_credential(client: DeviceClient, service: Service) -> None:
    """The wallet's device credential rides in Device-Credential as base64url (no padding) of its JSON."""
    client.signed_request("POST", "/readings", json={"t": 21})
    _, message = service.seen[-1]
    value = message.header(CREDENTIAL_HEADER)
    assert value is not None and "=" not in value
    assert _decode(value) == client.wallet.device_credential()


def test_a_caller_given_credential_header_is_kept(client: DeviceClient, service: Service) -> None:
    """A Device-Credential header passed by the caller is sent as given, not replaced."""
    client.signed_request("GET", "/status", headers={"device-credential": "e30"})
    assert service.seen[-1][1].header(CREDENTIAL_HEADER) == "e30"


def test_session_requests_carry_no_credential(client: DeviceClient, service: Service) -> None:
    """Within a session the credential is not sent again."""
    client.start_session(service.add_session("s-1", client.wallet.did))
    client.session_request("GET", "/status")
    assert service.seen[-1][1].header(CREDENTIAL_HEADER) is None


def test_encode_device_credential_is_canonical_json() -> None:
    """The encoding is of the JCS form: key order does not change it, and it round-trips."""
    one, two = {"b": 1, "a": "é"}, {"a": "é", "b": 1}
    assert encode_device_credential(one) == encode_device_credential(two)
    assert base64.urlsafe_b64decode(encode_device_credential(one) + "==") == '{"a":"é","b":1}'.encode()
    assert _decode(encode_device_credential(one)) == one


def test_get_without_body_is_signed(client: DeviceClient, service: Service) -> None:
    """A GET with no body carries the digest of the empty content and verifies."""
    assert client.signed_request("GET", "/status", headers={"Accept": "application/json"}).status_code == 200


def test_tampered_body_is_refused(device: DeviceWallet, service: Service, clock: list[float]) -> None:
    """A body changed after signing fails the service's digest check."""

    def tamper(request: httpx.Request) -> httpx.Response:
        forged = httpx.Request(request.method, request.url, headers=request.headers, content=b'{"t": 99}')
        return service.handle(forged)

    with httpx.Client(transport=httpx.MockTransport(tamper)) as http:
        response = DeviceClient(device, BASE, http=http, clock=lambda: clock[0]).signed_request(
            "POST", "/readings", json={"t": 21}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "digest_mismatch"


def test_path_must_be_absolute(client: DeviceClient) -> None:
    """A path without a leading slash is refused before anything is sent."""
    with pytest.raises(ValueError, match="path"):
        client.signed_request("GET", "status")


def test_answer_challenge_gives_a_verifiable_presentation(client: DeviceClient) -> None:
    """A challenge as JSON is answered with a presentation bound to its nonce and audience."""
    expires = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    answer = client.answer_challenge({"nonce": "n-7", "audience": BASE, "expires": expires})
    result = verify_presentation(answer, did_key_lookup(), challenge="n-7", domain=BASE)
    assert result.holder == client.wallet.did


def test_signed_request_does_not_follow_a_redirect(device: DeviceWallet) -> None:
    """With a client made to follow redirects, a 307 to another origin is returned, not followed."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(307, headers={"Location": "https://attacker.example/collect"})

    with httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True) as http:
        response = DeviceClient(device, BASE, http=http).signed_request("POST", "/readings", json={"t": 1})
    assert response.status_code == 307
    assert hosts == ["svc.example"]


def test_answer_challenge_accepts_the_base_urls_authority(client: DeviceClient) -> None:
    """A challenge naming the base URL's authority (host[:port]) is answered."""
    expires = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    answer = client.answer_challenge({"nonce": "n-8", "audience": "svc.example", "expires": expires})
    assert answer["proof"]["domain"] == "svc.example"


def test_answer_challenge_refuses_another_services_audience(client: DeviceClient) -> None:
    """A challenge relayed from another service (its audience is not the base URL's) is not signed."""
    expires = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    challenge = {"nonce": "n-9", "audience": "https://honest.example", "expires": expires}
    with pytest.raises(WalletError, match=r"audience 'https://honest\.example'"):
        client.answer_challenge(challenge)


def test_answer_challenge_refuses_an_empty_audience(client: DeviceClient) -> None:
    """A challenge with an empty audience is not signed."""
    expires = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    with pytest.raises(WalletError, match="audience"):
        client.answer_challenge({"nonce": "n-10", "audience": "", "expires": expires})


class TestSessions:
    """Session requests signed with hmac-sha256 under the X25519-derived key."""

    def test_session_request_verifies_with_the_service_side_key(
        self, client: DeviceClient, service: Service
    ) -> None:
        """The device's and the service's session keys agree, so the service verifies the request."""
        client.start_session(service.add_session("sess-1", client.wallet.did))
        response = client.session_request("POST", "/readings", json={"t": 22})
        assert response.status_code == 200, response.json()
        sig, _ = service.seen[-1]
        assert (sig.keyid, sig.alg) == ("sess-1", "hmac-sha256")

    def test_session_offer_with_timestamp_expiry(self, client: DeviceClient, service: Service) -> None:
        """'expires' may be a dateTimeStamp; the signature then never outlives the session."""
        offer = service.add_session("sess-2", client.wallet.did)
        offer["expires"] = datetime.fromtimestamp(NOW + 30, UTC).isoformat().replace("+00:00", "Z")
        client.start_session(offer)
        client.session_request("GET", "/status")
        sig, _ = service.seen[-1]
        assert sig.expires == NOW + 30

    def test_request_without_session_is_refused(self, client: DeviceClient) -> None:
        """session_request before start_session raises NoSession."""
        with pytest.raises(NoSession, match="no session"):
            client.session_request("GET", "/status")

    def test_expired_session_is_refused(
        self, client: DeviceClient, service: Service, clock: list[float]
    ) -> None:
        """After the offer's expiry the client stops signing with the session key."""
        client.start_session(service.add_session("sess-3", client.wallet.did))
        clock[0] = NOW + 301
        with pytest.raises(NoSession, match="expired"):
            client.session_request("GET", "/status")
        assert client.session is None

    def test_wrong_session_key_is_refused_by_the_service(
        self, client: DeviceClient, service: Service
    ) -> None:
        """A session key the service does not share gives a 401 bad_signature."""
        offer = service.add_session("sess-4", client.wallet.did)
        offer["verifier_key"] = encode_x25519_public_key(X25519PrivateKey.generate().public_key)
        client.start_session(offer)
        response = client.session_request("GET", "/status")
        assert response.status_code == 401 and response.json()["error"] == "bad_signature"

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            (lambda o: o.pop("session_id"), "lacks session_id"),
            (lambda o: o.update(session_id=""), "session_id"),
            (lambda o: o.update(verifier_key="not-a-key"), "verifier_key"),
            (
                lambda o: o.update(verifier_key="z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
                "verifier_key",
            ),
            (lambda o: o.update(expires="tomorrow"), "expires"),
            (lambda o: o.update(expires=NOW - 1), "expired"),
        ],
    )
    def test_malformed_offers_are_refused(
        self, client: DeviceClient, service: Service, change: Callable[[dict[str, Any]], object], problem: str
    ) -> None:
        """Offers missing a field or with a field of the wrong form raise MalformedSessionOffer."""
        offer = service.add_session("sess-5", client.wallet.did)
        change(offer)
        with pytest.raises(MalformedSessionOffer, match=problem):
            client.start_session(offer)

    def test_low_order_verifier_key_is_refused(self, client: DeviceClient, service: Service) -> None:
        """A verifier key of low order cannot give a session key."""
        offer = service.add_session("sess-6", client.wallet.did)
        offer["verifier_key"] = encode_x25519_public_key(X25519PublicKey(bytes(32)))
        with pytest.raises(InvalidSharedSecret):
            client.start_session(offer)


def test_offer_must_be_an_object(client: DeviceClient) -> None:
    """A JSON array is not a session offer."""
    with pytest.raises(MalformedSessionOffer, match="JSON object"):
        client.start_session(json.loads("[1]"))


def test_client_made_http_is_closed(device: DeviceWallet) -> None:
    """Without an http client given, DeviceClient makes and closes its own."""
    client = DeviceClient(device, BASE)
    client.close()
    assert client.http.is_closed


def test_a_session_s_key_is_not_in_its_repr() -> None:
    from wallet.device_client import Session

    key = bytes(range(32))
    session = Session("s1", key, 1_700_000_000)
    assert repr(key) not in repr(session) and "s1" in repr(session)

"""The device side of enrolment, against the portal's Enrolment service on a real in-process ledger."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tests.web.test_enrolment import PROFILE, Portal, make_portal
from wallet import enroll as enroll_module
from wallet import enroll_cli as enroll_cli_module
from wallet.device import DeviceWallet
from wallet.enroll import (
    ENROL_PATH,
    EnrollmentError,
    EnrolmentPayload,
    check_enrolment_transaction,
    enroll,
    enrolment_transaction,
    load_payload,
)
from wallet.enroll_cli import device_group
from wallet.keystore import KDF_TESTING, PASSPHRASE_ENV
from web.enrolment_records import EnrolmentResult
from web.organisation import PortalError
from web.qr import qr_png

PASSPHRASE = "device pass phrase"


class PortalRoute:
    """``POST /api/v1/enrol`` as the portal will serve it, in an httpx MockTransport."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.requests: list[dict[str, Any]] = []
        self.fail_next = False
        self.ledger_reads: list[dict[str, str]] = []
        self.tamper: Callable[[EnrolmentResult], EnrolmentResult] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer an enrolment request with the credential, or a problem document."""
        if request.url.host == "node-1":  # the payload's node: the device reads the ledger through it
            self.ledger_reads.append({"path": request.url.path})
            return self.portal.transport.handle_request(request)
        if request.method != "POST" or request.url.path != ENROL_PATH:
            return httpx.Response(404)
        body = json.loads(request.read())
        self.requests.append(body)
        try:
            result = self.portal.enrolment.enrol(body["token"], body["txn"])
        except PortalError as exc:
            problem = {
                "title": type(exc).__name__,
                "status": exc.status,
                "code": exc.code,
                "detail": str(exc),
            }
            return httpx.Response(
                exc.status, json=problem, headers={"Content-Type": "application/problem+json"}
            )
        if self.tamper is not None:
            result = self.tamper(result)
        if self.fail_next:  # the answer is lost on the way back
            self.fail_next = False
            raise httpx.ReadError("connection reset")
        # json.dumps escapes every non-ASCII character, so a tampered answer may carry lone surrogates
        return httpx.Response(
            201,
            content=json.dumps(result.to_json()).encode("ascii"),
            headers={"Content-Type": "application/json"},
        )

    def client(self) -> httpx.Client:
        """An HTTP client whose requests reach this route."""
        return httpx.Client(transport=httpx.MockTransport(self))


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on a real in-process ledger node."""
    yield from make_portal(tmp_path / "instance")


@pytest.fixture
def route(portal: Portal) -> PortalRoute:
    """The portal's enrolment route."""
    return PortalRoute(portal)


def new_payload(portal: Portal) -> EnrolmentPayload:
    """A fresh token's payload."""
    made = portal.enrolment.create_tokens(PROFILE)[0]
    assert made.payload is not None
    return made.payload


def test_enroll_from_payload_text(portal: Portal, route: PortalRoute, tmp_path: Path) -> None:
    """The device's DID is on the ledger and its wallet holds a credential that verifies."""
    wallet = enroll(
        new_payload(portal).encode(),
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    record, _ = portal.client.resolve_record(wallet.did)
    assert record is not None and record["endorser"] == portal.organisation.did
    credential = wallet.device_credential()
    assert portal.verify(credential).subject_ids == (wallet.did,)
    reopened = DeviceWallet.open(tmp_path / "device", PASSPHRASE)
    assert reopened.did == wallet.did and reopened.credentials() == [credential]
    assert route.ledger_reads[0]["path"] == "/genesis"  # the device checked the answer on the ledger


def test_the_request_carries_no_private_key(portal: Portal, route: PortalRoute, tmp_path: Path) -> None:
    """Only the token and the signed transaction leave the device."""
    wallet = enroll(
        new_payload(portal).encode(),
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    (request,) = route.requests
    assert set(request) == {"token", "txn"}
    assert wallet.key.seed.hex() not in json.dumps(request)
    assert check_enrolment_transaction(request["txn"], "testnet").submitter == wallet.did


def test_enroll_from_a_qr_image(portal: Portal, route: PortalRoute, tmp_path: Path) -> None:
    """A photo of the QR code (a PNG file) works as the source."""
    image = tmp_path / "label.png"
    image.write_bytes(qr_png(new_payload(portal).encode()))
    wallet = enroll(
        image,
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    assert [d.did for d in portal.enrolment.devices()] == [wallet.did]


def test_enroll_from_a_payload_file(portal: Portal, route: PortalRoute, tmp_path: Path) -> None:
    """A file holding the payload's JSON works as the source."""
    source = tmp_path / "payload.json"
    source.write_text(new_payload(portal).encode())
    wallet = enroll(
        source,
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    assert wallet.device_credential()["credentialSubject"]["id"] == wallet.did


def test_a_refused_token_raises_with_the_portal_status(
    portal: Portal, route: PortalRoute, tmp_path: Path
) -> None:
    """A used token comes back as EnrollmentError with the portal's status and code; no credential is kept."""
    payload = new_payload(portal)
    enroll(
        payload.encode(),
        tmp_path / "first",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    with pytest.raises(EnrollmentError) as refused:
        enroll(
            payload.encode(),
            tmp_path / "second",
            PASSPHRASE,
            http=route.client(),
            params=KDF_TESTING,
            allow_http=True,  # the test portal's node is http://node-1
            ledger_transport=route.portal.transport,
        )
    assert (refused.value.status, refused.value.code) == (409, "token_used")
    assert DeviceWallet.open(tmp_path / "second", PASSPHRASE).credentials() == []


def test_a_lost_answer_is_retried_with_the_same_key(
    portal: Portal, route: PortalRoute, tmp_path: Path
) -> None:
    """If the portal's answer is lost, the same payload again gets the same credential."""
    route.fail_next = True
    payload = new_payload(portal).encode()
    with pytest.raises(EnrollmentError, match="cannot reach"):
        enroll(
            payload,
            tmp_path / "device",
            PASSPHRASE,
            http=route.client(),
            params=KDF_TESTING,
            allow_http=True,  # the test portal's node is http://node-1
            ledger_transport=route.portal.transport,
        )
    first_did = DeviceWallet.open(tmp_path / "device", PASSPHRASE).did
    wallet = enroll(
        payload,
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    assert wallet.did == first_did
    assert portal.verify(wallet.device_credential()).subject_ids == (first_did,)


def test_an_enrolled_wallet_is_not_enrolled_again(portal: Portal, route: PortalRoute, tmp_path: Path) -> None:
    """A wallet holding a device credential refuses a second enrolment before contacting the portal."""
    enroll(
        new_payload(portal).encode(),
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        ledger_transport=route.portal.transport,
    )
    with pytest.raises(EnrollmentError, match="already enrolled"):
        enroll(
            new_payload(portal).encode(),
            tmp_path / "device",
            PASSPHRASE,
            http=route.client(),
            params=KDF_TESTING,
            allow_http=True,  # the test portal's node is http://node-1
            ledger_transport=route.portal.transport,
        )
    assert len(route.requests) == 1


def route_http(route: PortalRoute, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the HTTP client that :func:`enroll` opens for itself reach ``route``."""
    real = httpx.Client
    monkeypatch.setattr(enroll_module.httpx, "Client", lambda **_: real(transport=httpx.MockTransport(route)))
    # the test portal's node is http://node-1: let the command accept plain http on a made-up host
    monkeypatch.setattr(enroll_cli_module, "enroll", functools.partial(enroll, allow_http=True))


def test_the_cli_enrolls_and_prints_the_did(
    portal: Portal, route: PortalRoute, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``device enroll PAYLOAD --wallet DIR`` enrols and prints the device's DID."""
    route_http(route, monkeypatch)
    image = tmp_path / "label.png"
    image.write_bytes(qr_png(new_payload(portal).encode()))
    result = CliRunner().invoke(
        device_group,
        ["enroll", str(image), "--wallet", str(tmp_path / "device"), "--kdf", "interactive"],
        env={PASSPHRASE_ENV: PASSPHRASE},
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == DeviceWallet.open(tmp_path / "device", PASSPHRASE).did


def test_the_cli_reports_a_refusal(
    portal: Portal, route: PortalRoute, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged token makes the command fail with the portal's reason."""
    route_http(route, monkeypatch)
    forged = EnrolmentPayload(**_forged(portal))
    result = CliRunner().invoke(
        device_group,
        ["enroll", forged.encode(), "--wallet", str(tmp_path / "device"), "--kdf", "interactive"],
        env={PASSPHRASE_ENV: PASSPHRASE},
    )
    assert result.exit_code == 1
    assert "never issued" in result.output


def _forged(portal: Portal) -> dict[str, Any]:
    payload = new_payload(portal)
    return {
        "portal": payload.portal,
        "token": "A" * 43,
        "network": payload.network,
        "genesis": payload.genesis,
        "nodes": payload.nodes,
    }


# -- the payload and the transaction, without a portal -------------------------------------------
def test_payload_round_trips() -> None:
    """encode then decode gives the same payload."""
    payload = EnrolmentPayload("https://p.example", "B" * 43, "net-1", "0" * 64, ("https://n.example",))
    assert EnrolmentPayload.decode(payload.encode()) == payload


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "version"),
        ({"type": "something-else"}, "not a trellis-enrolment"),
        ({"portal": "ftp://p.example"}, "portal"),
        ({"token": "short"}, "token"),
        ({"network": "Bad_Net"}, "network"),
        ({"genesis": "xyz"}, "genesis"),
        ({"nodes": "https://n.example"}, "nodes"),
        ({"portal": "http://[::1"}, "portal"),  # an http prefix, but no URL a client can open
        ({"portal": "http://127.0.0.1:99999"}, "portal"),
        ({"nodes": ["https://n.example", "http://[::1"]}, "nodes"),
        ({"nodes": ["http://"]}, "nodes"),
    ],
)
def test_bad_payloads_are_refused(change: dict[str, Any], message: str) -> None:
    """Each malformed member is named in the error."""
    good = EnrolmentPayload(
        "https://p.example", "B" * 43, "net-1", "0" * 64, ("https://n.example",)
    ).to_json()
    with pytest.raises(EnrollmentError, match=message):
        EnrolmentPayload.from_json({**good, **change})


@given(st.text(max_size=400))
def test_decoding_any_text_raises_only_enrollment_errors(text: str) -> None:
    """Arbitrary text is a payload or an EnrollmentError, nothing else."""
    with contextlib.suppress(EnrollmentError):
        EnrolmentPayload.decode(text)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=6),
        max_leaves=20,
    )
)
def test_checking_any_json_as_a_transaction_raises_only_enrollment_errors(value: object) -> None:
    """The portal's check of a device transaction refuses junk with EnrollmentError only."""
    with pytest.raises(EnrollmentError):
        check_enrolment_transaction(value, "testnet")


def test_a_source_that_is_neither_payload_nor_file_is_refused(tmp_path: Path) -> None:
    """A missing file is named in the error."""
    with pytest.raises(EnrollmentError, match="neither"):
        load_payload(str(tmp_path / "missing.png"))


def test_the_device_transaction_passes_the_portal_check() -> None:
    """What the device builds is exactly what the portal accepts."""
    from did_registry.identity.crypto import Ed25519PrivateKey

    txn = enrolment_transaction("testnet", Ed25519PrivateKey.generate())
    assert check_enrolment_transaction(txn.to_json(), "testnet").id == txn.id
    with pytest.raises(EnrollmentError, match="network"):
        check_enrolment_transaction(txn.to_json(), "othernet")


def test_enrolment_result_answer_shape() -> None:
    """The portal's answer is {did, credential}."""
    from datetime import UTC, datetime

    result = EnrolmentResult("did:trellis:testnet:x", {"id": "urn:x"}, "urn:x", 7, datetime.now(UTC))
    assert result.to_json() == {"did": "did:trellis:testnet:x", "credential": {"id": "urn:x"}}


def _enrol_with_subject_claim(
    portal: Portal, route: PortalRoute, tmp_path: Path, name: str, expected: str
) -> None:
    """Enrol through a portal whose answer's credential gets subject claim ``name`` set after it
    was signed: ``expected`` EnrollmentError, and the wallet keeps nothing."""

    def altered(result: EnrolmentResult) -> EnrolmentResult:
        credential = json.loads(json.dumps(result.credential))
        credential["credentialSubject"][name] = "TH-9000"
        return EnrolmentResult(
            result.did, credential, result.credential_id, result.status_index, result.enrolled
        )

    route.tamper = altered
    with pytest.raises(EnrollmentError, match=expected):
        enroll(
            new_payload(portal).encode(),
            tmp_path / "device",
            PASSPHRASE,
            http=route.client(),
            params=KDF_TESTING,
            allow_http=True,  # the test portal's node is http://node-1
            ledger_transport=route.portal.transport,
        )
    assert DeviceWallet.open(tmp_path / "device", PASSPHRASE).credentials() == []


def test_a_credential_that_does_not_verify_is_not_kept(
    portal: Portal, route: PortalRoute, tmp_path: Path
) -> None:
    """An answer whose credential was altered fails the ledger check; the wallet keeps nothing."""
    _enrol_with_subject_claim(portal, route, tmp_path, "model", "does not verify")


def test_a_credential_with_a_lone_surrogate_claim_name_is_not_kept(
    portal: Portal, route: PortalRoute, tmp_path: Path
) -> None:
    """An answer whose credential names a claim ``"\\ud800"`` is an EnrollmentError; nothing is kept."""
    _enrol_with_subject_claim(portal, route, tmp_path, "\ud800", "does not verify: malformed")


def test_a_payload_with_another_genesis_is_not_trusted(
    portal: Portal, route: PortalRoute, tmp_path: Path
) -> None:
    """If no node serves the genesis the payload names, the answer is not trusted."""
    payload = new_payload(portal)
    wrong = EnrolmentPayload(payload.portal, payload.token, payload.network, "ab" * 32, payload.nodes)
    with pytest.raises(EnrollmentError, match="genesis"):
        enroll(
            wrong.encode(),
            tmp_path / "device",
            PASSPHRASE,
            http=route.client(),
            params=KDF_TESTING,
            allow_http=True,  # the test portal's node is http://node-1
            ledger_transport=route.portal.transport,
        )
    assert DeviceWallet.open(tmp_path / "device", PASSPHRASE).credentials() == []


def test_verification_can_be_left_to_later(portal: Portal, route: PortalRoute, tmp_path: Path) -> None:
    """With verify=False the device keeps the credential without reading the ledger."""
    wallet = enroll(
        new_payload(portal).encode(),
        tmp_path / "device",
        PASSPHRASE,
        http=route.client(),
        params=KDF_TESTING,
        allow_http=True,  # the test portal's node is http://node-1
        verify=False,
    )
    assert [r["path"] for r in route.ledger_reads] == []
    assert wallet.device_credential()["credentialSubject"]["id"] == wallet.did

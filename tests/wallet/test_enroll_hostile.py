"""Enrolment against hostile portals and nodes, and the payload's own checks (mock transports only)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from wallet import enroll as enroll_module
from wallet.enroll import MAX_ANSWER_BYTES, EnrollmentError, EnrolmentPayload, enroll, load_payload
from wallet.enroll_cli import device_group
from wallet.keystore import KDF_TESTING, PASSPHRASE_ENV

PASSPHRASE = "device pass phrase"
TOKEN = "S3cr3tT0ken" + "A" * 32
DEEP = b"[" * 200_000 + b"]" * 200_000
CREDENTIAL = {
    "@context": ["https://www.w3.org/ns/credentials/v2"],
    "type": ["VerifiableCredential"],
    "issuer": "did:key:x",
    "credentialSubject": {"id": "did:x"},
}
PAYLOAD = EnrolmentPayload(
    "https://portal.test", TOKEN, "net", "ab" * 32, ("https://node-1.test", "https://node-2.test")
)

Handler = Callable[[httpx.Request], httpx.Response]


def _enroll(handler: Handler, tmp_path: Path, *, verify: bool = False, timeout: float = 60.0) -> None:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        enroll(
            PAYLOAD.encode(),
            tmp_path / "device",
            PASSPHRASE,
            http=http,
            params=KDF_TESTING,
            verify=verify,
            timeout=timeout,
        )


def _payload_json(**change: Any) -> dict[str, Any]:
    return {**PAYLOAD.to_json(), **change}


# -- answers too slow or too big ----------------------------------------------------------------
def test_a_portal_trickling_its_answer_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    """A portal sending a byte every 0.1 s is given up on once the exchange's time is up."""

    def trickle() -> Iterator[bytes]:
        for _ in range(50):  # 5 s at most, so that a client without a deadline ends too
            time.sleep(0.1)
            yield b" "

    started = time.monotonic()
    with pytest.raises(EnrollmentError, match="did not answer in time"):
        _enroll(lambda _: httpx.Response(201, content=trickle()), tmp_path, timeout=0.5)
    assert time.monotonic() - started < 3


def test_a_long_portal_answer_is_cut_at_the_cap(tmp_path: Path) -> None:
    """An answer without Content-Length longer than MAX_ANSWER_BYTES is refused as soon as it is over."""
    sent = [0]

    def endless() -> Iterator[bytes]:
        while sent[0] < 8 * MAX_ANSWER_BYTES:  # bounded, so that a client without a cap ends too
            sent[0] += 65536
            yield b" " * 65536

    with pytest.raises(EnrollmentError, match="more than the"):
        _enroll(lambda _: httpx.Response(201, content=endless()), tmp_path)
    assert sent[0] <= MAX_ANSWER_BYTES + 65536


def test_a_declared_oversized_answer_is_refused_unread(tmp_path: Path) -> None:
    """An answer whose Content-Length is over the cap is refused before its body is read."""
    read = [False]

    def body() -> Iterator[bytes]:
        read[0] = True
        yield b"{}"

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Content-Length": str(600 << 20)}, content=body())

    with pytest.raises(EnrollmentError, match="more than the"):
        _enroll(handler, tmp_path)
    assert not read[0]


# -- deeply nested JSON -------------------------------------------------------------------------
def test_a_deeply_nested_portal_answer_is_an_enrollment_error(tmp_path: Path) -> None:
    """A success answer nested too deeply to parse raises EnrollmentError, not RecursionError."""
    with pytest.raises(EnrollmentError, match="no usable credential"):
        _enroll(lambda _: httpx.Response(201, content=DEEP), tmp_path)


def test_a_deeply_nested_refusal_is_an_enrollment_error(tmp_path: Path) -> None:
    """A refusal nested too deeply to parse raises EnrollmentError with the portal's status."""
    with pytest.raises(EnrollmentError, match="refused") as refused:
        _enroll(lambda _: httpx.Response(400, content=DEEP), tmp_path)
    assert refused.value.status == 400


def test_a_node_answering_nested_json_is_passed_over(tmp_path: Path) -> None:
    """A first node answering deeply nested JSON for /genesis does not stop the next from being asked."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if request.url.host == "portal.test":
            return httpx.Response(201, json={"credential": CREDENTIAL})
        if request.url.host == "node-1.test":
            return httpx.Response(200, content=DEEP)
        return httpx.Response(503)

    with pytest.raises(EnrollmentError, match="no node served the genesis"):
        _enroll(handler, tmp_path, verify=True)
    assert asked == ["portal.test", "node-1.test", "node-2.test"]


def test_the_cli_reports_a_deeply_nested_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``device enroll`` against a portal answering nested JSON exits 1 with an error line."""
    real = httpx.Client

    def client(**_: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(lambda _: httpx.Response(201, content=DEEP)))

    monkeypatch.setattr(enroll_module.httpx, "Client", client)
    result = CliRunner().invoke(
        device_group,
        ["enroll", PAYLOAD.encode(), "--wallet", str(tmp_path / "device"), "--kdf", "interactive"],
        env={PASSPHRASE_ENV: PASSPHRASE},
    )
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert result.output.startswith("error: ")


# -- the payload --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"portal": "http://portal.example"},
        {"nodes": ["https://n.example", "http://node.example"]},
    ],
)
def test_plain_http_on_another_host_is_refused(change: dict[str, Any]) -> None:
    """A plain-http portal or node that is not on loopback is refused by default."""
    with pytest.raises(EnrollmentError, match="https"):
        EnrolmentPayload.from_json(_payload_json(**change))


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.8.9.1", "http://localhost:8000", "http://[::1]:8000"]
)
def test_plain_http_on_loopback_is_accepted(url: str) -> None:
    """The demo portal (http://127.0.0.1:8000) and other loopback hosts may use plain http."""
    payload = EnrolmentPayload.from_json(_payload_json(portal=url, nodes=[url]))
    assert payload.portal == url


def test_plain_http_on_any_host_is_accepted_when_allowed() -> None:
    """allow_http (for tests with made-up hosts) accepts plain http anywhere."""
    data = _payload_json(portal="http://portal.test", nodes=["http://node-1"])
    assert EnrolmentPayload.from_json(data, allow_http=True).nodes == ("http://node-1",)


def test_an_empty_node_list_is_refused() -> None:
    """A payload must name at least one node to check the portal's answer against."""
    with pytest.raises(EnrollmentError, match="non-empty"):
        EnrolmentPayload.from_json(_payload_json(nodes=[]))


@pytest.mark.parametrize(
    "portal",
    [
        "https://user:pw@portal.example",
        "https://portal.example/?next=https://evil.example",
        "https://portal.example/#x",
        "https://portal.example/?",
    ],
)
def test_a_portal_url_with_user_info_query_or_fragment_is_refused(portal: str) -> None:
    """A portal URL whose user info, query or fragment would change where the token goes is refused."""
    with pytest.raises(EnrollmentError, match="portal"):
        EnrolmentPayload.from_json(_payload_json(portal=portal))


def test_a_payload_with_a_byte_order_mark_is_read() -> None:
    """Payload text preceded by a BOM (as some QR apps give it) is the payload, not a file name."""
    assert load_payload("\ufeff" + PAYLOAD.encode()) == PAYLOAD


def test_a_payload_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """A payload file written with a UTF-8 BOM is read as the payload."""
    source = tmp_path / "payload.json"
    source.write_bytes(b"\xef\xbb\xbf" + PAYLOAD.encode().encode())
    assert load_payload(source) == PAYLOAD


def test_text_that_is_no_payload_is_not_repeated_in_the_error() -> None:
    """Text too long to be a file name is refused without the token in the message."""
    with pytest.raises(EnrollmentError, match="neither") as refused:
        load_payload("x" + PAYLOAD.encode() * 2)
    assert TOKEN not in str(refused.value)

"""RFC 9421 signed requests from devices, and the sessions that follow one full check."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from did_registry.identity.multikey import decode_x25519_public_key
from tests.verifier.conftest_ledger import Device, Ledger, ledger  # noqa: F401
from verifier import MemorySessionStore, Reason, Refused, Verifier, _signed
from verifier._signed import CREDENTIAL_HEADER, encode_credential_header
from wallet.http_signatures import HttpRequest, sign_request
from wallet.session_keys import session_key

URL = "https://service.example/readings?sensor=1"
AUDIENCE = "service.example"


@pytest.fixture
def verifier(ledger: Ledger) -> Iterator[Verifier]:  # noqa: F811
    """A verifier with sessions in memory."""
    made = ledger.verifier(sessions=MemorySessionStore(clock=ledger.clock))
    yield made
    made.close()


def signed(
    ledger: Ledger,  # noqa: F811
    device: Device,
    *,
    body: bytes = b'{"temperature": 21.5}',
    components: tuple[str, ...] = ("@method", "@target-uri", "content-digest"),
    created_offset: float = 0,
    nonce: str | None = "fresh",
    key: Any = None,
    keyid: str | None = None,
    alg: str = "ed25519",
    credential: bool = True,
    url: str = URL,
) -> HttpRequest:
    """A POST by ``device``, signed as asked, with its credential attached."""
    headers = {"content-type": "application/json"}
    if credential:
        headers[CREDENTIAL_HEADER] = encode_credential_header(device.credential)
    request = HttpRequest("POST", url, headers, body)
    created = int(ledger.clock() + created_offset)
    added = sign_request(
        request,
        key=key if key is not None else device.actor.key,
        keyid=keyid or device.actor.method,
        components=components,
        created=created,
        expires=created + 60,
        nonce=secrets.token_urlsafe(16) if nonce == "fresh" else nonce,
        alg=alg,
    )
    return HttpRequest("POST", url, {**request.headers, **added}, body)


def refusal(verifier: Verifier, request: HttpRequest, audience: str | None = AUDIENCE) -> Reason:
    """The reason ``request`` is refused for."""
    with pytest.raises(Refused) as refused:
        verifier.authenticate_request(request, audience)
    return refused.value.reason


def test_a_signed_request_is_accepted_with_a_session_offer(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A request signed by the device's authentication key, with its credential, is let in and offered a session."""
    device = ledger.enrol()
    result = verifier.authenticate_request(signed(ledger, device), AUDIENCE)
    assert result.did == device.did and result.key_id == device.actor.method
    assert result.credential is not None and result.credential.issuer == ledger.issuer.did
    assert result.session is not None and set(result.session) == {"session_id", "verifier_key", "expires"}
    assert verifier.sessions is not None and verifier.sessions.count() == 1


def test_a_replayed_request_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """The same signed request twice: the nonce was used."""
    request = signed(ledger, ledger.enrol())
    verifier.authenticate_request(request, AUDIENCE)
    assert refusal(verifier, request) is Reason.REPLAYED


def test_old_and_future_signatures_are_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """created beyond the maximum age, or in the future beyond the skew, is refused."""
    device = ledger.enrol()
    policy = verifier.policy
    too_old = signed(ledger, device, created_offset=-(policy.signature_max_age + policy.clock_skew + 5))
    assert refusal(verifier, too_old) is Reason.SIGNATURE_EXPIRED
    future = signed(ledger, device, created_offset=policy.clock_skew + 5)
    assert refusal(verifier, future) is Reason.SIGNATURE_EXPIRED


def test_a_signature_without_a_nonce_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A nonce is required, so each request is single-use."""
    assert refusal(verifier, signed(ledger, ledger.enrol(), nonce=None)) is Reason.MALFORMED


def test_uncovered_components_are_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A signature that does not cover the body's digest (or the target) is malformed for this verifier."""
    device = ledger.enrol()
    no_digest = signed(ledger, device, components=("@method", "@target-uri"))
    assert refusal(verifier, no_digest) is Reason.MALFORMED
    no_target = signed(ledger, device, components=("@method", "content-digest"))
    assert refusal(verifier, no_target) is Reason.MALFORMED


def with_proxy_signature(
    ledger: Ledger,  # noqa: F811
    request: HttpRequest,
    *,
    first: bool = True,
    components: tuple[str, ...] = ("@method", "@authority"),
    keyid: str = "gateway-key",
) -> HttpRequest:
    """``request`` (signed ``sig1``) with a gateway's signature ``proxy`` added (RFC 9421 §4.3), its
    members listed before the device's or after."""
    from did_registry.identity.crypto import Ed25519PrivateKey

    added = sign_request(
        request,
        key=Ed25519PrivateKey.generate(),
        keyid=keyid,
        label="proxy",
        components=components,
        created=int(ledger.clock()),
        nonce="gateway-nonce",
    )
    headers = dict(request.headers)
    for name in ("signature-input", "signature"):
        ours, theirs = headers[name], added[name.title()]
        headers[name] = f"{theirs}, {ours}" if first else f"{ours}, {theirs}"
    return HttpRequest(request.method, request.url, headers, request.body)


def test_a_device_signature_after_a_proxy_s_is_the_one_checked(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """RFC 9421 §4.3: a gateway's signature listed first, which does not cover what the verifier
    requires, is passed over for the device's."""
    device = ledger.enrol()
    request = with_proxy_signature(ledger, signed(ledger, device))
    assert verifier.authenticate_request(request, AUDIENCE).did == device.did


def test_a_device_signature_before_a_proxy_s_is_the_one_checked(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """The gateway's signature listed after the device's is ignored as well."""
    device = ledger.enrol()
    request = with_proxy_signature(ledger, signed(ledger, device), first=False)
    assert verifier.authenticate_request(request, AUDIENCE).did == device.did


def test_the_first_signature_meeting_the_policy_is_the_one_checked(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
) -> None:
    """A gateway's signature that covers the required components and has a keyid, listed first, is
    the one checked (here: no session has that id), not the device's after it."""
    device = ledger.enrol()
    request = with_proxy_signature(
        ledger, signed(ledger, device), components=("@method", "@target-uri", "content-digest")
    )
    assert refusal(verifier, request) is Reason.SESSION_UNKNOWN


def test_no_signature_meeting_the_policy_is_malformed_naming_what_each_lacks(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
) -> None:
    """Neither signature covers the body's digest: refused malformed, each label with what it lacks."""
    device = ledger.enrol()
    request = with_proxy_signature(ledger, signed(ledger, device, components=("@method", "@target-uri")))
    with pytest.raises(Refused) as refused:
        verifier.authenticate_request(request, AUDIENCE)
    assert refused.value.reason is Reason.MALFORMED
    assert refused.value.detail == (
        "no signature meets the policy: signature 'proxy' does not cover @target-uri, content-digest; "
        "signature 'sig1' does not cover content-digest"
    )


def test_prefetching_names_the_device_of_the_signature_checked(ledger: Ledger) -> None:  # noqa: F811
    """dids_in reads the DID of the signature that would be checked, not the first listed."""
    device = ledger.enrol()
    request = with_proxy_signature(ledger, signed(ledger, device), keyid="did:trellis:testnet:gateway#k")
    assert _signed.dids_in([request])[0] == device.did


def test_a_changed_body_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A body that does not match the signed Content-Digest is refused."""
    request = signed(ledger, ledger.enrol())
    tampered = HttpRequest(request.method, request.url, request.headers, b'{"temperature": 99}')
    assert refusal(verifier, tampered) is Reason.DIGEST_MISMATCH


def test_a_wrong_key_or_target_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """Another key under the device's keyid fails; a keyid outside authentication is not authorized."""
    from did_registry.identity.crypto import Ed25519PrivateKey

    device = ledger.enrol()
    forged = signed(ledger, device, key=Ed25519PrivateKey.generate())
    assert refusal(verifier, forged) is Reason.BAD_SIGNATURE
    agreement = signed(ledger, device, keyid=f"{device.did}#key-agreement-1")
    assert refusal(verifier, agreement) is Reason.KEY_NOT_AUTHORIZED
    assert refusal(verifier, signed(ledger, device), "other.example") is Reason.WRONG_AUDIENCE


def test_a_request_without_a_credential_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """Without a Device-Credential header (or one given by the caller) the device is refused."""
    device = ledger.enrol()
    request = signed(ledger, device, credential=False)
    assert refusal(verifier, request) is Reason.CREDENTIAL_MISSING
    assert verifier.authenticate_request(
        signed(ledger, device, credential=False), AUDIENCE, credential=device.credential
    )


def test_an_unsigned_request_is_malformed(verifier: Verifier) -> None:
    """A request with no signature headers is refused as malformed."""
    assert refusal(verifier, HttpRequest("GET", URL, {}, b"")) is Reason.MALFORMED


def _session_request(ledger: Ledger, device: Device, offer: Any, **options: Any) -> HttpRequest:  # noqa: F811
    key = session_key(
        device.actor.key.to_x25519(), decode_x25519_public_key(offer["verifier_key"]), offer["session_id"]
    )
    return signed(ledger, device, key=key, keyid=offer["session_id"], alg="hmac-sha256", **options)


def test_a_session_request_costs_a_mac(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """After a full check the device's hmac-sha256 requests under the session key are let in."""
    device = ledger.enrol()
    offer = verifier.authenticate_request(signed(ledger, device), AUDIENCE).session
    result = verifier.authenticate_request(
        _session_request(ledger, device, offer, credential=False), AUDIENCE
    )
    assert result.did == device.did and result.credential is None
    request = _session_request(ledger, device, offer, credential=False)
    bad = HttpRequest(request.method, request.url, request.headers, b"changed")
    assert refusal(verifier, bad) is Reason.DIGEST_MISMATCH


def test_an_unknown_or_expired_session_is_refused(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A made-up session id is unknown; after the session TTL the session is over."""
    device = ledger.enrol()
    fake = {
        "session_id": "bm90LWEtc2Vzc2lvbg",
        "verifier_key": "z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
    }
    offer = verifier.authenticate_request(signed(ledger, device), AUDIENCE).session
    assert offer is not None
    fake["verifier_key"] = offer["verifier_key"]
    assert refusal(verifier, _session_request(ledger, device, fake)) is Reason.SESSION_UNKNOWN
    ledger.clock.advance(verifier.policy.session_ttl + 1)
    late = _session_request(ledger, device, offer)
    assert refusal(verifier, late) is Reason.SESSION_EXPIRED


@pytest.mark.parametrize("change", ["revoke", "suspend", "quarantine", "deactivate", "rotate"])
def test_a_session_ends_when_the_device_changes(ledger: Ledger, verifier: Verifier, change: str) -> None:  # noqa: F811
    """Revocation, suspension, quarantine, deactivation or a key rotation ends the device's sessions."""
    device, bystander = ledger.enrol(), ledger.enrol()
    offer = verifier.authenticate_request(signed(ledger, device), AUDIENCE).session
    other = verifier.authenticate_request(signed(ledger, bystander), AUDIENCE).session
    trustee = ledger.node.trustee
    if change == "revoke":
        ledger.revoke(device)
    elif change == "suspend":
        ledger.revoke(device, "sus-1")
    elif change == "quarantine":
        ledger.commit(trustee.txn("role.grant", {"did": trustee.did, "role": "reporter"}))
        evidence = {"hash": "cd" * 32, "description": "flooding"}
        ledger.commit(trustee.txn("quarantine.report", {"did": device.did, "evidence": evidence}))
    elif change == "deactivate":
        ledger.commit(device.actor.txn("did.deactivate", {}))
    else:
        from did_registry.identity.crypto import Ed25519PrivateKey
        from did_registry.identity.did_document_builder import DIDDocumentBuilder

        builder = DIDDocumentBuilder(device.did)
        builder.add_verification_method(
            Ed25519PrivateKey.generate().public_key,
            fragment="key-2",
            relationships=("authentication", "capabilityInvocation"),
        )
        ledger.commit(device.actor.txn("did.update", {"document": builder.build().to_json()}))
    verifier.caches["testnet"].catch_up()
    assert refusal(verifier, _session_request(ledger, device, offer)) is Reason.SESSION_ENDED
    assert (
        verifier.authenticate_request(_session_request(ledger, bystander, other), AUDIENCE).did
        == bystander.did
    )


def test_a_session_is_ended_even_if_the_block_was_missed(ledger: Ledger, verifier: Verifier) -> None:  # noqa: F811
    """A session request re-checks the device's cached record: a deactivated DID gets session_ended."""
    device = ledger.enrol()
    offer = verifier.authenticate_request(signed(ledger, device), AUDIENCE).session
    cache = verifier.caches["testnet"]
    cache.listeners.clear()  # as if this process had not been told
    ledger.commit(device.actor.txn("did.deactivate", {}))
    cache.catch_up()
    assert refusal(verifier, _session_request(ledger, device, offer)) is Reason.SESSION_ENDED
    assert refusal(verifier, _session_request(ledger, device, offer)) is Reason.SESSION_ENDED
    assert verifier.sessions is not None and verifier.sessions.count() == 0


def test_a_device_wallet_and_client_work_with_the_verifier(
    ledger: Ledger,  # noqa: F811
    verifier: Verifier,
    tmp_path: Any,
) -> None:
    """The wallet's DeviceWallet answers challenges and its DeviceClient signs requests and sessions the verifier accepts."""
    import httpx

    from wallet.device import Challenge, DeviceWallet
    from wallet.device_client import DeviceClient
    from wallet.keystore import KDF_TESTING

    device = ledger.enrol()
    wallet = DeviceWallet.create(
        tmp_path / "w", "pw", key=device.actor.key, did=device.did, params=KDF_TESTING
    )
    assert isinstance(wallet, DeviceWallet)
    wallet.store(device.credential)
    answer = wallet.answer(Challenge.from_json(verifier.challenge(AUDIENCE)))
    assert verifier.authenticate_presentation(answer, AUDIENCE).did == device.did

    def service(request: httpx.Request) -> httpx.Response:
        message = HttpRequest(request.method, str(request.url), dict(request.headers), request.read())
        try:
            result = verifier.authenticate_request(message, AUDIENCE)
        except Refused as refused:
            return httpx.Response(refused.status, json={"reason": refused.reason.value})
        return httpx.Response(200, json={"did": result.did, "session": result.session})

    http = httpx.Client(transport=httpx.MockTransport(service))
    client = DeviceClient(wallet, "https://service.example", http=http, clock=ledger.clock)
    first = client.signed_request(
        "POST",
        "/readings",
        json={"t": 21},
        headers={CREDENTIAL_HEADER: encode_credential_header(device.credential)},
    )
    assert first.status_code == 200, first.json()
    client.start_session(first.json()["session"])
    second = client.session_request("POST", "/readings", json={"t": 22})
    assert second.status_code == 200 and second.json()["did"] == device.did
    ledger.revoke(device)
    verifier.caches["testnet"].catch_up()
    third = client.session_request("POST", "/readings", json={"t": 23})
    assert third.status_code == 401 and third.json()["reason"] == "session_ended"


@contextmanager
def _two_processes(ledger: Ledger, redis_prefix: tuple[str, str]) -> Iterator[tuple[Verifier, Verifier]]:  # noqa: F811
    """Two verifiers (as two service processes would be) sharing nonces and sessions in one Redis."""
    from verifier import RedisNonceStore, RedisSessionStore

    url, prefix = redis_prefix
    one, two = (
        ledger.verifier(
            nonces=RedisNonceStore(url, prefix=prefix), sessions=RedisSessionStore(url, prefix=prefix)
        )
        for _ in range(2)
    )
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def test_two_processes_share_replay_and_sessions_through_redis(
    ledger: Ledger,  # noqa: F811
    redis_prefix: tuple[str, str],
) -> None:
    """Verifiers sharing Redis stores: a nonce used at one is replayed at the other; sessions work at both."""
    with _two_processes(ledger, redis_prefix) as (one, two):
        device = ledger.enrol()
        request = signed(ledger, device)
        offer = one.authenticate_request(request, AUDIENCE).session
        assert refusal(two, request) is Reason.REPLAYED
        assert two.authenticate_request(_session_request(ledger, device, offer), AUDIENCE).did == device.did
        challenge = one.challenge(AUDIENCE)
        assert two.authenticate_presentation(ledger.present(device, challenge), AUDIENCE)
        ledger.revoke(device)
        one.caches["testnet"].catch_up()  # the process that opened the session sees the block
        assert refusal(two, _session_request(ledger, device, offer)) is Reason.SESSION_ENDED


def test_revocation_ends_a_session_at_a_process_that_did_not_open_it(
    ledger: Ledger,  # noqa: F811
    redis_prefix: tuple[str, str],
) -> None:
    """The session carries its credential's status entries: any process checks them in its own cache."""
    with _two_processes(ledger, redis_prefix) as (one, two):
        device = ledger.enrol()
        offer = one.authenticate_request(signed(ledger, device), AUDIENCE).session
        assert two.authenticate_request(_session_request(ledger, device, offer), AUDIENCE).did == device.did
        ledger.revoke(device)
        two.caches["testnet"].catch_up()  # only the other process has seen the block
        assert refusal(two, _session_request(ledger, device, offer)) is Reason.SESSION_ENDED

"""The fast request path lets in and refuses exactly what the general path does, and forgets what changed."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from tests.verifier.conftest import FakeClock
from verifier import Reason, Refused, Verifier, _fast, _signed
from verifier._checks import AuthenticatedDevice
from verifier.testing import StaticLedger
from wallet.credential import build_credential, issue_credential
from wallet.device_client import CREDENTIAL_HEADER, encode_device_credential
from wallet.http_signatures import HttpRequest, fast_signature_base, sign_request

URL = "https://service.example/readings"
LIST = "devices"
COMPONENTS = ("@method", "@target-uri", "content-digest")


@dataclass
class World:
    """A static ledger with an accredited issuer, two enrolled devices, and session-less verifiers."""

    ledger: StaticLedger
    clock: FakeClock
    issuer: str
    keys: list[Ed25519PrivateKey]
    dids: list[str]
    headers: list[str]
    fast: Verifier
    general: Verifier


def _world() -> World:
    clock = FakeClock(datetime.now(UTC).timestamp())
    ledger = StaticLedger("testnet")
    issuer_key = Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    url = ledger.create_status_list(issuer, LIST)
    keys, dids, headers = [], [], []
    now = datetime.fromtimestamp(clock(), UTC)
    for index in range(2):
        key = Ed25519PrivateKey.generate()
        did = ledger.add_device(key)
        entry = {"id": f"{url}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
                 "statusListIndex": str(index), "statusListCredential": url}  # fmt: skip
        document = build_credential(
            issuer=issuer, subject={"id": did}, types=["DeviceCredential"],
            valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(hours=1), status=entry,
        )  # fmt: skip
        keys.append(key)
        dids.append(did)
        headers.append(encode_device_credential(issue_credential(document, issuer_key, f"{issuer}#key-1")))
    return World(
        ledger, clock, issuer, keys, dids, headers, ledger.verifier(clock=clock), ledger.verifier(clock=clock)
    )


@pytest.fixture
def world() -> Iterator[World]:
    """A fresh world per test."""
    made = _world()
    yield made
    made.fast.close()
    made.general.close()


def signed(world: World, device: int = 0, **options: Any) -> HttpRequest:
    """A fresh POST signed by ``device`` carrying its credential; ``options`` as :func:`sign_request`'s."""
    body = b'{"celsius": 21.5}'
    base = HttpRequest(
        "POST", URL, {"content-type": "application/json", CREDENTIAL_HEADER: world.headers[device]}, body
    )
    created = int(world.clock())
    settings_: dict[str, Any] = {
        "key": world.keys[device], "keyid": f"{world.dids[device]}#key-1", "components": COMPONENTS,
        "created": created, "expires": created + 60, "nonce": secrets.token_urlsafe(16),
    }  # fmt: skip
    settings_.update(options)
    added = sign_request(base, **settings_)
    return HttpRequest("POST", URL, {**base.headers, **added}, body)


def outcome(verifier: Verifier, request: HttpRequest, audience: str | None, fast: bool) -> object:
    """What the fast or the general path makes of ``request``: the device, or the refusal's reason,
    text and DID, and whether that DID is proven."""
    run = _fast.authenticate_request if fast else _signed.authenticate_request
    try:
        device = run(verifier, request, audience, None)
    except Refused as refused:
        return refused.reason, refused.detail, refused.did, refused.authenticated
    assert isinstance(device, AuthenticatedDevice)
    return device


def mostly(good: object, *bad: object) -> st.SearchStrategy[Any]:
    """``good`` most of the time (so that many requests get through), else one of ``bad``."""
    return st.sampled_from([good] * (3 * len(bad) + 1) + list(bad))


VARIANTS = st.fixed_dictionaries(
    {
        "device": st.sampled_from([0, 1]),
        "signer": mostly("own", "other", "hmac"),
        "keyid": mostly("own", "unknown-fragment", "other-device", "not-a-did", "empty-ish"),
        "created": mostly(0, -250, -400, 100, 400),
        "lifetime": mostly(60, None, -100),
        "nonce": mostly("fresh", None, ""),
        "alg": st.sampled_from([None, "ed25519", "ed25519", "hmac-sha256"]),
        "components": mostly(
            COMPONENTS,
            COMPONENTS[::-1],
            COMPONENTS[:2],
            (*COMPONENTS, "content-type"),
            ("@authority", *COMPONENTS),
        ),
        "body": mostly(None, b"changed"),
        "credential": mostly("own", "other", "none", "garbage"),
        "audience": st.sampled_from(
            [None, "service.example", "https://service.example", "elsewhere.example"]
        ),
        "replay": st.booleans(),
        "gateway": mostly(None, "before", "after"),
    }
)


def with_gateway_signature(world: World, request: HttpRequest, before: bool) -> HttpRequest:
    """``request`` with a gateway's signature over ``@method`` and ``@authority`` added (RFC 9421
    §4.3), listed before the device's or after."""
    added = sign_request(
        request, key=Ed25519PrivateKey(bytes(32)), keyid="gateway-key", label="gateway",
        components=("@method", "@authority"), created=int(world.clock()), nonce="gateway-nonce",
    )  # fmt: skip
    headers = dict(request.headers)
    for name in ("signature-input", "signature"):
        ours, theirs = headers[name], added[name.title()]
        headers[name] = f"{theirs}, {ours}" if before else f"{ours}, {theirs}"
    return HttpRequest(request.method, request.url, headers, request.body)


def _variant(world: World, v: dict[str, Any]) -> HttpRequest:
    device = v["device"]
    keyid = {
        "own": f"{world.dids[device]}#key-1",
        "unknown-fragment": f"{world.dids[device]}#key-9",
        "other-device": f"{world.dids[1 - device]}#key-1",
        "not-a-did": "session-that-is-not-there",
        "empty-ish": "did:",
    }[v["keyid"]]
    key: object = {"own": world.keys[device], "other": world.keys[1 - device], "hmac": bytes(32)}[v["signer"]]
    alg = "hmac-sha256" if v["signer"] == "hmac" else "ed25519"
    created = int(world.clock()) + v["created"]
    request = signed(
        world, device, key=key, keyid=keyid, components=v["components"], created=created, alg=alg,
        expires=None if v["lifetime"] is None else created + v["lifetime"], include_alg=v["alg"] is not None,
        nonce=secrets.token_urlsafe(16) if v["nonce"] == "fresh" else v["nonce"],
    )  # fmt: skip
    headers = dict(request.headers)
    if v["alg"] is not None:
        headers["signature-input"] = headers["signature-input"].replace(f'alg="{alg}"', f'alg="{v["alg"]}"')
    credential = {
        "own": world.headers[device],
        "other": world.headers[1 - device],
        "none": None,
        "garbage": "!!",
    }
    headers.pop(CREDENTIAL_HEADER.lower())
    if credential[v["credential"]] is not None:
        headers[CREDENTIAL_HEADER] = credential[v["credential"]]
    request = HttpRequest(request.method, request.url, headers, v["body"] or request.body)
    if v["gateway"] is None:
        return request
    return with_gateway_signature(world, request, before=v["gateway"] == "before")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variants=st.lists(VARIANTS, min_size=1, max_size=4))
def test_the_fast_path_agrees_with_the_general_path(variants: list[dict[str, Any]]) -> None:
    """Generated requests, good and bad, get the same answer from both paths (the fast one remembering)."""
    world = _WORLD
    for v in variants:
        request = _variant(world, v)
        fast = outcome(world.fast, request, v["audience"], fast=True)
        assert fast == outcome(world.general, request, v["audience"], fast=False)
        if v["replay"]:
            again = outcome(world.fast, request, v["audience"], fast=True)
            assert again == outcome(world.general, request, v["audience"], fast=False)


_WORLD = _world()  # shared by the generated examples: the fast verifier's memos fill up across them


def test_a_device_request_takes_the_fast_path(world: World) -> None:
    """A request signed as devices sign is answered by the fast path (its memo of the device fills)."""
    request = signed(world)
    device = world.fast.authenticate_request(request)
    assert device.did == world.dids[0]
    assert f"{world.dids[0]}#key-1" in world.fast._admissions._devices
    assert world.fast.authenticate_request(signed(world)) is device


def test_a_request_with_a_gateway_s_signature_too_takes_the_general_path(world: World) -> None:
    """Two signatures are not the devices' shape: the general path chooses the device's and lets it in."""
    request = with_gateway_signature(world, signed(world), before=True)
    assert fast_signature_base(request) is None
    assert world.fast.authenticate_request(request).did == world.dids[0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("revoke", Reason.REVOKED),
        ("quarantine", Reason.QUARANTINED),
        ("deactivate", Reason.DID_DEACTIVATED),
        ("rotate", Reason.KEY_NOT_AUTHORIZED),
        ("withdraw", Reason.ISSUER_NOT_ACCREDITED),
        ("expire", Reason.CREDENTIAL_EXPIRED),
    ],
)
def test_a_remembered_device_is_refused_once_its_records_change(
    world: World, change: str, reason: Reason
) -> None:
    """After its key and admission were remembered, a device is refused as soon as the ledger (or time) says."""
    world.fast.authenticate_request(signed(world))
    world.fast.authenticate_request(signed(world))
    if change == "revoke":
        world.ledger.set_status(world.issuer, LIST, 0)
    elif change == "quarantine":
        world.ledger.quarantine(world.dids[0])
    elif change == "deactivate":
        world.ledger.deactivate(world.dids[0])
    elif change == "rotate":  # key-1 replaced by key-2
        builder = DIDDocumentBuilder(world.dids[0])
        builder.add_verification_method(
            Ed25519PrivateKey.generate().public_key, fragment="key-2", relationships=("authentication",)
        )
        world.ledger.update(world.dids[0], builder.build())
    elif change == "withdraw":
        world.ledger.withdraw(world.issuer)
    else:
        world.clock.advance(3600 + world.fast.policy.clock_skew + 1)
    with pytest.raises(Refused) as refused:
        world.fast.authenticate_request(signed(world))
    assert refused.value.reason is reason
    if change not in ("withdraw", "expire"):  # those concern the other device as well
        assert world.fast.authenticate_request(signed(world, 1)).did == world.dids[1]


@given(key=st.binary(max_size=200), messages=st.lists(st.binary(max_size=300), min_size=2, max_size=3))
def test_remembered_session_mac_is_not_used_up(key: bytes, messages: list[bytes]) -> None:
    """The keyed HMAC-SHA256 remembered for a session key gives each request its own MAC, however
    many came before (each request works on a copy)."""
    state = _fast.mac_state(key)
    for message in messages:
        assert _fast.hmac_sha256(state, message) == hmac.new(key, message, hashlib.sha256).digest()
    assert _fast.mac_state(key) is state


SESSION_VARIANTS = st.fixed_dictionaries(
    {
        "key": mostly("session", "other"),
        "keyid": mostly("session", "unknown"),
        "created": mostly(0, -400, 400),
        "alg": st.sampled_from([None, "hmac-sha256", "hmac-sha256", "ed25519"]),
        "body": mostly(None, b"changed"),
        "audience": mostly(None, "https://service.example", "service.example", "elsewhere.example"),
        "replay": st.booleans(),
        "gateway": mostly(None, "before", "after"),
    }
)


@settings(max_examples=150, deadline=None)
@given(variants=st.lists(SESSION_VARIANTS, min_size=1, max_size=4))
def test_session_requests_get_the_same_answer_both_ways(variants: list[dict[str, Any]]) -> None:
    """Within a session, twin requests (the same but for the nonce) get the same answer from both paths."""
    world, offer, key = _SESSIONS
    for v in variants:
        twins = []
        for _ in range(2):
            created = int(world.clock()) + v["created"]
            request = signed(
                world, key=key if v["key"] == "session" else bytes(32), alg="hmac-sha256", created=created,
                keyid=offer["session_id"] if v["keyid"] == "session" else "bm90LWEtc2Vzc2lvbg",
                include_alg=v["alg"] is not None,
            )  # fmt: skip
            headers = dict(request.headers)
            if v["alg"] is not None:
                headers["signature-input"] = headers["signature-input"].replace(
                    '"hmac-sha256"', f'"{v["alg"]}"'
                )
            twin = HttpRequest(request.method, request.url, headers, v["body"] or request.body)
            if v["gateway"] is not None:
                twin = with_gateway_signature(world, twin, before=v["gateway"] == "before")
            twins.append(twin)
        verifier = world.fast
        for _ in range(2 if v["replay"] else 1):
            fast = outcome(verifier, twins[0], v["audience"], fast=True)
            assert fast == outcome(verifier, twins[1], v["audience"], fast=False)


def _session_world() -> tuple[World, dict[str, str], bytes]:
    from did_registry.identity.multikey import decode_x25519_public_key
    from verifier import MemorySessionStore
    from wallet.session_keys import session_key

    world = _world()
    world.fast = world.ledger.verifier(clock=world.clock, sessions=MemorySessionStore(clock=world.clock))
    offer = world.fast.authenticate_request(signed(world)).session
    assert offer is not None
    verifier_key = decode_x25519_public_key(offer["verifier_key"])
    return world, dict(offer), session_key(world.keys[0].to_x25519(), verifier_key, offer["session_id"])


_SESSIONS = _session_world()

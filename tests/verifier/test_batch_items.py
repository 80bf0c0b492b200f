"""A batch answers each of its items: a credential header no parser can take refuses its own item only."""

from __future__ import annotations

import base64

import pytest

from tests.verifier.lifetime_world import URL, make_world
from verifier import AuthenticatedDevice, Reason, Refused, _signed
from verifier._signed import CREDENTIAL_HEADER, _decode_credential
from wallet.http_signatures import HttpRequest

_signed_decode = _decode_credential
DEEP = base64.urlsafe_b64encode(b"[" * 40_000).rstrip(b"=").decode()  # nested past the recursion limit


def test_a_deeply_nested_credential_header_is_malformed() -> None:
    """Decoding JSON nested deeper than the parser can go is refused as malformed, not a crash."""
    with pytest.raises(Refused) as refused:
        _decode_credential(DEEP)
    assert refused.value.reason is Reason.MALFORMED


def test_an_unsigned_item_with_a_deeply_nested_credential_is_refused_on_its_own() -> None:
    """In a batch, an unsigned request carrying such a header is refused malformed; the good one is let in."""
    world = make_world()
    bad = HttpRequest("POST", URL, {CREDENTIAL_HEADER: DEEP}, b"")
    good, refused = world.verifier(sessions=False).authenticate_many([world.request(), bad])
    assert isinstance(good, AuthenticatedDevice) and good.did == world.device
    assert isinstance(refused, Refused) and refused.reason is Reason.MALFORMED


def test_a_signed_item_with_a_deeply_nested_credential_is_refused_on_its_own() -> None:
    """In a batch, a device's signed request carrying such a header is refused malformed; the good one is let in."""
    world = make_world()
    bad = world.request()
    bad = HttpRequest(bad.method, bad.url, {**bad.headers, CREDENTIAL_HEADER: DEEP}, bad.body)
    refused, good = world.verifier(sessions=False).authenticate_many([bad, world.request()])
    assert isinstance(refused, Refused) and refused.reason is Reason.MALFORMED
    assert isinstance(good, AuthenticatedDevice) and good.did == world.device


def test_reading_a_batch_ahead_leaves_out_an_item_whose_credential_fails_to_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DIDs read ahead for a batch are those of the other items when decoding one header raises
    anything at all (here an error nobody expects): that item is refused later, on its own."""
    world = make_world()

    def decode(value: str) -> object:
        if value == DEEP:
            raise RuntimeError("unexpected")
        return _signed_decode(value)

    bad = HttpRequest("POST", URL, {CREDENTIAL_HEADER: DEEP}, b"")
    monkeypatch.setattr(_signed, "_decode_credential", decode)
    assert _signed.dids_in([bad, world.request()]) == [world.device, world.issuer]


def test_a_batch_checks_each_request_against_its_audience() -> None:
    """A gateway's batch checks requests against the audience it names, for all or per item: a
    request signed for service.example is refused wrong_audience by another service's batch."""
    world = make_world()
    verifier = world.verifier(sessions=False)
    for_all = verifier.authenticate_many([world.request()], audience="gateway.example")
    per_item = verifier.authenticate_many([(world.request(), "gateway.example")])
    right = verifier.authenticate_many([(world.request(), "service.example"), world.request()])
    for refused in (*for_all, *per_item):
        assert isinstance(refused, Refused) and refused.reason is Reason.WRONG_AUDIENCE, refused
    assert all(isinstance(device, AuthenticatedDevice) for device in right)

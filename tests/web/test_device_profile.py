"""A device profile's attributes are refused when the token is made if no credential could carry them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlmodel import select

from tests.web.support import db
from web.enrolment_records import MAX_ATTRIBUTES_BYTES, DeviceProfile, EnrolmentError, ProvisioningTokenRow
from web.models import Role


@pytest.mark.parametrize(
    "value",
    [12345678901234567890, float("inf"), float("nan"), "\ud800"],
    ids=["integer beyond 2**53", "infinity", "nan", "lone surrogate"],
)
def test_a_value_no_signature_can_cover_is_refused(value: Any) -> None:
    """JSON allows these, but RFC 8785 (the credential proof's canonical form) does not."""
    with pytest.raises(EnrolmentError, match="cannot be signed"):
        DeviceProfile("TH-1", "2.4.1", {"serial": value})


def test_attributes_larger_than_the_cap_are_refused() -> None:
    with pytest.raises(EnrolmentError, match=f"at most {MAX_ATTRIBUTES_BYTES}"):
        DeviceProfile("TH-1", "2.4.1", {"note": "x" * MAX_ATTRIBUTES_BYTES})


def test_attributes_within_the_cap_are_kept() -> None:
    profile = DeviceProfile("TH-1", "2.4.1", {"note": "x" * 1000, "rack": 7})
    assert profile.claims("did:trellis:t:x")["rack"] == 7


@pytest.mark.parametrize(
    "raw",
    [b'"serial": 12345678901234567890', b'"serial": "\\ud800"', b'"note": "' + b"x" * 5000 + b'"'],
    ids=["big integer", "lone surrogate", "too large"],
)
def test_the_api_refuses_such_attributes_and_makes_no_token(
    app: Flask, token_of: Callable[[Role], str], raw: bytes
) -> None:
    headers = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    client = app.test_client()
    body = b'{"model": "TH-1", "firmware": "2.4.1", "count": 2, "attributes": {' + raw + b"}}"
    answer = client.post("/api/v1/tokens", data=body, content_type="application/json", headers=headers)
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
    assert answer.get_json()["field"] == "attributes"
    with db(app) as session:
        assert session.exec(select(ProvisioningTokenRow)).all() == []


@pytest.mark.parametrize(
    "profile",
    [("TH\x001", "2.4.1", {}), ("TH-1", "2.4.1", {"serial": "a\x00b"}), ("TH-1", "2.4.1", {"a\x00": 1})],
    ids=["model", "value", "name"],
)
def test_nul_is_refused_anywhere_in_a_profile(profile: tuple[str, str, dict[str, Any]]) -> None:
    with pytest.raises(EnrolmentError, match="U\\+0000"):
        DeviceProfile(*profile)

"""The rate limits count a client by its network where one host holds many addresses: an IPv6
address by its /64, an IPv4-mapped IPv6 address as its IPv4 address, an IPv4 address by itself; for
the sign-in form and the enrolment API alike (``web.ratelimit.client``)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.web.support import Browser
from web import ratelimit
from web.enrol_api import ENROL_MAX_FAILURES
from web.enrolment_records import UnknownToken
from web.models import Operator, Role
from web.services import LedgerServices

WRONG = "wrong password!"
NETWORK = "2001:db8:1:2::"
"""A /64 one host may hold: its addresses are ``2001:db8:1:2::<n>``."""


def _from(app: Flask, address: str) -> Browser:
    """A browser whose requests come from ``address``."""
    browser = Browser(app.test_client())
    browser.client.environ_base["REMOTE_ADDR"] = address
    return browser


def test_addresses_of_one_ipv6_64_are_one_client() -> None:
    """Two addresses of one IPv6 /64 share their address key and, for one name, their pair key."""
    first, last = "2001:db8:1:2::1", "2001:DB8:1:2:ffff:ffff:ffff:fffe"
    assert ratelimit.address_key(first) == ratelimit.address_key(last)
    assert ratelimit.pair_key("admin", first) == ratelimit.pair_key("admin", last)
    assert ratelimit.enrol_key(first) == ratelimit.enrol_key(last)


def test_ipv6_addresses_of_different_64s_are_different_clients() -> None:
    """Addresses in neighbouring /64s are counted apart."""
    assert ratelimit.address_key("2001:db8:1:2::1") != ratelimit.address_key("2001:db8:1:3::1")


def test_an_ipv4_mapped_address_is_its_ipv4_address() -> None:
    """``::ffff:192.0.2.1`` (an IPv4 client of a dual-stack socket) counts as ``192.0.2.1``, not as
    the /64 that holds every IPv4 address."""
    assert ratelimit.address_key("::ffff:192.0.2.1") == ratelimit.address_key("192.0.2.1")
    assert ratelimit.address_key("::ffff:192.0.2.1") != ratelimit.address_key("::ffff:192.0.2.2")


def test_ipv4_addresses_are_clients_one_by_one() -> None:
    """Neighbouring IPv4 addresses are counted apart."""
    assert ratelimit.address_key("192.0.2.1") != ratelimit.address_key("192.0.2.2")


def test_guesses_from_one_64_share_its_limit(app: Flask, accounts: dict[Role, Operator]) -> None:
    """After ``login_max_failures`` failures from five addresses of one /64, a sixth address of it is
    refused (429) with no password checked."""
    for n in range(1, 6):
        assert _from(app, f"{NETWORK}{n:x}").login("admin", WRONG).status_code == 401
    assert _from(app, f"{NETWORK}6").login("admin", WRONG).status_code == 429


def test_one_64_cannot_lock_the_owner_out(app: Flask, accounts: dict[Role, Operator]) -> None:
    """Fifty guesses at ``admin`` from ten addresses of one /64 count as one client's five, so the
    owner still signs in from their own address (before, they reached the name's limit of 50)."""
    for n in range(1, 11):
        for _ in range(5):
            _from(app, f"{NETWORK}{n:x}").login("admin", WRONG)
    assert _from(app, "192.0.2.10").login("admin").status_code == 302


def test_refused_enrolments_from_one_64_share_its_limit(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused enrolments from as many addresses of one /64 as the limit allows make the next address
    of it wait (429 ``too_many_requests``)."""

    class Refusing:
        def enrol(self, token: str, txn: Any, **options: Any) -> Any:
            raise UnknownToken("no such token")

    monkeypatch.setattr(LedgerServices, "enrolment", property(lambda self: Refusing()))
    body = {"token": "forged", "txn": {}}
    for n in range(1, ENROL_MAX_FAILURES + 1):
        answer = app.test_client().post(
            "/api/v1/enrol", json=body, environ_base={"REMOTE_ADDR": f"{NETWORK}{n:x}"}
        )
        assert answer.status_code == 403
    limited = app.test_client().post(
        "/api/v1/enrol", json=body, environ_base={"REMOTE_ADDR": f"{NETWORK}ffff"}
    )
    assert limited.status_code == 429 and limited.get_json()["code"] == "too_many_requests"

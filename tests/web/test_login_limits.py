"""The sign-in limit per username and address: one guessing from a few addresses cannot lock the owner
out, a guesser spread over many addresses is still stopped, and the owner's own mistakes are forgotten
once they sign in. Every test runs on SQLite and on the tests' throwaway PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from argon2.profiles import CHEAPEST
from flask import Flask

from tests.web.support import Browser, portal
from web.app import create_app
from web.config import PortalConfig
from web.models import Operator, Role

WRONG = "wrong password!"


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> PortalConfig:
    """The portal's configuration on an SQLite file, or on the tests' throwaway PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return PortalConfig(instance_path=tmp_path / "instance", database_url=url, password_parameters=CHEAPEST)


def _from(app: Flask, address: str) -> Browser:
    """A browser whose requests come from ``address``."""
    browser = Browser(app.test_client())
    browser.client.environ_base["REMOTE_ADDR"] = address
    return browser


def test_failures_from_other_addresses_do_not_lock_the_owner_out(
    app: Flask, accounts: dict[Role, Operator]
) -> None:
    """Three addresses each guess one name until refused; the owner, from their own address, signs in."""
    for n in range(3):
        attacker = _from(app, f"198.51.100.{n}")
        assert [attacker.login("operator", WRONG).status_code for _ in range(6)] == [401] * 5 + [429]
    assert _from(app, "192.0.2.1").login("operator").status_code == 302


def test_a_guesser_spread_over_many_addresses_is_stopped(app: Flask, accounts: dict[Role, Operator]) -> None:
    """After ten times ``login_max_failures`` failures of one name from as many addresses, the name is
    refused from everywhere (429 with Retry-After), even with the right password."""
    for n in range(50):
        assert _from(app, f"10.0.{n // 256}.{n % 256}").login("operator", WRONG).status_code == 401
    refused = _from(app, "192.0.2.1").login("operator")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60


def test_the_limit_across_addresses_is_configurable(
    config: PortalConfig, accounts: dict[Role, Operator]
) -> None:
    """``login_user_max_failures`` sets how many failures of one name, from all addresses, are allowed."""
    app = create_app(replace(config, login_user_max_failures=3))
    try:
        for n in range(3):
            assert _from(app, f"198.51.100.{n}").login("operator", WRONG).status_code == 401
        assert _from(app, "192.0.2.1").login("operator").status_code == 429
    finally:
        portal(app).engine.dispose()


def test_one_address_is_limited_whatever_the_names(app: Flask, accounts: dict[Role, Operator]) -> None:
    """Five failures from one address against five names: that address is refused for any name."""
    attacker = _from(app, "198.51.100.7")
    for name in ("a1", "a2", "a3", "a4", "a5"):
        assert attacker.login(name, WRONG).status_code == 401
    assert attacker.login("admin").status_code == 429


def test_signing_in_forgets_the_owner_s_earlier_mistakes(app: Flask, accounts: dict[Role, Operator]) -> None:
    """Four wrong passwords then the right one, twice over from one address: never refused, since a
    successful sign-in clears that name's failures from that address."""
    owner = _from(app, "192.0.2.1")
    for _ in range(2):
        assert [owner.login("operator", WRONG).status_code for _ in range(4)] == [401] * 4
        assert owner.login("operator").status_code == 302
        assert owner.post("/logout").status_code == 302


def test_signing_in_keeps_the_address_s_failures_against_other_names(
    app: Flask, accounts: dict[Role, Operator]
) -> None:
    """An attacker signing in to their own account between guesses does not reset the guesses: four
    against ``operator``, a sign-in as ``auditor``, then one more guess and the address is refused."""
    attacker = _from(app, "198.51.100.7")
    for _ in range(4):
        assert attacker.login("operator", WRONG).status_code == 401
    assert attacker.login("auditor").status_code == 302
    assert attacker.login("operator", WRONG).status_code == 401
    assert attacker.login("operator", WRONG).status_code == 429


def test_the_limit_across_addresses_defaults_to_ten_times_the_limit(tmp_path: Path) -> None:
    """Unless set, a name may fail ten times ``login_max_failures`` from all addresses together."""
    assert PortalConfig(instance_path=tmp_path, login_max_failures=4).login_user_limit == 40
    assert PortalConfig(instance_path=tmp_path, login_user_max_failures=7).login_user_limit == 7


@pytest.mark.parametrize("value", [0, -3])
def test_the_limit_across_addresses_must_be_positive(tmp_path: Path, value: int) -> None:
    """A limit below one would refuse every sign-in: the configuration is refused when made."""
    with pytest.raises(ValueError, match="login_user_max_failures"):
        PortalConfig(instance_path=tmp_path, login_user_max_failures=value)

"""PortalConfig: defaults, the environment, validation; the secret key file."""

from __future__ import annotations

import logging
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tests.web.ledger_support import ledger_portal
from tests.web.support import portal
from web.config import PortalConfig, load_secret_key
from web.services import DEFAULT_PORTAL_URL


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    """Without a database URL the portal uses ``sqlite:///<instance>/portal.db``."""
    config = PortalConfig(instance_path=tmp_path)
    assert config.database == f"sqlite:///{tmp_path.resolve()}/portal.db"


def test_database_url_overrides_the_default(tmp_path: Path) -> None:
    """A configured URL is used as given."""
    url = "postgresql+psycopg://portal@db/portal"
    assert PortalConfig(instance_path=tmp_path, database_url=url).database == url


def test_secret_key_is_created_with_mode_0600_and_then_reused(tmp_path: Path) -> None:
    """The first call creates a random key readable by its owner only; later calls read the same key."""
    path = tmp_path / "instance" / "secret_key"
    key = load_secret_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32
    assert load_secret_key(path) == key
    assert load_secret_key(tmp_path / "other" / "secret_key") != key


def test_a_short_secret_key_is_refused(tmp_path: Path) -> None:
    """A key file too short to sign sessions safely is an error, not silently used."""
    path = tmp_path / "secret_key"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="too short"):
        load_secret_key(path)


def test_from_env_reads_prefixed_variables(tmp_path: Path) -> None:
    """TRELLIS_WEB_* variables set the instance, database, nodes, genesis, cookies and session length."""
    config = PortalConfig.from_env(
        {
            "TRELLIS_WEB_INSTANCE": str(tmp_path),
            "TRELLIS_WEB_DATABASE_URL": "sqlite:///x.db",
            "TRELLIS_WEB_NODES": "http://a:1, http://b:2",
            "TRELLIS_WEB_GENESIS": "net/genesis.json",
            "TRELLIS_WEB_SECURE_COOKIES": "true",
            "TRELLIS_WEB_SESSION_HOURS": "2",
        }
    )
    assert config.instance_path == tmp_path
    assert config.database == "sqlite:///x.db"
    assert config.node_urls == ("http://a:1", "http://b:2")
    assert config.genesis_path == Path("net/genesis.json")
    assert config.secure_cookies is True
    assert config.session_lifetime == timedelta(hours=2)


def test_from_env_defaults(tmp_path: Path) -> None:
    """With no variables: ./instance, no nodes, cookies not Secure, 8-hour sessions."""
    config = PortalConfig.from_env({})
    assert config.instance_path == Path("instance")
    assert config.node_urls == ()
    assert config.secure_cookies is False
    assert config.session_lifetime == timedelta(hours=8)


@pytest.mark.parametrize(
    "options",
    [
        {"login_max_failures": 0},
        {"login_window": timedelta(0)},
        {"session_lifetime": timedelta(seconds=-1)},
        {"page_size": 0},
        {"trusted_proxies": -1},
    ],
)
def test_invalid_values_are_refused(tmp_path: Path, options: dict[str, object]) -> None:
    """Values that cannot work raise ValueError when the configuration is made."""
    with pytest.raises(ValueError):
        PortalConfig(instance_path=tmp_path, **options)  # type: ignore[arg-type]


def test_enrolment_without_a_portal_url_warns_where_devices_are_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without TRELLIS_WEB_URL the QR codes send devices to the demo's loopback address: the portal
    says so in its log when it starts enrolling, rather than silently."""
    with ledger_portal(tmp_path) as ledger:
        services = portal(ledger.app).services
        services.config = replace(services.config, portal_url=None)
        with caplog.at_level(logging.WARNING, logger="web.services"):
            assert services.enrolment.portal_url == DEFAULT_PORTAL_URL
    assert "TRELLIS_WEB_URL is not set" in caplog.text

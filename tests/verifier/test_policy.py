"""Policy and NetworkTrust: typed options with defaults, each wrong setting named."""

from __future__ import annotations

from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.did_registry.ledger.conftest import make_genesis, new_actor
from verifier import ConfigurationError, NetworkTrust, Policy


def test_defaults() -> None:
    """The defaults are those documented: DeviceCredential, the trust registry, 60/60/300/30/30/300/0.5/1 s."""
    policy = Policy()
    assert policy.credential_types == ("DeviceCredential",)
    assert policy.issuers is None
    assert (policy.clock_skew, policy.challenge_ttl, policy.signature_max_age) == (60, 60, 300)
    assert (policy.max_staleness, policy.offline_max_staleness, policy.session_ttl) == (30, 30, 300)
    assert (policy.head_poll_interval, policy.key_reread_interval) == (0.5, 1.0)


def test_lists_become_tuples() -> None:
    """Sequences given for types and issuers are kept as tuples (the policy stays hashable)."""
    policy = Policy(credential_types=["A", "B"], issuers=["did:example:1"])  # type: ignore[arg-type]
    assert policy.credential_types == ("A", "B") and policy.issuers == ("did:example:1",)
    assert hash(policy) == hash(Policy(credential_types=("A", "B"), issuers=("did:example:1",)))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("credential_types", ()),
        ("credential_types", "DeviceCredential"),
        ("credential_types", ("A", "A")),
        ("credential_types", ("",)),
        ("issuers", ("not-a-did",)),
        ("issuers", ()),
        ("clock_skew", -1),
        ("clock_skew", float("nan")),
        ("challenge_ttl", 0),
        ("signature_max_age", True),
        ("max_staleness", float("inf")),
        ("offline_max_staleness", "30"),
        ("session_ttl", -5),
        ("head_poll_interval", -0.5),
        ("key_reread_interval", float("nan")),
        ("max_block_age", 0),
        ("max_block_age", float("inf")),
        ("max_block_age", "30"),
    ],
)
def test_a_wrong_setting_is_named(setting: str, value: Any) -> None:
    """Each invalid option raises ConfigurationError whose message names the option."""
    with pytest.raises(ConfigurationError, match=setting):
        Policy(**{setting: value})


def test_zero_skew_is_allowed() -> None:
    """A clock skew of 0 is a valid (strict) choice."""
    assert Policy(clock_skew=0).clock_skew == 0


def test_no_max_block_age_is_allowed() -> None:
    """``None`` is for a network whose validators commit nothing while idle."""
    assert Policy(max_block_age=None).max_block_age is None


def test_zero_head_poll_interval_is_allowed() -> None:
    """A head poll interval of 0 turns asking other nodes off (the header stream alone is followed)."""
    assert Policy(head_poll_interval=0).head_poll_interval == 0


def _genesis() -> Any:
    return make_genesis(new_actor(), Ed25519PrivateKey.generate())


def test_network_trust_takes_genesis_json_or_parsed() -> None:
    """NetworkTrust accepts a Genesis or its JSON, and one URL or several."""
    genesis = _genesis()
    from_json = NetworkTrust("testnet", "https://node-1.example", genesis.to_json())
    assert from_json.genesis == genesis and from_json.nodes == ("https://node-1.example",)
    assert NetworkTrust("testnet", ["http://a", "http://b"], genesis).nodes == ("http://a", "http://b")


@pytest.mark.parametrize(
    ("network", "nodes", "match"),
    [("othernet", ("http://a",), "network"), ("testnet", ("ftp://a",), "nodes"), ("testnet", (3,), "nodes")],
)
def test_network_trust_validation(network: str, nodes: Any, match: str) -> None:
    """A network name that is not the genesis's, or node URLs that are not http(s), are refused."""
    with pytest.raises(ConfigurationError, match=match):
        NetworkTrust(network, nodes, _genesis())


def test_a_malformed_genesis_is_refused() -> None:
    """A genesis that does not parse is a configuration error naming the genesis."""
    with pytest.raises(ConfigurationError, match="genesis"):
        NetworkTrust("testnet", (), {"network": "testnet"})

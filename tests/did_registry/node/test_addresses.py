"""Validator and peer addresses: ``host:port`` with a port a peer can dial (1 to 65535), or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.validators import ValidatorSet, ValidatorSetError
from did_registry.node.config import MEMORY_DATABASE, InvalidConfig, NodeConfig, Peer

KEY = encode_ed25519_public_key(Ed25519PrivateKey(bytes(32)).public_key)
BAD = ["127.0.0.1:70000", "127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:00000"]
GOOD = ["127.0.0.1:1", "127.0.0.1:65535", "[::1]:7703", "node-2.example:7703"]


def _set(address: str) -> ValidatorSet:
    return ValidatorSet.from_json([{"id": "node-1", "public_key": KEY, "address": address}])


def _node(address: str) -> NodeConfig:
    return NodeConfig(
        id="node-1",
        port=7700,
        database=MEMORY_DATABASE,
        key_file=Path("/k"),
        genesis=Path("/g"),
        peers=(Peer("node-2", address),),
    )


@pytest.mark.parametrize("address", BAD)
def test_a_validator_address_with_a_port_out_of_range_is_refused_naming_it(address: str) -> None:
    with pytest.raises(ValidatorSetError, match=f"'{address}'.*1 to 65535"):
        _set(address)


@pytest.mark.parametrize("address", BAD)
def test_a_peer_address_with_a_port_out_of_range_is_refused_naming_it(address: str) -> None:
    with pytest.raises(InvalidConfig, match=f"'{address}'"):
        _node(address)


@pytest.mark.parametrize("address", GOOD)
def test_addresses_with_a_port_from_1_to_65535_are_accepted(address: str) -> None:
    assert _set(address).validators[0].address == address
    assert _node(address).peers[0].address == address

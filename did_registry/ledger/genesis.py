"""The genesis document: a network's name, consensus engine, rules, first trustees and validators.

``genesis.json`` is every node's trust anchor: its SHA-256 (over JCS) is the ``previous_hash`` of
block 0, whose state holds the network record, the trustees' DID records and roles, and the
validator set. Trustee DIDs must be self-certifying ``did:trellis`` DIDs of this network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import sha256
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import check_self_certifying, parse_trellis_did
from did_registry.identity.jcs import canonicalize
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.state import StateReader, StateView
from did_registry.ledger.validators import ValidatorSet

__all__ = ["ENGINES", "Genesis", "InvalidGenesis", "genesis_state"]

ENGINES = frozenset({"solo", "round_robin", "pbft"})
DEFAULT_RULES = {"trustee_quorum": 1, "steward_quorum": 1, "trust_quorum": 1, "validator_quorum": 1}


class InvalidGenesis(DidRegistryError, ValueError):
    """A genesis document is malformed."""


@dataclass(frozen=True)
class Genesis:
    """A parsed, checked genesis document."""

    network: str
    time: str
    consensus: Mapping[str, Any]
    trustees: tuple[Mapping[str, Any], ...]
    validators: tuple[Mapping[str, Any], ...]
    rules: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def to_json(self) -> dict[str, Any]:
        """The JSON form (what ``genesis.json`` holds)."""
        return {
            "network": self.network,
            "time": self.time,
            "consensus": dict(self.consensus),
            "rules": dict(self.rules),
            "trustees": [dict(t) for t in self.trustees],
            "validators": [dict(v) for v in self.validators],
        }

    @property
    def hash(self) -> bytes:
        """SHA-256 of the genesis document's JCS bytes: the chain's anchor."""
        return sha256(canonicalize(self.to_json()))

    @classmethod
    def from_json(cls, data: Any) -> Genesis:
        """Parse and check a genesis document."""
        try:
            genesis = cls(
                network=data["network"],
                time=data["time"],
                consensus=dict(data["consensus"]),
                trustees=tuple(data["trustees"]),
                validators=tuple(data["validators"]),
                rules={**DEFAULT_RULES, **dict(data.get("rules", {}))},
            )
            parse_timestamp(genesis.time)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidGenesis(f"genesis: {exc}") from None
        if genesis.consensus.get("engine") not in ENGINES:
            raise InvalidGenesis(f"consensus.engine must be one of {sorted(ENGINES)}")
        if not all(type(v) is int and v >= 1 for v in genesis.rules.values()):
            raise InvalidGenesis("rules are positive integer quorums")
        if not genesis.trustees:
            raise InvalidGenesis("a network needs at least one trustee")
        for document in genesis.trustees:
            _check_trustee(genesis.network, document)
        try:
            validators = ValidatorSet.from_json(genesis.validators)
        except (ValueError, DidRegistryError) as exc:
            raise InvalidGenesis(f"validators: {exc}") from None
        if genesis.consensus["engine"] == "solo" and validators.n != 1:
            raise InvalidGenesis("the solo engine runs exactly one validator")
        return genesis


def _check_trustee(network: str, data: Mapping[str, Any]) -> None:
    try:
        document = DIDDocument.from_json(data)
        did = str(document.id)
        if parse_trellis_did(did).network != network:
            raise InvalidGenesis(f"trustee {did} is not of network {network}")
        first = next(iter(document.relationship("capabilityInvocation")))
        check_self_certifying(did, document.public_key_for(first, "capabilityInvocation"))
    except (DidRegistryError, StopIteration) as exc:
        raise InvalidGenesis(f"trustee document: {exc}") from None


class _Empty:
    def get(self, key: str) -> bytes | None:
        return None


def genesis_state(genesis: Genesis, base: StateReader | None = None) -> StateView:
    """The state of block 0: the network record, trustees with their roles, the validator set."""
    view = StateView(base or _Empty())
    trustees = sorted(str(DIDDocument.from_json(t).id) for t in genesis.trustees)
    view.put(
        "network",
        {
            "network": genesis.network,
            "consensus": dict(genesis.consensus),
            "rules": dict(genesis.rules),
            "genesis_hash": genesis.hash.hex(),
        },
    )
    for data in genesis.trustees:
        did = str(DIDDocument.from_json(data).id)
        record = {
            "document": dict(data),
            "version": 1,
            "created": genesis.time,
            "updated": genesis.time,
            "deactivated": False,
            "endorser": did,
            "txn": "genesis",
            "height": 0,
        }
        view.put(f"did:{did}", record)
        view.put(f"didv:{did}:1", record)
        view.put(f"role:{did}", ["trustee"])
    view.put("trustees", trustees)
    view.put("validators", {"set": [dict(v) for v in genesis.validators], "pending": [], "since": 0})
    return view

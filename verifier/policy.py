"""What a verifier accepts (:class:`Policy`) and which ledgers it trusts (:class:`NetworkTrust`).

Both are small frozen values checked when they are made: a wrong setting raises
:class:`~verifier.errors.ConfigurationError` naming the setting, so a service fails at start-up
rather than at its first device. Durations are seconds (floats).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from did_registry.errors import DidRegistryError
from did_registry.identity.did import is_did
from did_registry.ledger.genesis import Genesis
from verifier.errors import ConfigurationError

__all__ = ["DEFAULT_CREDENTIAL_TYPES", "Policy", "NetworkTrust"]

DEFAULT_CREDENTIAL_TYPES = ("DeviceCredential",)
"""The credential types a default policy accepts."""


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be {'at least 0' if allow_zero else 'above 0'}, got {value!r}")
    return float(value)


def _names(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list | frozenset | set):
        raise ConfigurationError(f"{name} must be a tuple of strings, got {value!r}")
    items = tuple(value)
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError(f"{name} must hold at least one non-empty string")
    if len(set(items)) != len(items):
        raise ConfigurationError(f"{name} lists a value twice")
    return items


@dataclass(frozen=True)
class Policy:
    """What a verifier accepts; every option has a default a production service can keep.

    ``issuers=None`` trusts the on-chain trust registry: an issuer must be accredited there for the
    credential's type. A tuple of issuer DIDs trusts exactly those (for any accepted type).
    ``max_staleness`` is how old the verifier's view of the ledger may get before it asks a node for
    the head again; ``offline_max_staleness`` how old it may get while no node answers before every
    authentication is refused as ``too_stale``.
    """

    credential_types: tuple[str, ...] = DEFAULT_CREDENTIAL_TYPES
    """Credential types accepted (any one of them suffices)."""
    issuers: tuple[str, ...] | None = None
    """Explicit issuer DIDs, or ``None`` for the on-chain trust registry."""
    clock_skew: float = 60.0
    """Tolerance for other parties' clocks: credential validity periods, signature ``created``/``expires``."""
    challenge_ttl: float = 60.0
    """How long a challenge may be answered."""
    signature_max_age: float = 300.0
    """How old a signed request's ``created`` may be."""
    max_staleness: float = 30.0
    """Online: seconds without a certified header before the head is asked for again."""
    offline_max_staleness: float = 30.0
    """Offline: seconds without a certified header before authentications are refused."""
    max_block_age: float | None = 60.0
    """How old the newest certified block the verifier has applied may get before the excess counts
    as staleness, whatever the nodes say: validators commit a block at least every freshness interval
    (10 s by default, ``docs/consensus.md`` § 9a), even with nothing to order, so an older newest
    block means the nodes that answer are behind or hide newer blocks (a revocation). It must cover
    the freshness interval, commit latency and the clock difference between this verifier and the
    validators (block times are the proposer's clock, within 30 s behind to 15 s ahead of the
    others'). ``None`` for a network whose validators commit nothing while idle (then a node
    answering "nothing newer" is believed)."""
    head_poll_interval: float = 0.5
    """While following a network's header stream, seconds between asking another node for newer blocks
    (a node cut off from the others must not keep the verifier behind); 0 never asks."""
    key_reread_interval: float = 1.0
    """A key id missing from a cached DID document makes the verifier read the DID again from the ledger
    (it may have just rotated its key), at most once per DID in this many seconds."""
    session_ttl: float = 300.0
    """How long a session opened after a full check lasts."""
    require_revocation: bool = True
    """Refuse credentials without a revocation entry on a ledger status list (they could never be revoked)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "credential_types", _names("credential_types", self.credential_types))
        if self.issuers is not None:
            issuers = _names("issuers", self.issuers)
            bad = [i for i in issuers if not is_did(i)]
            if bad:
                raise ConfigurationError(f"issuers must be DIDs, not {bad[0]!r}")
            object.__setattr__(self, "issuers", issuers)
        for name in ("clock_skew", "head_poll_interval", "key_reread_interval"):
            object.__setattr__(self, name, _seconds(name, getattr(self, name), allow_zero=True))
        for name in (
            "challenge_ttl",
            "signature_max_age",
            "max_staleness",
            "offline_max_staleness",
            "session_ttl",
        ):
            object.__setattr__(self, name, _seconds(name, getattr(self, name)))
        if self.max_block_age is not None:
            object.__setattr__(self, "max_block_age", _seconds("max_block_age", self.max_block_age))
        if not isinstance(self.require_revocation, bool):
            raise ConfigurationError(
                f"require_revocation must be True or False, got {self.require_revocation!r}"
            )


@dataclass(frozen=True)
class NetworkTrust:
    """One ledger network the verifier trusts: its name, node URLs and its trust anchor.

    The trust anchor is the network's ``genesis.json`` (its validator keys certify every header;
    its hash anchors block 0): the same document a :class:`~did_registry.client.LedgerClient` is
    given. ``nodes`` may be empty for a verifier that runs only from a snapshot. ``transport`` is
    an optional httpx transport (in-process nodes in tests, custom TLS).
    """

    network: str
    """The network name, as in ``did:trellis:<network>:<id>``."""
    nodes: tuple[str, ...]
    """Base URLs of the network's nodes (none trusted: every answer is proven)."""
    genesis: Genesis
    """The network's genesis document: its validators are the trust anchor."""
    transport: httpx.BaseTransport | None = field(default=None, compare=False, repr=False)
    """An optional httpx transport for the ledger client."""

    def __init__(
        self,
        network: str,
        nodes: tuple[str, ...] | list[str] | str,
        genesis: Genesis | Mapping[str, Any],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            parsed = genesis if isinstance(genesis, Genesis) else Genesis.from_json(genesis)
        except (DidRegistryError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"genesis of network {network!r}: {exc}") from None
        if parsed.network != network:
            raise ConfigurationError(f"network is {network!r} but its genesis is for {parsed.network!r}")
        urls = (nodes,) if isinstance(nodes, str) else tuple(nodes)
        if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise ConfigurationError(f"nodes of network {network!r} must be http(s) base URLs")
        object.__setattr__(self, "network", network)
        object.__setattr__(self, "nodes", urls)
        object.__setattr__(self, "genesis", parsed)
        object.__setattr__(self, "transport", transport)

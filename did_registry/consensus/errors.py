"""Errors raised by :mod:`did_registry.consensus` (the rules are in ``docs/consensus.md``).

The consensus errors hang under the package root, as CometBFT keeps ``consensus/errors.go``::

    DidRegistryError                 (did_registry.errors)
    └── ConsensusError               root of the consensus errors
        ├── InvalidMessage           a message is malformed, from a non-validator or badly signed  (also ValueError)
        └── InvalidConsensusConfig   a config value is out of range, or an engine is set up wrongly (also ValueError)

Engines never let :class:`InvalidMessage` escape: a bad message is dropped and counted under its
``code`` in ``engine.dropped``. A certificate that does not verify raises the ledger's
:class:`~did_registry.ledger.block.InvalidCertificate`.
"""

from __future__ import annotations

from did_registry.errors import DidRegistryError

__all__ = ["ConsensusError", "InvalidConsensusConfig", "InvalidMessage"]


class ConsensusError(DidRegistryError):
    """Root of the errors raised by the consensus engines."""


class InvalidMessage(ConsensusError, ValueError):
    """A consensus message is malformed, comes from a non-validator, or its signature does not verify.

    ``code`` is one of ``"malformed"``, ``"unknown-sender"`` or ``"bad-signature"``.
    """

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class InvalidConsensusConfig(ConsensusError, ValueError):
    """A :class:`~did_registry.consensus.base.ConsensusConfig` value is out of range, or an engine
    was given a validator id, key or resume certificate that does not fit its validator set."""

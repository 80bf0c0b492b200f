"""Pluggable consensus: sans-IO engines that order opaque blocks (``docs/consensus.md``).

Three engines implement :class:`~did_registry.consensus.base.Engine`: :class:`PBFT` (byzantine
faults, ``f`` of ``3f + 1``), :class:`RoundRobin` (crash faults, trusted networks) and :class:`Solo`
(one validator). They reach the ledger only through :class:`~did_registry.consensus.base.BlockApp`
and do no I/O (``did_registry/consensus/README.md``); :func:`create_engine` builds the one a
genesis file names.
"""

from __future__ import annotations

from collections.abc import Callable

from did_registry.consensus.base import (
    BlockApp,
    Broadcast,
    CancelTimer,
    Committed,
    ConsensusConfig,
    Engine,
    NeedState,
    Output,
    Send,
    SetTimer,
)
from did_registry.consensus.core import utc_timestamp
from did_registry.consensus.errors import ConsensusError, InvalidConsensusConfig, InvalidMessage
from did_registry.consensus.messages import Message, decode, encode
from did_registry.consensus.pbft import PBFT
from did_registry.consensus.round_robin import RoundRobin
from did_registry.consensus.solo import Solo
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.validators import ValidatorSet

__all__ = [
    "BlockApp",
    "Engine",
    "ConsensusConfig",
    "Output",
    "Send",
    "Broadcast",
    "SetTimer",
    "CancelTimer",
    "Committed",
    "NeedState",
    "Message",
    "encode",
    "decode",
    "PBFT",
    "RoundRobin",
    "Solo",
    "ENGINES",
    "create_engine",
    "ConsensusError",
    "InvalidConsensusConfig",
    "InvalidMessage",
]

ENGINES: dict[str, type[PBFT] | type[RoundRobin] | type[Solo]] = {
    "pbft": PBFT,
    "round_robin": RoundRobin,
    "solo": Solo,
}
"""The engines by the name genesis ``consensus.engine`` gives them."""


def create_engine(
    name: str,
    validator_id: str,
    key: Ed25519PrivateKey,
    validators: ValidatorSet,
    app: BlockApp,
    config: ConsensusConfig | None = None,
    *,
    resume: CommitCertificate | None = None,
    restarted: bool | None = None,
    timestamp: Callable[[float], str] = utc_timestamp,
    resume_validators: ValidatorSet | None = None,
) -> Engine:
    """Build the engine called ``name`` (``pbft``, ``round_robin`` or ``solo``)."""
    engine = ENGINES.get(name)
    if engine is None:
        raise InvalidConsensusConfig(f"unknown consensus engine {name!r}; expected one of {sorted(ENGINES)}")
    return engine(
        validator_id,
        key,
        validators,
        app,
        config,
        resume=resume,
        restarted=restarted,
        timestamp=timestamp,
        resume_validators=resume_validators,
    )

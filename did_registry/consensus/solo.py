"""The single-validator engine (n = 1), for development and tests (``docs/consensus.md`` § Solo).

The one validator batches requests as the PBFT primary does (by size and by time), builds the block,
signs the ledger commit message and commits it at once: its own signature is the quorum of a set of
one. It sends no messages and drops any it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from did_registry.consensus.base import BlockApp, Committed, ConsensusConfig
from did_registry.consensus.core import EngineCore, utc_timestamp
from did_registry.consensus.errors import InvalidConsensusConfig
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.validators import ValidatorSet

__all__ = ["Solo"]


class Solo(EngineCore):
    """Propose, self-sign, commit: consensus for a validator set of one."""

    def __init__(
        self,
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
    ) -> None:
        """Start at height 0, or after the block ``resume`` certifies; the set must have one validator."""
        if validators.n != 1:
            raise InvalidConsensusConfig(f"the solo engine needs exactly one validator, not {validators.n}")
        super().__init__(
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

    def _tick(self) -> None:
        super()._tick()
        self._timers.due("continue", self._now)
        self._timers.due("batch", self._now)

    def _after(self) -> None:
        if self._height > self._settled:
            self._timers.set("continue", self._now)
            return
        oldest = self._pool.oldest()
        if oldest is None:
            self._timers.clear("batch")
            if not self._freshness_due():
                return
            batch: list[bytes] = []  # an empty block, to show the ledger is live
        elif len(self._pool) < self._config.batch_size and self._now < oldest + self._config.batch_timeout:
            self._timers.set("batch", oldest + self._config.batch_timeout)
            return
        else:
            batch = self._pool.batch(self._config.batch_size)
        seq = self._height + 1
        block = self._app.propose(seq, batch, self._timestamp(self._now))
        included = set(self._app.requests(block)) if block is not None else set()
        self._pool.discard([r for r in batch if r in included or not self._app.check(r)])
        if block is None:
            self._timers.set("batch", self._now + self._config.batch_timeout)
            return
        digest = self._app.digest(block)
        signatures = {self._id: self._q.sign_commit(digest, self._key)}
        certificate = self._q.certificate(seq, digest, signatures)
        self._out.append(Committed(seq, block, certificate))
        self._height, self._certificate = seq, certificate
        self._head_reached()
        self._timers.set("continue", self._now)

"""Round-robin consensus for trusted private networks: crash faults only (``docs/consensus.md`` § Round robin).

Validators take turns: the proposer of height ``h`` in round ``r`` is validator ``(h + r) mod n``.
In round 0 it proposes a fresh block (PROPOSE); every validator that accepts it votes (VOTE, carrying
its ledger commit signature), and ``q = n - f`` votes for one block in one round commit it. When a
round makes no progress before the timeout, validators move to the next round (ROUND-CHANGE, which
reports the block each last accepted and in which round); the next proposer, holding ``q`` of them,
offers again the block accepted in the latest round, or a fresh one if none was accepted. That is
single-decree Paxos per height (Lamport, "Paxos made simple"), with rotating proposers: a block a
quorum accepted in some round is the only one any later round can offer, so no two blocks commit at
one height as long as at most ``f`` validators crash (even losing what they voted). It does not
tolerate lying validators: use PBFT for that.
"""

from __future__ import annotations

from collections.abc import Callable

from did_registry.consensus.base import BlockApp, Committed, ConsensusConfig
from did_registry.consensus.core import EngineCore, utc_timestamp
from did_registry.consensus.messages import Message, Propose, Request, RoundChange, Vote
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.validators import ValidatorSet

__all__ = ["RoundRobin"]


class RoundRobin(EngineCore):
    """A round-robin validator (see the module docstring)."""

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
        """Start at height 0, or after the block ``resume`` certifies, in round 0. A ``restarted``
        validator (by default: one given ``resume``) may have proposed at the next height before it
        crashed, so it does not propose there again (another proposer takes the height)."""
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
        self._failures = 0
        self._blocks: dict[bytes, tuple[int, bytes]] = {}
        self._abstain = self._height + 1 if self._restarted and self._q.n > 1 else 0
        self._votes: dict[tuple[int, int], dict[str, Vote]] = {}
        self._new_height()

    def _new_height(self) -> None:
        self._round = 0
        self._accepted: tuple[int, bytes, bytes] | None = None  # (round, digest, block)
        self._voted: set[int] = set()
        self._proposals: dict[int, Propose] = {}
        self._proposed: set[int] = set()
        self._round_changes: dict[int, dict[str, RoundChange]] = {}

    @property
    def round(self) -> int:
        """The round at the next height."""
        return self._round

    @property
    def proposer(self) -> str:
        """The proposer of the current round at the next height."""
        return self._q.leader(self._height + 1 + self._round)

    # -- inputs ----------------------------------------------------------------------------------
    def _forward(self, requests: tuple[bytes, ...]) -> None:
        self._broadcast(Request(sender=self._id, requests=requests))

    def _handle(self, message: Message) -> None:
        match message:
            case Request():
                self._admit_all(message.requests)
            case Propose():
                self.propose(message)
            case Vote():
                self.vote(message)
            case RoundChange():
                self.round_change(message)
            case _:
                self._drop("unexpected-type")

    def propose(self, message: Propose) -> None:
        """Triggered by: a PROPOSE from the proposer of (h, r): a fresh block in round 0, or in a later
        round the block its quorum of ROUND-CHANGEs reported (or a fresh one)."""
        if message.sender != self._q.leader(message.height + message.round):
            self._drop("not-proposer")
            return
        if not self._height < message.height <= self._height + self._config.watermark_window:
            self._drop("stale" if message.height <= self._height else "outside-watermarks")
            return
        digest = self._app.digest(message.block)
        self._blocks.setdefault(digest, (message.height, message.block))
        if message.height != self._height + 1 or message.round < self._round:
            self._drop("stale")
            return
        earlier = self._proposals.get(message.round)
        if earlier is not None:
            if earlier.block != message.block:
                self._drop("equivocation")
            return
        if message.round > self._round:
            self._enter_round(message.round, announce=False)
        self._proposals[message.round] = message

    def vote(self, message: Vote) -> None:
        """Triggered by: a VOTE from a validator that accepted the block of (h, r)."""
        if not self._q.commit_signature_ok(message.sender, message.digest, message.commit_signature):
            self._drop("bad-commit-signature")
            return
        if message.height <= self._height:
            return
        self._claim(message.sender, message.height)
        if message.height <= self._height + self._config.watermark_window:
            self._votes.setdefault((message.height, message.round), {})[message.sender] = message
            self._execute()

    def round_change(self, message: RoundChange) -> None:
        """Triggered by: a ROUND-CHANGE from a validator whose round timed out, or that joined a later
        round; a sender at a lower height is sent the certificate of our last block."""
        if message.height <= self._height:
            if self._may_help(message.sender):
                self._send_certificate(message.sender)
            return
        if message.height > self._height + 1:
            self._claim(message.sender, message.height - 1)
            return
        if message.accepted_block is not None:
            self._blocks.setdefault(
                self._app.digest(message.accepted_block), (message.height, message.accepted_block)
            )
        if message.round < self._round:
            return
        self._round_changes.setdefault(message.round, {})[message.sender] = message
        if message.round > self._round:
            self._enter_round(message.round, announce=True)

    # -- rounds ----------------------------------------------------------------------------------
    def _enter_round(self, round_: int, *, announce: bool) -> None:
        """Move to ``round_`` at the next height: promise to ignore earlier rounds, and (when
        ``announce``) send ROUND-CHANGE with the block last accepted, plus our requests to its proposer."""
        self._round = round_
        self._timers.clear("progress")
        if not announce:
            return
        accepted_round, accepted_block = (
            (self._accepted[0], self._accepted[2]) if self._accepted else (None, None)
        )
        change = RoundChange(
            sender=self._id,
            height=self._height + 1,
            round=round_,
            accepted_round=accepted_round,
            accepted_block=accepted_block,
        )
        self._round_changes.setdefault(round_, {})[self._id] = self._broadcast(change)
        if self.proposer != self._id and self._pool:
            forward = Request(sender=self._id, requests=self._forwardable(4 * self._config.batch_size))
            self._send(self.proposer, forward.signed(self._key))

    def _accept(self) -> None:
        """Vote for the current round's proposal once the previous block is applied (once per round)."""
        proposal = self._proposals.get(self._round)
        if proposal is None or self._round in self._voted or self._height + 1 <= self._proven:
            return
        self._voted.add(self._round)
        try:
            digest = self._app.validate(proposal.height, proposal.block)
        except (ValueError, DidRegistryError):
            self._drop("invalid-block")
            return
        # Only round 0's block is surely fresh; a later round may offer again one accepted before.
        problem = self._proposal_problem(proposal.block) if self._round == 0 else None
        if problem is not None:
            self._drop(problem)
            return
        self._accepted = (self._round, digest, proposal.block)
        signature = self._q.sign_commit(digest, self._key)
        vote = Vote(
            sender=self._id,
            height=proposal.height,
            round=self._round,
            digest=digest,
            commit_signature=signature,
        )
        self._votes.setdefault((proposal.height, self._round), {})[self._id] = self._broadcast(vote)
        self._execute()

    def _offer(self) -> None:
        """As proposer of (h, r): offer the block accepted in the latest round reported, or a fresh one."""
        height = self._height + 1
        if self.proposer != self._id or self._round in self._proposed or height <= self._proven:
            return
        if height == self._abstain:
            return  # a proposal from before a restart may be out there: never offer a second one
        block = None
        if self._round > 0:
            changes = self._round_changes.get(self._round, {})
            if self._id not in changes or len(changes) < self._q.size:
                return
            reported = [c for c in changes.values() if c.accepted_round is not None]
            if reported:
                block = max(
                    reported, key=lambda c: (c.accepted_round or 0, c.accepted_block or b"")
                ).accepted_block
        if block is None:
            block = self._fresh_block(height)
            if block is None:
                return
        self._proposed.add(self._round)
        self._blocks.setdefault(self._app.digest(block), (height, block))  # to commit it on a quorum
        self._proposals[self._round] = self._broadcast(
            Propose(sender=self._id, height=height, round=self._round, block=block)
        )

    def _fresh_block(self, height: int) -> bytes | None:
        oldest = self._pool.oldest()
        if oldest is None:
            if not self._freshness_due():
                return None
            batch: list[bytes] = []  # an empty block, to show the ledger is live
        elif len(self._pool) < self._config.batch_size and self._now < oldest + self._config.batch_timeout:
            self._timers.set("batch", oldest + self._config.batch_timeout)
            return None
        else:
            batch = self._pool.batch(self._config.batch_size)
        block, batch = self._propose_within(height, batch, self._timestamp(self._now))
        included = set(self._app.requests(block)) if block is not None else set()
        self._pool.discard([r for r in batch if r not in included and not self._app.check(r)])
        if block is None:
            self._timers.set("batch", self._now + self._config.batch_timeout)
        return block

    def _execute(self) -> None:
        """Commit the next height once ``q`` validators voted for one block in one round (or once a
        peer handed us its certificate), if the block is at hand; else this validator is behind."""
        height = self._height + 1
        for (vote_height, _), votes in sorted(self._votes.items()):
            if vote_height != height:
                continue
            tally: dict[bytes, list[Vote]] = {}
            for sender in sorted(votes):
                tally.setdefault(votes[sender].digest, []).append(votes[sender])
            for digest, found in tally.items():
                if len(found) >= self._q.size:
                    signatures = {v.sender: v.commit_signature for v in found}
                    self._commit(self._q.certificate(height, digest, signatures))
                    return
        certificate = self._certificates.get(height)
        if certificate is not None:
            self._commit(certificate)

    def _commit(self, certificate: CommitCertificate) -> None:
        entry = self._blocks.get(bytes.fromhex(certificate.block_hash))
        if entry is None:
            self._learn_height(certificate.height)
            return
        self._out.append(Committed(certificate.height, entry[1], certificate))
        self._height, self._certificate = certificate.height, certificate
        self._pool.discard(self._app.requests(entry[1]))
        self._prune()
        self._failures = 0

    def _prune(self) -> None:
        self._blocks = {d: b for d, b in self._blocks.items() if b[0] > self._height}
        self._votes = {k: v for k, v in self._votes.items() if k[0] > self._height}
        self._executed(self._height)
        self._timers.clear("progress")
        self._new_height()

    # -- the call cycle --------------------------------------------------------------------------
    def _after(self) -> None:
        if self._height == self._settled:
            self._offer()
            self._accept()
            self._execute()
        if self._height > self._settled:
            self._timers.set("continue", self._now)
            return
        if not self._waiting():
            self._timers.clear("progress")
        elif self._timers.get("progress") is None:
            self._timers.set("progress", self._now + self._config.backoff(self._failures))

    def _tick(self) -> None:
        super()._tick()
        self._timers.due("continue", self._now)
        self._timers.due("batch", self._now)
        if self._timers.due("progress", self._now):
            self._pool.retain(self._app.check)
            if self._waiting():
                self._failures += 1
                self._enter_round(self._round + 1, announce=True)

    def _waiting(self) -> bool:
        """Waiting to commit something: pending requests, a block proposed at the next height, or a
        block falling due."""
        return bool(self._pool) or bool(self._proposals) or self._freshness_due()

    def _transferred(self) -> None:
        self._prune()

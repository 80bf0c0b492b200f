"""PBFT (Castro & Liskov, OSDI 1999 / TOCS 2002) as a sans-IO state machine; see ``docs/consensus.md``.

Normal case (§4.2): the primary of view ``v`` (validator ``v mod n``) batches requests into a block
(:meth:`BlockApp.propose`) and sends PRE-PREPARE(v, n, d, block); backups check it and send PREPARE;
*prepared* with ``q - 1`` matching PREPAREs, a validator sends COMMIT; *committed-local* with ``q``
matching COMMITs, it signs the ledger commit message and sends CERTIFY; ``q`` CERTIFY signatures over
one digest form the block's commit certificate and the block is executed (``Committed``), strictly
in height order. Sequence numbers are ledger heights, and one height is in flight at a time: block
``n`` is proposed and checked only once ``n - 1`` is applied (batching gives the throughput).

CERTIFY is a fourth phase the paper lacks: the ledger's commit signature names no view, so a
validator gives it only once the block is committed-local, and an honest validator never signs two
blocks at one height; certificates can then never conflict. Checkpoints (§4.3) every K blocks, view
changes (§4.4) in :mod:`~did_registry.consensus.pbft_view_change`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from did_registry.consensus.base import BlockApp, Broadcast, Committed, ConsensusConfig
from did_registry.consensus.core import utc_timestamp
from did_registry.consensus.log import MessageLog, Slot
from did_registry.consensus.messages import (
    Certify,
    Checkpoint,
    Commit,
    Message,
    NewView,
    Overtaken,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
)
from did_registry.consensus.pbft_view_change import ViewChanges
from did_registry.consensus.pool import Overtaking
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.validators import ValidatorSet

__all__ = ["PBFT"]


class PBFT(ViewChanges):
    """A PBFT replica (see the module docstring)."""

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
        """Start at height 0 in view 0, or resume after the block ``resume`` certifies (view 0: a
        NEW-VIEW from the others brings the validator to their view)."""
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
        self._log = MessageLog()
        self._low = self._height - self._height % self._config.checkpoint_interval
        self._stable: tuple[Checkpoint, ...] = ()
        self._own_checkpoint: Checkpoint | None = None
        self._overtaking = Overtaking(self._config.overtake_threshold, self._config.overtake_margin)
        self._overtaken: list[bytes] = []  # overtaken K times, acted on once the block is applied
        self._resent_by: dict[str, set[bytes]] = {}  # as primary: requests admitted from OVERTAKENs
        self._init_view_changes()

    # -- read-only state ------------------------------------------------------------------------
    @property
    def low(self) -> int:
        """h: the low watermark (the last stable checkpoint)."""
        return self._low

    @property
    def high(self) -> int:
        """H = h + L: the high watermark."""
        return self._low + self._config.watermark_window

    # -- dispatch -------------------------------------------------------------------------------
    def _handle(self, message: Message) -> None:
        match message:
            case Request():
                self.request(message)
            case Overtaken():
                self.overtaken(message)
            case PrePrepare():
                self.pre_prepare(message)
            case Prepare():
                self.prepare(message)
            case Commit():
                self.commit(message)
            case Certify():
                self.certify(message)
            case Checkpoint():
                self.checkpoint(message)
            case ViewChange():
                self.view_change(message)
            case NewView():
                self.new_view(message)
            case _:
                self._drop("unexpected-type")

    def _forward(self, requests: tuple[bytes, ...]) -> None:
        self._broadcast(Request(sender=self._id, requests=requests))

    def _in_window(self, message: PrePrepare | Prepare | Commit) -> bool:
        """Checks shared by PRE-PREPARE, PREPARE and COMMIT: current view (a later view's are kept
        until its NEW-VIEW arrives), within the watermarks, not executed yet."""
        view, seq = message.view, message.seq
        if view > self._view or (view == self._view and not self._active):
            self._keep_for_later(message)
        elif view != self._view:
            self._drop("wrong-view")
        elif not self._low < seq <= self.high:
            self._drop("outside-watermarks")
        elif seq <= self._height:
            self._drop("stale")
        else:
            return True
        return False

    # -- the normal case ------------------------------------------------------------------------
    def request(self, message: Request) -> None:
        """Triggered by: a REQUEST a validator forwards (at once, or to a new primary after a view change)."""
        self._admit_all(message.requests)

    def overtaken(self, message: Overtaken) -> None:
        """Triggered by: an OVERTAKEN from a backup whose pending requests later ones overtook (the
        primary may never have received them, or refused them with a full pool). The primary keeps
        them even when its pool is full, up to the sender's share of ``max_pending`` (so that byzantine
        backups cannot take it all); they go last in line, like any request arriving now."""
        if not self._active or self.primary != self._id:
            self._admit_all(message.requests)
            return
        held = {r for r in self._resent_by.get(message.sender, ()) if r in self._pool}
        share = self._config.max_pending  # a backup holds no more: an honest one always fits
        admitted = self._admit_all(message.requests, beyond_limit=max(0, share - len(held)))
        self._resent_by[message.sender] = held.union(admitted)

    def _act_on_overtaken(self) -> None:
        """A backup whose pending requests were overtaken K times (``docs/consensus.md`` § Censorship),
        now that the block that did it is applied: requests the application refuses now are dropped;
        the others are sent to the primary again, and if one of them was sent again already, the
        backup suspects the primary and starts a view change, as on a progress timeout."""
        overtaken, self._overtaken = self._overtaken, []
        if not self._active or self.primary == self._id:
            return
        pending = [r for r in dict.fromkeys(overtaken) if r in self._pool]
        if not pending:
            return
        valid = self._app.check_many(pending)
        refused = [r for r, ok in zip(pending, valid, strict=True) if not ok]
        self._pool.discard(refused)
        self._overtaking.discard(refused)
        pending = [r for r, ok in zip(pending, valid, strict=True) if ok]
        if any(self._overtaking.was_resent(r) for r in pending):
            self._resend_certify()
            self._start_view_change(self._view + 1)
            return
        chunk = 4 * self._config.batch_size
        for start in range(0, len(pending), chunk):
            resend = Overtaken(sender=self._id, requests=tuple(pending[start : start + chunk]))
            self._send(self.primary, resend.signed(self._key))
        for request in pending:
            self._overtaking.resent(request, self._now)

    def _resend_waiting(self) -> None:
        """Half the progress timeout has passed with requests pending and no block in flight: the
        primary may lack them (lost, or refused by its full pool) while no later request comes to
        overtake them. Send the primary the oldest ones not sent again already, as overtaken."""
        if self.primary == self._id or self._in_flight():
            return
        oldest = self._pool.batch(4 * self._config.batch_size)
        self._overtaken.extend(r for r in oldest if not self._overtaking.was_resent(r))

    def _reissued(self, slot: Slot) -> bool:
        """Whether ``slot`` holds the block this view's NEW-VIEW re-issued (prepared in an earlier
        view, judged fresh then), not one the primary proposed afresh."""
        new_view = self._new_view
        return (
            slot.view == self._view
            and new_view is not None
            and new_view.pre_prepare is not None
            and new_view.pre_prepare.seq == slot.seq
        )

    def _judged(self, seq: int, digest: bytes) -> bool:
        """Whether the block ``digest`` at ``seq`` is one the primary of this view chose (fresh, not
        re-issued from the NEW-VIEW), so that a backup judges the primary's order by it."""
        if not self._active or self.primary == self._id:
            return False
        slot = self._log.find(self._view, seq)
        if slot is None or slot.pre_prepare is None or slot.pre_prepare.digest != digest:
            return False
        new_view = self._new_view
        return new_view is None or new_view.pre_prepare is None or new_view.pre_prepare.seq != seq

    def pre_prepare(self, message: PrePrepare) -> None:
        """Triggered by: a PRE-PREPARE from the primary (normal case); NEW-VIEW re-issues go to
        :meth:`_accept_pre_prepare` directly. Accepted when in view, within the watermarks, with the
        block's digest, and with no other digest for (v, n); the block is checked once ``n - 1`` is applied."""
        if message.sender != self._q.leader(message.view):
            self._drop("not-primary")
            return
        if self._app.digest(message.block) != message.digest:
            self._drop("bad-digest")
            return
        if message.view <= self._view and max(self._low, self._height) < message.seq <= self.high:
            # kept even out of view (a certificate may name it later), one per (v, n); beyond the next
            # height (the one an honest primary proposes) within max_kept_block_bytes in all
            budget = self._config.max_kept_block_bytes if message.seq > self._height + 1 else math.inf
            if not self._log.keep_block(message.view, message.seq, message.digest, message.block, budget):
                self._drop("equivocation")
                return
            if message.digest not in self._log.blocks:
                self._drop("over-budget")
                return
        if self._in_window(message):
            self._accept_pre_prepare(message)

    def _accept_pre_prepare(self, message: PrePrepare, *, built: bool = False) -> None:
        slot = self._log.slot(message.view, message.seq, self._q.leader(message.view))
        if slot.pre_prepare is not None:
            if slot.pre_prepare.digest != message.digest:
                self._drop("equivocation")
            return
        slot.pre_prepare = message
        slot.validated = built
        self._log.store_block(message.seq, message.digest, message.block)
        self._log.offered.setdefault((message.view, message.seq), message.digest)

    def _validate(self, slot: Slot) -> None:
        """Check the buffered block of height ``h + 1`` now that ``h`` is applied; PREPARE it if good."""
        pre_prepare = slot.pre_prepare
        if pre_prepare is None or slot.validated or slot.invalid or slot.seq <= self._proven:
            return
        try:
            digest = self._app.validate(slot.seq, pre_prepare.block)
        except (ValueError, DidRegistryError):
            digest = b""
        problem = None if self._reissued(slot) else self._proposal_problem(pre_prepare.block)
        if digest != pre_prepare.digest or problem is not None:
            slot.invalid = True
            self._drop(problem or "invalid-block")
            return
        slot.validated = True
        if slot.primary != self._id:
            prepare = Prepare(sender=self._id, view=slot.view, seq=slot.seq, digest=digest)
            slot.prepares[self._id] = self._broadcast(prepare)

    def prepare(self, message: Prepare) -> None:
        """Triggered by: a PREPARE from a backup that accepted the PRE-PREPARE of (v, n)."""
        if not self._in_window(message):
            return
        if message.sender == self._q.leader(message.view):
            self._drop("prepare-from-primary")
            return
        slot = self._log.slot(message.view, message.seq, self._q.leader(message.view))
        earlier = slot.prepares.get(message.sender)
        if earlier is not None and earlier.digest != message.digest:
            self._drop("equivocation")
            return
        slot.prepares[message.sender] = message
        self._check_prepared(slot)

    def _check_prepared(self, slot: Slot) -> None:
        if slot.prepared or not slot.validated or len(slot.matching_prepares()) < self._q.size - 1:
            return
        assert slot.pre_prepare is not None
        slot.prepared = True
        self._log.keep_prepared(slot)
        commit = Commit(sender=self._id, view=slot.view, seq=slot.seq, digest=slot.pre_prepare.digest)
        slot.commits[self._id] = self._broadcast(commit)
        self._check_committed(slot)

    def commit(self, message: Commit) -> None:
        """Triggered by: a COMMIT from a validator that is prepared at (v, n)."""
        if not self._in_window(message):
            return
        slot = self._log.slot(message.view, message.seq, self._q.leader(message.view))
        earlier = slot.commits.get(message.sender)
        if earlier is not None and earlier.digest != message.digest:
            self._drop("equivocation")
            return
        slot.commits[message.sender] = message
        self._check_committed(slot)

    def _check_committed(self, slot: Slot) -> None:
        if slot.committed or not slot.prepared or slot.matching_commits() < self._q.size:
            return
        assert slot.pre_prepare is not None
        slot.committed = True
        self._sign_certify(slot.seq, slot.pre_prepare.digest)
        self._execute()

    def _sign_certify(self, seq: int, digest: bytes) -> None:
        """Send this validator's commit signature for ``digest`` at ``seq`` (once per height)."""
        if self._id in self._log.certify.get(seq, {}):
            return
        signature = self._q.sign_commit(digest, self._key)
        certify = Certify(sender=self._id, seq=seq, digest=digest, commit_signature=signature)
        self._log.add_certify(self._broadcast(certify))

    def _resend_certify(self) -> None:
        """Send our CERTIFY for the next height again: peers that lost it cannot execute without it."""
        own = self._log.certify.get(self._height + 1, {}).get(self._id)
        if own is not None:
            self._out.append(Broadcast(own))

    def certify(self, message: Certify) -> None:
        """Triggered by: a CERTIFY from a validator that committed (v, n) locally, or that executed it."""
        if not self._q.commit_signature_ok(message.sender, message.digest, message.commit_signature):
            self._drop("bad-commit-signature")
            return
        if message.seq <= self._height:
            return
        self._claim(message.sender, message.seq)
        if message.seq > self.high:
            return
        if not self._log.add_certify(message):
            self._drop("equivocation")
            return
        self._execute()

    def _execute(self) -> None:
        """Execute every certified block in height order (certified by CERTIFY votes, or by a certificate
        a VIEW-CHANGE carried); stop at a gap or at a block not yet seen."""
        while True:
            seq = self._height + 1
            found = self._log.certified(seq, self._q.size)
            if found is not None:
                digest, votes = found
                certificate = self._q.certificate(seq, digest, {v.sender: v.commit_signature for v in votes})
            elif seq in self._certificates:
                certificate = self._certificates[seq]
                digest = bytes.fromhex(certificate.block_hash)
            else:
                return
            entry = self._log.blocks.get(digest)
            if entry is None:
                self._learn_height(seq)
                return
            self._out.append(Committed(seq, entry[1], certificate))
            self._sign_certify(seq, digest)
            self._height, self._certificate = seq, certificate
            requests = self._app.requests(entry[1])
            judged = self._judged(seq, digest)
            arrivals = [t for t in map(self._pool.arrival, requests) if t is not None] if judged else []
            self._pool.discard(requests)
            self._overtaking.discard(requests)
            self._overtaken.extend(self._overtaking.executed(self._pool, arrivals))
            self._log.executed(seq)
            self._executed(seq)
            self._timers.clear("progress")
            self._timers.clear("resend")
            if self._active:
                self._failures = 0
            if seq % self._config.checkpoint_interval == 0:
                checkpoint = self._broadcast(Checkpoint(sender=self._id, seq=seq, digest=digest))
                self._own_checkpoint = checkpoint
                self._log.add_checkpoint(checkpoint)
                self._timers.set("checkpoint", self._now + self._config.retransmit_interval)
                self._check_stable(seq)

    # -- checkpoints and garbage collection ------------------------------------------------------
    def checkpoint(self, message: Checkpoint) -> None:
        """Triggered by: a CHECKPOINT a validator sends after executing a multiple of K (or resends)."""
        if message.seq % self._config.checkpoint_interval:
            self._drop("outside-watermarks")
        elif message.seq <= self._low:
            if self._stable and self._may_help(message.sender):
                for proof in self._stable:
                    self._send(message.sender, proof)
        elif message.seq > self._low + 2 * self._config.watermark_window:
            self._drop("outside-watermarks")
        elif not self._log.add_checkpoint(message):
            self._drop("equivocation")
        else:
            self._check_stable(message.seq)

    def _check_stable(self, seq: int) -> None:
        proof = self._log.checkpoint_proof(seq, self._q.size)
        if proof is None or seq <= self._low:
            return
        self._low, self._stable = seq, proof
        self._log.collect(seq)
        self._learn_height(seq)
        if self._own_checkpoint is not None and self._own_checkpoint.seq <= seq:
            self._timers.clear("checkpoint")

    # -- the call cycle --------------------------------------------------------------------------
    def _waiting(self) -> bool:
        """Waiting to execute something: pending requests, a block in flight, or a block falling due."""
        return bool(self._pool) or self._in_flight() or self._freshness_due()

    def _in_flight(self) -> bool:
        """A block in flight in this view: a slot holding the primary's PRE-PREPARE (votes alone, which
        any validator can send, are no block)."""
        return any(
            seq > self._height and slot.pre_prepare is not None for (_, seq), slot in self._log.slots.items()
        )

    def _propose(self) -> None:
        """The primary proposes height ``h + 1`` once ``h`` is applied and a batch is ready."""
        seq = self._height + 1
        if not self._active or self.primary != self._id or seq > self.high or seq <= self._proven:
            return
        slot = self._log.find(self._view, seq)
        if slot is not None and slot.pre_prepare is not None:
            return  # (votes for (v, n) that arrived before any PRE-PREPARE must not stop the primary)
        oldest = self._pool.oldest()
        if oldest is None:
            if self._freshness_due():
                self._propose_block(seq, [])  # an empty block, to show the ledger is live
            return
        if len(self._pool) < self._config.batch_size and self._now < oldest + self._config.batch_timeout:
            self._timers.set("batch", oldest + self._config.batch_timeout)
            return
        self._propose_block(seq, self._pool.batch(self._config.batch_size))

    def _propose_block(self, seq: int, batch: list[bytes]) -> None:
        """Build block ``seq`` from ``batch`` (possibly empty; its oldest requests a block can hold)
        and send its PRE-PREPARE."""
        block, batch = self._propose_within(seq, batch, self._timestamp(self._now))
        included = set(self._app.requests(block)) if block is not None else set()
        self._pool.discard([r for r in batch if r not in included and not self._app.check(r)])
        if block is None:
            self._timers.set("batch", self._now + self._config.batch_timeout)
            return
        message = PrePrepare(
            sender=self._id, view=self._view, seq=seq, digest=self._app.digest(block), block=block
        )
        self._accept_pre_prepare(self._broadcast(message), built=True)

    def _after(self) -> None:
        if self._overtaken and self._height == self._settled:
            self._act_on_overtaken()
        if self._height == self._settled:
            slot = self._log.find(self._view, self._height + 1) if self._active else None
            if slot is not None:
                self._validate(slot)
                self._check_prepared(slot)
            self._execute()
        if self._height == self._settled:
            self._propose()
        if self._height > self._settled:
            self._timers.set("continue", self._now)
            return
        if self._active and self._waiting():
            if self._timers.get("progress") is None:
                timeout = self._config.backoff(self._failures)
                self._timers.set("progress", self._now + timeout)
                if self.primary != self._id:
                    self._timers.set("resend", self._now + timeout / 2)
        else:
            self._timers.clear("progress")
            self._timers.clear("resend")

    def _tick(self) -> None:
        super()._tick()
        now = self._now
        self._timers.due("continue", now)
        self._timers.due("batch", now)
        own = self._own_checkpoint
        if self._timers.due("checkpoint", now) and own is not None and own.seq > self._low:
            self._out.append(Broadcast(own))
            self._timers.set("checkpoint", now + self._config.retransmit_interval)
        if self._timers.due("resend", now) and self._active and self._timers.get("progress") is not None:
            self._resend_waiting()
        if self._timers.due("progress", now) and self._active:
            self._pool.retain(self._app.check)
            if self._waiting():
                self._resend_certify()
                self._start_view_change(self._view + 1)
        if self._timers.due("view-change", now) and not self._active:
            self._view_change_timeout()

    def _transferred(self) -> None:
        interval = self._config.checkpoint_interval
        self._log.executed(self._height)
        self._executed(self._height)
        self._low = max(self._low, self._height - self._height % interval)
        self._log.collect(self._low)
        self._timers.clear("progress")
        self._timers.clear("resend")

"""The PBFT message log: what one validator has accepted, per view and sequence number.

Castro & Liskov §4.2-4.3 (``docs/consensus.md`` § The log). A :class:`Slot` holds the PRE-PREPARE,
PREPAREs and COMMITs of one ``(view, seq)``; the predicates *prepared* and *committed-local* read
from it. Beside the slots the log keeps the blocks seen (by digest, so a block can be committed on a
certificate even when its PRE-PREPARE came in another view), the best prepared certificate per
sequence number (the P set of a VIEW-CHANGE), CERTIFY votes and CHECKPOINT messages. Slots and
blocks go when their height is executed; CERTIFY and CHECKPOINT messages at or below the stable
checkpoint go when it becomes stable (garbage collection, §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from did_registry.consensus.messages import (
    Certify,
    Checkpoint,
    Commit,
    Prepare,
    PreparedCertificate,
    PrePrepare,
)

__all__ = ["MessageLog", "Slot"]


@dataclass(slots=True)
class Slot:
    """What this validator knows of sequence number ``seq`` in view ``view``."""

    view: int
    seq: int
    primary: str
    pre_prepare: PrePrepare | None = None
    validated: bool = False
    """The application accepted the block (or this validator built it)."""
    invalid: bool = False
    """The application rejected the block: this validator will not prepare it."""
    prepares: dict[str, Prepare] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    prepared: bool = False
    """prepared(m, v, n): the PRE-PREPARE and ``q - 1`` matching PREPAREs from backups (COMMIT sent)."""
    committed: bool = False
    """committed-local(m, v, n): prepared and ``q`` matching COMMITs (CERTIFY sent)."""

    def matching_prepares(self) -> list[Prepare]:
        """The PREPAREs from backups that match the PRE-PREPARE's digest."""
        if self.pre_prepare is None:
            return []
        digest = self.pre_prepare.digest
        return [p for s, p in sorted(self.prepares.items()) if p.digest == digest and s != self.primary]

    def matching_commits(self) -> int:
        """How many COMMITs match the PRE-PREPARE's digest."""
        if self.pre_prepare is None:
            return 0
        digest = self.pre_prepare.digest
        return sum(1 for c in self.commits.values() if c.digest == digest)


class MessageLog:
    """The slots, blocks, prepared certificates, CERTIFY votes and checkpoints one validator keeps."""

    def __init__(self) -> None:
        self.slots: dict[tuple[int, int], Slot] = {}
        self.blocks: dict[bytes, tuple[int, bytes]] = {}
        self.offered: dict[tuple[int, int], bytes] = {}  # (view, seq) -> the digest its primary offered
        self.block_bytes = 0  # the size of the blocks kept
        self.prepared: dict[int, PreparedCertificate] = {}
        self.certify: dict[int, dict[str, Certify]] = {}
        self.checkpoints: dict[int, dict[str, Checkpoint]] = {}

    def slot(self, view: int, seq: int, primary: str) -> Slot:
        """The slot of ``(view, seq)``, created empty when new."""
        slot = self.slots.get((view, seq))
        if slot is None:
            slot = self.slots[(view, seq)] = Slot(view, seq, primary)
        return slot

    def find(self, view: int, seq: int) -> Slot | None:
        """The slot of ``(view, seq)`` when one exists."""
        return self.slots.get((view, seq))

    def keep_block(self, view: int, seq: int, digest: bytes, block: bytes, max_bytes: float) -> bool:
        """Keep the block a PRE-PREPARE of ``(view, seq)`` carries, so that a certificate naming it can
        be executed: one per ``(view, seq)`` (a primary offers one; ``False`` when it offered another:
        equivocation, nothing kept), and none beyond ``max_bytes`` in all."""
        offered = self.offered.get((view, seq))
        if offered is not None:
            return offered == digest
        if digest not in self.blocks:
            if self.block_bytes + len(block) > max_bytes:
                return True  # not kept, not refused: the block can still be fetched by state transfer
            self.store_block(seq, digest, block)
        self.offered[(view, seq)] = digest
        return True

    def store_block(self, seq: int, digest: bytes, block: bytes) -> None:
        """Keep the block of ``digest`` for height ``seq`` (a slot's own block: whatever the budget)."""
        if digest not in self.blocks:
            self.blocks[digest] = (seq, block)
            self.block_bytes += len(block)

    def keep_prepared(self, slot: Slot) -> None:
        """Record ``slot``'s prepared certificate if it is from a later view than the one kept."""
        assert slot.pre_prepare is not None
        kept = self.prepared.get(slot.seq)
        if kept is None or kept.pre_prepare.view < slot.view:
            self.prepared[slot.seq] = PreparedCertificate(slot.pre_prepare, tuple(slot.matching_prepares()))

    def add_certify(self, message: Certify) -> bool:
        """Keep a CERTIFY vote; ``False`` when its sender certified another digest at that height."""
        votes = self.certify.setdefault(message.seq, {})
        earlier = votes.get(message.sender)
        if earlier is not None and earlier.digest != message.digest:
            return False
        votes[message.sender] = message
        return True

    def certified(self, seq: int, size: int) -> tuple[bytes, list[Certify]] | None:
        """The digest ``size`` validators certified at ``seq``, with their votes, if there is one."""
        votes = self.certify.get(seq, {})
        tally: dict[bytes, list[Certify]] = {}
        for sender in sorted(votes):
            tally.setdefault(votes[sender].digest, []).append(votes[sender])
        for digest, found in tally.items():
            if len(found) >= size:
                return digest, found
        return None

    def add_checkpoint(self, message: Checkpoint) -> bool:
        """Keep a CHECKPOINT; ``False`` when its sender named another digest for that height."""
        votes = self.checkpoints.setdefault(message.seq, {})
        earlier = votes.get(message.sender)
        if earlier is not None and earlier.digest != message.digest:
            return False
        votes[message.sender] = message
        return True

    def checkpoint_proof(self, seq: int, size: int) -> tuple[Checkpoint, ...] | None:
        """``size`` matching CHECKPOINTs for ``seq`` (a stable checkpoint proof), if there are."""
        votes = self.checkpoints.get(seq, {})
        tally: dict[bytes, list[Checkpoint]] = {}
        for sender in sorted(votes):
            tally.setdefault(votes[sender].digest, []).append(votes[sender])
        for found in tally.values():
            if len(found) >= size:
                return tuple(found)
        return None

    def executed(self, height: int) -> None:
        """Forget slots, blocks and prepared certificates at or below an executed height."""
        self.slots = {k: s for k, s in self.slots.items() if k[1] > height}
        self.blocks = {d: b for d, b in self.blocks.items() if b[0] > height}
        self.offered = {k: d for k, d in self.offered.items() if k[1] > height}
        self.block_bytes = sum(len(b[1]) for b in self.blocks.values())
        self.prepared = {n: p for n, p in self.prepared.items() if n > height}

    def views_before(self, view: int) -> None:
        """Forget the slots of views before ``view`` (a new view started)."""
        self.slots = {k: s for k, s in self.slots.items() if k[0] >= view}

    def collect(self, stable: int) -> None:
        """Garbage-collect CERTIFY votes and checkpoints at or below the stable checkpoint."""
        self.certify = {n: v for n, v in self.certify.items() if n > stable}
        self.checkpoints = {n: v for n, v in self.checkpoints.items() if n > stable}

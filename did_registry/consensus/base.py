"""The consensus interface: what every engine takes in, gives out, and is configured with.

An engine is a sans-IO state machine (``did_registry/consensus/README.md``, ``docs/consensus.md``):
requests, messages, timer ticks and state-transfer notices go in; messages to send, timers to set,
committed blocks and state-transfer requests come out as returned lists of :data:`Output`. It reaches
the ledger only through :class:`BlockApp`, which sees blocks as opaque bytes.

The driver's contract:

* call ``on_tick(now)`` with monotonic seconds at (or after) every :class:`SetTimer` deadline, and
  whenever its clock has moved before delivering other inputs;
* apply every :class:`Committed` to the application (in order) before the next input: engines never
  build or check block ``h + 1`` in the call that committed ``h``, they ask for a tick instead;
* answer :class:`NeedState` by installing certified blocks from peers, then call
  ``on_state_transferred`` with the certificate of the last one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from did_registry.consensus.errors import InvalidConsensusConfig
from did_registry.consensus.messages import Message
from did_registry.ledger.block import CommitCertificate

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
]


class BlockApp(Protocol):
    """The application consensus orders blocks for (the node implements it over the ledger).

    Every method is deterministic and sees blocks and requests as opaque bytes. ``validate`` and
    ``propose`` are only called for height ``h + 1`` once block ``h`` is applied.
    """

    def propose(self, height: int, requests: Sequence[bytes], time: str) -> bytes | None:
        """Build block ``height`` from (some of) ``requests``; ``None`` when none can go in."""
        ...

    def validate(self, height: int, block: bytes) -> bytes:
        """Check block ``height`` against the head; return its digest, raise ``ValueError`` or
        :class:`~did_registry.errors.DidRegistryError` when it is invalid."""
        ...

    def digest(self, block: bytes) -> bytes:
        """The 32-byte digest validators sign (``commit_message(digest)``); never raises."""
        ...

    def timely(self, block: bytes) -> bool:
        """Whether a freshly proposed ``block`` is dated close to this validator's clock (readers judge
        how fresh their view is by certified block times); never raises. Blocks offered again after
        a view or round change were judged when first offered and are not asked about."""
        ...

    def requests(self, block: bytes) -> Sequence[bytes]:
        """The requests a committed block holds (dropped from the pending pool)."""
        ...

    def check(self, request: bytes) -> bool:
        """Whether ``request`` may still go into a block (admission, and re-checking old requests)."""
        ...

    def check_many(self, requests: Sequence[bytes]) -> list[bool]:
        """:meth:`check` of each request that arrived together (a peer's forwarded batch), in order:
        the same answers, so an application may read what they need in bulk."""
        ...


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the validator ``to``."""

    to: str
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``on_tick`` at monotonic time ``at`` (replaces an earlier timer of the same name)."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Forget the timer ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class Committed:
    """Block ``height`` is final: apply it; ``certificate`` holds a quorum of commit signatures."""

    height: int
    block: bytes
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class NeedState:
    """This validator is behind: fetch certified blocks from ``from_height`` on from peers."""

    from_height: int


Output = Send | Broadcast | SetTimer | CancelTimer | Committed | NeedState
"""Everything an engine asks its driver to do."""


class Engine(Protocol):
    """A consensus engine. Built with ``(validator_id, key, validators, app, config, resume=…,
    restarted=…, timestamp=…)``."""

    @property
    def validator_id(self) -> str:
        """This validator's id."""
        ...

    @property
    def height(self) -> int:
        """The last committed height."""
        ...

    @property
    def dropped(self) -> Mapping[str, int]:
        """How many inputs were dropped, by reason (malformed, bad-signature, wrong-view, …)."""
        ...

    @property
    def max_request_bytes(self) -> int:
        """The largest request this engine takes now (``max_request_bytes``, within what a block of
        the set in force can hold): a larger one is dropped, so a node refuses it at its door."""
        ...

    def on_request(self, request: bytes) -> list[Output]:
        """A client request (transaction) reached this validator."""
        ...

    def on_requests(self, requests: Sequence[bytes]) -> list[Output]:
        """Several client requests at once (forwarded together)."""
        ...

    def on_message(self, sender: str, message: Message) -> list[Output]:
        """A parsed message arrived from peer ``sender`` (it may relay another validator's message)."""
        ...

    def on_payload(self, sender: str, payload: bytes) -> list[Output]:
        """Wire bytes arrived from peer ``sender``: parse strictly, then as :meth:`on_message`."""
        ...

    def on_tick(self, now: float) -> list[Output]:
        """The driver's monotonic clock reads ``now`` (seconds)."""
        ...

    def on_state_transferred(self, certificate: CommitCertificate) -> list[Output]:
        """The driver installed verified blocks up to ``certificate.height``."""
        ...


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """Engine settings (seconds and block counts); see ``docs/consensus.md`` § Configuration."""

    batch_size: int = 500
    """Requests per block at most; the primary proposes as soon as this many are pending."""
    batch_timeout: float = 0.05
    """The primary proposes a partial batch once its oldest request has waited this long."""
    view_change_timeout: float = 2.0
    """How long a validator waits for progress before it asks for a new view (or round)."""
    view_change_timeout_max: float = 60.0
    """The cap of the exponential back-off (the timeout doubles with each failed view)."""
    checkpoint_interval: int = 100
    """K: a checkpoint every K blocks."""
    watermark_window: int = 200
    """L: messages are accepted for heights in (low, low + L], low = the stable checkpoint."""
    retransmit_interval: float = 0.5
    """How often unanswered view changes and unstable checkpoints are sent again."""
    max_pending: int = 100_000
    """Requests kept waiting at most; more are dropped (a primary also keeps up to this many per backup
    that the backup sent again as overtaken: ``docs/consensus.md`` § Censorship)."""
    max_pending_bytes: int = 256 << 20
    """Bytes of requests kept waiting at most (a validator forwarding large junk cannot fill the
    others' memory within ``max_pending`` requests)."""
    max_request_bytes: int = 1 << 20
    """Largest request accepted."""
    max_message_bytes: int = 64 << 20
    """Largest wire message accepted by ``on_payload``."""
    max_kept_block_bytes: int = 1 << 30
    """Most bytes of blocks kept from PRE-PREPAREs not (yet) in a slot of this view, for certificates
    that may name them later (one block per view and height); beyond it they are not kept, and a
    block certified later comes by state transfer."""
    overtake_batches: int = 2
    """K = ``overtake_batches * batch_size``: a backup acts on a pending request once blocks of the
    primary have included K requests it first saw more than ``overtake_margin`` later (censorship)."""
    overtake_margin: float = 1.0
    """How much later than a pending request (seconds) a request must have reached this validator to
    count as overtaking it: it covers the difference in network delay to two validators."""
    freshness_interval: float = 10.0
    """Once this long (seconds) has passed since this validator reached the head, the proposer commits
    a block even with no request (an empty one), and a validator waits for one as for a pending
    request: so the time of the newest certified block shows a reader how fresh its view is, and a
    node hiding newer blocks is found out (``docs/consensus.md`` § 9a). A validator accepts a fresh
    empty block only half an interval after it reached the head, so empty blocks cannot keep
    resetting its progress timer; hence it must be more than twice ``view_change_timeout``. 0 turns
    it off (and then no empty block is accepted)."""

    @classmethod
    def testing(cls) -> ConsensusConfig:
        """A profile with short timeouts and small intervals, for tests and the simulator."""
        return cls(
            batch_size=8,
            batch_timeout=0.02,
            view_change_timeout=0.5,
            view_change_timeout_max=4.0,
            checkpoint_interval=4,
            watermark_window=12,
            retransmit_interval=0.25,
            max_pending=10_000,
            overtake_margin=0.5,
            freshness_interval=0.0,  # off: a lone engine in a test stays idle (the simulator turns it on)
        )

    def validate(self) -> ConsensusConfig:
        """Return ``self`` when every value is in range; raise :class:`InvalidConsensusConfig`."""
        problems = [
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.batch_timeout > 0, "batch_timeout must be positive"),
            (self.view_change_timeout > self.batch_timeout, "view_change_timeout must exceed batch_timeout"),
            (
                self.view_change_timeout_max >= self.view_change_timeout,
                "view_change_timeout_max is below the timeout",
            ),
            (self.checkpoint_interval >= 1, "checkpoint_interval must be at least 1"),
            (
                self.watermark_window >= 2 * self.checkpoint_interval,
                "watermark_window must be >= 2 * checkpoint_interval",
            ),
            (self.retransmit_interval > 0, "retransmit_interval must be positive"),
            (self.max_pending >= self.batch_size, "max_pending must be >= batch_size"),
            (self.max_request_bytes >= 1, "max_request_bytes must be positive"),
            (
                self.max_pending_bytes >= self.max_request_bytes,
                "max_pending_bytes must be >= max_request_bytes",
            ),
            (self.max_message_bytes >= 1024, "max_message_bytes must be at least 1024"),
            (self.max_kept_block_bytes >= 0, "max_kept_block_bytes must not be negative"),
            (
                self.freshness_interval == 0 or self.freshness_interval > 2 * self.view_change_timeout,
                "freshness_interval must be 0 (off) or more than twice view_change_timeout",
            ),
            (self.overtake_batches >= 1, "overtake_batches must be at least 1"),
            (self.overtake_margin >= 0, "overtake_margin must not be negative"),
        ]
        for ok, reason in problems:
            if not ok:
                raise InvalidConsensusConfig(reason)
        return self

    @property
    def overtake_threshold(self) -> int:
        """K: how many overtaking requests make a backup act on a pending request."""
        return self.overtake_batches * self.batch_size

    def backoff(self, failures: int) -> float:
        """The view-change timeout after ``failures`` failed views in a row: doubled each time, capped."""
        return min(self.view_change_timeout * float(2 ** min(failures, 32)), self.view_change_timeout_max)

"""What every engine does the same way: set-up checks, the call cycle, requests, falling behind.

Each public input runs one *call*: the engine handles it, then :meth:`EngineCore._after` lets it
schedule follow-up work, and the outputs go back with the timer changes appended. ``_settled`` is
the height the driver has applied (everything committed before this call): block ``h + 1`` is only
built or checked when ``_settled == h``, otherwise the engine asks for an immediate tick.

A validator is *behind* when it knows of a committed height above its own (a valid certificate, a
stable checkpoint, or ``f + 1`` validators certifying a higher block). If that lasts a retransmit
interval it emits :class:`~did_registry.consensus.base.NeedState`, again every view-change timeout
until the driver reports the transfer. It never votes for a block at or below a *proven* height (one
it holds a certificate or a stable checkpoint for): that block is decided, and it gets it by
certificate or by state transfer. See ``docs/consensus.md`` § State transfer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from did_registry.consensus.base import BlockApp, Broadcast, ConsensusConfig, NeedState, Output, Send
from did_registry.consensus.errors import InvalidConsensusConfig, InvalidMessage
from did_registry.consensus.messages import Certificate, Message, decode
from did_registry.consensus.pool import Deadlines, RequestPool
from did_registry.consensus.quorum import Quorum
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.timestamps import format_timestamp
from did_registry.ledger.block import CommitCertificate, InvalidCertificate
from did_registry.ledger.validators import ValidatorSet

__all__ = ["EngineCore", "max_block_bytes", "utc_timestamp"]

M = TypeVar("M", bound=Message)
_COPY_OVERHEAD = 1024  # bytes a copy of a block costs in a NEW-VIEW beyond its encoding: its
# PRE-PREPARE's fields and signature; and per validator (below) a PREPARE of its prepared
# certificate and a signature of its VIEW-CHANGE's commit certificate
_PER_VALIDATOR_OVERHEAD = 400
_BLOCK_ROOM = 1024  # a first guess at what a block holds besides its requests (header, framing)


def max_block_bytes(max_message_bytes: int, n: int) -> int:
    """The largest block a PRE-PREPARE may carry among ``n`` validators: a NEW-VIEW holds it up to
    ``n + 1`` times (in O, and in each VIEW-CHANGE's prepared certificate), base64url-encoded, and
    must still fit ``max_message_bytes``, or no view change could ever re-issue it."""
    per_copy = max_message_bytes // (n + 1) - _COPY_OVERHEAD - _PER_VALIDATOR_OVERHEAD * n
    return max(0, per_copy * 3 // 4)


def utc_timestamp(now: float) -> str:
    """Block time for ``now`` read as Unix seconds (the default; drivers pass a wall clock)."""
    return format_timestamp(datetime.fromtimestamp(now, UTC))


class EngineCore:
    """The shared half of an engine; subclasses implement ``_handle``, ``_tick`` and ``_after``."""

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
        self._config = (config or ConsensusConfig()).validate()
        self._q = Quorum(validators)
        if validator_id not in self._q:
            raise InvalidConsensusConfig(f"{validator_id!r} is not in the validator set")
        if self._q.key(validator_id) != key.public_key:
            raise InvalidConsensusConfig(f"the key given is not {validator_id}'s validator key")
        self._id = validator_id
        self._key = key
        self._app = app
        self._timestamp = timestamp
        self._height = 0
        self._certificate: CommitCertificate | None = None
        # the set that certified the head this engine resumes at (the set before a change, when the set
        # just changed): certificates of heights up to it, in VIEW-CHANGEs say, are that set's
        self._resume_q = self._q if resume_validators is None else Quorum(resume_validators)
        if resume is not None:
            self._resume_q.check_certificate(resume)
            self._height, self._certificate = resume.height, resume
        self._resume_height = self._height
        self._settled = self._height
        self._restarted = resume is not None if restarted is None else restarted
        self._known = self._height
        self._proven = self._height
        self._now = 0.0
        self._pool = RequestPool(self._config.max_pending, self._config.max_pending_bytes)
        self._timers = Deadlines()
        self._out: list[Output] = []
        self._dropped: Counter[str] = Counter()
        self._behind_since: float | None = None
        self._state_asked: tuple[int, float] | None = None
        self._helped: dict[str, float] = {}
        self._certificates: dict[int, CommitCertificate] = {}  # checked, for heights above ours
        self._ahead: dict[str, int] = {}  # the highest height each validator claims to have reached
        self._head_at: float | None = None  # when the head was reached (from the first tick on)
        self._head_by_commit = False  # reached by executing a block (not by starting or state transfer)

    def _certifying(self, height: int) -> Quorum:
        """The quorum whose certificates are valid for block ``height``: the set this engine resumed
        under for heights up to its resume height, its own set above."""
        return self._resume_q if height <= self._resume_height else self._q

    # -- read-only state ------------------------------------------------------------------------
    @property
    def validator_id(self) -> str:
        """This validator's id."""
        return self._id

    @property
    def height(self) -> int:
        """The last committed height."""
        return self._height

    @property
    def certificate(self) -> CommitCertificate | None:
        """The certificate of the last committed block (``None`` at height 0)."""
        return self._certificate

    @property
    def dropped(self) -> Mapping[str, int]:
        """How many inputs were dropped, by reason."""
        return dict(self._dropped)

    @property
    def pending(self) -> int:
        """How many requests wait to be committed."""
        return len(self._pool)

    # -- the inputs ----------------------------------------------------------------------------
    def on_request(self, request: bytes) -> list[Output]:
        """A client request reached this validator: keep it, forward it, start watching it."""
        return self.on_requests((request,))

    def on_requests(self, requests: Sequence[bytes]) -> list[Output]:
        """Several client requests reached this validator: the new ones are forwarded in one message."""
        self._begin()
        admitted = self._admit_all(requests)
        if admitted:
            self._forward(admitted)
        return self._end()

    def on_message(self, sender: str, message: Message) -> list[Output]:
        """A message from peer ``sender``; it is authenticated by its own signature."""
        self._begin()
        self._receive(message)
        return self._end()

    def on_payload(self, sender: str, payload: bytes) -> list[Output]:
        """Wire bytes from peer ``sender``; malformed ones are dropped and counted."""
        self._begin()
        if len(payload) > self._config.max_message_bytes:
            self._drop("oversized")
        else:
            try:
                message = decode(payload)
            except InvalidMessage as exc:
                self._drop(exc.code)
            else:
                self._receive(message)
        return self._end()

    def on_tick(self, now: float) -> list[Output]:
        """The driver's clock reads ``now``."""
        self._begin()
        self._now = max(self._now, now)
        if self._head_at is None:
            self._head_at = self._now
        self._timers.fired(self._now)
        self._tick()
        return self._end()

    def on_state_transferred(self, certificate: CommitCertificate) -> list[Output]:
        """The driver installed verified blocks up to ``certificate.height`` (raises on a bad certificate)."""
        self._begin()
        self._q.check_certificate(certificate)
        if certificate.height > self._height:
            self._height = self._settled = certificate.height
            self._certificate = certificate
            self._pool.retain(self._app.check)
            self._state_asked = None
            self._transferred()
            self._head_reached(by_commit=False)
        return self._end()

    # -- the call cycle --------------------------------------------------------------------------
    def _begin(self) -> None:
        self._settled = self._height
        self._out = []

    def _end(self) -> list[Output]:
        self._after()
        self._watch_behind()
        self._watch_freshness()
        out, self._out = self._out, []
        out.extend(self._timers.outputs())
        return out

    def _receive(self, message: Message) -> None:
        try:
            self._q.authenticate(message)
        except InvalidMessage as exc:
            self._drop(exc.code)
            return
        if message.sender == self._id:
            self._drop("own-message")
            return
        if isinstance(message, Certificate):
            try:
                self._q.check_certificate(message.certificate)
            except InvalidCertificate:
                self._drop("invalid-certificate")
                return
            self._learn_certificate(message.certificate)
            return
        self._handle(message)

    def _drop(self, reason: str) -> None:
        self._dropped[reason] += 1

    def _broadcast(self, message: M) -> M:
        """Sign ``message`` and send it to every other validator; return the signed message."""
        signed = message.signed(self._key)
        self._out.append(Broadcast(signed))
        return signed

    def _send(self, to: str, message: Message) -> None:
        """Send an already signed message (this validator's or another's) to ``to``."""
        self._out.append(Send(to, message))

    def _may_help(self, peer: str) -> bool:
        """Rate limit for answering a lagging peer: once per retransmit interval."""
        last = self._helped.get(peer)
        if last is not None and self._now - last < self._config.retransmit_interval:
            return False
        self._helped[peer] = self._now
        return True

    def _admit_all(self, requests: Sequence[bytes], *, beyond_limit: int = 0) -> tuple[bytes, ...]:
        """Keep those of ``requests`` that are new, small enough and acceptable to the application
        (asked about them all in one call); return the ones kept. Up to ``beyond_limit`` of them are
        kept even when the pool is full."""
        candidates: dict[bytes, None] = {}
        largest = self._max_request  # (worked out once per batch, not per request)
        for request in requests:
            if not isinstance(request, bytes) or not 0 < len(request) <= largest:
                self._drop("bad-request")
            elif request not in self._pool:
                candidates[request] = None
        if not candidates:
            return ()
        admitted = []
        for request, good in zip(candidates, self._app.check_many(list(candidates)), strict=True):
            if not good:
                self._drop("rejected-request")
            elif not self._pool.add(request, self._now, beyond_limit=beyond_limit > 0):
                self._drop("pool-full")
            else:
                admitted.append(request)
                if len(self._pool) > self._pool.limit:
                    beyond_limit -= 1
        return tuple(admitted)

    def _learn_height(self, height: int, *, proven: bool = True) -> None:
        """``height`` is committed: ``proven`` by a certificate or a stable checkpoint (then this
        validator will not vote at or below it), or only claimed by ``f + 1`` validators."""
        self._known = max(self._known, height)
        if proven:
            self._proven = max(self._proven, height)

    def _learn_certificate(self, certificate: CommitCertificate | None) -> None:
        """A checked certificate of another validator: it proves its height, and with the block at
        hand it lets this validator execute that height."""
        if certificate is None:
            return
        if self._height < certificate.height <= self._height + self._config.watermark_window:
            self._certificates.setdefault(certificate.height, certificate)
        self._learn_height(certificate.height)

    def _claim(self, sender: str, height: int) -> None:
        """``sender`` showed it is at ``height``; ``f + 1`` such claims above ours mean we are behind."""
        if height <= self._height + 1:
            return
        self._ahead[sender] = max(self._ahead.get(sender, 0), height)
        claims = sorted(self._ahead.values(), reverse=True)
        if len(claims) > self._q.f:
            self._learn_height(claims[self._q.f], proven=False)

    def _executed(self, height: int) -> None:
        """Forget certificates and claims at or below an executed height."""
        self._certificates = {h: c for h, c in self._certificates.items() if h > height}
        self._ahead = {s: h for s, h in self._ahead.items() if h > height}
        self._head_reached()

    # -- freshness (docs/consensus.md § Freshness) ------------------------------------------------
    def _head_reached(self, *, by_commit: bool = True) -> None:
        """The head moved (a commit or a state transfer): the next block is due one interval from now."""
        if self._head_at is not None:
            self._head_at = self._now
            self._head_by_commit = by_commit

    def _freshness_due(self) -> bool:
        """Whether a block is due, with or without requests: ``freshness_interval`` has passed since
        this validator reached its head."""
        interval = self._config.freshness_interval
        return interval > 0 and self._head_at is not None and self._now >= self._head_at + interval

    def _empty_block_acceptable(self) -> bool:
        """Whether a freshly proposed empty block may be accepted: one is due, give or take half an
        interval (the proposer reached the head a little before or after this validator). Earlier
        ones could keep resetting the progress timer while a request is left out (censorship). A
        validator that reached its head by starting or by state transfer, not by executing a block,
        cannot tell when the others reached it: it accepts the first empty block (or a restart would
        cost the network a view change)."""
        interval = self._config.freshness_interval
        if interval <= 0 or self._head_at is None:
            return False
        return not self._head_by_commit or self._now >= self._head_at + interval / 2

    @property
    def _max_block(self) -> int:
        """The largest block proposed or accepted in the set in force (:func:`max_block_bytes`)."""
        return max_block_bytes(self._config.max_message_bytes, self._q.n)

    @property
    def _max_request(self) -> int:
        """The largest request taken: ``max_request_bytes``, and no larger than a block can hold."""
        return min(self._config.max_request_bytes, self._max_block - _BLOCK_ROOM)

    @property
    def max_request_bytes(self) -> int:
        """The largest request this engine takes in the set in force (:attr:`Engine.max_request_bytes`)."""
        return max(0, self._max_request)

    def _proposal_payload(self, requests: Sequence[bytes]) -> list[bytes]:
        """The oldest of ``requests`` (in order) a block can hold: their bytes within the block size.
        A request no block can hold (taken while the set was smaller) leaves the pool."""
        room = self._max_block - _BLOCK_ROOM
        too_big = [r for r in requests if len(r) > room]
        if too_big:
            self._pool.discard(too_big)
            self._drop("oversized-request")
            requests = [r for r in requests if len(r) <= room]
        return _leading_within(requests, room)

    def _propose_within(
        self, height: int, requests: list[bytes], time: str
    ) -> tuple[bytes | None, list[bytes]]:
        """The application's block of (the oldest of) ``requests`` at ``height``, no larger than
        :attr:`_max_block`, and the requests it was made of: halved until the block fits (the
        application's encoding is its own). A request whose block alone does not fit leaves the pool."""
        batch = self._proposal_payload(requests)
        if requests and not batch:  # none of them fits a block now: no block (not an empty one)
            return None, []
        while True:
            block = self._app.propose(height, batch, time)
            if block is None or len(block) <= self._max_block:
                return block, batch
            if len(batch) <= 1:  # (an empty block too large: max_message_bytes leaves no room)
                self._pool.discard(batch)
                self._drop("oversized-request" if batch else "oversized-block")
                return None, []
            batch = batch[: len(batch) // 2]

    def _forwardable(self, count: int) -> tuple[bytes, ...]:
        """Up to ``count`` of the oldest pending requests, as many as one REQUEST message carries."""
        room = (self._config.max_message_bytes - _BLOCK_ROOM) * 3 // 4  # base64url on the wire
        return tuple(_leading_within(self._pool.batch(count), room))

    def _proposal_problem(self, block: bytes) -> str | None:
        """Why a freshly proposed ``block`` (not one offered again) is refused, or ``None``: larger
        than a NEW-VIEW could carry again, dated far from this validator's clock, or empty before one
        is due."""
        if len(block) > self._max_block:
            return "oversized-block"
        if not self._app.timely(block):
            return "untimely-block"
        if not self._app.requests(block) and not self._empty_block_acceptable():
            return "early-empty-block"
        return None

    def _watch_freshness(self) -> None:
        """Want a tick when the next block falls due (none while it is already due: the engine then
        waits for it as for a pending request, with its own timers)."""
        interval = self._config.freshness_interval
        if interval > 0 and self._head_at is not None and self._now < self._head_at + interval:
            self._timers.set("fresh", self._head_at + interval)
        else:
            self._timers.clear("fresh")

    def _send_certificate(self, peer: str) -> None:
        """Hand a validator that is behind the certificate of our last block."""
        if self._certificate is not None:
            self._send(peer, Certificate(sender=self._id, certificate=self._certificate).signed(self._key))

    def _watch_behind(self) -> None:
        if self._known <= self._height:
            self._behind_since = None
            self._timers.clear("state-transfer")
            return
        if self._behind_since is None:
            self._behind_since = self._now
        wanted = self._height + 1
        asked = self._state_asked
        if self._now < self._behind_since + self._config.retransmit_interval:
            self._timers.set("state-transfer", self._behind_since + self._config.retransmit_interval)
        elif asked is None or asked[0] != wanted or self._now >= asked[1] + self._config.view_change_timeout:
            self._out.append(NeedState(wanted))
            self._state_asked = (wanted, self._now)
            self._timers.set("state-transfer", self._now + self._config.view_change_timeout)
        else:
            self._timers.set("state-transfer", asked[1] + self._config.view_change_timeout)

    # -- what subclasses fill in ------------------------------------------------------------------
    def _forward(self, requests: tuple[bytes, ...]) -> None:
        """New client requests were admitted."""

    def _handle(self, message: Message) -> None:
        """An authenticated message from another validator."""
        self._drop("unexpected-type")

    def _tick(self) -> None:
        """Deadlines may have passed."""
        self._timers.due("state-transfer", self._now)
        self._timers.due("fresh", self._now)

    def _transferred(self) -> None:
        """State transfer moved the height."""

    def _after(self) -> None:
        """End of a call: propose, validate buffered blocks, set timers."""


def _leading_within(requests: Sequence[bytes], room: int) -> list[bytes]:
    """The leading ``requests`` whose bytes add up to at most ``room``."""
    batch = []
    for request in requests:
        room -= len(request)
        if room < 0:
            break
        batch.append(request)
    return batch

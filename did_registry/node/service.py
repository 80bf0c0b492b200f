"""The node service: admits transactions, produces or receives blocks, tracks status, streams headers.

With the ``solo`` engine (n = 1) the service proposes, certifies and commits blocks itself, one
every ``block_interval`` seconds while transactions wait (or as soon as ``max_batch`` are waiting),
and an empty one when none came for ``freshness_interval`` seconds (``docs/consensus.md`` § Freshness).
A block it fails to make (its store's write refused, the database locked past its busy timeout) is
tried again after ``retry_delay`` seconds, ``commit_retries`` times at most, and then the node halts
(:meth:`NodeService.halt`: fail-stop, so its supervisor restarts it), as it does at once when the store's
head is lost (:class:`~did_registry.ledger.application.StoreHeadLost`).
Multi-validator engines drive the same application through their consensus module instead. All
access to the application goes through one lock: blocks commit one at a time, reads see a whole
block or none of it.
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast

from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.timestamps import format_timestamp
from did_registry.ledger.application import Executed, LedgerApplication, StoreHeadLost
from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.genesis import genesis_state
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.state import decode_value
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.ledger.validators import record_at, set_at
from did_registry.node.mempool import MAX_PENDING_BYTES, MAX_SUBMITTER_BYTES, Mempool

__all__ = ["NodeService", "Runner", "TxnStatus"]

_log = logging.getLogger("did_registry.node")
_PREVERIFY_CHUNK: Final = 256
"""Transactions of a batch checked ahead at a time: a batch whose first transactions fail costs
checking a chunk, not the whole batch (up to 5,000 documents parsed and signatures checked)."""

_REJECTED_KEPT = 100_000
_VALIDATOR_TXNS = ("validator.add", "validator.remove", "validator.rotate_key")
_TXN_PAGE = 1000  # the most transactions one indexed read of a SQL store returns (its audit MAX_PAGE)

_ChangeEvent = tuple[int, str, dict[str, Any], int]
"""A committed validator transaction: (block height, action, change, effective height)."""


@dataclass(frozen=True, slots=True)
class _ChangeIndex:
    """Where the validator set changed, as far as a node has looked (the chain is final: it only grows).

    ``scanned``: blocks 1 to it are read. ``events``: their validator transactions in block order.
    ``heights``: the heights ``x <= scanned`` whose header names another set than header ``x - 1``,
    ascending; ``headers[x]`` is header ``x - 1`` with its certificate and header ``x``'s set hash.
    """

    scanned: int = 0
    events: tuple[_ChangeEvent, ...] = ()
    heights: tuple[int, ...] = ()
    headers: dict[int, tuple[BlockHeader, CommitCertificate | None, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TxnStatus:
    """What a node knows of a transaction: pending, committed (where), rejected (why) or unknown."""

    id: str
    status: str
    height: int | None = None
    index: int | None = None
    code: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form, without empty members."""
        return {k: v for k, v in {"id": self.id, "status": self.status, "height": self.height, "index": self.index,
                                  "code": self.code, "detail": self.detail}.items() if v is not None}  # fmt: skip


class Runner(Protocol):
    """What moves a multi-validator node's chain forward (the consensus replica, or a follower)."""

    def start(self) -> None:
        """Start running (in the background)."""
        ...

    def stop(self) -> None:
        """Stop, and wait for the background work to end."""
        ...

    def submit(self, txns: Sequence[Transaction]) -> None:
        """Transactions the service admitted, to be ordered (called from API threads)."""
        ...

    def status(self) -> dict[str, Any]:
        """Where consensus stands, for ``/health``: engine, role, view, primary, peers and their lag."""
        ...

    def max_request_bytes(self) -> int | None:
        """The largest request (:func:`~did_registry.node.block_app.request_bytes`) consensus takes
        now, or ``None`` when this node does not order blocks itself (an observer)."""
        ...


class NodeService:
    """One node's application, mempool and header stream.

    With no :attr:`runner`, :meth:`start` runs the solo block producer; with one (set before
    :meth:`start`), the runner orders blocks and the service hands it every admitted transaction.
    """

    def __init__(
        self,
        app: LedgerApplication,
        *,
        validator_id: str,
        validator_key: Ed25519PrivateKey,
        max_batch: int = 2000,
        max_pending: int = 100_000,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_submitter_bytes: int = MAX_SUBMITTER_BYTES,
        block_interval: float = 0.02,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        freshness_interval: float = 10.0,
        commit_retries: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        self.app = app
        self.validator_id = validator_id
        self._key = validator_key
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.block_interval = block_interval
        self.freshness_interval = freshness_interval
        self.commit_retries = commit_retries
        """How many times the solo block producer tries a block again after failing to make it."""
        self.retry_delay = retry_delay
        """Seconds the solo block producer waits before trying a block again."""
        self._clock = clock
        self._head_reached = time.monotonic()  # when the last block was committed (or the service made)
        self.lock = threading.RLock()
        self._pending = Mempool(max_pending, max_pending_bytes, max_submitter_bytes)
        self._rejected: OrderedDict[str, TxnRejected] = OrderedDict()
        self._wakeup = threading.Event()
        self._committed = threading.Condition(self.lock)
        self._subscribers: list[queue.Queue[BlockHeader | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.monotonic()
        head = app.store.block(app.height)
        assert head is not None
        self._head: tuple[BlockHeader, CommitCertificate | None] = (head[0].header, head[1])
        self.runner: Runner | None = None
        self._suspects: set[str] = set()
        self.counters = {"txns_submitted": 0, "txns_committed": 0, "txns_rejected": 0, "blocks_committed": 0}
        self.halted: str | None = None
        """Why the node stopped working (see :meth:`halt`), or ``None``."""
        self._halt_listeners: list[Callable[[str], None]] = []
        self._changes_lock = threading.Lock()  # one validator_changes computation at a time
        self._change_index = _ChangeIndex()
        self._change_proofs: dict[int, StateProof] = {}  # verified answers, by change height
        self._genesis_validators: Any = None

    # -- failing ----------------------------------------------------------------------------
    def halt(self, reason: str) -> None:
        """Fail-stop: the node can no longer follow its ledger (e.g. its store refused a block
        consensus committed). Logged as critical, shown by ``/health``, and every :meth:`on_halt`
        listener is told (``serve`` stops, so a supervisor restarts the process and it catches up by
        state transfer); a node that silently lags its peers helps nobody."""
        with self.lock:
            if self.halted is not None:
                return
            self.halted = reason
            listeners = list(self._halt_listeners)
        _log.critical("node %s halted: %s", self.validator_id, reason)
        for listener in listeners:
            listener(reason)

    def on_halt(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` when the node halts (at once if it has)."""
        with self.lock:
            self._halt_listeners.append(listener)
            reason = self.halted
        if reason is not None:
            listener(reason)

    # -- transactions -----------------------------------------------------------------------
    def submit(self, txns: Sequence[Transaction]) -> list[TxnStatus]:
        """Admit transactions to the mempool; raise :class:`TxnRejected` for the first refused one.

        Nothing is admitted unless every transaction passes (a batch is all or nothing at the door).
        Signatures are checked first without the node's lock (:meth:`LedgerApplication.preverify`),
        so a large batch does not hold up consensus while it is verified, a chunk at a time in order
        and no further than the first chunk where one fails (the door then refuses the batch there
        or before). A halted node refuses every
        transaction (``overloaded``, naming why it halted): it would never put one in a block.
        """
        halted = self.halted
        if halted is not None:
            raise TxnRejected("overloaded", f"this node halted ({halted[:500]}): send it to another node")
        for start in range(0, len(txns), _PREVERIFY_CHUNK):  # in order, stopping at a failure:
            if not self.app.preverify(txns[start : start + _PREVERIFY_CHUNK]):
                break  # the door refuses the batch there or before, so the rest need no work
        with self.lock:
            try:
                for txn in txns:
                    if txn.id in self._pending:
                        raise TxnRejected(
                            "replay", f"transaction {txn.id} was already submitted", txn_id=txn.id
                        )
                    self._admit(txn)
                self._pending.check_room(txns)
            except TxnRejected:
                # What checking them ahead remembered (parsed documents) goes with them: a refused
                # transaction leaves nothing behind.
                self.app.forget([t for t in txns if t.id not in self._pending])
                raise
            self._pending.add(txns)
            self.counters["txns_submitted"] += len(txns)
            if self.runner is not None:  # under the lock: the head they were checked on still stands
                self.runner.submit(txns)
        if self.runner is None and len(self._pending) >= self.max_batch:
            self._wakeup.set()
        return [TxnStatus(t.id, "pending") for t in txns]

    def _admit(self, txn: Transaction) -> None:
        """Raise :class:`TxnRejected` (naming ``txn``) unless ``txn`` could go into a block on the head."""
        if self.app.store.locate(txn.id) is not None:
            raise TxnRejected("replay", f"transaction {txn.id} is already on the ledger", txn_id=txn.id)
        largest = None if self.runner is None else self.runner.max_request_bytes()
        if largest is not None and len(txn.leaf) > largest:  # consensus would drop it: it would wait for ever
            raise TxnRejected(
                "payload_too_large",
                f"transaction is {len(txn.leaf)} bytes, more than the {largest} a block of this network takes",
                txn_id=txn.id,
            )
        try:
            self.app.check(txn)
        except TxnRejected as exc:
            exc.txn_id = txn.id
            raise

    def pending_txns(self) -> list[Transaction]:
        """The transactions waiting for a block, oldest first."""
        with self.lock:
            return self._pending.values()

    def sweep_pending(self) -> int:
        """Settle transactions consensus left out: any still pending since the last sweep that the
        head no longer admits is rejected with the reason. Returns how many were rejected."""
        with self.lock:
            refused: dict[str, TxnRejected] = {}
            for txn_id in self._suspects:
                txn = self._pending.get(txn_id)
                if txn is None:
                    continue
                try:
                    self._admit(txn)
                except TxnRejected as exc:
                    refused[txn_id] = exc
            self._suspects = set(self._pending) - refused.keys()
            return self.reject_pending(refused)

    def reject_pending(self, rejections: Mapping[str, TxnRejected]) -> int:
        """Settle waiting transactions as rejected, each with its reason (the sweep's, or an observer's
        that every validator refused: none will order them); returns how many were still waiting."""
        rejected = 0
        with self.lock:
            for txn_id, rejection in rejections.items():
                txn = self._pending.discard(txn_id)
                if txn is None:
                    continue
                self.app.forget([txn])
                rejection.txn_id = txn_id
                self._settle_rejected(txn_id, rejection)
                rejected += 1
            self.counters["txns_rejected"] += rejected
            if rejected:
                self._committed.notify_all()
        return rejected

    def status(self, txn_id: str) -> TxnStatus:
        """Where a transaction stands."""
        with self.lock:
            location = self.app.store.locate(txn_id)
            if location is not None:
                return TxnStatus(txn_id, "committed", location.height, location.index)
            if txn_id in self._pending:
                return TxnStatus(txn_id, "pending")
            rejected = self._rejected.get(txn_id)
            if rejected is not None:
                return TxnStatus(txn_id, "rejected", code=rejected.code, detail=rejected.detail)
        return TxnStatus(txn_id, "unknown")

    def wait_for(self, txn_ids: Sequence[str], timeout: float) -> list[TxnStatus]:
        """Block until each transaction is committed or rejected, or ``timeout`` passes.

        After the first look, only the transactions still pending are looked up again on each
        block (settled and unknown ones stay as they were)."""
        deadline = time.monotonic() + timeout
        with self._committed:
            statuses = [self.status(i) for i in txn_ids]
            while True:
                waiting = [n for n, s in enumerate(statuses) if s.status == "pending"]
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    return statuses
                self._committed.wait(left)
                for n in waiting:
                    statuses[n] = self.status(txn_ids[n])

    def wait_for_height(self, height: int, timeout: float) -> int:
        """Block until the head reaches ``height`` or ``timeout`` passes; return the head height."""
        deadline = time.monotonic() + timeout
        with self._committed:
            while self.app.height < height:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    break
                self._committed.wait(min(left, 1.0))
            return self.app.height

    @property
    def pending_count(self) -> int:
        """Transactions waiting for a block."""
        return len(self._pending)

    # -- reads with proofs -----------------------------------------------------------------
    @property
    def head(self) -> tuple[BlockHeader, CommitCertificate | None]:
        """The last committed header and its certificate."""
        if self._head[0].height != self.app.height:  # committed around the service (tests, state transfer)
            block = self.app.store.block(self.app.height)
            assert block is not None
            self._head = (block[0].header, block[1])
        return self._head

    def prove(self, key: str) -> StateProof:
        """The head's value under ``key`` (or its absence) with a proof against the certified head."""
        with self.lock:
            raw = self.app.store.get(key)
            header, certificate = self.head
            proof = self.app.state_map(bytes.fromhex(header.state_root)).prove(key.encode())
        return StateProof(key, None if raw is None else decode_value(raw), header, certificate, proof)

    def prove_many(
        self, keys: Sequence[str]
    ) -> tuple[BlockHeader, CommitCertificate | None, list[StateProof]]:
        """Several keys proven against one certified head (one lock, one header to check)."""
        with self.lock:
            header, certificate = self.head
            state = self.app.state_map(bytes.fromhex(header.state_root))
            proofs = []
            for key in keys:
                raw = self.app.store.get(key)
                value = None if raw is None else decode_value(raw)
                proofs.append(StateProof(key, value, header, certificate, state.prove(key.encode())))
        return header, certificate, proofs

    # -- validator set changes ----------------------------------------------------------------
    def validator_changes(self, after: int, limit: int) -> tuple[int, list[StateProof], bool]:
        """The validator set changes after height ``after``: ``(head, proofs, more)``.

        One :class:`StateProof` per height ``x`` (``after < x <= head``) whose header names another
        validator set than header ``x - 1``, ascending, at most ``limit``: the ``validators`` record as
        of block ``x - 1`` proven against certified header ``x - 1`` (``set_at(value, x)`` is the set in
        force from ``x``). ``more`` says whether changes after the last one listed exist. Each proof is
        checked before it is served; one that does not check out is logged and ends the list there.

        The heights come from the ``effective_height`` of committed validator transactions (read once:
        the chain only grows), the records by replaying those transactions from the genesis record
        (the store keeps only the head's values); proofs served are kept (history does not change).
        """
        with self._changes_lock:
            index = self._update_change_index()
            head = index.scanned
            start = bisect.bisect_right(index.heights, after)
            wanted = index.heights[start : start + limit]
            proofs: list[StateProof] = []
            for height in wanted:
                proof = self._change_proofs.get(height) or self._prove_change(index, height)
                if proof is None:
                    break
                self._change_proofs[height] = proof
                proofs.append(proof)
            more = start + len(proofs) < len(index.heights)
        return head, proofs, more

    def _update_change_index(self) -> _ChangeIndex:
        """The change index brought up to the head (reads under the lock, a short read at a time)."""
        index = self._change_index
        with self.lock:
            head = self.app.height
        if head <= index.scanned:
            return index
        events = index.events + tuple(self._validator_events(index.scanned + 1, head))
        heights = list(index.heights)
        headers = dict(index.headers)
        for height in sorted({e[3] for e in events if index.scanned < e[3] <= head}):
            before, certificate, set_hash = self._header_pair(height)
            if before.validators_hash != set_hash:
                heights.append(height)
                headers[height] = (before, certificate, set_hash)
        self._change_index = _ChangeIndex(head, events, tuple(heights), headers)
        return self._change_index

    def _validator_events(self, first: int, last: int) -> list[_ChangeEvent]:
        """The validator transactions of blocks ``first`` to ``last``, in block order."""
        store = self.app.store
        query = cast(
            Callable[..., tuple[list[dict[str, Any]], str | None]] | None, getattr(store, "txns", None)
        )
        found: list[tuple[int, int, str, dict[str, Any]]] = []
        if callable(query):  # the SQL store: its index on type
            for txn_type in _VALIDATOR_TXNS:
                cursor: str | None = None
                while True:
                    with self.lock:
                        page, cursor = query(
                            type=txn_type, from_height=first, to_height=last, limit=_TXN_PAGE, cursor=cursor
                        )
                    found.extend((t["height"], t["index"], txn_type, t["transaction"]["body"]) for t in page)
                    if cursor is None:
                        break
        else:  # the memory store: walk the blocks
            for height in range(first, last + 1):
                with self.lock:
                    block = store.block(height)
                assert block is not None
                found.extend(
                    (height, index, txn.type, dict(txn.body))
                    for index, txn in enumerate(block[0].txns)
                    if txn.type in _VALIDATOR_TXNS
                )
        found.sort(key=lambda t: (t[0], t[1]))
        return [
            (
                height,
                txn_type.removeprefix("validator."),
                {k: v for k, v in body.items() if k != "effective_height"},
                body["effective_height"],
            )
            for height, _, txn_type, body in found
        ]

    def headers(self, start: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` committed ``{"header", "certificate"}`` items (JSON) from height ``start`` up,
        read without the blocks' transactions where the store allows."""
        store = self.app.store
        page = getattr(store, "blocks", None)
        with self.lock:
            end = min(self.app.height + 1, start + limit)
            if start >= end:
                return []
            if callable(page):  # the SQL store reads headers without their transactions
                rows = cast(list[dict[str, Any]], page(start, end - start))
                return [{"header": row["header"], "certificate": row["certificate"]} for row in rows]
            items = []
            for height in range(start, end):
                found = store.block(height)
                assert found is not None
                certificate = found[1]
                items.append(
                    {
                        "header": found[0].header.to_json(),
                        "certificate": None if certificate is None else certificate.to_json(),
                    }
                )
            return items

    def _header_pair(self, height: int) -> tuple[BlockHeader, CommitCertificate | None, str]:
        """Header ``height - 1`` with its certificate, and header ``height``'s validator set hash."""
        before, following = self.headers(height - 1, 2)
        raw = before["certificate"]
        certificate = None if raw is None else CommitCertificate.from_json(raw)
        return (
            BlockHeader.from_json(before["header"]),
            certificate,
            str(following["header"]["validators_hash"]),
        )

    def _prove_change(self, index: _ChangeIndex, height: int) -> StateProof | None:
        """The proof of the change at ``height``, checked; ``None`` (logged) when it does not check out."""
        header, certificate, set_hash = index.headers[height]
        try:
            if self._genesis_validators is None:
                self._genesis_validators = genesis_state(self.app.genesis).get_json("validators")
            record = record_at(self._genesis_validators, index.events, height - 1)
            with self.lock:
                path = self.app.state_map(bytes.fromhex(header.state_root)).prove(b"validators")
            proof = StateProof("validators", record, header, certificate, path)
            proof.verify_path()
            if set_at(record, height).hash() != set_hash:
                raise DidRegistryError(f"the replayed record does not give block {height}'s validator set")
        except (DidRegistryError, ValueError, KeyError, TypeError) as exc:
            _log.error("cannot prove the validator set change at height %d: %s", height, exc)
            return None
        return proof

    # -- blocks (solo engine) ---------------------------------------------------------------
    def produce_block(self, *, empty: bool = False) -> BlockHeader | None:
        """Propose, certify and commit one block of waiting transactions (solo engine); one with none,
        if none waits and ``empty`` (to show the ledger is live: ``docs/consensus.md`` § Freshness)."""
        with self.lock:
            if not self._pending and not empty:
                return None
            batch = self._pending.oldest(self.max_batch)
            executed = self.app.propose(
                batch, time=format_timestamp(self._clock()), proposer=self.validator_id
            )
            header = executed.block.header
            certificate = CommitCertificate(
                header.height,
                header.hash.hex(),
                {self.validator_id: CommitCertificate.sign(header.hash, self._key)},
            )
            self.commit(executed, certificate, batch)
            return header

    def commit(
        self, executed: Executed, certificate: CommitCertificate, proposed: Sequence[Transaction]
    ) -> None:
        """Commit an executed block and settle the mempool: committed and rejected ones leave it."""
        with self.lock:
            self.app.commit(executed, certificate)
            self._head = (executed.block.header, certificate)
            self._head_reached = time.monotonic()
            for txn in proposed:
                self._pending.discard(txn.id)
            for txn, rejection in executed.rejected:
                self._pending.discard(txn.id)
                self._settle_rejected(txn.id, rejection)
            self.counters["txns_committed"] += len(executed.block.txns)
            self.counters["txns_rejected"] += len(executed.rejected)
            self.counters["blocks_committed"] += 1
            self._committed.notify_all()
            header = executed.block.header
        self._publish(header)

    def _settle_rejected(self, txn_id: str, rejection: TxnRejected) -> None:
        """Remember why ``txn_id`` was rejected (for its status), the latest :data:`_REJECTED_KEPT` only."""
        self._rejected[txn_id] = rejection
        if len(self._rejected) > _REJECTED_KEPT:
            self._rejected.popitem(last=False)

    # -- header stream ----------------------------------------------------------------------
    def subscribe(self, maxsize: int = 1024) -> queue.Queue[BlockHeader | None]:
        """A queue that receives every new committed header (``None`` when the node stops)."""
        subscriber: queue.Queue[BlockHeader | None] = queue.Queue(maxsize)
        with self.lock:
            self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: queue.Queue[BlockHeader | None]) -> None:
        """Stop sending headers to ``subscriber``."""
        with self.lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def _publish(self, header: BlockHeader | None) -> None:
        with self.lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.put_nowait(header)
            except queue.Full:  # a reader too slow to keep up is dropped, never waited for
                self.unsubscribe(subscriber)

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        """Run the runner, or else the solo block producer in a background thread."""
        if self.runner is not None:
            self.runner.start()
            return
        self._thread = threading.Thread(target=self._run, name="block-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wakeup.wait(self.block_interval)
            self._wakeup.clear()
            try:
                if self._pending:
                    self.produce_block()
                elif 0 < self.freshness_interval <= time.monotonic() - self._head_reached:
                    self.produce_block(empty=True)
            except Exception as exc:  # the store refused the block: try again, then fail-stop
                failures += 1
                height = self.app.height + 1
                if isinstance(exc, StoreHeadLost) or failures > self.commit_retries:
                    self.halt(
                        f"the block producer could not make block {height} ({failures} attempt(s)): {exc!r:.1000}"
                    )
                    return
                _log.warning(
                    "block %d could not be made (attempt %d of %d), trying again in %s s: %r",
                    height,
                    failures,
                    self.commit_retries + 1,
                    self.retry_delay,
                    exc,
                    exc_info=True,
                )
                self._stop.wait(self.retry_delay)
            else:
                failures = 0

    def stop(self) -> None:
        """Stop producing blocks and close every header stream."""
        self._stop.set()
        self._wakeup.set()
        if self.runner is not None:
            self.runner.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._publish(None)

"""The replica: runs a node's consensus engine over the transport, a clock and its ledger.

Engines are sans-IO (``docs/consensus.md``); this is the driver the contract in
:mod:`did_registry.consensus.base` describes. It owns one asyncio event loop in a background thread:

* **inputs**: payloads from the :class:`~did_registry.transport.Transport`, timer deadlines on the
  loop's monotonic clock, and transactions the API threads admitted (handed over with
  ``call_soon_threadsafe``, forwarded in one message per batch);
* **outputs**: messages to send, timers to set, committed blocks (written through
  :class:`~did_registry.node.block_app.LedgerBlockApp` before the next input), and state-transfer
  requests, answered from other nodes' ``/sync/blocks`` (:mod:`did_registry.node.sync`).

A node whose id is not in the validator set in force *follows*: it installs certified blocks from
the nodes it knows (an observer), and when a validator-set transaction adds it, it starts voting at
the height the transaction names. After any block that changes the set, the engine is rebuilt for
the new set and the transport told who its peers now are.

Wire payloads carry a one-byte tag: ``0`` a consensus message, ``1`` a status beacon (the sender's
height, once a second) from which ``/health`` shows each peer's lag.

A peer's bytes are never trusted to be well formed: a payload that cannot be read (an unknown tag, a
beacon that is not ``{"height": <non-negative int>}``, a consensus message the engine chokes on) is
dropped, counted under ``dropped`` in :meth:`Replica.status` and logged, and the receive loop goes on.
The long-lived loops (receive, beacon, sweep, follow) are supervised: one that dies on an error is
logged with its traceback and restarted after a pause (``docs/replica.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from did_registry.consensus import (
    Broadcast,
    CancelTimer,
    Committed,
    ConsensusConfig,
    Engine,
    NeedState,
    Output,
    Send,
    SetTimer,
    create_engine,
    encode,
)
from did_registry.errors import DidRegistryError, TransportError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.timestamps import format_timestamp
from did_registry.ledger import validators as validator_set
from did_registry.ledger.application import CHECK_HINT, ExecutionMismatch
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.state import StateView
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.ledger.validators import ValidatorSet
from did_registry.node.block_app import LedgerBlockApp, request_bytes
from did_registry.node.service import NodeService
from did_registry.node.sync import BlockSource, CertifiedBlock, SyncError, install
from did_registry.transport import Transport, TransportConfig

__all__ = ["ReplicaConfig", "Replica"]

_CONSENSUS: Final = b"\x00"
_STATUS: Final = b"\x01"
_BEACON_INTERVAL: Final = 1.0
_ALONE_CHECK: Final = 5.0  # seconds without a word from any peer before a validator asks the nodes' APIs
_SWEEP_INTERVAL: Final = 2.0
_FOLLOW_WAIT: Final = 5.0
_RESTART_DELAY: Final = 1.0

_log = logging.getLogger("did_registry.replica")


def _wall_clock(now: float) -> str:
    del now  # block time is wall-clock time; the engine's clock is monotonic
    return format_timestamp(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """How a node takes part: its engine settings, where its transport listens, whom it syncs from."""

    sync_urls: tuple[str, ...] = ()
    """Other nodes' HTTP API base URLs, asked for certified blocks (state transfer, following)."""
    listen: tuple[str, int] | None = None
    """Where the consensus transport listens; by default the address the validator set gives."""
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    peer_addresses: Mapping[str, str] = field(default_factory=dict)
    """Where to dial peers (id -> ``host:port``), instead of the address the validator set gives."""


class Replica:
    """Drives one node's consensus engine (or follows, when the node is not a validator)."""

    def __init__(self, service: NodeService, key: Ed25519PrivateKey, config: ReplicaConfig) -> None:
        self.service = service
        self.config = config
        self._key = key
        self._id = service.validator_id
        genesis = service.app.genesis
        self._engine_name = str(genesis.consensus.get("engine"))
        self._network = f"{genesis.network}/{genesis.hash.hex()}"
        payload_room = config.transport.max_payload - 1  # one byte goes to the payload tag
        if config.consensus.max_message_bytes > payload_room:
            consensus = replace(config.consensus, max_message_bytes=payload_room)
            self.config = config = replace(config, consensus=consensus)
        self.app = LedgerBlockApp(service)
        self.source = BlockSource(config.sync_urls)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._engine: Engine | None = None
        self._transport: Transport | None = None
        self._validators: ValidatorSet | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._syncing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._peer_heights: dict[str, tuple[int, float]] = {}
        self._dropped: dict[str, int] = {}  # peer inputs the replica could not read, by reason
        self._restarts: dict[str, int] = {}  # supervised loops restarted after an error, by loop
        self._last_tick = 0.0
        self.errors: list[str] = []
        service.runner = self

    # -- the Runner protocol (called from other threads) ----------------------------------------
    def start(self) -> None:
        """Start the event loop thread; return once the transport listens (or the node follows)."""
        self._thread = threading.Thread(target=self._run, name=f"replica-{self._id}", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TransportError("the replica did not start within 30 s")
        if self.errors:
            raise TransportError(self.errors[0])

    def stop(self) -> None:
        """Stop the engine, the transport and the follower; wait for the loop thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.source.close()
        self.app.close()

    def submit(self, txns: Sequence[Transaction]) -> None:
        """Admitted transactions, from an API thread: handed to the engine on the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        requests = [request_bytes(t) for t in txns]
        self.app.admitted(requests, self.service.app.height)
        with contextlib.suppress(RuntimeError):  # stopping
            loop.call_soon_threadsafe(self._on_requests, requests)

    def max_request_bytes(self) -> int | None:
        """What the engine takes now (:attr:`Engine.max_request_bytes`); ``None`` for an observer."""
        engine = self._engine
        return None if engine is None else engine.max_request_bytes

    def status(self) -> dict[str, Any]:
        """Engine, role, view, primary, transport peers and how far behind each one is."""
        engine, transport = self._engine, self._transport
        height = self.service.app.height
        now = time.monotonic()
        peers: dict[str, Any] = {}
        if transport is not None:
            for peer_id, peer in transport.peers().items():
                known = self._peer_heights.get(peer_id)
                peers[peer_id] = {
                    "connected": peer.connected,
                    "height": None if known is None else known[0],
                    "lag": None if known is None else height - known[0],
                    "last_seen_s": None if known is None else round(now - known[1], 3),
                }
        if engine is None:  # an observer: the nodes it follows, as of their last answer
            for url, head in self.source.heads.items():
                peers.setdefault(url, {"height": head, "lag": height - head})
        return {
            "engine": self._engine_name,
            "role": "validator" if engine is not None else "observer",
            "view": getattr(engine, "view", None),
            "round": getattr(engine, "round", None),
            "primary": getattr(engine, "primary", None),
            "pending_in_engine": getattr(engine, "pending", None),
            "dropped": {**(engine.dropped if engine is not None else {}), **self._dropped},
            "peers": peers,
            "restarts": dict(self._restarts),
        }

    # -- the loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:
            _log.exception("replica %s stopped on an error", self._id)
            self.errors.append(f"replica stopped: {exc!r}")
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self._reconfigure()
            if self._transport is not None:
                await self._transport.start()
                self._supervise("receive", self._receiver(self._transport))
        except (OSError, DidRegistryError) as exc:
            self.errors.append(f"cannot start consensus: {exc}")
            self._ready.set()
            return
        self._ready.set()
        self._supervise("beacon", self._beacon)
        self._supervise("sweep", self._sweep)
        self._supervise("follow", self._follow)
        await self._stopping.wait()
        for handle in self._timers.values():
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.stop()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str = "task") -> None:
        """Run ``coroutine`` as a task of the replica; an error that ends it is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coroutine, name=f"{self._id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("%s: %s failed", self._id, task.get_name(), exc_info=exc)

    def _supervise(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a long-lived loop, restarting it after :data:`_RESTART_DELAY` whenever it dies on an
        error (logged with its traceback, counted under ``restarts`` in :meth:`status`); a loop that
        returns is done."""
        self._spawn(self._restarting(name, loop), name)

    async def _restarting(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await loop()
                return
            except Exception:
                self._restarts[name] = self._restarts.get(name, 0) + 1
                _log.exception(
                    "%s: the %s loop failed; restarting it in %s s", self._id, name, _RESTART_DELAY
                )
            await asyncio.sleep(_RESTART_DELAY)

    def _receiver(self, transport: Transport) -> Callable[[], Coroutine[Any, Any, None]]:
        return lambda: self._receive(transport)

    def _reconfigure(self) -> None:
        """Bring the engine and transport in line with the validator set for the next block (the
        engine is rebuilt before it sees another input, so it never runs a height with an old set)."""
        service = self.service
        with service.lock:
            validators = service.app.validators()
            height = service.app.height
            _, certificate = service.head
            certified_by = validator_set.current(StateView(service.app.store))  # the set of the head
        if self._validators is not None and validators.hash() == self._validators.hash():
            return
        self._validators = validators
        member = validators.by_id(self._id)
        if member is not None and member.key != self._key.public_key:
            # validator.rotate_key: the set holds another key for this id (the new one while this node
            # still runs with the old, or the old one until the change this node's new key awaits
            # falls due). Its votes would not count: it follows, and votes once run with the key in force.
            _log.warning(
                "%s: the validator set from height %d holds another key for it: following, not voting, "
                "until this node runs with that key",
                self._id,
                height + 1,
            )
            member = None
        if member is not None and self._transport is None:
            self._transport = Transport(
                self._id,
                self._key,
                validators,
                network=self._network,
                listen=self.config.listen or _address(member.address),
                config=self.config.transport,
                dial=self.config.peer_addresses,
            )
            if self._ready.is_set():  # joined after start: listen now (at start, _main does)
                self._spawn(self._start_transport(self._transport), "start transport")
        elif self._transport is not None:
            self._transport.update_validators(validators)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if member is None:
            if self._engine is not None:
                _log.info("%s left the validator set at height %d: following", self._id, height)
            self._engine = None
            return
        self._engine = create_engine(
            self._engine_name,
            self._id,
            self._key,
            validators,
            self.app,
            self.config.consensus,
            resume=certificate if height > 0 else None,
            restarted=height > 0 and self._last_tick == 0.0,
            timestamp=_wall_clock,
            resume_validators=certified_by,
        )
        _log.info("%s votes from height %d (%d validators)", self._id, height + 1, validators.n)
        pending = [request_bytes(t) for t in service.pending_txns()]
        self._apply(self._engine.on_tick(self._now()))
        if pending:
            self._apply(self._engine.on_requests(pending))

    async def _start_transport(self, transport: Transport) -> None:
        try:
            await transport.start()
        except OSError as exc:
            _log.error("%s: cannot listen for consensus: %s", self._id, exc)
            self.errors.append(f"cannot listen for consensus: {exc}")
            return
        self._supervise("receive", self._receiver(transport))

    def _now(self) -> float:
        assert self._loop is not None
        now = self._loop.time()
        self._last_tick = now
        return now

    def _tick_first(self, engine: Engine) -> None:
        """Move the engine's clock before an input when it has moved by a millisecond or more."""
        assert self._loop is not None
        if self._loop.time() - self._last_tick >= 0.001:
            self._apply(engine.on_tick(self._now()))

    # -- inputs -----------------------------------------------------------------------------------
    def _on_requests(self, requests: list[bytes]) -> None:
        if self._engine is None:  # an observer: a validator orders them; they arrive by following
            self._spawn(self._forward(requests), "forward")
            return
        if self._engine is not None:
            self._tick_first(self._engine)
        if self._engine is not None:  # the tick may have rebuilt it (a validator-set change)
            self._apply(self._engine.on_requests(requests))

    async def _receive(self, transport: Transport) -> None:
        """Hand each payload from a peer to its handler; nothing a peer sends ends this loop."""
        while True:
            try:
                sender, payload = await transport.receive()
            except TransportError:
                return
            try:
                self._on_payload(sender, payload)
            except Exception:
                self._drop(sender, "replica_input_failed", exc_info=True)

    def _on_payload(self, sender: str, payload: bytes) -> None:
        tag, body = payload[:1], payload[1:]
        if tag == _STATUS:
            self._on_beacon(sender, body)
        elif tag != _CONSENSUS:
            self._drop(sender, "replica_unknown_tag")
        elif self._engine is not None:
            self._tick_first(self._engine)
            if self._engine is not None:  # the tick may have rebuilt it (a validator-set change)
                self._apply(self._engine.on_payload(sender, body))

    def _on_beacon(self, sender: str, body: bytes) -> None:
        height = beacon_height(body)
        if height is None:
            self._drop(sender, "replica_unreadable_beacon")
            return
        self._peer_heights[sender] = (height, time.monotonic())

    def _drop(self, sender: str, reason: str, *, exc_info: bool = False) -> None:
        """Count an input from ``sender`` that could not be used; log the first few of each reason
        and then every power of two, so a hostile peer cannot flood the log."""
        count = self._dropped[reason] = self._dropped.get(reason, 0) + 1
        if count <= 10 or count & (count - 1) == 0:
            _log.warning(
                "%s: dropped an input from %s (%s, %d so far)",
                self._id,
                sender,
                reason,
                count,
                exc_info=exc_info,
            )

    def _on_timer(self, name: str) -> None:
        self._timers.pop(name, None)
        engine = self._engine
        if engine is not None:
            self._apply(engine.on_tick(self._now()))

    # -- outputs ----------------------------------------------------------------------------------
    def _apply(self, outputs: list[Output]) -> None:
        """Carry out an engine's outputs in order. A committed block that changes the validator set
        rebuilds the engine at once; the old engine's remaining outputs are dropped (they belong to
        a set no longer in force: a certificate by the old quorum for the next height is not valid)."""
        for output in outputs:
            match output:
                case Send(to=to, message=message):
                    if self._transport is not None:
                        try:
                            self._transport.send(to, _CONSENSUS + encode(message))
                        except TransportError as exc:
                            _log.debug("%s: not sent to %s: %s", self._id, to, exc)
                case Broadcast(message=message):
                    if self._transport is not None:
                        try:
                            self._transport.broadcast(_CONSENSUS + encode(message))
                        except TransportError as exc:  # (too large a frame): the outputs after it still run
                            _log.warning("%s: %s not broadcast: %s", self._id, type(message).__name__, exc)
                case SetTimer(name=name, at=at):
                    old = self._timers.pop(name, None)
                    if old is not None:
                        old.cancel()
                    assert self._loop is not None
                    self._timers[name] = self._loop.call_at(at, self._on_timer, name)
                case CancelTimer(name=name):
                    old = self._timers.pop(name, None)
                    if old is not None:
                        old.cancel()
                case Committed(height=height, block=block, certificate=certificate):
                    try:
                        changed = self._commit(height, block, certificate)
                    except Exception as exc:  # the engine has moved past a block the store lacks
                        hint = f"; {CHECK_HINT}" if isinstance(exc, ExecutionMismatch) else ""
                        self._halt(
                            f"consensus committed block {height}, which this node could not store: {exc!r}{hint}"
                        )
                        return
                    if changed:
                        self._reconfigure()
                        return
                case NeedState(from_height=start):
                    if not self._syncing:
                        self._syncing = True
                        self._spawn(self._transfer(start), "state transfer")

    def _halt(self, reason: str) -> None:
        """Stop voting and following (an engine ahead of its store must not vote) and halt the node."""
        self._engine = None
        if self._stopping is not None:
            self._stopping.set()
        self.service.halt(reason)

    def _commit(self, height: int, block: bytes, certificate: CommitCertificate) -> bool:
        """Apply a block the engine committed; ``True`` when it changed the validator set."""
        service = self.service
        with service.lock:
            if height <= service.app.height:  # state transfer installed it first
                stored = service.app.store.block(height)
                if stored is None or stored[0].header.hash.hex() != certificate.block_hash:
                    _log.critical(
                        "%s: consensus committed another block %d than the one stored", self._id, height
                    )
                return False
        self.app.commit(height, block, certificate)
        return self._set_changed()

    def _set_changed(self) -> bool:
        with self.service.lock:
            upcoming = self.service.app.validators().hash()
        return self._validators is None or upcoming != self._validators.hash()

    # -- background work --------------------------------------------------------------------------
    async def _transfer(self, start: int) -> None:
        """State transfer: install certified blocks from other nodes until none has more."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                height = self.service.app.height
                try:  # other nodes' answers: whatever they make parsing or checking raise ends the attempt
                    blocks = await loop.run_in_executor(None, self.source.fetch, height + 1)
                    certificate = install(self.service, blocks) if blocks else None
                except Exception as exc:
                    _log.warning(
                        "%s: state transfer: %r", self._id, exc, exc_info=not isinstance(exc, SyncError)
                    )
                    return
                if not blocks:
                    return
                if certificate is None:
                    if self.service.app.height <= height:  # blocks it already has: no progress, stop
                        _log.warning("%s: state transfer: a node answered with no new block", self._id)
                        return
                    continue
                if self._set_changed():
                    self._reconfigure()
                engine = self._engine
                if engine is not None:
                    self._apply(engine.on_state_transferred(certificate))
        finally:
            self._syncing = False

    async def _follow(self) -> None:
        """While this node is not a validator: follow the chain from the nodes it knows."""
        loop = asyncio.get_running_loop()
        while self.service.halted is None:  # a halted node follows no more (nor does anything else)
            if self._engine is not None or not self.source.urls:
                await asyncio.sleep(_FOLLOW_WAIT)
                continue
            height = self.service.app.height
            try:  # other nodes' answers: whatever they make parsing or checking raise is logged
                blocks = await loop.run_in_executor(None, self._follow_fetch, height + 1)
                if not blocks:
                    await asyncio.sleep(0.2)
                    continue
                install(self.service, blocks)
            except Exception as exc:
                _log.warning("%s: following: %r", self._id, exc, exc_info=not isinstance(exc, SyncError))
                await asyncio.sleep(0.5)
            if self._set_changed():
                self._reconfigure()

    async def _forward(self, requests: list[bytes]) -> None:
        forwarded = await asyncio.get_running_loop().run_in_executor(None, self.source.forward, requests)
        if not forwarded.admitted:
            _log.warning("%s: no validator admitted %d forwarded transaction(s)", self._id, len(requests))
        if forwarded.refused:  # no validator will order them: their clients learn it, and why
            rejections = {
                self.app.parse(request).id: TxnRejected(code, f"every validator refused it: {detail}")
                for request, (code, detail) in forwarded.refused.items()
            }
            self.service.reject_pending(rejections)

    def _follow_fetch(self, start: int) -> list[CertifiedBlock]:
        return self.source.fetch(start, wait=_FOLLOW_WAIT)

    async def _beacon(self) -> None:
        """Tell the peers our height once a second; and if peers have been ahead of us for two
        beacons while the engine asked for nothing, fetch the blocks (a safety net: the blocks are
        verified as any others, so a peer lying about its height only costs one request). A validator
        that hears no peer at all for :data:`_ALONE_CHECK` asks the nodes' APIs too: peers that moved
        past a change of its key refuse its handshakes, so nothing else would tell it it is behind."""
        behind_since: float | None = None
        alone_since: float | None = None
        while True:
            now = time.monotonic()
            ahead = [h for h, seen in self._peer_heights.values() if now - seen < 3 * _BEACON_INTERVAL]
            if ahead and max(ahead) > self.service.app.height and self._engine is not None:
                behind_since = behind_since if behind_since is not None else now
                if now - behind_since >= 2 * _BEACON_INTERVAL and not self._syncing:
                    self._syncing = True
                    self._spawn(self._transfer(self.service.app.height + 1), "state transfer")
                    behind_since = None
            else:
                behind_since = None
            # No peer heard at all: ask the nodes' APIs for blocks now and then. A validator whose
            # peers moved past a change of its own key (or of their set) refuses its handshakes, so
            # it hears nothing over the transport however far behind it is.
            if not ahead and self._engine is not None and self.source.urls:
                alone_since = alone_since if alone_since is not None else now
                if now - alone_since >= _ALONE_CHECK and not self._syncing:
                    self._syncing = True
                    self._spawn(self._transfer(self.service.app.height + 1), "state transfer")
                    alone_since = None
            else:
                alone_since = None
            transport = self._transport
            if transport is not None:
                body = json.dumps({"height": self.service.app.height}).encode()
                with contextlib.suppress(TransportError):
                    transport.broadcast(_STATUS + body)
            await asyncio.sleep(_BEACON_INTERVAL)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            await loop.run_in_executor(None, self.service.sweep_pending)


def beacon_height(body: bytes) -> int | None:
    """The height a status beacon body ``{"height": H}`` carries, or ``None`` when it is not one
    (``H`` must be a JSON integer from 0 on; whatever a hostile body makes the decoder raise is caught)."""
    try:
        data = json.loads(body)
    except Exception:  # ValueError, RecursionError (deep nesting), MemoryError, ...
        return None
    height = data.get("height") if isinstance(data, dict) else None
    return height if type(height) is int and height >= 0 else None


def _address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)

"""The validator-to-validator transport: authenticated, encrypted asyncio TCP (``docs/transport.md``).

It carries opaque payloads between the validators of the current set, identified by their ids and
Ed25519 keys. The lower id dials, with exponential back-off and jitter, and redials a broken
connection; the higher id accepts. Each connection runs the handshake of
:mod:`~did_registry.transport.handshake`, then a :class:`~did_registry.transport.channel.SecureChannel`;
a frame that fails to open closes it. Delivery is at most once and in order per connection; payloads
lost with a connection or dropped by a full queue are not retransmitted (consensus recovers them).
Call every method from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from typing import Any

from did_registry.errors import (
    FrameTooLarge,
    HandshakeFailed,
    InvalidFrame,
    InvalidKey,
    InvalidTransportConfig,
    TransportClosed,
    TransportError,
    UnknownPeer,
)
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.validators import Validator, ValidatorSet
from did_registry.transport.admission import Admission, Pending
from did_registry.transport.channel import SecureChannel
from did_registry.transport.config import TransportConfig
from did_registry.transport.handshake import HANDSHAKE_MAX_FRAME, MAX_ID_SIZE, dials, initiate, respond
from did_registry.transport.queues import Inbox
from did_registry.transport.session import Link, PeerState
from did_registry.transport.status import Counters, PeerStatus, TransportStats
from did_registry.transport.stream import FrameStream, split_address

__all__ = ["Transport"]

_log = logging.getLogger("did_registry.transport")
INBOUND_WARNINGS_PER_MINUTE = 10
"""Refused inbound connections logged at WARNING per minute at most; the rest are counted
(``handshake_failures``), logged at DEBUG, and summed up in the next warning. Anyone can open
connections that send a junk hello: they must not flood the log."""


class _LogBudget:
    """At most ``per_minute`` warnings in any minute (from the first of it); how many were held back."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._since, self._spent, self.held_back = -60.0, 0, 0

    def take(self, now: float) -> int | None:
        """``None`` when this one must be held back; else how many were held back before it."""
        if now - self._since >= 60.0:
            self._since, self._spent = now, 0
        if self._spent >= self.per_minute:
            self.held_back += 1
            return None
        self._spent += 1
        held, self.held_back = self.held_back, 0
        return held


_HANDSHAKE_ERRORS = (TransportError, TimeoutError, OSError)


class Transport:
    """Authenticated, encrypted channels to every other validator of the set (``docs/transport.md``).

    ``dial`` maps peer ids to the ``host:port`` to dial instead of the address the set gives (a
    node's ``[[peers]]`` address: a proxy or a relay in front of the peer).
    """

    def __init__(
        self,
        me: str,
        key: Ed25519PrivateKey,
        validators: ValidatorSet,
        *,
        network: str,
        listen: tuple[str, int],
        config: TransportConfig | None = None,
        dial: Mapping[str, str] | None = None,
    ) -> None:
        entry = validators.by_id(me)
        if entry is None:
            raise UnknownPeer(me, "this transport's own id is not in the validator set")
        if entry.key != key.public_key:
            raise InvalidKey(f"the key given is not the key the validator set holds for {me!r}")
        if not (me.isascii() and 0 < len(me) <= MAX_ID_SIZE):
            raise InvalidTransportConfig(f"a validator id is 1 to {MAX_ID_SIZE} ASCII characters, not {me!r}")
        if not network or len(network.encode()) > 0xFFFF:
            raise InvalidTransportConfig("network must name the network (and genesis), 1 to 65535 bytes")
        self._me = me
        self._key = key
        self._network = network
        self._listen = listen
        self._dial_at = dict(dial or {})  # peer id -> host:port, overriding the validator set's address
        self._config = config if config is not None else TransportConfig()
        self._validators = validators
        self._peers: dict[str, PeerState] = {}
        self._inbox = Inbox(self._config.inbound_frames, self._config.inbound_bytes)
        self._counters = Counters()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._state = "new"
        self._admission = Admission(self._config.max_handshakes, self._config.max_handshakes_per_ip)
        self._inbound_warnings = _LogBudget(INBOUND_WARNINGS_PER_MINUTE)
        self.update_validators(validators)

    @property
    def me(self) -> str:
        """This validator's id."""
        return self._me

    @property
    def config(self) -> TransportConfig:
        """The bounds and timers in force."""
        return self._config

    @property
    def address(self) -> tuple[str, int]:
        """The host and port listened on (the real port once started, if 0 was asked)."""
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return str(host), int(port)
        return self._listen

    async def start(self) -> None:
        """Listen, and start dialing the peers this validator dials; a transport starts once."""
        if self._state != "new":
            raise TransportClosed("a transport starts once; make a new one")
        self._server = await asyncio.start_server(self._accept, *self._listen)
        self._state = "running"
        for peer in self._peers.values():
            self._start_dialer(peer)

    async def stop(self) -> None:
        """Close every connection and the listener; :meth:`receive` then drains what is left."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        if self._server is not None:
            self._server.close()
        for peer in self._peers.values():
            peer.retire("transport stopped")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await self._inbox.close()

    def send(self, to: str, payload: bytes) -> None:
        """Queue ``payload`` for validator ``to`` without waiting (the oldest queued are dropped when full)."""
        peer = self._peers.get(to)
        if peer is None:
            raise UnknownPeer(to)
        self._check(payload)
        self._enqueue(peer, payload)

    def broadcast(self, payload: bytes) -> None:
        """Queue ``payload`` for every other validator of the set."""
        self._check(payload)
        for peer in self._peers.values():
            self._enqueue(peer, payload)

    async def receive(self) -> tuple[str, bytes]:
        """The next ``(sender id, payload)``; raises :class:`TransportClosed` once stopped and drained."""
        return await self._inbox.get()

    def update_validators(self, validators: ValidatorSet) -> None:
        """Adopt a new validator set: drop removed peers (closing their connections), add new ones.

        A peer whose key or address changed is disconnected and, if this validator dials it, redialed.
        """
        self._validators = validators
        mine = validators.by_id(self._me)
        if mine is None or mine.key != self._key.public_key:
            _log.warning("%s (with this key) is not in the new validator set: peers will refuse it", self._me)
        wanted = {v.id: v for v in validators.validators if v.id != self._me}
        for peer_id, peer in list(self._peers.items()):
            validator = wanted.get(peer_id)
            if validator is None:
                del self._peers[peer_id]
                peer.retire("removed from the validator set")
                peer.queue.clear()
                _log.info("%s left the validator set: disconnected", peer_id)
            elif validator != peer.validator:
                peer.validator = validator
                peer.retire("its key or address changed")
                self._start_dialer(peer)
        for peer_id, validator in wanted.items():
            if peer_id not in self._peers:
                self._peers[peer_id] = PeerState(validator, self._config)
                self._start_dialer(self._peers[peer_id])

    def stats(self) -> TransportStats:
        """A snapshot of the counters (for ``/metrics``)."""
        return TransportStats(
            counters=replace(self._counters),
            peers=len(self._peers),
            connected=sum(peer.link is not None for peer in self._peers.values()),
            inbound_waiting=len(self._inbox),
        )

    def peers(self) -> dict[str, PeerStatus]:
        """Each peer's status by id (for ``/health``)."""
        return {peer_id: peer.status() for peer_id, peer in self._peers.items()}

    def _check(self, payload: bytes) -> None:
        if self._state == "stopped":
            raise TransportClosed("the transport is stopped")
        if not payload:
            raise InvalidFrame("an empty payload cannot be sent (the empty frame is the keepalive)")
        if len(payload) > self._config.max_payload:
            raise FrameTooLarge(len(payload), self._config.max_payload)

    def _enqueue(self, peer: PeerState, payload: bytes) -> None:
        dropped = peer.queue.put(payload)
        if dropped:
            peer.counters.dropped += dropped
            self._counters.dropped += dropped

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("transport task %s failed", task.get_name(), exc_info=task.exception())

    def _start_dialer(self, peer: PeerState) -> None:
        if self._state == "running" and peer.dialer is None and dials(self._me, peer.validator.id):
            peer.dialer = self._spawn(self._dial_loop(peer), f"dial {peer.validator.id}")

    def _count(self, peer: PeerState | None, name: str) -> None:
        setattr(self._counters, name, getattr(self._counters, name) + 1)
        if peer is not None:
            setattr(peer.counters, name, getattr(peer.counters, name) + 1)

    def _refused(
        self, peer: PeerState | None, direction: str, who: str, exc: BaseException, *, quiet: bool = False
    ) -> None:
        """Count a failed handshake and log it: at WARNING, or DEBUG when ``quiet`` (a connection that
        never sent its hello, so a flood of them cannot flood the log)."""
        self._count(peer, "handshake_failures")
        reason = "handshake timed out" if isinstance(exc, TimeoutError) else str(exc)
        if quiet:
            _log.debug("refused %s connection %s: %s", direction, who, reason)
        elif direction == "inbound":
            self._warn_inbound("refused inbound connection %s: %s", who, reason)
        else:  # outbound: paced by the dialer's back-off
            _log.warning("refused %s connection %s: %s", direction, who, reason)

    def _warn_inbound(self, message: str, *args: object) -> None:
        """Log at WARNING, at most :data:`INBOUND_WARNINGS_PER_MINUTE` a minute (DEBUG beyond)."""
        held = self._inbound_warnings.take(time.monotonic())
        if held is None:
            _log.debug(message, *args)
        elif held:
            _log.warning(message + " (and %d more refused inbound connections not logged)", *args, held)
        else:
            _log.warning(message, *args)

    async def _dial_loop(self, peer: PeerState) -> None:
        attempt = 0
        while True:
            if await self._dial(peer, peer.validator):
                attempt = 0
            delay = self._config.backoff(attempt) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
            attempt += 1
            await asyncio.sleep(delay)

    async def _dial(self, peer: PeerState, validator: Validator) -> bool:
        """Connect to ``validator`` and run a session; whether one was established."""
        config = self._config
        address = self._dial_at.get(validator.id, validator.address)
        try:
            async with asyncio.timeout(config.connect_timeout):
                reader, writer = await asyncio.open_connection(*split_address(address))
        except Exception as exc:  # any failure to connect is a dial failure: count it, back off, redial
            self._count(peer, "dial_failures")
            expected = isinstance(exc, OSError | TimeoutError)  # the peer is down or unreachable
            _log.log(
                logging.DEBUG if expected else logging.WARNING,
                "could not reach %s at %s: %r",
                validator.id,
                address,
                exc,
            )
            return False
        stream = FrameStream(reader, writer, HANDSHAKE_MAX_FRAME, config.read_chunk)
        try:
            try:
                async with asyncio.timeout(config.handshake_timeout):
                    channel = await initiate(
                        stream, me=self._me, key=self._key, peer=validator, network=self._network
                    )
            except _HANDSHAKE_ERRORS as exc:
                self._refused(peer, "outbound", f"to {validator.id}@{address}", exc)
                return False
            await self._session(peer, stream, channel, "outbound")
            return True
        finally:
            await stream.aclose()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = FrameStream(reader, writer, HANDSHAKE_MAX_FRAME, self._config.read_chunk)
        now, grace = asyncio.get_running_loop().time(), self._config.hello_timeout
        entry = self._admission.admit(stream, now, grace)[0] if self._state == "running" else None
        if entry is None:
            self._count(None, "handshake_failures")
            why = "too many handshakes at once" if self._state == "running" else "stopping"
            self._warn_inbound("refused inbound connection from %s: %s", stream.peer, why)
            stream.close()
            return
        self._spawn(self._serve_inbound(entry), f"inbound {stream.peer}")

    async def _serve_inbound(self, entry: Pending) -> None:
        stream, config, validators = entry.stream, self._config, self._validators
        try:
            try:
                async with asyncio.timeout(config.handshake_timeout):
                    hello = await self._hello(entry)
                    peer_id, channel = await respond(
                        stream,
                        me=self._me,
                        key=self._key,
                        validators=validators,
                        network=self._network,
                        first=hello,
                    )
            except _HANDSHAKE_ERRORS as exc:
                evicted = HandshakeFailed(stream.peer, "dropped for a newer connection before its hello")
                reason = evicted if entry.evicted else exc
                self._refused(None, "inbound", f"from {stream.peer}", reason, quiet=not entry.spoke)
                return
            finally:
                self._admission.release(entry)
            peer = self._peers.get(peer_id)
            if peer is None or peer.validator != validators.by_id(peer_id):  # the set changed meanwhile
                self._refused(None, "inbound", f"from {peer_id}@{stream.peer}", UnknownPeer(peer_id))
                return
            await self._session(peer, stream, channel, "inbound")
        finally:
            await stream.aclose()

    async def _hello(self, entry: Pending) -> bytes:
        """The first handshake message, within ``hello_timeout``; until then ``entry`` may be evicted."""
        timeout = self._config.hello_timeout
        try:
            async with asyncio.timeout(timeout):
                hello = await entry.stream.read()
        except TimeoutError:
            raise HandshakeFailed(entry.stream.peer, f"no hello within {timeout} s") from None
        if hello is None:
            raise HandshakeFailed(entry.stream.peer, "connection closed before the hello")
        entry.spoke = True
        return hello

    async def _session(
        self, peer: PeerState, stream: FrameStream, channel: SecureChannel, direction: str
    ) -> None:
        """Install a new link to ``peer`` (replacing any older one) and run it to its end."""
        if peer.link is not None:
            peer.link.close("replaced by a newer connection")
        link = peer.link = Link(
            peer, stream, channel, direction, inbox=self._inbox, totals=self._counters, config=self._config
        )
        self._count(peer, "connections")
        if peer.counters.connections > 1:
            self._count(peer, "reconnects")
        peer.last_seen = time.time()
        _log.info("connected to %s (%s, %s)", peer.validator.id, direction, stream.peer)
        try:
            await link.run()
        finally:
            if peer.link is link:
                peer.link = None
            _log.info("disconnected from %s: %s", peer.validator.id, link.reason)

"""A fault-injecting TCP relay on loopback: partitions (cut and heal) and slow links (delay).

A :class:`RelayHub` runs one asyncio event loop in one daemon thread and hosts any number of
:class:`Relay` objects. A relay listens on ``127.0.0.1`` and forwards the bytes of every connection it
accepts to its target and back, in 64 KiB reads, with back-pressure both ways. Faults:

* :meth:`Relay.cut` resets every open connection at once (the peers see ``ECONNRESET``) and resets
  each new one as soon as it is accepted, as a partition would; :meth:`Relay.heal` accepts again.
* :meth:`Relay.set_delay` holds each chunk for that many seconds in both directions, keeping the
  order of the bytes (a slow node or link); 0 forwards at once.

Every public method may be called from any thread: it runs on the hub's loop and returns when done.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Final, TypeVar, cast

from fleet.errors import NetworkFault

__all__ = ["RelayHub", "Relay"]

_T = TypeVar("_T")
_LISTEN_HOST: Final = "127.0.0.1"
_CONNECT_TIMEOUT: Final = 5.0
_CALL_TIMEOUT: Final = 10.0
_QUEUE_HIGH: Final = 4 << 20  # bytes held back by a delay before the sender is paused
_QUEUE_LOW: Final = 1 << 20  # ... and resumed
_BUFFER: Final = 64 << 10  # the read size
_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class RelayHub:
    """One event loop in one daemon thread, hosting many relays (start, relay, close; or ``with``)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._relays: list[Relay] = []
        self._lock = threading.Lock()

    def start(self) -> RelayHub:
        """Start the loop thread (once); return ``self``."""
        with self._lock:
            if self._thread is not None:
                raise NetworkFault("this relay hub was started already")
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(loop, ready), name="fleet-relays", daemon=True
            )
            self._thread.start()
            ready.wait()
            self._loop = loop
        return self

    def relay(self, target_host: str, target_port: int, port: int = 0) -> Relay:
        """A new relay listening on 127.0.0.1:``port`` (0: any free port) that forwards to the target."""
        relay = Relay(self, (target_host, target_port))
        self.call(lambda: None)  # fails clearly if the hub is not running

        async def listen() -> None:
            await relay._listen(port)

        try:
            self._run_coroutine(listen())
        except OSError as exc:
            raise NetworkFault(
                f"cannot listen on {_LISTEN_HOST}:{port} for a relay to {relay.target}: {exc}"
            ) from exc
        with self._lock:
            self._relays.append(relay)
        return relay

    @property
    def relays(self) -> list[Relay]:
        """The relays opened on this hub and not closed."""
        with self._lock:
            return [r for r in self._relays if not r.closed]

    def close(self) -> None:
        """Close every relay (resetting their connections), stop the loop and join its thread."""
        with self._lock:
            thread, loop, relays = self._thread, self._loop, list(self._relays)
            self._relays.clear()
        if thread is None or loop is None:
            return
        try:
            for relay in relays:
                relay.close()
        finally:
            with self._lock:
                self._loop = None
            loop.call_soon_threadsafe(loop.stop)
            if threading.current_thread() is not thread:
                thread.join(timeout=_CALL_TIMEOUT)
                if thread.is_alive():
                    raise NetworkFault("the relay hub's thread did not stop within 10 s")

    def __enter__(self) -> RelayHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running things on the loop -------------------------------------------------------------
    def call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the hub's loop and return its result (from any thread, the loop's too)."""
        loop = self._loop
        if loop is None:
            raise NetworkFault("the relay hub is not running (start it first)")
        if threading.current_thread() is self._thread:
            return function()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return future.result(timeout=_CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise NetworkFault("the relay hub's loop did not answer within 10 s") from None

    def _run_coroutine(self, coroutine: Coroutine[object, object, _T]) -> _T:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise NetworkFault("the relay hub is not running (start it first)")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise NetworkFault("a relay cannot be opened from the hub's own loop thread")
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=_CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise NetworkFault("the relay hub's loop did not answer within 10 s") from None

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()


class Relay:
    """Forwards connections from 127.0.0.1:``port`` to a target; can cut, heal and delay them.

    Made by :meth:`RelayHub.relay`. Methods may be called from any thread.
    """

    def __init__(self, hub: RelayHub, target: tuple[str, int]) -> None:
        self._hub = hub
        self.target: Final = target
        self._server: asyncio.Server | None = None
        self._port = 0
        self._links: set[_Link] = set()
        self._cut = False
        self._delay = 0.0
        self.closed = False

    @property
    def port(self) -> int:
        """The port this relay listens on (on 127.0.0.1)."""
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"{_LISTEN_HOST}:{self._port}"

    @property
    def is_cut(self) -> bool:
        """Whether the relay is cut (resetting every connection)."""
        return self._cut

    @property
    def delay(self) -> float:
        """The delay in force, in seconds."""
        return self._delay

    @property
    def connections(self) -> int:
        """How many relayed connections are open now."""
        return self._hub.call(lambda: len(self._links))

    def cut(self) -> None:
        """Reset every open connection now, and every new one as soon as it is accepted."""

        def cut() -> None:
            self._cut = True
            for link in list(self._links):
                link.reset()

        self._hub.call(cut)

    def heal(self) -> None:
        """Relay new connections again (connections reset by :meth:`cut` stay closed)."""

        def heal() -> None:
            self._cut = False

        self._hub.call(heal)

    def set_delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before passing it on, both ways, in order (0: no delay)."""
        if not seconds >= 0:
            raise NetworkFault(f"a relay delay is 0 or more seconds, not {seconds!r}")

        def set_delay() -> None:
            self._delay = float(seconds)

        self._hub.call(set_delay)

    def close(self) -> None:
        """Stop listening and reset every connection."""

        def close() -> asyncio.Server | None:
            self.closed = True
            self._cut = True
            for link in list(self._links):
                link.reset()
            server, self._server = self._server, None
            if server is not None:
                server.close()
            return server

        self._hub.call(close)

    def __repr__(self) -> str:
        return f"<Relay {self.address} -> {self.target[0]}:{self.target[1]}>"

    # -- on the loop -----------------------------------------------------------------------------
    async def _listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, _LISTEN_HOST, port, backlog=1024)
        self._port = int(self._server.sockets[0].getsockname()[1])

    def _accept(self) -> _End:
        link = _Link(self)
        return link.client

    def _connect(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()

        async def connect() -> None:
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: link.server, *self.target)
            except (OSError, TimeoutError):
                link.reset()

        task = loop.create_task(connect())
        link.connecting = task


class _End(asyncio.Protocol):
    """One socket of a relayed connection: the client's (accepted) or the server's (dialed)."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.other: _End = self
        self.inbound: _Flow | None = None  # the bytes written to this socket
        self._paused: set[str] = set()
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.link.made(self)

    def data_received(self, data: bytes) -> None:
        self.link.forward(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self.link.forward_eof(self)
        return True  # keep the socket open: the other way may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.link.lost()

    def pause_writing(self) -> None:
        self.other.hold("buffer")

    def resume_writing(self) -> None:
        self.other.release("buffer")

    def hold(self, reason: str) -> None:
        """Stop reading this socket for ``reason`` (until every reason is released)."""
        if not self._paused and self.transport is not None and self.transport.is_reading():
            self.transport.pause_reading()
        self._paused.add(reason)

    def release(self, reason: str) -> None:
        """Drop ``reason`` to stop reading; read again when none is left."""
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def reset(self) -> None:
        """Close at once with a TCP reset."""
        transport, self.transport = self.transport, None
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        transport.abort()


class _Flow:
    """The bytes travelling one way, held back by the relay's delay (in order, EOF included)."""

    def __init__(self, relay: Relay, source: _End, sink: _End) -> None:
        self.relay = relay
        self.source = source
        self.sink = sink
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.queued = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.eof_sent = False

    def push(self, data: bytes | None) -> None:
        """Pass ``data`` (``None``: end of stream) on now, or after the delay."""
        delay = self.relay.delay
        if delay <= 0 and not self.queue:
            self._deliver(data)
            return
        loop = asyncio.get_running_loop()
        due = max(loop.time() + delay, self.last_due)  # a shorter delay never overtakes earlier bytes
        self.last_due = due
        self.queue.append((due, data))
        if data is not None:
            self.queued += len(data)
            if self.queued > _QUEUE_HIGH:
                self.source.hold("delay")
        if self.timer is None:
            self.timer = loop.call_at(due, self._due)

    def _due(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is not None:
                self.queued -= len(data)
            self._deliver(data)
        if self.queued <= _QUEUE_LOW:
            self.source.release("delay")
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self._due)

    def _deliver(self, data: bytes | None) -> None:
        transport = self.sink.transport
        if transport is None or transport.is_closing():
            return
        if data is not None:
            transport.write(data)
            return
        self.eof_sent = True
        if transport.can_write_eof():
            transport.write_eof()
        self.sink.link.check_done()

    def cancel(self) -> None:
        """Drop what is held back."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0


class _Link:
    """One relayed connection: the client's socket, the socket to the target, a flow each way."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.client = _End(self)
        self.server = _End(self)
        self.client.other, self.server.other = self.server, self.client
        self.to_server = _Flow(relay, self.client, self.server)
        self.to_client = _Flow(relay, self.server, self.client)
        self.client.inbound, self.server.inbound = self.to_client, self.to_server
        self.connecting: asyncio.Task[None] | None = None
        self.done = False

    def made(self, end: _End) -> None:
        """A socket is connected: the client's (dial the target) or the target's (start relaying)."""
        if end is self.client:
            self.relay._links.add(self)
            if self.relay.is_cut:
                self.reset()
                return
            self.client.hold("connecting")
            self.relay._connect(self)
        elif self.done:
            self.server.reset()
        else:
            self.client.release("connecting")

    def forward(self, source: _End, data: bytes) -> None:
        """Bytes read from ``source``: on to the other socket."""
        (self.to_server if source is self.client else self.to_client).push(data)

    def forward_eof(self, source: _End) -> None:
        """``source`` will send no more: pass the end of stream on after its bytes."""
        (self.to_server if source is self.client else self.to_client).push(None)

    def check_done(self) -> None:
        """Close both sockets once each way has delivered its end of stream."""
        if self.to_server.eof_sent and self.to_client.eof_sent:
            for end in (self.client, self.server):
                if end.transport is not None:
                    end.transport.close()

    def lost(self) -> None:
        """A socket closed: reset the other one, unless both ends closed cleanly."""
        if self.to_server.eof_sent and self.to_client.eof_sent:
            self._forget()
            for end in (self.client, self.server):
                if end.transport is not None:
                    end.transport.close()
            return
        self.reset()

    def reset(self) -> None:
        """Reset both sockets now and forget the connection."""
        self._forget()
        self.client.reset()
        self.server.reset()

    def _forget(self) -> None:
        self.done = True
        self.to_server.cancel()
        self.to_client.cancel()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        self.relay._links.discard(self)

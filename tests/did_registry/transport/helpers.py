"""Loopback validator sets, a frame-rewriting proxy and hand-driven peers for the transport tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from did_registry.errors import HandshakeFailed
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.validators import Validator, ValidatorSet
from did_registry.transport import Transport, TransportConfig
from did_registry.transport.channel import SecureChannel
from did_registry.transport.frames import FrameDecoder, encode_frame
from did_registry.transport.handshake import HANDSHAKE_MAX_FRAME, initiate, respond
from did_registry.transport.stream import FrameStream
from tests import ports

T = TypeVar("T")

NETWORK = "testnet/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
HOST = "127.0.0.1"
TESTING = TransportConfig.testing()
# Quiet links in the tests that count frames on the wire: no keepalive during the test.
QUIET = replace(TESTING, keepalive_interval=30.0, idle_timeout=60.0)


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coroutine`` in a fresh event loop, failing if it takes longer than ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


def key_of(validator_id: str) -> Ed25519PrivateKey:
    """A fixed signing key per id, so a restarted validator keeps its key."""
    return Ed25519PrivateKey(sha256(b"transport test key " + validator_id.encode()))


def free_port() -> int:
    """A loopback TCP port free at the time of asking (outside the ephemeral range)."""
    return ports.free_port()


def validator(validator_id: str, port: int, key: Ed25519PrivateKey | None = None) -> Validator:
    """A validator entry on loopback."""
    public = (key or key_of(validator_id)).public_key
    return Validator(validator_id, encode_ed25519_public_key(public), f"{HOST}:{port}")


@dataclass
class Net:
    """A validator set on loopback ports, with each validator's key and port."""

    ports: dict[str, int]

    @classmethod
    def of(cls, ids: Iterable[str]) -> Net:
        """Fresh free ports for ``ids``."""
        return cls({validator_id: free_port() for validator_id in ids})

    def validators(
        self,
        *,
        overrides: dict[str, int] | None = None,
        without: Iterable[str] = (),
        keys: dict[str, Ed25519PrivateKey] | None = None,
    ) -> ValidatorSet:
        """The set, with some ports (a proxy in between) or keys replaced, or some validators left out."""
        ports, chosen = {**self.ports, **(overrides or {})}, keys or {}
        return ValidatorSet(
            tuple(validator(v, ports[v], chosen.get(v)) for v in self.ports if v not in set(without))
        )

    def transport(
        self, validator_id: str, config: TransportConfig = TESTING, validators: ValidatorSet | None = None
    ) -> Transport:
        """An unstarted transport for ``validator_id``."""
        return Transport(
            validator_id,
            key_of(validator_id),
            validators or self.validators(),
            network=NETWORK,
            listen=(HOST, self.ports[validator_id]),
            config=config,
        )


@contextlib.asynccontextmanager
async def started(*transports: Transport) -> AsyncIterator[None]:
    """Start ``transports`` and stop them all on the way out."""
    try:
        for transport in transports:
            await transport.start()
        yield
    finally:
        for transport in transports:
            await transport.stop()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> float:
    """Poll ``predicate`` until it holds; return the seconds it took, or fail after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def all_connected(*transports: Transport) -> Callable[[], bool]:
    """A predicate: every transport is connected to every one of its peers."""
    return lambda: all(status.connected for t in transports for status in t.peers().values())


async def receive(transport: Transport, timeout: float = 3.0) -> tuple[str, bytes]:
    """The next message ``transport`` receives, within ``timeout``."""
    async with asyncio.timeout(timeout):
        return await transport.receive()


async def nothing_received(transport: Transport, wait: float = 0.2) -> bool:
    """Whether ``transport`` receives nothing for ``wait`` seconds."""
    try:
        await receive(transport, wait)
    except TimeoutError:
        return True
    return False


async def connect(port: int) -> FrameStream:
    """A raw connection to a transport, as a frame stream with the handshake limit."""
    reader, writer = await asyncio.open_connection(HOST, port)
    return FrameStream(reader, writer, HANDSHAKE_MAX_FRAME, 1 << 16)


async def fake_initiator(
    port: int, me: str, key: Ed25519PrivateKey, target: Validator, network: str = NETWORK
) -> tuple[FrameStream, SecureChannel]:
    """Dial a transport and run the initiator's handshake by hand; the stream is closed if it fails."""
    stream = await connect(port)
    try:
        return stream, await initiate(stream, me=me, key=key, peer=target, network=network)
    except BaseException:
        await stream.aclose()
        raise


async def closed_by_peer(stream: FrameStream, timeout: float = 3.0) -> bool:
    """Whether the other end closes ``stream`` within ``timeout`` (anything it sends is skipped)."""
    try:
        async with asyncio.timeout(timeout):
            while await stream.reader.read(1 << 16):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


class _Server:
    """A loopback listener whose connection handlers run as tasks it tracks and cancels on close."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> int:
        """Listen (on ``port``, or a free one); return the port."""
        self._server = await asyncio.start_server(self._accept, HOST, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


Mangle = Callable[[int, int, bytes], list[bytes]]
"""``(connection number, frame number, frame body) -> frame bodies to forward`` (client to target)."""


class FrameProxy(_Server):
    """Forward TCP to ``target_port``; frames from the client pass through ``mangle`` on the way."""

    def __init__(self, target_port: int, mangle: Mangle) -> None:
        super().__init__()
        self.target_port = target_port
        self.mangle = mangle
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except BaseException:
            writer.close()
            raise
        pumps = [
            asyncio.get_running_loop().create_task(self._copy(up_reader, writer)),
            asyncio.get_running_loop().create_task(self._frames(number, reader, up_writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            writer.close()
            up_writer.close()
            for end in (writer, up_writer):
                with contextlib.suppress(OSError):
                    await end.wait_closed()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()

    async def _frames(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder((1 << 32) - 1)
        index = 0
        while data := await reader.read(1 << 16):
            for body in decoder.feed(data):
                for out in self.mangle(number, index, body):
                    writer.write(encode_frame(out, (1 << 32) - 1))
                index += 1
            await writer.drain()


class FakeResponder(_Server):
    """A validator that completes the responder's handshake (with any key), then neither reads nor writes."""

    def __init__(self, me: str, key: Ed25519PrivateKey, validators: ValidatorSet) -> None:
        super().__init__()
        self.me, self.key, self.validators = me, key, validators
        self.sessions = 0
        self.failures: list[HandshakeFailed] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = FrameStream(reader, writer, HANDSHAKE_MAX_FRAME, 1 << 16)
        try:
            await respond(stream, me=self.me, key=self.key, validators=self.validators, network=NETWORK)
            self.sessions += 1
            await asyncio.Event().wait()
        except HandshakeFailed as exc:
            self.failures.append(exc)
        finally:
            await stream.aclose()

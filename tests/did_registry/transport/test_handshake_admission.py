"""Inbound connections before authentication: a short deadline for the hello, a cap per source
address, and the oldest silent connection dropped for a newcomer, so silent sockets cannot lock
validators out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import replace

import pytest

from did_registry.identity.crypto import X25519PrivateKey
from did_registry.transport.handshake import HANDSHAKE_MAX_FRAME, Hello, network_hash
from did_registry.transport.stream import FrameStream
from did_registry.transport.transport import INBOUND_WARNINGS_PER_MINUTE
from tests.did_registry.transport.helpers import (
    HOST,
    NETWORK,
    TESTING,
    Net,
    closed_by_peer,
    connect,
    eventually,
    run,
    started,
)


async def _connect_from(port: int, source: str) -> FrameStream:
    reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
    return FrameStream(reader, writer, HANDSHAKE_MAX_FRAME, 1 << 16)


async def _squat(port: int, stop: asyncio.Event) -> None:
    """Hold a connection open without a byte, and open another as soon as it is closed."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            with contextlib.suppress(OSError):
                while await reader.read(1024):
                    pass
        finally:
            writer.close()


def test_silent_connections_holding_every_slot_do_not_lock_out_a_validator() -> None:
    net = Net.of(("a", "b"))

    async def main() -> None:
        a, b = net.transport("a"), net.transport("b", replace(TESTING, handshake_timeout=5.0))
        stop = asyncio.Event()
        async with started(b):
            squatters = [
                asyncio.create_task(_squat(net.ports["b"], stop)) for _ in range(TESTING.max_handshakes)
            ]
            try:
                await asyncio.sleep(0.3)
                async with started(a):
                    await eventually(lambda: a.peers()["b"].connected, timeout=4.0, what="a connected to b")
            finally:
                stop.set()
                for task in squatters:
                    task.cancel()
                await asyncio.gather(*squatters, return_exceptions=True)
                await asyncio.sleep(0.2)  # let b finish accepting what was in flight, so none leaks at stop
                gc.collect()

    run(main(), 20)


def test_a_connection_that_sends_no_hello_is_closed_after_the_hello_timeout() -> None:
    net = Net.of(("a", "b"))

    async def main() -> None:
        b = net.transport("b", replace(TESTING, handshake_timeout=5.0, hello_timeout=0.2))
        async with started(b):
            stream = await connect(net.ports["b"])
            try:
                start = time.monotonic()
                assert await closed_by_peer(stream, 3.0)
                assert 0.15 < time.monotonic() - start < 1.0
            finally:
                await stream.aclose()
            assert b.stats().counters.handshake_failures == 1

    run(main())


def test_one_source_address_holds_at_most_max_handshakes_per_ip_silent_connections() -> None:
    """The third silent connection from 127.0.0.2 closes that address's oldest; an older one from
    127.0.0.1 is left alone (there is room overall)."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        config = replace(TESTING, max_handshakes_per_ip=2, handshake_timeout=5.0, hello_timeout=5.0)
        b = net.transport("b", config)
        async with started(b):
            other = await _connect_from(net.ports["b"], "127.0.0.1")
            streams = [other]
            try:
                for _ in range(3):
                    await asyncio.sleep(0.05)
                    streams.append(await _connect_from(net.ports["b"], "127.0.0.2"))
                assert await closed_by_peer(streams[1], 1.0)
                for stream in (other, streams[2], streams[3]):
                    assert not await closed_by_peer(stream, 0.1)
            finally:
                for stream in streams:
                    await stream.aclose()

    run(main())


async def _hellos_never_confirmed(streams: list[FrameStream]) -> None:
    """Send a valid Hello (ids and network are public) on each, read the reply, confirm nothing."""
    for stream in streams:
        hello = Hello(network_hash(NETWORK), X25519PrivateKey.generate().public_key, "a", "b")
        stream.write(hello.encode(), HANDSHAKE_MAX_FRAME)
        assert await stream.read() is not None  # the reply; the responder waits for a confirmation


def test_when_every_slot_has_sent_its_hello_a_newcomer_is_refused() -> None:
    """Connections that sent a hello keep their slot until the handshake ends: the newcomer waits."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        config = replace(TESTING, max_handshakes=2, handshake_timeout=5.0, hello_timeout=5.0)
        b = net.transport("b", config)
        async with started(b):
            streams = [await connect(net.ports["b"]) for _ in range(2)]
            try:
                await _hellos_never_confirmed(streams)
                streams.append(await connect(net.ports["b"]))
                assert await closed_by_peer(streams[2], 1.0)
                assert not await closed_by_peer(streams[0], 0.2)
                assert not await closed_by_peer(streams[1], 0.2)
            finally:
                for stream in streams:
                    await stream.aclose()

    run(main())


def test_a_handshake_stuck_after_its_hello_gives_its_slot_to_a_newcomer_after_the_grace() -> None:
    """A Hello can be made from public data and never confirmed: once it is older than hello_timeout,
    such a connection is evicted for a newcomer like a silent one (an honest handshake is long done)."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        config = replace(TESTING, max_handshakes=2, handshake_timeout=5.0, hello_timeout=0.3)
        b = net.transport("b", config)
        async with started(b):
            streams = [await connect(net.ports["b"]) for _ in range(2)]
            try:
                await _hellos_never_confirmed(streams)
                await asyncio.sleep(0.5)  # past the grace
                streams.append(await connect(net.ports["b"]))
                assert await closed_by_peer(streams[0], 1.0)  # the oldest stuck one made room
                assert not await closed_by_peer(streams[2], 0.1)
            finally:
                for stream in streams:
                    await stream.aclose()

    run(main())


def test_junk_hellos_cannot_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Anyone may connect and send a junk hello: each is counted, but at most
    INBOUND_WARNINGS_PER_MINUTE are logged at WARNING a minute, the next one summing up the rest."""
    net = Net.of(("a", "b"))
    junk = 3 * INBOUND_WARNINGS_PER_MINUTE

    async def main() -> int:
        b = net.transport("b")
        async with started(b):
            for _ in range(junk):
                reader, writer = await asyncio.open_connection(HOST, net.ports["b"])
                writer.write(b"\x00\x00\x00\x01x")  # a one-byte frame: not a hello
                await writer.drain()
                await reader.read()  # closed by the validator
                writer.close()
            await eventually(lambda: b.stats().counters.handshake_failures >= junk)
            return b.stats().counters.handshake_failures

    with caplog.at_level(logging.DEBUG, logger="did_registry.transport"):
        failures = run(main())
    assert failures == junk
    refused = [r for r in caplog.records if "not a Trellis transport hello" in r.getMessage()]
    assert len(refused) == junk
    assert sum(r.levelno == logging.WARNING for r in refused) == INBOUND_WARNINGS_PER_MINUTE

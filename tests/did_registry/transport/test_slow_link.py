"""A frame that takes longer than the idle timeout to cross a slow link still arrives: bytes arriving
are progress, and a sender waits while its peer keeps taking bytes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from tests.did_registry.transport.helpers import HOST, TESTING, Net, run

SLOW = replace(TESTING, keepalive_interval=0.3, idle_timeout=1.0, write_timeout=1.0)


class Throttle:
    """A TCP proxy on loopback passing at most ``rate`` bytes a second each way."""

    def __init__(self, target: int, rate: int) -> None:
        self.target = target
        self.rate = rate
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(len(data) / self.rate)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.target)
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            writer.close()
            upstream_writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_a_frame_slower_than_the_idle_timeout_is_delivered() -> None:
    """600 KB at 200 KB/s takes three idle timeouts to cross; it arrives once, without a reconnect."""

    async def main() -> tuple[bytes, float, int]:
        net = Net.of(["a", "b"])
        b = net.transport("b", SLOW)
        await b.start()
        proxy = Throttle(net.ports["b"], rate=200_000)
        port = await proxy.start()
        a = net.transport("a", SLOW, validators=net.validators(overrides={"b": port}))
        await a.start()
        try:
            while not a.peers()["b"].connected:
                await asyncio.sleep(0.02)
            payload = b"x" * 600_000
            start = time.monotonic()
            a.send("b", payload)
            async with asyncio.timeout(10):
                sender, received = await b.receive()
            assert sender == "a"
            return received, time.monotonic() - start, a.stats().counters.reconnects
        finally:
            await a.stop()
            await b.stop()
            proxy.close()

    received, seconds, reconnects = run(main(), 30)
    assert received == b"x" * 600_000
    assert seconds > SLOW.idle_timeout  # it really took longer than the link may stay silent
    assert reconnects == 0

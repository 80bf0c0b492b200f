"""TransportConfig validation and back-off; the bounded outbound queue and the per-peer inbox."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from did_registry.errors import InvalidTransportConfig, TransportClosed
from did_registry.transport import TransportConfig
from did_registry.transport.queues import Inbox, OutboundQueue
from tests.did_registry.transport.helpers import run


class TestTransportConfig:
    def test_default_and_testing_profiles_are_valid(self) -> None:
        """Both shipped profiles pass validation; the test profile has shorter timers."""
        default, testing = TransportConfig().validate(), TransportConfig.testing().validate()
        assert testing.handshake_timeout < default.handshake_timeout
        assert testing.backoff_max < default.backoff_max
        assert default.max_payload == default.max_frame - 16

    @pytest.mark.parametrize(
        "change",
        [
            {"max_frame": 16},
            {"max_frame": 1 << 32, "outbound_bytes": 1 << 33},
            {"outbound_frames": 0},
            {"outbound_bytes": 1024},
            {"inbound_bytes": -1},
            {"handshake_timeout": 0.0},
            {"idle_timeout": 1.0, "keepalive_interval": 1.0},
            {"backoff_initial": 2.0, "backoff_max": 1.0},
            {"max_handshakes": 1.5},
            {"read_chunk": "64k"},
        ],
    )
    def test_out_of_range_values_are_refused(self, change: dict[str, Any]) -> None:
        """A value out of range or of the wrong type raises InvalidTransportConfig (a ValueError)."""
        with pytest.raises(InvalidTransportConfig):
            replace(TransportConfig(), **change)
        assert issubclass(InvalidTransportConfig, ValueError)

    def test_backoff_doubles_and_is_capped(self) -> None:
        """The back-off doubles per failed attempt from the initial value, up to the maximum."""
        config = TransportConfig(backoff_initial=0.5, backoff_max=3.0)
        assert [config.backoff(k) for k in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
        assert config.backoff(10_000) == 3.0


class TestOutboundQueue:
    def test_full_queue_drops_the_oldest_and_counts(self) -> None:
        """Past max_frames, each new payload pushes out the oldest one, and drops are counted."""
        queue = OutboundQueue(max_frames=3, max_bytes=1 << 20)
        dropped = [queue.put(bytes([k])) for k in range(5)]
        assert dropped == [0, 0, 0, 1, 1] and queue.dropped == 2
        assert [queue.pop() for _ in range(len(queue))] == [b"\x02", b"\x03", b"\x04"]
        assert queue.bytes == 0

    def test_byte_bound_drops_as_many_as_needed(self) -> None:
        """A large payload drops as many old ones as it takes to stay within max_bytes."""
        queue = OutboundQueue(max_frames=100, max_bytes=10)
        for _ in range(5):
            queue.put(b"xx")
        assert queue.put(b"y" * 7) == 4
        assert (len(queue), queue.bytes) == (2, 9)

    def test_wait_returns_once_a_payload_is_queued(self) -> None:
        """wait blocks while the queue is empty and returns when a payload arrives."""

        async def main() -> None:
            queue = OutboundQueue(4, 100)
            waiter = asyncio.get_running_loop().create_task(queue.wait())
            await asyncio.sleep(0.01)
            assert not waiter.done()
            queue.put(b"x")
            await asyncio.wait_for(waiter, 1.0)

        run(main())


class TestInbox:
    def test_a_full_peer_waits_while_others_get_through(self) -> None:
        """A peer over its share waits for room; another peer's payloads still go in at once."""

        async def main() -> None:
            inbox = Inbox(frames_per_peer=2, bytes_per_peer=1 << 20)
            await inbox.put("flooder", b"1")
            await inbox.put("flooder", b"2")
            blocked = asyncio.get_running_loop().create_task(inbox.put("flooder", b"3"))
            await asyncio.wait_for(inbox.put("honest", b"h"), 1.0)
            await asyncio.sleep(0.01)
            assert not blocked.done() and inbox.waiting("flooder") == (2, 2)
            assert await inbox.get() == ("flooder", b"1")
            await asyncio.wait_for(blocked, 1.0)
            assert [await inbox.get() for _ in range(3)] == [
                ("flooder", b"2"),
                ("honest", b"h"),
                ("flooder", b"3"),
            ]

        run(main())

    def test_byte_share_bounds_a_peer(self) -> None:
        """A peer at its byte share waits even with frames to spare."""

        async def main() -> None:
            inbox = Inbox(frames_per_peer=100, bytes_per_peer=10)
            await inbox.put("p", b"x" * 10)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(inbox.put("p", b"y"), 0.05)
            assert inbox.waiting("p") == (1, 10)

        run(main())

    def test_closed_inbox_drains_then_raises(self) -> None:
        """Once closed, get returns what is left, then raises TransportClosed; new payloads are ignored."""

        async def main() -> None:
            inbox = Inbox(4, 100)
            await inbox.put("p", b"kept")
            await inbox.close()
            await inbox.put("p", b"ignored")
            assert await inbox.get() == ("p", b"kept")
            with pytest.raises(TransportClosed):
                await inbox.get()

        run(main())

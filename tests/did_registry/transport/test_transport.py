"""The transport over real sockets on 127.0.0.1: delivery, refusals, hostile frames, bounds, reconnection."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tracemalloc
from dataclasses import replace

import pytest

from did_registry.errors import (
    FrameTooLarge,
    HandshakeFailed,
    InvalidFrame,
    InvalidKey,
    InvalidTransportConfig,
    TransportClosed,
    UnknownPeer,
)
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.validators import ValidatorSet
from did_registry.transport import Transport
from did_registry.transport.frames import FRAME_HEADER_SIZE
from tests.did_registry.transport.helpers import (
    HOST,
    NETWORK,
    QUIET,
    TESTING,
    FakeResponder,
    FrameProxy,
    Mangle,
    Net,
    all_connected,
    closed_by_peer,
    connect,
    eventually,
    fake_initiator,
    key_of,
    nothing_received,
    receive,
    run,
    started,
    validator,
)

IDS = ("v0", "v1", "v2", "v3")


def test_four_validators_exchange_messages_both_ways() -> None:
    """Four transports on loopback connect, and each delivers to each other one, in order."""
    net = Net.of(IDS)

    async def main() -> None:
        nodes = {v: net.transport(v) for v in IDS}
        async with started(*nodes.values()):
            await eventually(all_connected(*nodes.values()), what="all connected")
            for sender in IDS:
                for to in IDS:
                    if to != sender:
                        for k in range(3):
                            nodes[sender].send(to, f"{sender}->{to} #{k}".encode())
            for to in IDS:
                got = [await receive(nodes[to]) for _ in range(3 * 3)]
                expected = [(s, f"{s}->{to} #{k}".encode()) for s in IDS if s != to for k in range(3)]
                assert sorted(got) == sorted(expected)
                for sender in IDS:  # per sender, in the order sent
                    mine = [payload for s, payload in got if s == sender]
                    assert mine == sorted(mine)

    run(main())


def test_broadcast_reaches_every_other_validator_once() -> None:
    """A broadcast from each of four validators reaches the three others, and never its sender."""
    net = Net.of(IDS)

    async def main() -> None:
        nodes = {v: net.transport(v) for v in IDS}
        async with started(*nodes.values()):
            await eventually(all_connected(*nodes.values()), what="all connected")
            for sender in IDS:
                nodes[sender].broadcast(f"hello from {sender}".encode())
            for v in IDS:
                got = sorted([await receive(nodes[v]) for _ in range(3)])
                assert got == [(s, f"hello from {s}".encode()) for s in IDS if s != v]
                assert await nothing_received(nodes[v], 0.1)

    run(main())


def test_peer_status_and_counters_describe_the_links() -> None:
    """Peer status shows who dialed whom and when each peer was last heard; counters count the frames."""
    net = Net.of(("a", "b", "c"))

    async def main() -> None:
        a, b, c = (net.transport(v, QUIET) for v in "abc")
        async with started(a, b, c):
            await eventually(all_connected(a, b, c), what="all connected")
            b.send("a", b"x" * 100)
            assert await receive(a) == ("b", b"x" * 100)
            status = b.peers()
            assert (status["a"].direction, status["c"].direction) == ("inbound", "outbound")
            assert status["a"].last_seen is not None and status["a"].last_seen <= time.time()
            assert status["a"].counters.frames_out == 1
            assert status["a"].counters.bytes_out == FRAME_HEADER_SIZE + 100 + 16
            assert a.peers()["b"].counters.bytes_in == FRAME_HEADER_SIZE + 100 + 16
            stats = b.stats()
            assert (stats.peers, stats.connected, stats.counters.connections) == (2, 2, 2)
            assert stats.to_json()["frames_out"] == 1 and status["a"].to_json()["direction"] == "inbound"

    run(main())


@pytest.mark.parametrize(
    ("claimed", "signer", "network"),
    [
        pytest.param("a", "outsider", NETWORK, id="key-outside-the-set"),
        pytest.param("a", "c", NETWORK, id="claims-another-validators-id"),
        pytest.param("mallory", "mallory", NETWORK, id="id-not-in-the-set"),
        pytest.param("a", "a", "othernet/00", id="another-network"),
        pytest.param("c", "c", NETWORK, id="higher-id-dialing-lower"),
    ],
)
def test_inbound_peer_that_is_not_who_it_claims_is_refused(
    claimed: str, signer: str, network: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If an inbound peer's id, key, network or direction does not fit the set, it is refused and logged."""
    net = Net.of(("a", "b", "c"))

    async def main() -> None:
        b = net.transport("b")
        async with started(b):
            with pytest.raises(HandshakeFailed):
                await fake_initiator(net.ports["b"], claimed, key_of(signer), validator("b", 0), network)
            await eventually(lambda: b.stats().counters.handshake_failures == 1, what="refusal counted")
            assert not any(status.connected for status in b.peers().values())
            assert b.stats().counters.connections == 0

    with caplog.at_level(logging.WARNING, logger="did_registry.transport"):
        run(main())
    assert any(f"{claimed}@{HOST}" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


def test_impostor_responder_is_refused_by_the_dialer(caplog: pytest.LogCaptureFixture) -> None:
    """If the peer a validator dials signs with a key that is not the set's for that id, it is refused."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        impostor = FakeResponder("b", Ed25519PrivateKey.generate(), net.validators())
        await impostor.start(net.ports["b"])
        a = net.transport("a")
        try:
            async with started(a):
                await eventually(lambda: a.stats().counters.handshake_failures >= 2, what="refusals")
                assert not a.peers()["b"].connected and impostor.sessions == 0
        finally:
            await impostor.close()

    with caplog.at_level(logging.WARNING, logger="did_registry.transport"):
        run(main())
    assert any("refused outbound connection to b@" in r.getMessage() for r in caplog.records)


def _mangler(kind: str) -> Mangle:
    """A proxy rule that attacks the first two data frames of the first connection only."""
    held: list[bytes] = []

    def mangle(connection: int, index: int, body: bytes) -> list[bytes]:
        # Frames 0 and 1 are the hello and the confirmation; 16-byte bodies are keepalives.
        data = index - 2
        if connection > 0 or data < 0 or data > 1 or len(body) == 16:
            return [body]
        if kind == "tampered" and data == 0:
            return [body[:20] + bytes((body[20] ^ 0x01,)) + body[21:]]
        if kind == "replayed" and data == 0:
            return [body, body]
        if kind == "reordered":
            held.append(body)
            return [held[1], held[0]] if data == 1 else []
        if kind == "dropped" and data == 0:
            return []
        return [body]

    return mangle


@pytest.mark.parametrize(
    ("kind", "delivered"),
    [("tampered", []), ("replayed", [b"first message"]), ("reordered", []), ("dropped", [])],
)
def test_frame_attacked_on_the_wire_closes_the_connection(kind: str, delivered: list[bytes]) -> None:
    """If a frame is altered, replayed, reordered or dropped, the receiver closes and delivers nothing of it."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        proxy = FrameProxy(net.ports["b"], _mangler(kind))
        proxy_port = await proxy.start()
        a = net.transport("a", QUIET, net.validators(overrides={"b": proxy_port}))
        b = net.transport("b", QUIET)
        try:
            async with started(a, b):
                await eventually(all_connected(a, b), what="connected")
                a.send("b", b"first message")
                a.send("b", b"second message")
                await eventually(lambda: b.stats().counters.protocol_errors == 1, what="closed")
                await eventually(lambda: a.stats().counters.reconnects == 1 and all_connected(a, b)())
                a.send("b", b"after reconnecting")
                got: list[bytes] = []
                while not got or got[-1] != b"after reconnecting":
                    sender, payload = await receive(b)
                    assert sender == "a"
                    got.append(payload)
                assert got == [*delivered, b"after reconnecting"]
                assert proxy.connections == 2
        finally:
            await proxy.close()

    run(main())


def test_oversized_length_prefix_before_handshake_closes_without_allocating() -> None:
    """A length prefix above the handshake limit closes the connection at once, without buffering."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        b = net.transport("b")
        async with started(b):
            stream = await connect(net.ports["b"])
            try:
                tracemalloc.start()
                stream.writer.write((0xFFFFFFFF).to_bytes(4, "big") + b"\x00" * 1000)
                assert await closed_by_peer(stream, 2.0)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert peak < 1 << 20
            finally:
                await stream.aclose()
            assert b.stats().counters.handshake_failures == 1

    run(main())


def test_oversized_length_prefix_in_session_closes_without_allocating() -> None:
    """After the handshake, a length above max_frame closes the connection before its body is read."""
    net = Net.of(("a", "b"))
    config = replace(QUIET, max_frame=8 << 20, outbound_bytes=8 << 20)

    async def main() -> None:
        b = net.transport("b", config)
        async with started(b):
            stream, _ = await fake_initiator(net.ports["b"], "a", key_of("a"), validator("b", 0))
            try:
                await eventually(lambda: b.peers()["a"].connected, what="connected")
                tracemalloc.start()
                stream.writer.write(((8 << 20) + 1).to_bytes(4, "big") + b"\x00" * 4096)
                assert await closed_by_peer(stream, 2.0)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert peak < 1 << 20
            finally:
                await stream.aclose()
            await eventually(lambda: b.stats().counters.protocol_errors == 1, what="protocol error counted")

    run(main())


def test_silent_connection_is_closed_after_the_handshake_timeout() -> None:
    """A connection that never sends its hello is closed after handshake_timeout and counted."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        b = net.transport("b", replace(TESTING, handshake_timeout=0.3))
        async with started(b):
            stream = await connect(net.ports["b"])
            try:
                start = time.monotonic()
                assert await closed_by_peer(stream, 3.0)
                assert 0.25 < time.monotonic() - start < 2.0
            finally:
                await stream.aclose()
            assert b.stats().counters.handshake_failures == 1

    run(main())


def test_a_newcomer_takes_the_slot_of_the_oldest_silent_connection() -> None:
    """With max_handshakes silent connections pending, a further one closes the oldest, not itself."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        config = replace(TESTING, max_handshakes=2, handshake_timeout=5.0, hello_timeout=5.0)
        b = net.transport("b", config)
        async with started(b):
            streams = [await connect(net.ports["b"]) for _ in range(2)]
            try:
                await asyncio.sleep(0.1)
                streams.append(await connect(net.ports["b"]))
                assert await closed_by_peer(streams[0], 1.0)
                assert not await closed_by_peer(streams[1], 0.2)
                assert not await closed_by_peer(streams[2], 0.2)
            finally:
                for stream in streams:
                    await stream.aclose()

    run(main())


def test_peer_that_stops_reading_keeps_the_sender_bounded() -> None:
    """If a peer stops reading, its queue stays within bounds, the oldest are dropped and counted."""
    net = Net.of(("a", "b"))
    config = replace(
        QUIET, max_frame=256 << 10, outbound_frames=32, outbound_bytes=1 << 20, write_timeout=30.0
    )
    payloads, size = 1500, 32 << 10  # 48 MiB offered in all

    async def main() -> None:
        sink = FakeResponder("b", key_of("b"), net.validators())
        await sink.start(net.ports["b"])
        a = net.transport("a", config)
        try:
            async with started(a):
                await eventually(lambda: a.peers()["b"].connected, what="connected")
                tracemalloc.start()
                baseline, _ = tracemalloc.get_traced_memory()
                for k in range(payloads):
                    a.send("b", os.urandom(size))
                    if k % 50 == 0:
                        await asyncio.sleep(0.001)
                await asyncio.sleep(0.2)
                current, _ = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                status = a.peers()["b"]
                assert status.queued_frames <= 32 and status.queued_bytes <= 1 << 20
                counted = status.counters.frames_out + status.counters.dropped + status.queued_frames
                assert counted in (payloads - 1, payloads)  # one may be in the socket, awaiting room
                assert status.counters.dropped > payloads // 2
                assert current - baseline < 8 << 20
                assert status.connected
        finally:
            await sink.close()

    run(main(), timeout=60)


def test_quiet_link_stays_up_on_keepalives() -> None:
    """A link with no traffic stays connected past idle_timeout, kept alive by empty frames."""
    net = Net.of(("a", "b"))
    config = replace(TESTING, keepalive_interval=0.05, idle_timeout=0.3)

    async def main() -> None:
        a, b = net.transport("a", config), net.transport("b", config)
        async with started(a, b):
            await eventually(all_connected(a, b), what="connected")
            await asyncio.sleep(1.0)
            assert all_connected(a, b)() and a.stats().counters.connections == 1
            assert b.peers()["a"].counters.frames_in >= 5
            assert await nothing_received(b, 0.05)

    run(main())


def test_peer_heard_from_for_idle_timeout_is_dropped_and_redialed() -> None:
    """If a connected peer sends nothing (not even keepalives) for idle_timeout, it is dropped and redialed."""
    net = Net.of(("a", "b"))
    config = replace(TESTING, keepalive_interval=0.1, idle_timeout=0.3)

    async def main() -> None:
        mute = FakeResponder("b", key_of("b"), net.validators())
        await mute.start(net.ports["b"])
        a = net.transport("a", config)
        try:
            async with started(a):
                await eventually(lambda: a.stats().counters.connections >= 2, what="dropped and redialed")
                assert mute.sessions >= 2
        finally:
            await mute.close()

    run(main())


def test_restarted_transport_is_reconnected_within_the_backoff_bound() -> None:
    """If a validator is stopped and restarted on its port, the others reconnect within the back-off bound."""
    net = Net.of(IDS)

    async def main() -> None:
        nodes = {v: net.transport(v) for v in IDS}
        async with started(*nodes.values()):  # stopping v1 twice is harmless
            await eventually(all_connected(*nodes.values()), what="all connected")
            await nodes["v1"].stop()
            others = [nodes[v] for v in IDS if v != "v1"]
            await eventually(lambda: not any(t.peers()["v1"].connected for t in others), what="loss seen")
            await asyncio.sleep(3 * TESTING.backoff_max)  # the dialer is now at its longest back-off
            nodes["v1"] = net.transport("v1")
            async with started(nodes["v1"]):
                took = await eventually(all_connected(*nodes.values()), what="all reconnected")
                assert took <= TESTING.backoff_max + TESTING.handshake_timeout
                nodes["v1"].broadcast(b"back")
                for t in others:
                    assert await receive(t) == ("v1", b"back")
                    t.send("v1", b"welcome back from " + t.me.encode())
                got = sorted([await receive(nodes["v1"]) for _ in others])
                assert got == [(t.me, b"welcome back from " + t.me.encode()) for t in others]
                assert nodes["v0"].stats().counters.reconnects == 1

    run(main())


def test_removing_a_validator_closes_its_connection_and_keeps_it_out() -> None:
    """update_validators without a peer closes its connection; sending to it fails, and it is not redialed."""
    net = Net.of(("a", "b", "c"))

    async def main() -> None:
        a, b, c = (net.transport(v) for v in "abc")
        async with started(a, b, c):
            await eventually(all_connected(a, b, c), what="all connected")
            a.update_validators(net.validators(without=["c"]))
            await eventually(lambda: not c.peers()["a"].connected, what="c sees the close")
            assert set(a.peers()) == {"b"}
            with pytest.raises(UnknownPeer):
                a.send("c", b"hello")
            await asyncio.sleep(3 * TESTING.backoff_max)
            assert not c.peers()["a"].connected and b.peers()["c"].connected
            a.broadcast(b"to the remaining set")
            assert await receive(b) == ("a", b"to the remaining set")
            assert await nothing_received(c)

    run(main())


def test_a_removed_validator_that_dials_in_is_refused() -> None:
    """If a validator removed from a peer's set dials that peer, the peer refuses it."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        a, b = net.transport("a"), net.transport("b")
        async with started(a, b):
            await eventually(all_connected(a, b), what="connected")
            b.update_validators(net.validators(without=["a"]))
            await eventually(lambda: b.stats().counters.handshake_failures >= 2, what="redials refused")
            assert not a.peers()["b"].connected and b.stats().peers == 0

    run(main())


def test_a_peer_whose_key_changes_is_redialed_and_must_prove_the_new_key() -> None:
    """If a peer's key changes in the set, its link is closed, and its old key no longer passes."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        a, b = net.transport("a"), net.transport("b")
        async with started(a, b):
            await eventually(all_connected(a, b), what="connected")
            a.update_validators(net.validators(keys={"b": Ed25519PrivateKey.generate()}))
            await eventually(lambda: a.stats().counters.handshake_failures >= 2, what="old key refused")
            assert not a.peers()["b"].connected and a.stats().counters.connections == 1

    run(main())


def test_a_validator_added_to_the_set_is_connected() -> None:
    """When update_validators adds a validator, the others connect to it and messages flow."""
    net = Net.of(("a", "b", "c"))
    before = net.validators(without=["c"])

    async def main() -> None:
        a, b = net.transport("a", validators=before), net.transport("b", validators=before)
        c = net.transport("c")
        async with started(a, b, c):
            await eventually(all_connected(a, b), what="a and b connected")
            await asyncio.sleep(3 * TESTING.backoff_max)
            assert not any(status.connected for status in c.peers().values())
            for t in (a, b):
                t.update_validators(net.validators())
            await eventually(all_connected(a, b, c), what="c connected")
            c.broadcast(b"joined")
            assert await receive(a) == ("c", b"joined") and await receive(b) == ("c", b"joined")

    run(main())


def test_send_before_start_is_delivered_once_connected() -> None:
    """Payloads queued before the transport starts are sent once the link is up."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        a, b = net.transport("a"), net.transport("b")
        a.send("b", b"early")
        async with started(a, b):
            assert await receive(b) == ("a", b"early")

    run(main())


@pytest.mark.parametrize(
    ("to", "payload", "error"),
    [
        ("z", b"x", UnknownPeer),
        ("a", b"x", UnknownPeer),
        ("b", b"", InvalidFrame),
        ("b", b"x" * (TESTING.max_payload + 1), FrameTooLarge),
    ],
    ids=["unknown-id", "itself", "empty", "oversized"],
)
def test_send_refuses_bad_calls(to: str, payload: bytes, error: type[Exception]) -> None:
    """send refuses an id that is not another validator, an empty payload and one above the limit."""
    transport = Net.of(("a", "b")).transport("a")
    with pytest.raises(error):
        transport.send(to, payload)
    assert transport.peers()["b"].queued_frames == 0


def test_constructor_refuses_an_inconsistent_identity() -> None:
    """A transport whose id is not in the set (or too long), whose key is not the set's, or with no network is refused."""
    net = Net.of(("a", "b"))
    with pytest.raises(UnknownPeer):
        Transport("z", key_of("z"), net.validators(), network=NETWORK, listen=(HOST, 0))
    with pytest.raises(InvalidKey):
        Transport("a", key_of("b"), net.validators(), network=NETWORK, listen=(HOST, 0))
    with pytest.raises(InvalidTransportConfig):
        Transport("a", key_of("a"), net.validators(), network="", listen=(HOST, 0))
    long_id = "v" * 65
    with pytest.raises(InvalidTransportConfig):
        Transport(
            long_id,
            key_of(long_id),
            ValidatorSet((validator(long_id, 1),)),
            network=NETWORK,
            listen=(HOST, 0),
        )


def test_stopped_transport_drains_then_raises() -> None:
    """After stop, receive returns what was already received, then raises TransportClosed; send raises."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        a, b = net.transport("a"), net.transport("b")
        async with started(a, b):
            a.send("b", b"one")
            await eventually(lambda: b.stats().inbound_waiting == 1, what="received")
        assert await receive(b) == ("a", b"one")
        with pytest.raises(TransportClosed):
            await receive(b)
        with pytest.raises(TransportClosed):
            a.send("b", b"two")
        with pytest.raises(TransportClosed):
            await a.start()

    run(main())

"""The handshake's messages and key schedule, the sealed channel, and the HKDF it relies on."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import DecryptionFailed, HandshakeFailed, InvalidKey
from did_registry.identity.crypto import X25519PrivateKey, hkdf_sha256, random_bytes
from did_registry.transport.channel import SecureChannel
from did_registry.transport.handshake import (
    HANDSHAKE_MAX_FRAME,
    PROTOCOL,
    Hello,
    dials,
    network_hash,
    respond,
    session_keys,
    signed_message,
    transcript_hash,
)
from did_registry.transport.stream import FrameStream
from tests.did_registry.transport.helpers import NETWORK, Net, fake_initiator, key_of, run

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


def _hello(initiator: str = "a", responder: str = "b") -> Hello:
    return Hello(network_hash(NETWORK), X25519PrivateKey.generate().public_key, initiator, responder)


@given(ids, ids)
def test_hello_round_trip(initiator: str, responder: str) -> None:
    """A Hello decodes to what was encoded, and fits the handshake frame limit."""
    hello = _hello(initiator, responder)
    assert Hello.decode(hello.encode()) == hello
    assert len(hello.encode()) <= HANDSHAKE_MAX_FRAME


def test_every_truncation_of_a_hello_is_refused() -> None:
    """Each strict prefix of a Hello raises HandshakeFailed, as does a byte too many."""
    data = _hello("validator-1", "validator-2").encode()
    for cut in range(len(data)):
        with pytest.raises(HandshakeFailed):
            Hello.decode(data[:cut])
    with pytest.raises(HandshakeFailed, match="trailing"):
        Hello.decode(data + b"\x00")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"trellis/transport/v2" + bytes(64) + b"\x01a\x01b", "protocol"),
        (PROTOCOL + bytes(64) + b"\x00\x01b", "truncated"),
        (PROTOCOL + bytes(64) + b"\x01\xff\x01b", "ASCII"),
        (PROTOCOL + bytes(64) + b"\x41" + b"a" * 65 + b"\x01b", "longer"),
        (b"GET / HTTP/1.1\r\n", "protocol"),
    ],
    ids=["other-version", "empty-id", "non-ascii-id", "id-too-long", "http"],
)
def test_malformed_hello_is_refused(data: bytes, reason: str) -> None:
    """A Hello of another protocol version, with an empty, over-long or non-ASCII id, is refused with its reason."""
    with pytest.raises(HandshakeFailed, match=reason):
        Hello.decode(data, "127.0.0.1:1")


def test_transcript_binds_every_field() -> None:
    """Changing the network, either id or either ephemeral key changes the transcript hash."""
    e1, e2 = (X25519PrivateKey.generate().public_key for _ in range(2))
    base = transcript_hash(NETWORK, "a", "b", e1, e2)
    variants = [
        transcript_hash("othernet", "a", "b", e1, e2),
        transcript_hash(NETWORK, "b", "a", e1, e2),
        transcript_hash(NETWORK, "a", "c", e1, e2),
        transcript_hash(NETWORK, "a", "b", e2, e1),
        transcript_hash(NETWORK, "ab", "", e1, e2),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_roles_sign_different_messages() -> None:
    """The initiator's and the responder's signed messages differ, so one cannot be reflected as the other."""
    th = bytes(32)
    assert signed_message("initiator", th) != signed_message("responder", th)
    assert signed_message("initiator", th).endswith(th)


def test_both_sides_derive_the_same_keys_one_per_direction() -> None:
    """X25519 from either side gives the same pair of session keys, and the two directions differ."""
    e_i, e_r = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    th = transcript_hash(NETWORK, "a", "b", e_i.public_key, e_r.public_key)
    keys_i = session_keys(e_i.exchange(e_r.public_key), th)
    keys_r = session_keys(e_r.exchange(e_i.public_key), th)
    assert keys_i == keys_r and keys_i[0] != keys_i[1]
    assert session_keys(e_i.exchange(e_r.public_key), bytes(32)) != keys_i


def test_lower_id_dials() -> None:
    """Of two validators, exactly the one whose id sorts first dials."""
    assert dials("a", "b") and not dials("b", "a") and not dials("a", "a")


def _pair() -> tuple[SecureChannel, SecureChannel]:
    k1, k2 = random_bytes(32), random_bytes(32)
    return SecureChannel(k1, k2), SecureChannel(k2, k1)


@given(st.lists(st.binary(max_size=256), min_size=1, max_size=8))
def test_channel_round_trip_in_order(payloads: list[bytes]) -> None:
    """Frames sealed by one side open, in order, on the other, and the counters advance together."""
    left, right = _pair()
    assert [right.open(left.seal(p)) for p in payloads] == payloads
    assert left.sent == right.received == len(payloads)


@given(st.binary(min_size=1, max_size=64), st.data())
def test_channel_refuses_any_flipped_bit(payload: bytes, data: st.DataObject) -> None:
    """Flipping any bit of a sealed frame makes it fail to open, and the counter does not move."""
    left, right = _pair()
    body = bytearray(left.seal(payload))
    position = data.draw(st.integers(min_value=0, max_value=len(body) * 8 - 1))
    body[position // 8] ^= 1 << (position % 8)
    with pytest.raises(DecryptionFailed):
        right.open(bytes(body))
    assert right.received == 0


def test_channel_refuses_replayed_and_reordered_frames() -> None:
    """A frame opened once cannot be opened again, and frame 1 cannot be opened before frame 0."""
    left, right = _pair()
    first, second = left.seal(b"first"), left.seal(b"second")
    with pytest.raises(DecryptionFailed):
        right.open(second)
    assert right.open(first) == b"first"
    with pytest.raises(DecryptionFailed):
        right.open(first)
    assert right.open(second) == b"second"


def test_channel_refuses_its_own_frames_reflected() -> None:
    """A frame sent back to its sealer does not open: each direction has its own key."""
    left, _ = _pair()
    with pytest.raises(DecryptionFailed):
        left.open(left.seal(b"echo"))


def test_handshake_over_loopback_gives_matching_channels() -> None:
    """initiate and respond over a socket agree: each opens what the other seals, after the accept frame."""
    net = Net.of(("a", "b"))

    async def main() -> None:
        done: asyncio.Future[tuple[str, SecureChannel]] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = FrameStream(reader, writer, HANDSHAKE_MAX_FRAME, 1 << 16)
            try:
                done.set_result(
                    await respond(
                        stream, me="b", key=key_of("b"), validators=net.validators(), network=NETWORK
                    )
                )
            finally:
                await stream.aclose()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            stream, initiator = await fake_initiator(port, "a", key_of("a"), net.validators().validators[1])
            await stream.aclose()
            peer, responder = await done
        finally:
            server.close()
            await server.wait_closed()
        assert peer == "a"
        assert responder.open(initiator.seal(b"to b")) == b"to b"
        assert initiator.open(responder.seal(b"to a")) == b"to a"
        assert (initiator.received, responder.sent) == (2, 2)  # the accept frame, then one more

    run(main())


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "size", "okm"),
    [
        (
            bytes([0x0B]) * 22,
            bytes(range(13)),
            bytes(range(0xF0, 0xFA)),
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            bytes([0x0B]) * 22,
            b"",
            b"",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
    ids=["rfc5869-case-1", "rfc5869-case-3"],
)
def test_hkdf_matches_rfc5869(ikm: bytes, salt: bytes, info: bytes, size: int, okm: str) -> None:
    """hkdf_sha256 gives the RFC 5869 Appendix A outputs."""
    assert hkdf_sha256(ikm, salt=salt, info=info, size=size).hex() == okm


@pytest.mark.parametrize("size", [0, -1, 255 * 32 + 1])
def test_hkdf_refuses_impossible_sizes(size: int) -> None:
    """HKDF-SHA-256 cannot give 0 bytes or more than 255 blocks; asking raises InvalidKey."""
    with pytest.raises(InvalidKey):
        hkdf_sha256(b"secret", salt=b"", info=b"", size=size)

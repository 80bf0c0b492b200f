"""The frame codec: round trips however the stream is cut, waiting on truncation, refusing oversized lengths."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import FrameTooLarge, InvalidFrame
from did_registry.transport.frames import FRAME_HEADER_SIZE, FrameDecoder, encode_frame, frame_header

LIMIT = 1024
bodies = st.lists(st.binary(max_size=LIMIT), max_size=12)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(bodies, st.lists(st.integers(min_value=0, max_value=LIMIT * 12), max_size=30))
def test_round_trip_however_the_stream_is_cut(frames: list[bytes], cuts: list[int]) -> None:
    """Frames encoded back to back and fed in arbitrary pieces come out whole, in order, nothing left."""
    stream = b"".join(encode_frame(body, LIMIT) for body in frames)
    decoder = FrameDecoder(LIMIT)
    out = [body for piece in _cut(stream, cuts) for body in decoder.feed(piece)]
    assert out == frames
    assert decoder.buffered == 0


@given(bodies, st.data())
def test_truncated_input_waits_for_the_rest(frames: list[bytes], data: st.DataObject) -> None:
    """A stream cut short yields exactly the frames it completes and keeps the rest until it arrives."""
    stream = b"".join(encode_frame(body, LIMIT) for body in frames)
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)))
    decoder = FrameDecoder(LIMIT)
    first = decoder.feed(stream[:cut])
    ends = [sum(FRAME_HEADER_SIZE + len(b) for b in frames[: k + 1]) for k in range(len(frames))]
    assert first == frames[: sum(end <= cut for end in ends)]
    assert decoder.feed(stream[cut:]) == frames[len(first) :]


@given(
    st.integers(min_value=LIMIT + 1, max_value=(1 << 32) - 1),
    st.binary(max_size=64),
    st.lists(st.binary(max_size=64), max_size=3),
)
def test_garbage_lengths_are_refused(length: int, tail: bytes, before: list[bytes]) -> None:
    """A length prefix above the limit raises FrameTooLarge, after valid frames or not, whatever follows."""
    decoder = FrameDecoder(LIMIT)
    for body in before:
        assert decoder.feed(encode_frame(body, LIMIT)) == [body]
    with pytest.raises(FrameTooLarge) as refused:
        decoder.feed(length.to_bytes(4, "big") + tail)
    assert (refused.value.size, refused.value.limit) == (length, LIMIT)


def test_oversized_length_is_refused_before_its_body_arrives() -> None:
    """The decoder refuses on the 4 prefix bytes alone: it never waits for, or buffers, the body."""
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(b"\x00\x00") == [] and decoder.buffered == 2
    with pytest.raises(FrameTooLarge):
        decoder.feed((LIMIT + 1).to_bytes(4, "big")[2:])


def test_a_frame_at_the_limit_is_accepted() -> None:
    """A body of exactly max_frame bytes, and an empty one, are frames."""
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(encode_frame(b"\xaa" * LIMIT, LIMIT) + encode_frame(b"", LIMIT)) == [
        b"\xaa" * LIMIT,
        b"",
    ]


def test_the_limit_can_be_raised_between_feeds() -> None:
    """After the handshake the limit is raised, and a longer frame then goes through."""
    decoder = FrameDecoder(16)
    with pytest.raises(FrameTooLarge):
        FrameDecoder(16).feed(encode_frame(b"x" * 17, 17))
    decoder.max_frame = 17
    assert decoder.feed(encode_frame(b"x" * 17, 17)) == [b"x" * 17]


def test_encoder_refuses_a_body_above_the_limit() -> None:
    """encode_frame and frame_header raise FrameTooLarge (an InvalidFrame, a ValueError) above the limit."""
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * (LIMIT + 1), LIMIT)
    with pytest.raises(ValueError):
        frame_header(LIMIT + 1, LIMIT)
    assert issubclass(FrameTooLarge, InvalidFrame)
    assert frame_header(258, LIMIT) == b"\x00\x00\x01\x02"


def test_a_larger_frame_read_with_the_last_handshake_frame_waits_for_the_raised_limit() -> None:
    """The responder's last handshake message and its first session frame can arrive in one read:
    the handshake frame comes out, the larger one is kept and judged once the limit is raised."""
    decoder = FrameDecoder(16)
    handshake, session = b"h" * 10, b"s" * 100
    assert decoder.feed(encode_frame(handshake, 16) + encode_frame(session, 100)) == [handshake]
    decoder.max_frame = 128
    assert decoder.feed(b"") == [session]
    assert decoder.buffered == 0


def test_an_oversized_frame_behind_a_complete_one_is_still_refused_at_the_next_read() -> None:
    """Keeping the oversized prefix for later does not let it through under the same limit."""
    decoder = FrameDecoder(16)
    assert decoder.feed(encode_frame(b"ok", 16) + (17).to_bytes(4, "big")) == [b"ok"]
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"")

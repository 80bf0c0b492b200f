"""Consensus messages: JSON round trips, signatures, strict parsing of hostile input."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from did_registry.consensus.errors import InvalidMessage
from did_registry.consensus.messages import (
    DOMAIN,
    Certificate,
    Certify,
    Checkpoint,
    Commit,
    Message,
    NewView,
    Overtaken,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Propose,
    Request,
    RoundChange,
    ViewChange,
    Vote,
    decode,
    encode,
)
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate
from tests.did_registry.consensus.conftest import Net, make_net

NET = make_net(4)
KEY = NET.keys["v1"]

senders = st.sampled_from(NET.ids)
views = st.integers(0, 2**40)
heights = st.integers(1, 2**40)
digests = st.binary(min_size=32, max_size=32)
blobs = st.binary(max_size=300)
commit_signatures = digests.map(lambda d: CommitCertificate.sign(d, KEY))


def _signed(message: Message) -> Message:
    return NET.sign(message)


pre_prepares = st.builds(PrePrepare, sender=senders, view=views, seq=heights, digest=digests, block=blobs)
prepares = st.builds(Prepare, sender=senders, view=views, seq=heights, digest=digests)
certificates = st.builds(
    CommitCertificate,
    height=heights,
    block_hash=digests.map(bytes.hex),
    signatures=st.dictionaries(senders, commit_signatures, max_size=4),
)
prepared = st.builds(
    PreparedCertificate,
    pre_prepare=pre_prepares.map(_signed),
    prepares=st.lists(prepares.map(_signed), max_size=3).map(tuple),
)
view_changes = st.builds(
    ViewChange,
    sender=senders,
    view=heights,
    executed=st.none() | certificates,
    prepared=st.none() | prepared,
)
messages = st.one_of(
    st.builds(
        Request,
        sender=senders,
        requests=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        Overtaken,
        sender=senders,
        requests=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Certificate, sender=senders, certificate=certificates),
    pre_prepares,
    prepares,
    st.builds(Commit, sender=senders, view=views, seq=heights, digest=digests),
    st.builds(Certify, sender=senders, seq=heights, digest=digests, commit_signature=commit_signatures),
    st.builds(Checkpoint, sender=senders, seq=heights, digest=digests),
    view_changes,
    st.builds(
        NewView,
        sender=senders,
        view=heights,
        view_changes=st.lists(view_changes.map(_signed), min_size=1, max_size=2).map(tuple),
        pre_prepare=st.none() | pre_prepares.map(_signed),
    ),
    st.builds(Propose, sender=senders, height=heights, round=views, block=blobs),
    st.builds(
        Vote, sender=senders, height=heights, round=views, digest=digests, commit_signature=commit_signatures
    ),
    st.builds(
        RoundChange,
        sender=senders,
        height=heights,
        round=st.integers(1, 9),
        accepted_round=st.none(),
        accepted_block=st.none(),
    ),
    st.builds(
        RoundChange,
        sender=senders,
        height=heights,
        round=st.integers(5, 9),
        accepted_round=st.integers(0, 4),
        accepted_block=blobs,
    ),
)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_wire_round_trip(message: Message) -> None:
    """If a signed message is encoded and decoded, it comes back equal and its signature verifies."""
    signed = NET.sign(message)
    back = decode(encode(signed))
    assert back == signed
    key = NET.validators.by_id(signed.sender)
    assert key is not None
    back.verify(key.key)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_json_round_trip(message: Message) -> None:
    """A message's JSON form and its wire bytes parse back to the same message, signature valid."""
    signed = NET.sign(message)
    assert Message.from_json(json.loads(json.dumps(signed.to_json()))) == signed
    assert decode(encode(signed)) == signed


def test_a_blob_is_signed_through_its_hash() -> None:
    """The signed bytes hold a block's SHA-256, not its text; changing one byte breaks the signature."""
    block = bytes(range(256)) * 40
    message = NET.sign(PrePrepare(sender="v0", view=0, seq=1, digest=bytes(32), block=block))
    signed_text = message.signing_bytes()
    assert ("sha256:" + hashlib.sha256(block).hexdigest()).encode() in signed_text
    assert len(signed_text) < 400
    tampered = PrePrepare(
        sender="v0", view=0, seq=1, digest=bytes(32), block=block[:-1] + b"x", signature=message.signature
    )
    with pytest.raises(InvalidMessage):
        tampered.verify(NET.keys["v0"].public_key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decode_of_random_bytes_raises_only_invalid_message(payload: bytes) -> None:
    """Whatever the bytes, decoding either yields a message or raises InvalidMessage."""
    try:
        decode(payload)
    except InvalidMessage as exc:
        assert exc.code == "malformed"


def test_signature_covers_the_domain_and_every_member(net4: Net) -> None:
    """The signed bytes start with the domain prefix; changing any member breaks the signature."""
    message = net4.sign(Prepare(sender="v1", view=2, seq=5, digest=bytes(32)))
    assert message.signing_bytes().startswith(DOMAIN)
    key = net4.keys["v1"].public_key
    message.verify(key)
    for changed in (
        replace(message, view=3),
        replace(message, seq=6),
        replace(message, digest=b"\x01" * 32),
        replace(message, sender="v2"),
    ):
        with pytest.raises(InvalidMessage) as info:
            changed.verify(key)
        assert info.value.code == "bad-signature"


def test_a_signature_from_another_key_does_not_verify(net4: Net) -> None:
    """A message signed by v2 under v1's name fails v1's key (a forgery)."""
    forged = Prepare(sender="v1", view=0, seq=1, digest=bytes(32)).signed(net4.keys["v2"])
    with pytest.raises(InvalidMessage, match="bad-signature"):
        forged.verify(net4.keys["v1"].public_key)


def _valid_prepare() -> dict[str, Any]:
    return NET.sign(Prepare(sender="v1", view=0, seq=1, digest=bytes(32))).to_json()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"type": "pbft/unknown"}, "unknown type"),
        ({"view": -1}, "negative view"),
        ({"view": "0"}, "view as a string"),
        ({"view": 1.0}, "view as a float"),
        ({"view": True}, "view as a boolean"),
        ({"view": 2**60}, "view beyond 2**53"),
        ({"seq": 0}, "sequence number 0"),
        ({"digest": "00"}, "short digest"),
        ({"digest": "AB" * 32}, "uppercase hex digest"),
        ({"sender": ""}, "empty sender"),
        ({"sender": "v 1"}, "sender with a space"),
        ({"signature": "not-base58"}, "signature not multibase"),
        ({"signature": "z" + "1" * 10}, "signature of the wrong length"),
        ({"signature": "z" * 500}, "overlong signature text"),
        ({"extra": 1}, "an extra member"),
    ],
)
def test_malformed_prepare_is_refused(change: dict[str, Any], why: str) -> None:
    """A PREPARE with a wrong member type, value or set is refused as malformed."""
    data = {**_valid_prepare(), **change}
    with pytest.raises(InvalidMessage) as info:
        Message.from_json(data)
    assert info.value.code == "malformed", why


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b"null",
        b'{"type": 1}',
        b'{"type":"pbft/prepare","type":"pbft/prepare"}',
        b'{"type":"pbft/prepare","sender":"v1","view":NaN,"seq":1,"digest":"00","signature":"z"}',
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"type":"request","sender":"v1","requests":[],"signature":"z"}',
    ],
)
def test_malformed_payload_is_refused(payload: bytes) -> None:
    """Non-JSON, duplicate members, NaN, deep nesting and empty request lists are malformed."""
    with pytest.raises(InvalidMessage) as info:
        decode(payload)
    assert info.value.code == "malformed"


def test_missing_member_is_refused() -> None:
    """A message without one of its members is refused."""
    data = _valid_prepare()
    del data["digest"]
    with pytest.raises(InvalidMessage, match="malformed"):
        Message.from_json(data)


def test_round_change_accepted_block_and_round_go_together() -> None:
    """A ROUND-CHANGE with an accepted round but no block, or a round not below its own, is refused."""
    good = NET.sign(
        RoundChange(sender="v1", height=3, round=2, accepted_round=1, accepted_block=b"b")
    ).to_json()
    for change in ({"accepted_block": None}, {"accepted_round": 2}):
        with pytest.raises(InvalidMessage, match="malformed"):
            Message.from_json({**good, **change})


def test_nested_messages_are_parsed_strictly() -> None:
    """A VIEW-CHANGE whose prepared certificate holds a malformed PREPARE is refused."""
    key = Ed25519PrivateKey(bytes(32))
    pre_prepare = PrePrepare(sender="v0", view=0, seq=1, digest=bytes(32), block=b"x").signed(key)
    prepare = Prepare(sender="v1", view=0, seq=1, digest=bytes(32)).signed(key).to_json()
    prepare["seq"] = "1"
    data = {
        "type": "pbft/view-change",
        "sender": "v1",
        "view": 1,
        "executed": None,
        "prepared": {"pre_prepare": pre_prepare.to_json(), "prepares": [prepare]},
        "signature": pre_prepare.signature,
    }
    with pytest.raises(InvalidMessage, match="malformed"):
        Message.from_json(data)


def test_certificate_with_a_repeated_validator_is_refused() -> None:
    """A commit certificate naming one validator twice is refused."""
    signature = CommitCertificate.sign(bytes(32), KEY)
    certificate = {
        "height": 1,
        "block_hash": "00" * 32,
        "signatures": [
            {"validator": "v1", "signature": signature},
            {"validator": "v1", "signature": signature},
        ],
    }
    data = NET.sign(ViewChange(sender="v1", view=1, executed=None, prepared=None)).to_json()
    data["executed"] = certificate
    with pytest.raises(InvalidMessage, match="once"):
        Message.from_json(data)

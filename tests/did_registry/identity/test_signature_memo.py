"""The signature memo checks each signature once, never remembers a bad one, and stays bounded."""

from __future__ import annotations

from unittest import mock

import pytest

from did_registry.errors import BadSignature
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.multibase import decode_base58btc, encode_base58btc
from did_registry.identity.signature_memo import SignatureMemo

KEY = Ed25519PrivateKey.generate()


def test_a_signature_is_verified_once() -> None:
    memo = SignatureMemo(10)
    signature = KEY.sign(b"m")
    with mock.patch.object(Ed25519PublicKey, "verify", autospec=True) as verify:
        memo.verify(KEY.public_key, b"m", signature)
        memo.verify(KEY.public_key, b"m", signature)
    assert verify.call_count == 1


def test_text_is_decoded_only_when_not_seen() -> None:
    memo = SignatureMemo(10)
    text = encode_base58btc(KEY.sign(b"m"))
    decode = mock.Mock(side_effect=decode_base58btc)
    memo.verify(KEY.public_key, b"m", text, decode)
    memo.verify(KEY.public_key, b"m", text, decode)
    assert decode.call_count == 1


def test_a_bad_signature_is_refused_every_time() -> None:
    memo = SignatureMemo(10)
    forged = Ed25519PrivateKey.generate().sign(b"m")
    for _ in range(2):
        with pytest.raises(BadSignature):
            memo.verify(KEY.public_key, b"m", forged)
    assert len(memo) == 0


def test_the_memo_forgets_the_oldest_beyond_its_size() -> None:
    memo = SignatureMemo(3)
    for i in range(5):
        message = bytes([i])
        memo.verify(KEY.public_key, message, KEY.sign(message))
    assert len(memo) == 3


def test_moving_bytes_between_message_and_signature_is_not_a_remembered_triple() -> None:
    """After (m, s) verified, (m + s[:1], s[1:]) holds the same bytes in another split: it is
    verified afresh (and refused), not taken for the remembered one."""
    memo = SignatureMemo(10)
    signature = KEY.sign(b"m")
    memo.verify(KEY.public_key, b"m", signature)
    with pytest.raises(BadSignature):
        memo.verify(KEY.public_key, b"m" + signature[:1], signature[1:])
    assert len(memo) == 1


def test_a_signature_remembered_as_bytes_is_not_taken_for_text() -> None:
    """The bytes of a verified signature, given again as text, are checked as text (decoded)."""
    memo = SignatureMemo(10)
    signature = KEY.sign(b"m")
    memo.verify(KEY.public_key, b"m", signature)
    decode = mock.Mock(side_effect=lambda text: signature)
    memo.verify(KEY.public_key, b"m", signature.decode("latin-1"), decode)
    assert decode.call_count == 1

"""The signed envelope every consensus message shares: codecs, signing and strict parsing.

A message is a JSON object ``{"type", "sender", …members, "signature"}``; each message type lists
its members with a codec (how the value goes to JSON and comes back, checked). The signature is
Ed25519 by the sender's validator key over ``DOMAIN + JCS(message without "signature")`` (RFC 8785)
with each opaque byte string (a block, a request) replaced by ``"sha256:<hex>"`` of it, so a message
can be relayed by anyone and still proves who wrote it, and signing a large block costs a hash. The
wire form is compact JSON of the whole object (:func:`encode` / :func:`decode`). Parsing is strict: exact member sets, exact
types, lowercase hex digests, multibase ``u`` (base64url) for opaque bytes, ``z`` for signatures.
Anything else raises :class:`~did_registry.consensus.errors.InvalidMessage` (code ``malformed``).
The message types are in :mod:`did_registry.consensus.messages` (``docs/consensus.md`` § Messages).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar, Self

from did_registry.consensus.errors import InvalidMessage
from did_registry.errors import BadSignature
from did_registry.identity import multibase
from did_registry.identity.crypto import ED25519_SIGNATURE_SIZE, Ed25519PrivateKey, Ed25519PublicKey, sha256
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.block import CommitCertificate

__all__ = [
    "DOMAIN",
    "Message",
    "Codec",
    "NAT",
    "HEIGHT",
    "DIGEST",
    "BLOB",
    "SIGNATURE",
    "CERTIFICATE",
    "optional",
    "listed",
    "nested",
    "malformed",
    "members",
    "encode",
    "decode",
    "parse_certificate",
    "signature_bytes",
]

DOMAIN = b"trellis/consensus/v1\x00"
"""Prefix of the signed bytes, so a consensus signature is never valid in another context."""

_MAX_INT = 2**53 - 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX32 = re.compile(r"[0-9a-f]{64}")
_MAX_ITEMS = 100_000
_MAX_SIGNATURE_TEXT = 100  # 64 bytes take at most 88 base58 digits, plus the 'z'


def malformed(reason: str) -> InvalidMessage:
    """The error for a message that does not parse."""
    return InvalidMessage("malformed", reason)


def members(data: Any, expected: frozenset[str], what: str) -> Mapping[str, Any]:
    """``data`` when it is a JSON object with exactly the members ``expected``."""
    if not isinstance(data, Mapping):
        raise malformed(f"{what} must be a JSON object")
    if set(data) != expected:
        raise malformed(f"{what} has members {sorted(data)}, expected {sorted(expected)}")
    return data


def _nat(value: Any, key: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= _MAX_INT:
        raise malformed(f"{key!r} must be an integer >= {minimum}")
    return value


def _digest(value: Any, key: str) -> bytes:
    if not isinstance(value, str) or _HEX32.fullmatch(value) is None:
        raise malformed(f"{key!r} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _blob(value: Any, key: str) -> bytes:
    if not isinstance(value, str) or not value.startswith(multibase.BASE64URL):
        raise malformed(f"{key!r} must be multibase base64url ('u…')")
    try:
        return multibase.decode(value)
    except ValueError as exc:
        raise malformed(f"{key!r}: {exc}") from None


@lru_cache(maxsize=8192)
def signature_bytes(text: str) -> bytes:
    """Decode a multibase base58btc signature (cached: one signature is read several times)."""
    return multibase.decode_base58btc(text, max_size=ED25519_SIGNATURE_SIZE)


def _signature(value: Any, key: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_SIGNATURE_TEXT:
        raise malformed(f"{key!r} must be a multibase base58btc signature")
    try:
        raw = signature_bytes(value)
    except ValueError:
        raise malformed(f"{key!r} must be a multibase base58btc signature") from None
    if len(raw) != ED25519_SIGNATURE_SIZE:
        raise malformed(f"{key!r} must hold {ED25519_SIGNATURE_SIZE} bytes, not {len(raw)}")
    return str(value)


def _validator_id(value: Any, key: str) -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise malformed(f"{key!r} must be a validator id")
    return value


def parse_certificate(data: Any, key: str = "certificate") -> CommitCertificate:
    """Parse a ledger commit certificate strictly; raise :class:`InvalidMessage` when it is malformed."""
    data = members(data, frozenset({"height", "block_hash", "signatures"}), f"{key!r}")
    entries = data["signatures"]
    if not isinstance(entries, list):
        raise malformed("certificate signatures must be a list")
    signatures: dict[str, str] = {}
    for entry in entries:
        entry = members(entry, frozenset({"validator", "signature"}), "a certificate signature")
        signatures[_validator_id(entry["validator"], "validator")] = _signature(
            entry["signature"], "signature"
        )
    if len(signatures) != len(entries):
        raise malformed("a validator signs a certificate once")
    return CommitCertificate(
        _nat(data["height"], "height", 1), _digest(data["block_hash"], "block_hash").hex(), signatures
    )


@dataclass(frozen=True, slots=True)
class Codec:
    """How one member goes to JSON (``dump``) and comes back, checked (``load``); ``digest``, when
    set, is the member's form in the signed bytes (opaque bytes are signed by their SHA-256)."""

    dump: Callable[[Any], Any]
    load: Callable[[Any, str], Any]
    digest: Callable[[Any], Any] | None = None

    def signed_form(self, value: Any) -> Any:
        """The member as the signature covers it."""
        return self.dump(value) if self.digest is None else self.digest(value)


def _same(value: Any) -> Any:
    return value


NAT = Codec(_same, _nat)
"""A natural number (views, rounds)."""
HEIGHT = Codec(_same, lambda value, key: _nat(value, key, 1))
"""A height or sequence number: at least 1."""
DIGEST = Codec(bytes.hex, _digest)
"""32 bytes as 64 lowercase hex digits."""


def _blob_digest(value: bytes) -> str:
    return "sha256:" + sha256(value).hex()


BLOB = Codec(lambda value: multibase.encode(value, multibase.BASE64URL), _blob, _blob_digest)
"""Opaque bytes (blocks, requests) as multibase base64url; signed as ``"sha256:<hex>"``."""
SIGNATURE = Codec(_same, _signature)
"""An Ed25519 signature as multibase base58btc, kept as text."""
CERTIFICATE = Codec(lambda value: value.to_json(), parse_certificate)
"""A ledger commit certificate in its JSON form."""


def optional(codec: Codec) -> Codec:
    """The codec of ``codec``'s values or ``null``."""
    return Codec(
        lambda value: None if value is None else codec.dump(value),
        lambda value, key: None if value is None else codec.load(value, key),
        None if codec.digest is None else lambda value: None if value is None else codec.signed_form(value),
    )


def listed(codec: Codec, minimum: int = 0) -> Codec:
    """The codec of a list of ``codec``'s values, with at least ``minimum`` items."""

    def load(value: Any, key: str) -> tuple[Any, ...]:
        if not isinstance(value, list) or not minimum <= len(value) <= _MAX_ITEMS:
            raise malformed(f"{key!r} must be a list of {minimum} to {_MAX_ITEMS} items")
        return tuple(codec.load(item, key) for item in value)

    return Codec(
        lambda value: [codec.dump(item) for item in value],
        load,
        None if codec.digest is None else lambda value: [codec.signed_form(item) for item in value],
    )


def nested(kind: Any) -> Codec:
    """The codec of a nested object of class ``kind`` (with ``to_json`` and ``from_json_as``)."""
    return Codec(lambda value: value.to_json(), lambda value, key: kind.from_json_as(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A signed consensus message: the base of every message type."""

    TYPE: ClassVar[str] = ""
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = ()
    _TYPES: ClassVar[dict[str, type[Message]]] = {}

    sender: str
    signature: str = ""

    def __init_subclass__(cls) -> None:
        # no super() call: slots=True rebuilds the class, so the zero-argument form would fail; the
        # rebuilt class registers last, which is the one that stays.
        if cls.TYPE:
            Message._TYPES[cls.TYPE] = cls

    def body(self) -> dict[str, Any]:
        """The JSON form without the signature: what the signature covers."""
        fields = {name: codec.dump(getattr(self, name)) for name, codec in self.SPEC}
        return {"type": self.TYPE, "sender": self.sender, **fields}

    def to_json(self) -> dict[str, Any]:
        """The JSON form, signature included."""
        return {**self.body(), "signature": self.signature}

    def signed_body(self) -> dict[str, Any]:
        """:meth:`body` with opaque bytes replaced by their SHA-256 (what the signature covers)."""
        fields = {name: codec.signed_form(getattr(self, name)) for name, codec in self.SPEC}
        return {"type": self.TYPE, "sender": self.sender, **fields}

    def signing_bytes(self) -> bytes:
        """``DOMAIN`` followed by the JCS bytes of :meth:`signed_body`: a block or a batch of
        requests is signed through its hash, so a large message costs one pass of SHA-256, not a
        canonicalization of megabytes."""
        return DOMAIN + canonicalize(self.signed_body())

    def signed(self, key: Ed25519PrivateKey) -> Self:
        """A copy signed with ``key`` (the sender's validator key)."""
        return replace(self, signature=multibase.encode_base58btc(key.sign(self.signing_bytes())))

    def verify(self, key: Ed25519PublicKey) -> None:
        """Check the signature with the sender's key; raise :class:`InvalidMessage` (``bad-signature``)."""
        try:
            key.verify(self.signing_bytes(), signature_bytes(self.signature))
        except (BadSignature, ValueError, TypeError) as exc:
            raise InvalidMessage("bad-signature", f"{self.TYPE} from {self.sender}: {exc}") from None

    def check(self) -> None:
        """Rules across members, checked after parsing; raise :class:`InvalidMessage`."""

    @staticmethod
    def from_json(data: Any) -> Message:
        """Parse any message by its ``type``; raise :class:`InvalidMessage` (``malformed``)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("type"), str):
            raise malformed("a message is a JSON object with a string 'type'")
        kind = Message._TYPES.get(data["type"])
        if kind is None:
            raise malformed(f"unknown message type {data['type']!r}")
        return kind.from_json_as(data)

    @classmethod
    def from_json_as(cls, data: Any) -> Self:
        """Parse a message that must be of this type (nested messages use it)."""
        names = frozenset(name for name, _ in cls.SPEC)
        data = members(data, names | {"type", "sender", "signature"}, f"a {cls.TYPE or 'message'}")
        if data["type"] != cls.TYPE:
            raise malformed(f"expected a {cls.TYPE}, got {data['type']!r}")
        loaded = {name: codec.load(data[name], name) for name, codec in cls.SPEC}
        message = cls(
            sender=_validator_id(data["sender"], "sender"),
            signature=_signature(data["signature"], "signature"),
            **loaded,
        )
        message.check()
        return message


_wire = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def encode(message: Message) -> bytes:
    """The wire bytes of ``message``: compact JSON of its JSON form (the signature does not depend
    on the wire text, which needs no canonical form)."""
    return _wire(message.to_json()).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise malformed("duplicate member name")
    return result


def _no_constant(name: str) -> Any:
    raise malformed(f"{name} is not JSON")


def decode(payload: bytes) -> Message:
    """Parse wire bytes into a message; raise :class:`InvalidMessage` (``malformed``), never anything else."""
    try:
        data = json.loads(payload, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except InvalidMessage:
        raise
    except (ValueError, RecursionError) as exc:
        raise malformed(f"not JSON: {exc}") from None
    try:
        return Message.from_json(data)
    except RecursionError:
        raise malformed("nested too deeply") from None

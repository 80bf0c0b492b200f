"""The transport handshake: ephemeral X25519, the transcript signed by both validators (``docs/transport.md`` §3).

The initiator I dials the responder R; each message is one frame::

    1. Hello    I -> R   PROTOCOL || SHA-256(network) || e_I || u8 len || id_I || u8 len || id_R
    2. Reply    R -> I   e_R || Ed25519_R(RESPONDER || th)
    3. Confirm  I -> R   Ed25519_I(INITIATOR || th)
    4. Accept   R -> I   the first sealed frame of the session, with an empty payload

``th`` is the SHA-256 of the transcript: the protocol label, the network, both ids and both
ephemeral keys. The session keys are HKDF-SHA-256 of the X25519 shared secret with ``th`` as salt,
one per direction (:func:`session_keys`). A signature is checked against the key the validator set
holds for the id claimed, so a key outside the set, or another validator's id, fails the handshake.
The lower id dials (:func:`dials`); R refuses a Hello from a higher id. Every failure raises
:class:`~did_registry.errors.HandshakeFailed`; the caller bounds the whole exchange in time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from did_registry.errors import BadSignature, DecryptionFailed, DidRegistryError, HandshakeFailed
from did_registry.identity.crypto import (
    ED25519_SIGNATURE_SIZE,
    X25519_KEY_SIZE,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    X25519PrivateKey,
    X25519PublicKey,
    hkdf_sha256,
)
from did_registry.ledger.validators import Validator, ValidatorSet
from did_registry.transport.channel import SecureChannel
from did_registry.transport.stream import FrameStream

__all__ = [
    "PROTOCOL",
    "HANDSHAKE_MAX_FRAME",
    "MAX_ID_SIZE",
    "Hello",
    "dials",
    "network_hash",
    "transcript_hash",
    "signed_message",
    "session_keys",
    "initiate",
    "respond",
]

PROTOCOL = b"trellis/transport/v1"
"""The protocol label: the start of every Hello, and bound into the transcript and the keys."""
HANDSHAKE_MAX_FRAME = 256
"""The largest frame accepted before the handshake completes (a Hello is at most 214 bytes)."""

_RESPONDER = PROTOCOL + b" responder signature\x00"
_INITIATOR = PROTOCOL + b" initiator signature\x00"
_REPLY_SIZE = X25519_KEY_SIZE + ED25519_SIGNATURE_SIZE


def dials(validator: str, peer: str) -> bool:
    """Whether ``validator`` is the one that dials ``peer``: the lower id (by code point) dials."""
    return validator < peer


def network_hash(network: str) -> bytes:
    """SHA-256 of the network string, as a Hello carries it."""
    return hashlib.sha256(network.encode()).digest()


MAX_ID_SIZE = 64
"""The longest validator id on the wire, in ASCII bytes (as ``ValidatorSet`` ids are)."""


def _id_bytes(validator_id: str) -> bytes:
    if not (validator_id.isascii() and 0 < len(validator_id) <= MAX_ID_SIZE):
        raise HandshakeFailed(validator_id, f"a validator id on the wire is 1 to {MAX_ID_SIZE} ASCII bytes")
    return bytes((len(validator_id),)) + validator_id.encode("ascii")


@dataclass(frozen=True, slots=True)
class Hello:
    """Message 1: the initiator's network, ephemeral key, its id and the id it wants to reach."""

    network_hash: bytes
    ephemeral: X25519PublicKey
    initiator: str
    responder: str

    def encode(self) -> bytes:
        """The wire form."""
        return (
            PROTOCOL
            + self.network_hash
            + bytes(self.ephemeral)
            + _id_bytes(self.initiator)
            + _id_bytes(self.responder)
        )

    @classmethod
    def decode(cls, data: bytes, peer: str = "?") -> Hello:
        """Parse a Hello strictly, or raise :class:`HandshakeFailed` naming ``peer``."""
        if not data.startswith(PROTOCOL):
            raise HandshakeFailed(peer, "not a Trellis transport hello (wrong protocol or version)")
        at = len(PROTOCOL) + 32 + X25519_KEY_SIZE
        ids: list[str] = []
        for _ in range(2):
            size = data[at] if at < len(data) else 0
            raw = data[at + 1 : at + 1 + size]
            if size == 0 or len(raw) != size:
                raise HandshakeFailed(peer, "truncated hello")
            if size > MAX_ID_SIZE:
                raise HandshakeFailed(peer, f"a validator id in the hello is longer than {MAX_ID_SIZE} bytes")
            try:
                ids.append(raw.decode("ascii"))
            except UnicodeDecodeError:
                raise HandshakeFailed(peer, "a validator id in the hello is not ASCII") from None
            at += 1 + size
        if at != len(data):
            raise HandshakeFailed(peer, "trailing bytes after the hello")
        start = len(PROTOCOL)
        ephemeral = X25519PublicKey(data[start + 32 : start + 32 + X25519_KEY_SIZE])
        return cls(data[start : start + 32], ephemeral, ids[0], ids[1])


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def transcript_hash(
    network: str, initiator: str, responder: str, e_i: X25519PublicKey, e_r: X25519PublicKey
) -> bytes:
    """SHA-256 of the transcript: label, network, both ids (length-prefixed), both ephemeral keys."""
    return hashlib.sha256(
        PROTOCOL
        + _field(network.encode())
        + _field(initiator.encode())
        + _field(responder.encode())
        + bytes(e_i)
        + bytes(e_r)
    ).digest()


def signed_message(role: str, th: bytes) -> bytes:
    """The bytes ``role`` (``"initiator"`` or ``"responder"``) signs: a role label, then ``th``."""
    return {"initiator": _INITIATOR, "responder": _RESPONDER}[role] + th


def session_keys(shared: bytes, th: bytes) -> tuple[bytes, bytes]:
    """The keys (initiator to responder, responder to initiator) from the X25519 secret and ``th``."""
    return (
        hkdf_sha256(shared, salt=th, info=PROTOCOL + b" initiator to responder"),
        hkdf_sha256(shared, salt=th, info=PROTOCOL + b" responder to initiator"),
    )


def _verify(key: Ed25519PublicKey, role: str, th: bytes, signature: bytes, peer: str, who: str) -> None:
    try:
        key.verify(signed_message(role, th), signature)
    except BadSignature:
        raise HandshakeFailed(peer, f"signature does not verify with the set's key for {who!r}") from None


def _exchange(ephemeral: X25519PrivateKey, peer_key: X25519PublicKey, peer: str) -> bytes:
    try:
        return ephemeral.exchange(peer_key)
    except DidRegistryError:
        raise HandshakeFailed(peer, "degenerate ephemeral key (low-order point)") from None


async def initiate(
    stream: FrameStream, *, me: str, key: Ed25519PrivateKey, peer: Validator, network: str
) -> SecureChannel:
    """Run the handshake as initiator towards ``peer``; return the session once ``peer`` accepted."""
    name = f"{peer.id}@{stream.peer}"
    ephemeral = X25519PrivateKey.generate()
    stream.write(
        Hello(network_hash(network), ephemeral.public_key, me, peer.id).encode(), HANDSHAKE_MAX_FRAME
    )
    await stream.drain()
    reply = await stream.read()
    if reply is None:
        raise HandshakeFailed(name, "connection closed before the reply (refused by the peer?)")
    if len(reply) != _REPLY_SIZE:
        raise HandshakeFailed(name, f"a reply is {_REPLY_SIZE} bytes, got {len(reply)}")
    e_r = X25519PublicKey(reply[:X25519_KEY_SIZE])
    th = transcript_hash(network, me, peer.id, ephemeral.public_key, e_r)
    try:
        peer_key = peer.key
    except DidRegistryError as exc:
        raise HandshakeFailed(name, f"the set's key for {peer.id!r} is unusable: {exc}") from None
    _verify(peer_key, "responder", th, reply[X25519_KEY_SIZE:], name, peer.id)
    to_peer, from_peer = session_keys(_exchange(ephemeral, e_r, name), th)
    channel = SecureChannel(to_peer, from_peer)
    stream.write(key.sign(signed_message("initiator", th)), HANDSHAKE_MAX_FRAME)
    await stream.drain()
    accept = await stream.read()
    if accept is None:
        raise HandshakeFailed(name, "connection closed before accept (our key refused by the peer?)")
    try:
        if channel.open(accept):
            raise HandshakeFailed(name, "the accept frame must be empty")
    except DecryptionFailed:
        raise HandshakeFailed(name, "the accept frame does not authenticate") from None
    return channel


async def respond(
    stream: FrameStream,
    *,
    me: str,
    key: Ed25519PrivateKey,
    validators: ValidatorSet,
    network: str,
    first: bytes | None = None,
) -> tuple[str, SecureChannel]:
    """Run the handshake as responder; return the authenticated peer id and the session.

    ``first`` is the Hello when the caller has read it already (to bound it in time on its own).
    """
    data = first if first is not None else await stream.read()
    if data is None:
        raise HandshakeFailed(stream.peer, "connection closed before the hello")
    hello = Hello.decode(data, stream.peer)
    name = f"{hello.initiator}@{stream.peer}"
    if hello.network_hash != network_hash(network):
        raise HandshakeFailed(name, "the peer is on another network (or genesis)")
    if hello.responder != me:
        raise HandshakeFailed(name, f"the peer dialed validator {hello.responder!r}, this is {me!r}")
    validator = validators.by_id(hello.initiator)
    if validator is None or hello.initiator == me:
        raise HandshakeFailed(name, "the claimed id is not another validator of the current set")
    if not dials(hello.initiator, me):
        raise HandshakeFailed(name, f"{me!r} dials {hello.initiator!r}, not the other way round")
    try:
        peer_key = validator.key
    except DidRegistryError as exc:
        raise HandshakeFailed(name, f"the set's key for {validator.id!r} is unusable: {exc}") from None
    ephemeral = X25519PrivateKey.generate()
    shared = _exchange(ephemeral, hello.ephemeral, name)
    th = transcript_hash(network, hello.initiator, me, hello.ephemeral, ephemeral.public_key)
    stream.write(bytes(ephemeral.public_key) + key.sign(signed_message("responder", th)), HANDSHAKE_MAX_FRAME)
    await stream.drain()
    confirm = await stream.read()
    if confirm is None:
        raise HandshakeFailed(name, "connection closed before the confirmation")
    if len(confirm) != ED25519_SIGNATURE_SIZE:
        raise HandshakeFailed(name, f"a confirmation is {ED25519_SIGNATURE_SIZE} bytes, got {len(confirm)}")
    _verify(peer_key, "initiator", th, confirm, name, hello.initiator)
    from_peer, to_peer = session_keys(shared, th)
    channel = SecureChannel(to_peer, from_peer)
    stream.write(channel.seal(b""), HANDSHAKE_MAX_FRAME)
    await stream.drain()
    return hello.initiator, channel

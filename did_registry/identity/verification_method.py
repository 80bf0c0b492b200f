"""Verification methods: W3C DID Core 1.0 §5.2 (and §5.2.1 verification material).

Trellis keys are Ed25519 (signing) and X25519 (key agreement). A method is read from any of the
representations that published documents use:

==============================  ========================  =====================================
``type``                        material property          key
==============================  ========================  =====================================
``Multikey``                    ``publicKeyMultibase``    Ed25519 (``z6Mk…``) or X25519 (``z6LS…``)
``Ed25519VerificationKey2020``  ``publicKeyMultibase``    Ed25519
``Ed25519VerificationKey2018``  ``publicKeyBase58``       Ed25519 (raw 32 bytes, no header)
``X25519KeyAgreementKey2020``   ``publicKeyMultibase``    X25519
``X25519KeyAgreementKey2019``   ``publicKeyBase58``       X25519 (raw 32 bytes, no header)
``JsonWebKey2020``              ``publicKeyJwk``          OKP ``Ed25519`` or ``X25519`` (RFC 8037)
==============================  ========================  =====================================

A method with no material, two material properties, private key material, an unknown type or a key
of the wrong kind for its type is refused with :class:`~did_registry.errors.InvalidDIDDocument`
naming the JSON path.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from did_registry.errors import InvalidDID, InvalidDIDDocument, InvalidKey, InvalidMultikey
from did_registry.identity import multibase, multikey
from did_registry.identity.crypto import (
    ED25519_PUBLIC_KEY_SIZE,
    X25519_KEY_SIZE,
    Ed25519PublicKey,
    X25519PublicKey,
)
from did_registry.identity.did import DID, is_did, parse_did_url, resolve_relative

__all__ = [
    "MULTIKEY",
    "SUPPORTED_TYPES",
    "PublicKey",
    "VerificationMethod",
]

PublicKey = Ed25519PublicKey | X25519PublicKey
"""A key a Trellis verification method can carry."""

MULTIKEY: Final = "Multikey"
"""The Multikey verification method type (W3C Controlled Identifiers v1.0 §2.2.2)."""

_MATERIAL = ("publicKeyMultibase", "publicKeyBase58", "publicKeyJwk")
_PRIVATE = ("privateKeyMultibase", "secretKeyMultibase", "privateKeyBase58", "privateKeyJwk")
_ED, _X = "Ed25519", "X25519"

# type -> (material property, allowed key kinds)
SUPPORTED_TYPES: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    MULTIKEY: ("publicKeyMultibase", frozenset({_ED, _X})),
    "Ed25519VerificationKey2020": ("publicKeyMultibase", frozenset({_ED})),
    "Ed25519VerificationKey2018": ("publicKeyBase58", frozenset({_ED})),
    "X25519KeyAgreementKey2020": ("publicKeyMultibase", frozenset({_X})),
    "X25519KeyAgreementKey2019": ("publicKeyBase58", frozenset({_X})),
    "JsonWebKey2020": ("publicKeyJwk", frozenset({_ED, _X})),
}
"""Verification method types Trellis reads: type → (material property, key kinds it may hold)."""

_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_RAW_KEY_SIZE: Final = max(ED25519_PUBLIC_KEY_SIZE, X25519_KEY_SIZE)
_MULTIKEY_MAX_SIZE: Final = (
    max(len(multikey.ED25519_PUB_HEADER), len(multikey.X25519_PUB_HEADER)) + _RAW_KEY_SIZE
)
"""The longest value a supported Multikey decodes to; longer text is refused before decoding."""


def _kind(key: PublicKey) -> str:
    return _ED if isinstance(key, Ed25519PublicKey) else _X


@lru_cache(maxsize=65536)
def _decode_multikey(value: str) -> PublicKey:
    """Decode an Ed25519 or X25519 Multikey value (cached: documents repeat the same keys)."""
    if value.startswith("z6Mk"):
        return multikey.decode_ed25519_public_key(value)
    if value.startswith("z6LS"):
        return multikey.decode_x25519_public_key(value)
    try:
        raw = multibase.decode_base58btc(value, max_size=_MULTIKEY_MAX_SIZE)
    except multibase.MultibaseError as exc:
        raise InvalidMultikey(value, f"not an ed25519-pub or x25519-pub key: {exc}") from None
    if raw.startswith(multikey.X25519_PUB_HEADER):
        return multikey.decode_x25519_public_key(value)
    if raw.startswith(multikey.ED25519_PUB_HEADER):
        return multikey.decode_ed25519_public_key(value)
    raise InvalidMultikey(
        value, f"unsupported multicodec 0x{raw[:2].hex()} (only ed25519-pub and x25519-pub)"
    )


def _from_multibase(value: object, path: str) -> PublicKey:
    if not isinstance(value, str):
        raise InvalidDIDDocument("publicKeyMultibase must be a string", path=path)
    if not value.startswith("z"):
        raise InvalidDIDDocument("publicKeyMultibase must be base58btc (start with 'z')", path=path)
    try:
        return _decode_multikey(value)
    except InvalidMultikey as exc:
        raise InvalidDIDDocument(exc.reason, path=path) from None
    except (multibase.MultibaseError, InvalidKey) as exc:
        raise InvalidDIDDocument(str(exc), path=path) from None


def _from_base58(value: object, kinds: frozenset[str], path: str) -> PublicKey:
    if not isinstance(value, str):
        raise InvalidDIDDocument("publicKeyBase58 must be a string", path=path)
    try:
        raw = multibase.decode_base58btc("z" + value, max_size=_RAW_KEY_SIZE)
        return Ed25519PublicKey(raw) if _ED in kinds else X25519PublicKey(raw)
    except (multibase.MultibaseError, InvalidKey) as exc:
        raise InvalidDIDDocument(str(exc), path=path) from None


def _from_jwk(value: object, path: str) -> PublicKey:
    if not isinstance(value, Mapping):
        raise InvalidDIDDocument("publicKeyJwk must be a JSON object", path=path)
    if "d" in value:
        raise InvalidDIDDocument("publicKeyJwk contains the private key ('d')", path=path)
    if value.get("kty") != "OKP" or value.get("crv") not in (_ED, _X):
        raise InvalidDIDDocument("publicKeyJwk must be kty 'OKP' with crv Ed25519 or X25519", path=path)
    x = value.get("x")
    if not isinstance(x, str) or _BASE64URL_RE.fullmatch(x) is None:
        raise InvalidDIDDocument("publicKeyJwk 'x' must be 32 bytes of unpadded base64url", path=f"{path}.x")
    try:
        raw = base64.urlsafe_b64decode(x + "=")
    except binascii.Error as exc:  # pragma: no cover - the pattern above already rules this out
        raise InvalidDIDDocument(f"bad base64url: {exc}", path=f"{path}.x") from None
    try:
        return Ed25519PublicKey(raw) if value["crv"] == _ED else X25519PublicKey(raw)
    except InvalidKey as exc:
        raise InvalidDIDDocument(str(exc), path=f"{path}.x") from None


@dataclass(frozen=True, slots=True)
class VerificationMethod:
    """A verification method (DID Core §5.2): an absolute DID URL id, a type, a controller and a key."""

    id: str
    type: str
    controller: str
    public_key: PublicKey

    def __post_init__(self) -> None:
        if self.type not in SUPPORTED_TYPES:
            raise InvalidDIDDocument(f"unsupported verification method type {self.type!r}")
        if not isinstance(self.public_key, Ed25519PublicKey | X25519PublicKey):
            raise InvalidDIDDocument("a verification method key must be Ed25519 or X25519")
        if _kind(self.public_key) not in SUPPORTED_TYPES[self.type][1]:
            raise InvalidDIDDocument(f"a {self.type} method cannot hold an {_kind(self.public_key)} key")
        if not is_did(self.controller):
            raise InvalidDIDDocument(f"controller {self.controller!r} is not a DID")
        try:
            parse_did_url(self.id)
        except InvalidDID as exc:
            raise InvalidDIDDocument(f"method id {self.id!r}: {exc.reason}") from None

    @classmethod
    def from_json(cls, data: object, *, base: DID, path: str) -> VerificationMethod:
        """Read a method from JSON; relative ids resolve against ``base``; errors name ``path``."""
        if not isinstance(data, Mapping):
            raise InvalidDIDDocument("a verification method must be a JSON object", path=path)
        raw_id = data.get("id")
        if not isinstance(raw_id, str):
            raise InvalidDIDDocument("a verification method needs a string 'id'", path=f"{path}.id")
        try:
            method_id = str(resolve_relative(raw_id, base))
        except InvalidDID as exc:
            raise InvalidDIDDocument(exc.reason, path=f"{path}.id") from None
        controller = data.get("controller")
        if not is_did(controller):
            raise InvalidDIDDocument("'controller' must be a DID", path=f"{path}.controller")
        type_ = data.get("type")
        if not isinstance(type_, str):
            raise InvalidDIDDocument("a verification method needs a string 'type'", path=f"{path}.type")
        if type_ not in SUPPORTED_TYPES:
            raise InvalidDIDDocument(
                f"unsupported verification method type {type_!r} (supported: {', '.join(SUPPORTED_TYPES)})",
                path=f"{path}.type",
            )
        for name in _PRIVATE:
            if name in data:
                raise InvalidDIDDocument("private key material in a DID document", path=f"{path}.{name}")
        present = [name for name in _MATERIAL if name in data]
        prop, kinds = SUPPORTED_TYPES[type_]
        if present != [prop]:
            reason = f"a {type_} method carries exactly one key, in {prop!r}" + (
                f" (found {', '.join(present)})" if present else ""
            )
            raise InvalidDIDDocument(reason, path=f"{path}.{prop}")
        value, where = data[prop], f"{path}.{prop}"
        if prop == "publicKeyMultibase":
            key = _from_multibase(value, where)
        elif prop == "publicKeyBase58":
            key = _from_base58(value, kinds, where)
        else:
            key = _from_jwk(value, where)
        if _kind(key) not in kinds:
            raise InvalidDIDDocument(f"a {type_} method cannot hold an {_kind(key)} key", path=where)
        return cls(method_id, type_, str(controller), key)

    @property
    def fragment(self) -> str | None:
        """The fragment of the id (``key-1`` for ``did:…#key-1``), or ``None``."""
        _, sep, fragment = self.id.partition("#")
        return fragment if sep else None

    @property
    def is_signing_key(self) -> bool:
        """Whether the key is Ed25519 (usable for signatures, not for key agreement)."""
        return isinstance(self.public_key, Ed25519PublicKey)

    def to_json(self) -> dict[str, Any]:
        """Return the method's JSON form, with its key in the material property its type uses."""
        prop = SUPPORTED_TYPES[self.type][0]
        value: Any
        if prop == "publicKeyMultibase":
            value = (
                multikey.encode_ed25519_public_key(self.public_key)
                if isinstance(self.public_key, Ed25519PublicKey)
                else multikey.encode_x25519_public_key(self.public_key)
            )
        elif prop == "publicKeyBase58":
            value = multibase.encode_base58btc(bytes(self.public_key))[1:]
        else:
            x = base64.urlsafe_b64encode(bytes(self.public_key)).rstrip(b"=").decode("ascii")
            value = {"kty": "OKP", "crv": _kind(self.public_key), "x": x}
        return {"id": self.id, "type": self.type, "controller": self.controller, prop: value}

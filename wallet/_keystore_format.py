"""The ``trellis-keystore`` file format, version 1: reading and building files, without I/O.

Implements ``docs/keystore.md``: the file and its strict reading (§1), the passphrase encoding and
the HKDF subkeys of the key schedule (§2), the payload and the header digest (§3), and steps 1, 4 and
5 of opening (§4). Untrusted input fails with :class:`~wallet.errors.KeystoreCorrupted` (or
:class:`~wallet.errors.UnsupportedKeystoreVersion`) naming the member that is wrong. Private to
:mod:`wallet.keystore`, which adds Argon2id, the cipher and the file I/O, and re-exports the public
constants.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from did_registry.errors import CanonicalizationError, DidRegistryError
from did_registry.identity.crypto import (
    ARGON2ID_MEMLIMIT_MIN,
    ARGON2ID_MEMLIMIT_SENSITIVE,
    ARGON2ID_OPSLIMIT_MIN,
    ARGON2ID_OPSLIMIT_SENSITIVE,
    ARGON2ID_SALT_SIZE,
    SECRETBOX_MAC_SIZE,
    SECRETBOX_NONCE_SIZE,
    Ed25519PrivateKey,
)
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multikey import decode_ed25519_private_key, encode_ed25519_private_key
from wallet.errors import KeystoreCorrupted, KeystoreError, UnsupportedKeystoreVersion

__all__ = [
    "FORMAT",
    "VERSION",
    "MAX_KEYSTORE_SIZE",
    "MAX_OPSLIMIT",
    "MAX_MEMLIMIT",
    "UNSAVED",
    "KeyFields",
    "KeyEntry",
    "kdf_problem",
    "metadata_problem",
    "key_id_problem",
    "keys_problem",
    "passphrase_bytes",
    "subkeys",
    "header_digest",
    "SealedFile",
    "parse_file",
    "parse_payload",
    "header_document",
    "payload_plaintext",
    "file_bytes",
]

FORMAT = "trellis-keystore"
"""The ``format`` member of every keystore file."""
VERSION = 1
"""The format version this module writes and reads."""
MAX_KEYSTORE_SIZE = 1 << 20
"""Largest keystore file read or written, in bytes (1 MiB)."""
MAX_OPSLIMIT = 2 * ARGON2ID_OPSLIMIT_SENSITIVE
"""Largest Argon2id ``opslimit`` a keystore may ask for: a hostile file cannot stall the opener."""
MAX_MEMLIMIT = ARGON2ID_MEMLIMIT_SENSITIVE
"""Largest Argon2id ``memlimit`` a keystore may ask for (1 GiB)."""
UNSAVED = "<unsaved keystore>"
"""How errors name a keystore that has no file yet."""

_KDF_NAME = "argon2id13"
_CIPHER_NAME = "xsalsa20poly1305"
_CHECK_SIZE = 32
_INFO_ENCRYPTION = b"trellis-keystore/1 encryption key"
_INFO_CHECK = b"trellis-keystore/1 passphrase check"
_TOP_MEMBERS = frozenset({"format", "version", "created", "metadata", "kdf", "cipher"})
_KDF_MEMBERS = frozenset({"name", "opslimit", "memlimit", "salt", "check"})
_CIPHER_MEMBERS = frozenset({"name", "nonce", "ciphertext"})
_PAYLOAD_MEMBERS = frozenset({"header", "keys"})
_KEY_MEMBERS = frozenset({"id", "secretKeyMultibase", "created", "status"})
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL_RE = re.compile(r"[a-z][A-Za-z0-9_.-]{0,63}")
_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_METADATA = 32
_MAX_METADATA_VALUE = 2048


class KeyFields(Protocol):
    """What the format needs of a key: :class:`KeyEntry` and ``wallet.keystore.KeystoreKey`` have it."""

    @property
    def id(self) -> str: ...
    @property
    def private_key(self) -> Ed25519PrivateKey: ...
    @property
    def created(self) -> datetime: ...
    @property
    def retired(self) -> datetime | None: ...


class KeyEntry(NamedTuple):
    """One entry of the payload's ``keys`` list (§3), as read."""

    id: str
    private_key: Ed25519PrivateKey
    created: datetime
    retired: datetime | None


def kdf_problem(opslimit: object, memlimit: object) -> str | None:
    """Say what is wrong with an Argon2id cost (§1), or return ``None`` when it is usable."""
    if type(opslimit) is not int or type(memlimit) is not int:
        return "kdf opslimit and memlimit must be integers"
    if not ARGON2ID_OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT:
        return f"kdf opslimit {opslimit} is outside [{ARGON2ID_OPSLIMIT_MIN}, {MAX_OPSLIMIT}]"
    if not ARGON2ID_MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT:
        return f"kdf memlimit {memlimit} is outside [{ARGON2ID_MEMLIMIT_MIN}, {MAX_MEMLIMIT}]"
    if memlimit % 1024:
        return f"kdf memlimit {memlimit} is not a whole number of KiB"
    return None


def metadata_problem(metadata: Mapping[str, str]) -> str | None:
    """Say what is wrong with a header's ``metadata`` (§1), or return ``None``."""
    if not isinstance(metadata, Mapping) or len(metadata) > _MAX_METADATA:
        return f"metadata must be a mapping of at most {_MAX_METADATA} labels"
    for label, value in metadata.items():
        if not isinstance(label, str) or _LABEL_RE.fullmatch(label) is None:
            return f"metadata label {label!r} must match {_LABEL_RE.pattern}"
        if not isinstance(value, str) or len(value) > _MAX_METADATA_VALUE:
            return f"metadata {label!r} must be a string of at most {_MAX_METADATA_VALUE} characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"metadata {label!r} is not valid Unicode"
    return None


def key_id_problem(key_id: object) -> str | None:
    """Say what is wrong with a key id (§3), or return ``None``."""
    if not isinstance(key_id, str) or _ID_RE.fullmatch(key_id) is None:
        return f"key id {key_id!r} must match {_ID_RE.pattern}"
    return None


def keys_problem(keys: Sequence[KeyFields]) -> str | None:
    """Say what is wrong with a keystore's list of keys as a whole (§3), or return ``None``."""
    if not keys:
        return "a keystore holds at least one key"
    if len({key.id for key in keys}) != len(keys):
        return "key ids are not unique"
    if len({key.private_key.public_key for key in keys}) != len(keys):
        return "the same key is stored twice"
    current = [key.id for key in keys if key.retired is None]
    if len(current) != 1:
        return f"exactly one key must be current, found {len(current)}"
    return None


def passphrase_bytes(passphrase: str | bytes, where: str) -> bytes:
    """Return the passphrase as Argon2id takes it (§2): ``str`` as NFC UTF-8, ``bytes`` as given.

    Raises :class:`KeystoreError` naming ``where`` for any other type or for invalid Unicode.
    """
    if isinstance(passphrase, bytes):
        return passphrase
    if not isinstance(passphrase, str):
        raise KeystoreError(where, f"a passphrase is str or bytes, not {type(passphrase).__name__}")
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise KeystoreError(where, "the passphrase is not valid Unicode") from None


def subkeys(master: bytes) -> tuple[bytes, bytes]:
    """Return the secretbox key and the passphrase check value from the Argon2id output (§2).

    Each is one block of HKDF-Expand (RFC 5869 §2.3) with SHA-256.
    """
    encryption_key = hmac.digest(master, _INFO_ENCRYPTION + b"\x01", "sha256")
    return encryption_key, hmac.digest(master, _INFO_CHECK + b"\x01", "sha256")


def header_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 form of the document without ``cipher.ciphertext`` (§3)."""
    header = dict(document)
    header["cipher"] = {k: v for k, v in document["cipher"].items() if k != "ciphertext"}
    return hashlib.sha256(canonicalize(header)).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _time(value: datetime) -> str:
    return value.strftime(_TIME_FORMAT)


@dataclass(frozen=True, slots=True)
class SealedFile:
    """A keystore file as read (§1): its checked header, its ciphertext and the header's digest."""

    created: datetime
    metadata: dict[str, str]
    opslimit: int
    memlimit: int
    salt: bytes
    check: bytes
    nonce: bytes
    ciphertext: bytes
    digest: str


class _Reader:
    """Strict accessors over untrusted JSON: every problem is a :class:`KeystoreCorrupted`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, reason: str) -> KeystoreCorrupted:
        return KeystoreCorrupted(self.source, reason)

    def obj(self, value: object, where: str, members: frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be a JSON object")
        if set(value) != members:
            extra, missing = sorted(set(value) - members), sorted(members - set(value))
            raise self.fail(f"{where} has unexpected {extra} or missing {missing} members")
        return value

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where} must be a string")
        return value

    def b64(self, value: object, where: str, size: int | None = None) -> bytes:
        text = self.text(value, where)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{where} is not base64") from None
        if _b64(data) != text:
            raise self.fail(f"{where} is not canonical base64")
        if size is not None and len(data) != size:
            raise self.fail(f"{where} must be {size} bytes, got {len(data)}")
        return data

    def time(self, value: object, where: str) -> datetime:
        text = self.text(value, where)
        try:
            if _TIME_RE.fullmatch(text) is None:
                raise ValueError(text)
            return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise self.fail(f"{where} must be a time YYYY-MM-DDThh:mm:ssZ") from None

    def json(self, data: bytes, what: str) -> Any:
        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            result = dict(pairs)
            if len(result) != len(pairs):
                raise self.fail(f"{what} repeats a member name")
            return result

        def no_constants(name: str) -> None:
            raise self.fail(f"{what} contains {name}")

        try:
            text = data.decode("utf-8")
            return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self.fail(f"{what} is not UTF-8 JSON") from None

    def key(self, value: object, index: int) -> KeyEntry:
        where = f"keys[{index}]"
        if isinstance(value, dict) and value.get("status") == "retired":
            item = self.obj(value, where, _KEY_MEMBERS | {"retired"})
            retired: datetime | None = self.time(item["retired"], f"{where}.retired")
        else:
            item = self.obj(value, where, _KEY_MEMBERS)
            if item["status"] != "current":
                raise self.fail(f"{where}.status must be 'current' or 'retired'")
            retired = None
        key_id = self.text(item["id"], f"{where}.id")
        created = self.time(item["created"], f"{where}.created")
        try:
            private_key = decode_ed25519_private_key(item["secretKeyMultibase"])
        except DidRegistryError:  # its message would quote the secret: say only what is wrong
            raise self.fail(f"{where}.secretKeyMultibase is not an Ed25519 private key Multikey") from None
        if (problem := key_id_problem(key_id)) is not None:
            raise self.fail(f"{where}: {problem}")
        return KeyEntry(key_id, private_key, created, retired)


def parse_file(data: bytes, source: str) -> SealedFile:
    """Check keystore file contents up to what needs the passphrase (§4 step 1).

    Raises :class:`UnsupportedKeystoreVersion` for another version (read before any other member)
    and :class:`KeystoreCorrupted` for anything else wrong; ``source`` names the file in errors.
    """
    read = _Reader(source)
    if len(data) > MAX_KEYSTORE_SIZE:
        raise read.fail(f"larger than {MAX_KEYSTORE_SIZE} bytes")
    document = read.json(data, "the file")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise read.fail(f"not a {FORMAT} file")
    version = document.get("version")
    if type(version) is not int:
        raise read.fail("version must be an integer")
    if version != VERSION:
        raise UnsupportedKeystoreVersion(source, f"version {version}; this code reads {VERSION}")
    read.obj(document, "the file", _TOP_MEMBERS)
    created = read.time(document["created"], "created")
    metadata = document["metadata"]
    problem = metadata_problem(metadata) if isinstance(metadata, dict) else "not an object"
    if problem is not None:
        raise read.fail(f"metadata: {problem}")
    kdf = read.obj(document["kdf"], "kdf", _KDF_MEMBERS)
    cipher = read.obj(document["cipher"], "cipher", _CIPHER_MEMBERS)
    if kdf["name"] != _KDF_NAME or cipher["name"] != _CIPHER_NAME:
        raise read.fail(f"only kdf {_KDF_NAME!r} with cipher {_CIPHER_NAME!r} is supported")
    if (problem := kdf_problem(kdf["opslimit"], kdf["memlimit"])) is not None:
        raise read.fail(f"refusing {problem}")
    salt = read.b64(kdf["salt"], "kdf.salt", ARGON2ID_SALT_SIZE)
    check = read.b64(kdf["check"], "kdf.check", _CHECK_SIZE)
    nonce = read.b64(cipher["nonce"], "cipher.nonce", SECRETBOX_NONCE_SIZE)
    ciphertext = read.b64(cipher["ciphertext"], "cipher.ciphertext")
    if len(ciphertext) < SECRETBOX_MAC_SIZE:
        raise read.fail("cipher.ciphertext is shorter than its authentication tag")
    try:
        digest = header_digest(document)
    except CanonicalizationError as exc:
        raise read.fail(f"header has no canonical form: {exc}") from None
    return SealedFile(
        created, metadata, kdf["opslimit"], kdf["memlimit"], salt, check, nonce, ciphertext, digest
    )


def parse_payload(plaintext: bytes, digest: str, source: str) -> list[KeyEntry]:
    """Check a decrypted payload against the file's header ``digest`` and §3 (§4 steps 4 and 5)."""
    read = _Reader(source)
    payload = read.obj(read.json(plaintext, "the payload"), "payload", _PAYLOAD_MEMBERS)
    if payload["header"] != digest:
        raise read.fail("the header was altered after encryption")
    if not isinstance(payload["keys"], list):
        raise read.fail("payload keys must be a list")
    keys = [read.key(item, index) for index, item in enumerate(payload["keys"])]
    if (problem := keys_problem(keys)) is not None:
        raise read.fail(problem)
    return keys


def header_document(
    created: datetime,
    metadata: Mapping[str, str],
    opslimit: int,
    memlimit: int,
    salt: bytes,
    check: bytes,
    nonce: bytes,
) -> dict[str, Any]:
    """Build the header (§3): the file object (§1) without ``cipher.ciphertext``."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": _time(created),
        "metadata": dict(metadata),
        "kdf": {
            "name": _KDF_NAME,
            "opslimit": opslimit,
            "memlimit": memlimit,
            "salt": _b64(salt),
            "check": _b64(check),
        },
        "cipher": {"name": _CIPHER_NAME, "nonce": _b64(nonce)},
    }


def _key_json(key: KeyFields) -> dict[str, str]:
    item = {
        "id": key.id,
        "secretKeyMultibase": encode_ed25519_private_key(key.private_key),
        "created": _time(key.created),
        "status": "current" if key.retired is None else "retired",
    }
    if key.retired is not None:
        item["retired"] = _time(key.retired)
    return item


def payload_plaintext(digest: str, keys: Iterable[KeyFields]) -> bytes:
    """Return the RFC 8785 form of the payload to seal: the header ``digest`` and the keys (§3)."""
    return canonicalize({"header": digest, "keys": [_key_json(key) for key in keys]})


def file_bytes(header: Mapping[str, Any], ciphertext: bytes) -> bytes:
    """Return the file: ``header`` with ``cipher.ciphertext`` added, as indented JSON (§1).

    Raises :class:`KeystoreError` if the file would be larger than :data:`MAX_KEYSTORE_SIZE`.
    """
    document = {**header, "cipher": {**header["cipher"], "ciphertext": _b64(ciphertext)}}
    data = (json.dumps(document, indent=2) + "\n").encode("ascii")
    if len(data) > MAX_KEYSTORE_SIZE:
        raise KeystoreError(UNSAVED, f"would be larger than {MAX_KEYSTORE_SIZE} bytes")
    return data

"""Encrypted keystore: a wallet's Ed25519 private keys sealed under a passphrase.

Implements the ``trellis-keystore`` file format, version 1, specified in ``docs/keystore.md``. The
file is a JSON document (§1). Its keys are sealed with XSalsa20-Poly1305 under a key derived from the
passphrase with Argon2id (RFC 9106) and HKDF-Expand (RFC 5869 §2.3) (§2). The plaintext carries the
SHA-256 of the RFC 8785 form of the header (§3). So any change to the file's content raises a
:class:`~wallet.errors.KeystoreError` that says honestly what can be known (§4), never a different
key. Files are written atomically with mode 0600 (§5). Errors of the operating system (a missing
file, a full disk) propagate as :class:`OSError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import getpass as _getpass
import hashlib
import hmac
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from did_registry.errors import CanonicalizationError, DecryptionFailed, DidRegistryError
from did_registry.identity.crypto import (
    ARGON2ID_MEMLIMIT_INTERACTIVE,
    ARGON2ID_MEMLIMIT_MIN,
    ARGON2ID_MEMLIMIT_MODERATE,
    ARGON2ID_MEMLIMIT_SENSITIVE,
    ARGON2ID_OPSLIMIT_INTERACTIVE,
    ARGON2ID_OPSLIMIT_MIN,
    ARGON2ID_OPSLIMIT_MODERATE,
    ARGON2ID_OPSLIMIT_SENSITIVE,
    ARGON2ID_SALT_SIZE,
    SECRETBOX_MAC_SIZE,
    SECRETBOX_NONCE_SIZE,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    derive_key_argon2id,
    random_bytes,
    secretbox_open,
    secretbox_seal,
)
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multikey import decode_ed25519_private_key, encode_ed25519_private_key
from wallet.errors import (
    KeystoreCorrupted,
    KeystoreError,
    KeystoreExists,
    UnsupportedKeystoreVersion,
    WrongPassphrase,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "MAX_KEYSTORE_SIZE",
    "MAX_OPSLIMIT",
    "MAX_MEMLIMIT",
    "PASSPHRASE_ENV",
    "KdfParams",
    "KDF_TESTING",
    "KDF_INTERACTIVE",
    "KDF_MODERATE",
    "KDF_SENSITIVE",
    "KeystoreKey",
    "Keystore",
    "change_passphrase",
    "rotate_key",
    "passphrase_from_env_or_prompt",
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
PASSPHRASE_ENV = "TRELLIS_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
"""Environment variable :func:`passphrase_from_env_or_prompt` reads before prompting."""

_KDF_NAME = "argon2id13"
_CIPHER_NAME = "xsalsa20poly1305"
_CHECK_SIZE = 32
_INFO_ENCRYPTION = b"trellis-keystore/1 encryption key"
_INFO_CHECK = b"trellis-keystore/1 passphrase check"
_UNSAVED = "<unsaved keystore>"
_TOP_MEMBERS = frozenset({"format", "version", "created", "metadata", "kdf", "cipher"})
_KDF_MEMBERS = frozenset({"name", "opslimit", "memlimit", "salt", "check"})
_CIPHER_MEMBERS = frozenset({"name", "nonce", "ciphertext"})
_PAYLOAD_MEMBERS = frozenset({"header", "keys"})
_KEY_MEMBERS = frozenset({"id", "secretKeyMultibase", "created", "status"})
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL_RE = re.compile(r"[a-z][A-Za-z0-9_.-]{0,63}")
_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_MAX_METADATA = 32
_MAX_METADATA_VALUE = 2048


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost: ``opslimit`` passes over ``memlimit`` bytes (a whole number of KiB)."""

    opslimit: int
    memlimit: int

    def problem(self) -> str | None:
        """Say what is wrong with these parameters, or return ``None`` when they are usable."""
        ops, mem = self.opslimit, self.memlimit
        if type(ops) is not int or type(mem) is not int:
            return "kdf opslimit and memlimit must be integers"
        if not ARGON2ID_OPSLIMIT_MIN <= ops <= MAX_OPSLIMIT:
            return f"kdf opslimit {ops} is outside [{ARGON2ID_OPSLIMIT_MIN}, {MAX_OPSLIMIT}]"
        if not ARGON2ID_MEMLIMIT_MIN <= mem <= MAX_MEMLIMIT:
            return f"kdf memlimit {mem} is outside [{ARGON2ID_MEMLIMIT_MIN}, {MAX_MEMLIMIT}]"
        if mem % 1024:
            return f"kdf memlimit {mem} is not a whole number of KiB"
        return None


KDF_TESTING = KdfParams(ARGON2ID_OPSLIMIT_MIN, ARGON2ID_MEMLIMIT_MIN)
"""libsodium's minimum cost (1 pass, 8 KiB): for test suites only; it barely slows guessing."""
KDF_INTERACTIVE = KdfParams(ARGON2ID_OPSLIMIT_INTERACTIVE, ARGON2ID_MEMLIMIT_INTERACTIVE)
"""libsodium's ``interactive`` cost (2 passes, 64 MiB): for small devices."""
KDF_MODERATE = KdfParams(ARGON2ID_OPSLIMIT_MODERATE, ARGON2ID_MEMLIMIT_MODERATE)
"""libsodium's ``moderate`` cost (3 passes, 256 MiB): the default."""
KDF_SENSITIVE = KdfParams(ARGON2ID_OPSLIMIT_SENSITIVE, ARGON2ID_MEMLIMIT_SENSITIVE)
"""libsodium's ``sensitive`` cost (4 passes, 1 GiB): for offline keys such as a trustee's."""


def _utc_seconds(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise KeystoreError(_UNSAVED, f"{what} must be a timezone-aware datetime")
    return value.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True, eq=False)
class KeystoreKey:
    """One key of a keystore: its id, the private key, when it was created and (if so) retired."""

    id: str
    private_key: Ed25519PrivateKey
    created: datetime
    retired: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or _ID_RE.fullmatch(self.id) is None:
            raise KeystoreError(_UNSAVED, f"key id {self.id!r} must match {_ID_RE.pattern}")
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise KeystoreError(_UNSAVED, f"key {self.id!r} is not an Ed25519PrivateKey")
        object.__setattr__(self, "created", _utc_seconds(self.created, "created"))
        if self.retired is not None:
            object.__setattr__(self, "retired", _utc_seconds(self.retired, "retired"))

    @property
    def status(self) -> Literal["current", "retired"]:
        """``current`` for the key in use, ``retired`` for one kept after a rotation."""
        return "current" if self.retired is None else "retired"

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public key of this key."""
        return self.private_key.public_key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeystoreKey):
            return NotImplemented
        return (self.id, self.public_key, self.created, self.retired) == (
            other.id,
            other.public_key,
            other.created,
            other.retired,
        ) and hmac.compare_digest(self.private_key.seed, other.private_key.seed)

    def __hash__(self) -> int:
        return hash((KeystoreKey, self.id, self.public_key))

    def __repr__(self) -> str:
        return f"KeystoreKey(id={self.id!r}, public={self.public_key!r}, status={self.status!r})"


def _keys_problem(keys: tuple[KeystoreKey, ...]) -> str | None:
    if not keys:
        return "a keystore holds at least one key"
    if len({key.id for key in keys}) != len(keys):
        return "key ids are not unique"
    if len({key.public_key for key in keys}) != len(keys):
        return "the same key is stored twice"
    current = [key.id for key in keys if key.retired is None]
    if len(current) != 1:
        return f"exactly one key must be current, found {len(current)}"
    return None


def _metadata_problem(metadata: Mapping[str, str]) -> str | None:
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


def _passphrase_bytes(passphrase: str | bytes, where: str) -> bytes:
    if isinstance(passphrase, bytes):
        return passphrase
    if not isinstance(passphrase, str):
        raise KeystoreError(where, f"a passphrase is str or bytes, not {type(passphrase).__name__}")
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise KeystoreError(where, "the passphrase is not valid Unicode") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hkdf_expand(prk: bytes, info: bytes) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) with SHA-256, for one 32-byte block."""
    return hmac.digest(prk, info + b"\x01", "sha256")


def _derive(passphrase: bytes, salt: bytes, params: KdfParams) -> tuple[bytes, bytes]:
    """Return the secretbox key and the passphrase check value."""
    master = derive_key_argon2id(passphrase, salt, params.opslimit, params.memlimit)
    return _hkdf_expand(master, _INFO_ENCRYPTION), _hkdf_expand(master, _INFO_CHECK)


def _header_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 form of the document without ``cipher.ciphertext``."""
    header = dict(document)
    header["cipher"] = {k: v for k, v in document["cipher"].items() if k != "ciphertext"}
    return hashlib.sha256(canonicalize(header)).hexdigest()


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
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
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

    def key(self, value: object, index: int) -> KeystoreKey:
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
            return KeystoreKey(key_id, private_key, created, retired)
        except DidRegistryError as exc:
            raise self.fail(f"{where}.secretKeyMultibase: {exc}") from None
        except KeystoreError as exc:
            raise self.fail(f"{where}: {exc.reason}") from None


class Keystore:
    """A wallet's keys (one current, the rest retired) and public metadata, sealed on save.

    ``metadata`` is a mutable mapping of short labels to strings (``did`` names the DID the keys
    belong to) stored unencrypted, but authenticated, in the file's header. ``params`` is the
    Argon2id cost used by :meth:`save` unless another is given; an opened keystore keeps its file's.
    """

    DEFAULT_KEY_ID: ClassVar[str] = "key-1"

    def __init__(
        self,
        keys: Iterable[KeystoreKey],
        *,
        metadata: Mapping[str, str] | None = None,
        created: datetime | None = None,
        params: KdfParams = KDF_MODERATE,
    ) -> None:
        self._keys = tuple(keys)
        problem = _keys_problem(self._keys)
        if problem is not None:
            raise KeystoreError(_UNSAVED, problem)
        self.metadata: dict[str, str] = dict(metadata or {})
        self.created = _utc_seconds(created or datetime.now(UTC), "created")
        self.params = params

    @classmethod
    def new(
        cls,
        key: Ed25519PrivateKey | None = None,
        *,
        key_id: str = DEFAULT_KEY_ID,
        metadata: Mapping[str, str] | None = None,
        params: KdfParams = KDF_MODERATE,
        now: datetime | None = None,
    ) -> Keystore:
        """Make an unsaved keystore holding ``key`` (a new random key if ``None``) as current."""
        now = now or datetime.now(UTC)
        first = KeystoreKey(key_id, key or Ed25519PrivateKey.generate(), now)
        return cls([first], metadata=metadata, created=now, params=params)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        key: Ed25519PrivateKey | None = None,
        *,
        key_id: str = DEFAULT_KEY_ID,
        metadata: Mapping[str, str] | None = None,
        params: KdfParams = KDF_MODERATE,
        overwrite: bool = False,
    ) -> Keystore:
        """Create a keystore file at ``path``; raise :class:`KeystoreExists` unless ``overwrite``."""
        keystore = cls.new(key, key_id=key_id, metadata=metadata, params=params)
        keystore.save(path, passphrase, overwrite=overwrite)
        return keystore

    @classmethod
    def open(cls, path: str | os.PathLike[str], passphrase: str | bytes) -> Keystore:
        """Read and decrypt the keystore file at ``path``."""
        with open(path, "rb") as file:
            data = file.read(MAX_KEYSTORE_SIZE + 1)
        return cls.decrypt(data, passphrase, source=os.fspath(path))

    @classmethod
    def decrypt(cls, data: bytes, passphrase: str | bytes, *, source: str = "<bytes>") -> Keystore:
        """Parse and decrypt keystore file contents; ``source`` names them in errors."""
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
        problem = _metadata_problem(metadata) if isinstance(metadata, dict) else "not an object"
        if problem is not None:
            raise read.fail(f"metadata: {problem}")
        kdf = read.obj(document["kdf"], "kdf", _KDF_MEMBERS)
        cipher = read.obj(document["cipher"], "cipher", _CIPHER_MEMBERS)
        if kdf["name"] != _KDF_NAME or cipher["name"] != _CIPHER_NAME:
            raise read.fail(f"only kdf {_KDF_NAME!r} with cipher {_CIPHER_NAME!r} is supported")
        params = KdfParams(kdf["opslimit"], kdf["memlimit"])
        if (problem := params.problem()) is not None:
            raise read.fail(f"refusing {problem}")
        salt = read.b64(kdf["salt"], "kdf.salt", ARGON2ID_SALT_SIZE)
        check = read.b64(kdf["check"], "kdf.check", _CHECK_SIZE)
        nonce = read.b64(cipher["nonce"], "cipher.nonce", SECRETBOX_NONCE_SIZE)
        ciphertext = read.b64(cipher["ciphertext"], "cipher.ciphertext")
        if len(ciphertext) < SECRETBOX_MAC_SIZE:
            raise read.fail("cipher.ciphertext is shorter than its authentication tag")
        try:
            digest = _header_digest(document)
        except CanonicalizationError as exc:
            raise read.fail(f"header has no canonical form: {exc}") from None

        key, expected_check = _derive(_passphrase_bytes(passphrase, source), salt, params)
        if not hmac.compare_digest(check, expected_check):
            raise WrongPassphrase(
                source, "wrong passphrase (or the kdf salt, parameters or check were altered)"
            )
        try:
            plaintext = secretbox_open(key, nonce, ciphertext)
        except DecryptionFailed:
            raise read.fail("the passphrase is right, but the ciphertext or nonce was altered") from None
        payload = read.obj(read.json(plaintext, "the payload"), "payload", _PAYLOAD_MEMBERS)
        if payload["header"] != digest:
            raise read.fail("the header was altered after encryption")
        if not isinstance(payload["keys"], list):
            raise read.fail("payload keys must be a list")
        keys = tuple(read.key(item, index) for index, item in enumerate(payload["keys"]))
        if (problem := _keys_problem(keys)) is not None:
            raise read.fail(problem)
        return cls(keys, metadata=metadata, created=created, params=params)

    def encrypt(self, passphrase: str | bytes, *, params: KdfParams | None = None) -> bytes:
        """Return the file contents sealing these keys under ``passphrase`` (fresh salt and nonce)."""
        params = params or self.params
        for problem in (params.problem(), _metadata_problem(self.metadata)):
            if problem is not None:
                raise KeystoreError(_UNSAVED, problem)
        secret = _passphrase_bytes(passphrase, _UNSAVED)
        if not secret:
            raise KeystoreError(_UNSAVED, "refusing an empty passphrase")
        salt, nonce = random_bytes(ARGON2ID_SALT_SIZE), random_bytes(SECRETBOX_NONCE_SIZE)
        key, check = _derive(secret, salt, params)
        kdf = {"name": _KDF_NAME, "opslimit": params.opslimit, "memlimit": params.memlimit}
        document: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "created": _time(self.created),
            "metadata": dict(self.metadata),
            "kdf": {**kdf, "salt": _b64(salt), "check": _b64(check)},
            "cipher": {"name": _CIPHER_NAME, "nonce": _b64(nonce)},
        }
        payload = {"header": _header_digest(document), "keys": [_key_json(k) for k in self._keys]}
        document["cipher"]["ciphertext"] = _b64(secretbox_seal(key, nonce, canonicalize(payload)))
        data = (json.dumps(document, indent=2) + "\n").encode("ascii")
        if len(data) > MAX_KEYSTORE_SIZE:
            raise KeystoreError(_UNSAVED, f"would be larger than {MAX_KEYSTORE_SIZE} bytes")
        return data

    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        *,
        params: KdfParams | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write the keystore to ``path`` atomically (mode 0600); replace a file only if ``overwrite``."""
        target = Path(path)
        if not overwrite and os.path.lexists(target):
            raise KeystoreExists(str(target), "a file is already there (pass overwrite=True)")
        try:
            data = self.encrypt(passphrase, params=params)
        except KeystoreError as exc:
            raise type(exc)(str(target), exc.reason) from None
        _write_atomically(target, data, overwrite=overwrite)
        if params is not None:
            self.params = params

    @property
    def keys(self) -> tuple[KeystoreKey, ...]:
        """Every key in stored order (rotation appends): the current one and those it replaced."""
        return self._keys

    @property
    def current(self) -> KeystoreKey:
        """The record of the key in use."""
        return next(key for key in self._keys if key.retired is None)

    @property
    def current_key(self) -> Ed25519PrivateKey:
        """The private key in use."""
        return self.current.private_key

    @property
    def did(self) -> str | None:
        """The DID these keys belong to (``metadata['did']``), if recorded."""
        return self.metadata.get("did")

    def get(self, key_id: str) -> KeystoreKey | None:
        """Return the key with id ``key_id``, or ``None``."""
        return next((key for key in self._keys if key.id == key_id), None)

    def find(self, public_key: Ed25519PublicKey) -> KeystoreKey | None:
        """Return the key whose public key is ``public_key``, or ``None``."""
        return next((key for key in self._keys if key.public_key == public_key), None)

    def rotate(
        self,
        new_key: Ed25519PrivateKey | None = None,
        *,
        key_id: str | None = None,
        now: datetime | None = None,
    ) -> KeystoreKey:
        """Retire the current key (it is kept) and make ``new_key`` (or a new random key) current.

        Changes this object only; :meth:`save` (or :func:`rotate_key`) writes it.
        """
        now = now or datetime.now(UTC)
        if key_id is None:
            taken, n = {key.id for key in self._keys}, len(self._keys) + 1
            while f"key-{n}" in taken:
                n += 1
            key_id = f"key-{n}"
        record = KeystoreKey(key_id, new_key or Ed25519PrivateKey.generate(), now)
        keys = (
            *(
                KeystoreKey(k.id, k.private_key, k.created, now) if k.retired is None else k
                for k in self._keys
            ),
            record,
        )
        if (problem := _keys_problem(keys)) is not None:
            raise KeystoreError(_UNSAVED, problem)
        self._keys = keys
        return record

    def __repr__(self) -> str:
        return f"Keystore(did={self.did!r}, current={self.current.id!r}, keys={len(self._keys)})"


def _key_json(key: KeystoreKey) -> dict[str, str]:
    item = {
        "id": key.id,
        "secretKeyMultibase": encode_ed25519_private_key(key.private_key),
        "created": _time(key.created),
        "status": key.status,
    }
    if key.retired is not None:
        item["retired"] = _time(key.retired)
    return item


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform that cannot open directories (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: the file system does not sync directories
            raise
    finally:
        os.close(fd)


def _write_atomically(target: Path, data: bytes, *, overwrite: bool) -> None:
    """Write a 0600 temporary file beside ``target``, sync it, then move it into place."""
    directory = target.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)  # refuses an existing target, atomically
            except FileExistsError:
                raise KeystoreExists(str(target), "a file is already there") from None
            except OSError:  # no hard links on this file system
                if os.path.lexists(target):
                    raise KeystoreExists(str(target), "a file is already there") from None
                os.replace(temporary, target)
        _fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def change_passphrase(
    path: str | os.PathLike[str],
    old: str | bytes,
    new: str | bytes,
    *,
    params: KdfParams | None = None,
) -> Keystore:
    """Re-encrypt the keystore at ``path`` under ``new`` (and ``params``), replacing it atomically."""
    keystore = Keystore.open(path, old)
    keystore.save(path, new, params=params, overwrite=True)
    return keystore


def rotate_key(
    path: str | os.PathLike[str],
    passphrase: str | bytes,
    new_key: Ed25519PrivateKey | None = None,
    *,
    key_id: str | None = None,
) -> KeystoreKey:
    """Open the keystore at ``path``, rotate to ``new_key`` and replace the file atomically."""
    keystore = Keystore.open(path, passphrase)
    record = keystore.rotate(new_key, key_id=key_id)
    keystore.save(path, passphrase, overwrite=True)
    return record


def passphrase_from_env_or_prompt(
    path: str | os.PathLike[str] | None = None,
    *,
    confirm: bool = False,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] = _getpass.getpass,
) -> str:
    """Return ``$TRELLIS_PASSPHRASE`` if set and not empty, else ask on the terminal.

    With ``confirm`` (a new passphrase) the prompt asks twice and refuses an empty or mismatched
    answer with :class:`KeystoreError`.
    """
    value = (os.environ if environ is None else environ).get(PASSPHRASE_ENV)
    if value:
        return value
    name = os.fspath(path) if path is not None else "keystore"
    answer = prompt(f"Passphrase for {name}: ")
    if confirm:
        if not answer:
            raise KeystoreError(name, "refusing an empty passphrase")
        if prompt(f"Repeat the passphrase for {name}: ") != answer:
            raise KeystoreError(name, "the two passphrases differ")
    return answer

"""Encrypted keystore: a wallet's Ed25519 private keys sealed under a passphrase.

Implements the ``trellis-keystore`` file format, version 1, specified in ``docs/keystore.md``. The
file is a JSON document (§1). Its keys are sealed with XSalsa20-Poly1305 under a key derived from the
passphrase with Argon2id (RFC 9106) and HKDF-Expand (RFC 5869 §2.3) (§2). The plaintext carries the
SHA-256 of the RFC 8785 form of the header (§3). So any change to the file's content raises a
:class:`~wallet.errors.KeystoreError` that says honestly what can be known (§4), never a different
key. Files are written atomically with mode 0600 (§5). Errors of the operating system (a missing
file, a full disk) propagate as :class:`OSError`.

This module holds the public API, Argon2id, the cipher and the file I/O; reading and building the
file's contents, without I/O, is in :mod:`wallet._keystore_format`.
"""

from __future__ import annotations

import contextlib
import errno
import getpass as _getpass
import hmac
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal

from did_registry.errors import DecryptionFailed
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
    SECRETBOX_NONCE_SIZE,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    derive_key_argon2id,
    random_bytes,
    secretbox_open,
    secretbox_seal,
)
from wallet._keystore_format import (
    FORMAT,
    MAX_KEYSTORE_SIZE,
    MAX_MEMLIMIT,
    MAX_OPSLIMIT,
    UNSAVED,
    VERSION,
    file_bytes,
    header_document,
    kdf_problem,
    key_id_problem,
    keys_problem,
    metadata_problem,
    parse_file,
    parse_payload,
    passphrase_bytes,
    payload_plaintext,
    subkeys,
)

# Argon2id and the cipher are called from this module, never from the format module: tests replace
# them here (``derive_key_argon2id``, ``secretbox_seal``) and hand-seal with ``_derive``/``_header_digest``.
from wallet._keystore_format import header_digest as _header_digest
from wallet.errors import KeystoreCorrupted, KeystoreError, KeystoreExists, WrongPassphrase

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


PASSPHRASE_ENV = "TRELLIS_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
"""Environment variable :func:`passphrase_from_env_or_prompt` reads before prompting."""


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost: ``opslimit`` passes over ``memlimit`` bytes (a whole number of KiB)."""

    opslimit: int
    memlimit: int

    def problem(self) -> str | None:
        """Say what is wrong with these parameters, or return ``None`` when they are usable."""
        return kdf_problem(self.opslimit, self.memlimit)


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
        raise KeystoreError(UNSAVED, f"{what} must be a timezone-aware datetime")
    return value.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True, eq=False)
class KeystoreKey:
    """One key of a keystore: its id, the private key, when it was created and (if so) retired."""

    id: str
    private_key: Ed25519PrivateKey
    created: datetime
    retired: datetime | None = None

    def __post_init__(self) -> None:
        if (problem := key_id_problem(self.id)) is not None:
            raise KeystoreError(UNSAVED, problem)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise KeystoreError(UNSAVED, f"key {self.id!r} is not an Ed25519PrivateKey")
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
        mine = (self.id, self.public_key, self.created, self.retired)
        theirs = (other.id, other.public_key, other.created, other.retired)
        return mine == theirs and hmac.compare_digest(self.private_key.seed, other.private_key.seed)

    def __hash__(self) -> int:
        return hash((KeystoreKey, self.id, self.public_key))

    def __repr__(self) -> str:
        return f"KeystoreKey(id={self.id!r}, public={self.public_key!r}, status={self.status!r})"


def _checked(keys: tuple[KeystoreKey, ...]) -> tuple[KeystoreKey, ...]:
    if (problem := keys_problem(keys)) is not None:
        raise KeystoreError(UNSAVED, problem)
    return keys


def _derive(passphrase: bytes, salt: bytes, params: KdfParams) -> tuple[bytes, bytes]:
    """Return the secretbox key and the passphrase check value (§2)."""
    return subkeys(derive_key_argon2id(passphrase, salt, params.opslimit, params.memlimit))


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
        self._keys = _checked(tuple(keys))
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
        sealed = parse_file(data, source)
        params = KdfParams(sealed.opslimit, sealed.memlimit)
        key, check = _derive(passphrase_bytes(passphrase, source), sealed.salt, params)
        if not hmac.compare_digest(sealed.check, check):
            raise WrongPassphrase(
                source, "wrong passphrase (or the kdf salt, parameters or check were altered)"
            )
        try:
            plaintext = secretbox_open(key, sealed.nonce, sealed.ciphertext)
        except DecryptionFailed:
            raise KeystoreCorrupted(
                source, "the passphrase is right, but the ciphertext or nonce was altered"
            ) from None
        keys = (KeystoreKey(*entry) for entry in parse_payload(plaintext, sealed.digest, source))
        return cls(keys, metadata=sealed.metadata, created=sealed.created, params=params)

    def encrypt(self, passphrase: str | bytes, *, params: KdfParams | None = None) -> bytes:
        """Return the file contents sealing these keys under ``passphrase`` (fresh salt and nonce)."""
        params = params or self.params
        for problem in (params.problem(), metadata_problem(self.metadata)):
            if problem is not None:
                raise KeystoreError(UNSAVED, problem)
        secret = passphrase_bytes(passphrase, UNSAVED)
        if not secret:
            raise KeystoreError(UNSAVED, "refusing an empty passphrase")
        salt, nonce = random_bytes(ARGON2ID_SALT_SIZE), random_bytes(SECRETBOX_NONCE_SIZE)
        key, check = _derive(secret, salt, params)
        header = header_document(
            self.created, self.metadata, params.opslimit, params.memlimit, salt, check, nonce
        )
        plaintext = payload_plaintext(_header_digest(header), self._keys)
        return file_bytes(header, secretbox_seal(key, nonce, plaintext))

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
        retired = (
            KeystoreKey(k.id, k.private_key, k.created, now) if k.retired is None else k for k in self._keys
        )
        self._keys = _checked((*retired, record))
        return record

    def __repr__(self) -> str:
        return f"Keystore(did={self.did!r}, current={self.current.id!r}, keys={len(self._keys)})"


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

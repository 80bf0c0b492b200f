"""The encrypted keystore (docs/keystore.md): round trips, tampering, hostile files, atomic writes."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wallet.keystore as keystore_module
from did_registry.identity.crypto import Ed25519PrivateKey, secretbox_seal
from did_registry.identity.multibase import encode_base58btc
from did_registry.identity.multikey import (
    ED25519_PRIV_HEADER,
    encode_ed25519_private_key,
    encode_ed25519_public_key,
)
from wallet import _keystore_format
from wallet.errors import (
    KeystoreCorrupted,
    KeystoreError,
    KeystoreExists,
    UnsupportedKeystoreVersion,
    WrongPassphrase,
)
from wallet.keystore import (
    KDF_INTERACTIVE,
    KDF_MODERATE,
    KDF_TESTING,
    MAX_KEYSTORE_SIZE,
    MAX_MEMLIMIT,
    MAX_OPSLIMIT,
    PASSPHRASE_ENV,
    KdfParams,
    Keystore,
    KeystoreKey,
    change_passphrase,
    passphrase_from_env_or_prompt,
    rotate_key,
)

DATA = Path(__file__).resolve().parents[1] / "data"
PASSPHRASE = "correct horse battery staple"
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)
DID = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a test's keystore lives."""
    return tmp_path / "wallet.keystore"


@pytest.fixture
def created(path: Path) -> Keystore:
    """A keystore file with one key and a DID, sealed at the testing cost."""
    return Keystore.create(path, PASSPHRASE, metadata={"did": DID}, params=KDF_TESTING)


def _seeds(keystore: Keystore) -> list[bytes]:
    return [key.private_key.seed for key in keystore.keys]


def _sealed(rotations: int = 0, did: str = DID) -> bytes:
    keystore = Keystore.new(metadata={"did": did}, params=KDF_TESTING, now=T0)
    for _ in range(rotations):
        keystore.rotate(now=T1)
    return keystore.encrypt(PASSPHRASE)


def _edit(data: bytes, change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(data)
    change(document)
    return json.dumps(document).encode()


def _other_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_keeps_key_metadata_and_times(path: Path) -> None:
    """If a keystore is created and opened with the same passphrase, it holds the same key and header."""
    key = Ed25519PrivateKey.generate()
    made = Keystore.create(path, PASSPHRASE, key, metadata={"did": DID}, params=KDF_TESTING)
    opened = Keystore.open(path, PASSPHRASE)
    assert opened.current_key.seed == key.seed
    assert opened.keys == made.keys
    assert opened.did == DID
    assert opened.metadata == {"did": DID}
    assert opened.created == made.created
    assert opened.params == KDF_TESTING


def test_create_generates_a_key_when_none_is_given(tmp_path: Path) -> None:
    """If no key is given, create makes a fresh random one each time."""
    a = Keystore.create(tmp_path / "a", PASSPHRASE, params=KDF_TESTING)
    b = Keystore.create(tmp_path / "b", PASSPHRASE, params=KDF_TESTING)
    assert a.current_key.seed != b.current_key.seed
    assert Keystore.open(tmp_path / "a", PASSPHRASE).current_key.seed == a.current_key.seed


def test_default_cost_is_moderate() -> None:
    """A keystore made without params is sealed at libsodium's moderate cost."""
    assert Keystore.new().params == KDF_MODERATE


@pytest.mark.parametrize("params", [KDF_TESTING, KDF_INTERACTIVE, KdfParams(2, 16 * 1024)])
def test_file_records_its_cost_so_any_preset_opens(path: Path, params: KdfParams) -> None:
    """A file sealed at any cost records it and opens without being told the cost."""
    Keystore.create(path, PASSPHRASE, params=params)
    document = json.loads(path.read_bytes())
    assert (document["kdf"]["opslimit"], document["kdf"]["memlimit"]) == (params.opslimit, params.memlimit)
    assert Keystore.open(path, PASSPHRASE).params == params


def test_published_v1_vector_opens() -> None:
    """The committed version-1 file (tests/data/keystore-v1.json) still opens to its known keys."""
    opened = Keystore.open(DATA / "keystore-v1.json", PASSPHRASE)
    assert [key.private_key.seed for key in opened.keys] == [bytes(range(32)), bytes(range(32, 64))]
    assert [(key.id, key.status) for key in opened.keys] == [("key-1", "retired"), ("key-2", "current")]
    assert [(key.created, key.retired) for key in opened.keys] == [(T0, T1), (T1, None)]
    assert opened.metadata == {"did": DID, "label": "conformance vector"}
    assert "did:key:" + encode_ed25519_public_key(opened.keys[0].public_key) == DID


def test_secret_keys_never_appear_in_the_file(created: Keystore, path: Path) -> None:
    """The file holds neither the seed nor its multibase form in the clear."""
    data = path.read_bytes()
    seed = created.current_key.seed
    for form in (
        seed,
        seed.hex().encode(),
        base64.b64encode(seed),
        encode_ed25519_private_key(created.current_key).encode(),
    ):
        assert form not in data


def test_every_save_uses_a_fresh_salt_and_nonce(created: Keystore) -> None:
    """Two encryptions of the same keystore share no salt, nonce or ciphertext."""
    a, b = (json.loads(created.encrypt(PASSPHRASE)) for _ in range(2))
    assert a["kdf"]["salt"] != b["kdf"]["salt"]
    assert a["cipher"]["nonce"] != b["cipher"]["nonce"]
    assert a["cipher"]["ciphertext"] != b["cipher"]["ciphertext"]


def test_text_passphrase_is_normalised_to_nfc(path: Path) -> None:
    """If a passphrase is typed decomposed (e + combining acute), it opens a file made with the composed form."""
    Keystore.create(path, "caf\u00e9", params=KDF_TESTING)
    assert Keystore.open(path, "cafe\u0301").current_key is not None


def test_bytes_passphrase_is_the_utf8_of_text(path: Path) -> None:
    """A bytes passphrase opens a file made with the str whose UTF-8 it is."""
    made = Keystore.create(path, "p\u00e4ss", params=KDF_TESTING)
    assert Keystore.open(path, "p\u00e4ss".encode()).current_key.seed == made.current_key.seed


def test_empty_passphrase_is_refused(path: Path) -> None:
    """If the passphrase is empty, create raises KeystoreError and writes nothing."""
    with pytest.raises(KeystoreError, match="empty passphrase"):
        Keystore.create(path, "", params=KDF_TESTING)
    assert not path.exists()


# --- wrong passphrase and tampering ----------------------------------------------------------


def test_wrong_passphrase(created: Keystore, path: Path) -> None:
    """If the passphrase is wrong, open raises WrongPassphrase naming the file."""
    with pytest.raises(WrongPassphrase) as caught:
        Keystore.open(path, PASSPHRASE + "!")
    assert caught.value.path == str(path)


def test_every_truncation_is_refused() -> None:
    """If the file is cut at any offset before its closing brace, opening raises KeystoreCorrupted."""
    data = _sealed(rotations=1)
    end = data.rstrip().rfind(b"}")
    for offset in range(end + 1):
        with pytest.raises(KeystoreCorrupted):
            Keystore.decrypt(data[:offset], PASSPHRASE)


@pytest.mark.parametrize("bit", range(8))
def test_every_single_bit_flip_is_refused(bit: int) -> None:
    """If any one bit of any byte of the file flips, opening raises a KeystoreError, never a key."""
    data = bytearray(_sealed(rotations=1))
    for offset in range(len(data)):
        data[offset] ^= 1 << bit
        with pytest.raises(KeystoreError):
            Keystore.decrypt(bytes(data), PASSPHRASE)
        data[offset] ^= 1 << bit


@settings(max_examples=200)
@given(st.data())
def test_any_byte_change_is_refused_unless_only_layout_changed(data: st.DataObject) -> None:
    """If any byte is replaced by any other, opening fails, or the JSON content is unchanged."""
    original = _sealed()
    offset = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[offset]))
    changed = original[:offset] + bytes([value]) + original[offset + 1 :]
    try:
        opened = Keystore.decrypt(changed, PASSPHRASE)
    except KeystoreError:
        return
    assert json.loads(changed) == json.loads(original)
    assert opened.keys == Keystore.decrypt(original, PASSPHRASE).keys


def _set(*keys: str, value: object) -> Callable[[dict[str, Any]], object]:
    def change(document: dict[str, Any]) -> None:
        for key in keys[:-1]:
            document = document[key]
        document[keys[-1]] = value(document[keys[-1]]) if callable(value) else value

    return change


TAMPERING: list[tuple[str, Callable[[dict[str, Any]], object], type[KeystoreError]]] = [
    ("metadata did", _set("metadata", "did", value="did:key:z6MkOther"), KeystoreCorrupted),
    ("metadata added", _set("metadata", "label", value="x"), KeystoreCorrupted),
    ("created", _set("created", value="2030-01-01T00:00:00Z"), KeystoreCorrupted),
    ("nonce", _set("cipher", "nonce", value=_other_b64), KeystoreCorrupted),
    ("ciphertext", _set("cipher", "ciphertext", value=_other_b64), KeystoreCorrupted),
    (
        "ciphertext cut",
        _set("cipher", "ciphertext", value=lambda v: base64.b64encode(base64.b64decode(v)[:-1]).decode()),
        KeystoreCorrupted,
    ),
    ("ciphertext empty", _set("cipher", "ciphertext", value=""), KeystoreCorrupted),
    ("salt", _set("kdf", "salt", value=_other_b64), WrongPassphrase),
    ("check", _set("kdf", "check", value=_other_b64), WrongPassphrase),
    ("opslimit", _set("kdf", "opslimit", value=2), WrongPassphrase),
    ("memlimit", _set("kdf", "memlimit", value=16384), WrongPassphrase),
    ("version 2", _set("version", value=2), UnsupportedKeystoreVersion),
    ("version 0", _set("version", value=0), UnsupportedKeystoreVersion),
    ("version text", _set("version", value="1"), KeystoreCorrupted),
    ("version bool", _set("version", value=True), KeystoreCorrupted),
    ("format", _set("format", value="other-keystore"), KeystoreCorrupted),
    ("kdf name", _set("kdf", "name", value="scrypt"), KeystoreCorrupted),
    ("cipher name", _set("cipher", "name", value="aes256gcm"), KeystoreCorrupted),
    ("extra member", _set("extra", value=1), KeystoreCorrupted),
    ("extra kdf member", _set("kdf", "parallelism", value=1), KeystoreCorrupted),
    ("missing metadata", lambda d: d.pop("metadata"), KeystoreCorrupted),
    ("missing nonce", lambda d: d["cipher"].pop("nonce"), KeystoreCorrupted),
    ("metadata not object", _set("metadata", value=[]), KeystoreCorrupted),
    ("metadata number", _set("metadata", "did", value=1), KeystoreCorrupted),
    ("metadata bad label", _set("metadata", "Bad Label", value="x"), KeystoreCorrupted),
    ("created not a time", _set("created", value="yesterday"), KeystoreCorrupted),
    ("created month 13", _set("created", value="2025-13-01T00:00:00Z"), KeystoreCorrupted),
    ("created offset", _set("created", value="2025-01-02T03:04:05+00:00"), KeystoreCorrupted),
    ("salt short", _set("kdf", "salt", value=base64.b64encode(bytes(15)).decode()), KeystoreCorrupted),
    ("salt not base64", _set("kdf", "salt", value="!!!!"), KeystoreCorrupted),
    ("salt not text", _set("kdf", "salt", value=16), KeystoreCorrupted),
    ("nonce long", _set("cipher", "nonce", value=base64.b64encode(bytes(25)).decode()), KeystoreCorrupted),
    ("check unpadded", _set("kdf", "check", value=lambda v: v.rstrip("=")), KeystoreCorrupted),
    (
        "salt non-canonical",
        _set("kdf", "salt", value=lambda v: v[:-3] + chr(ord(v[-3]) ^ 1) + "=="),
        KeystoreCorrupted,
    ),
    ("kdf not object", _set("kdf", value="argon2id13"), KeystoreCorrupted),
]


@pytest.mark.parametrize(("change", "error"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
def test_tampered_field_raises_typed_error(
    change: Callable[[dict[str, Any]], object], error: type[KeystoreError]
) -> None:
    """If one field of the file is altered, opening raises the error that says honestly what can be known."""
    with pytest.raises(error):
        Keystore.decrypt(_edit(_sealed(), change), PASSPHRASE)


def test_ciphertext_flip_is_reported_as_corruption_not_passphrase() -> None:
    """If the passphrase check passes but the box does not open, the error says the ciphertext was altered."""
    data = _sealed()
    with pytest.raises(KeystoreCorrupted, match="passphrase is right"):
        Keystore.decrypt(_edit(data, _set("cipher", "ciphertext", value=_other_b64)), PASSPHRASE)


def test_header_spliced_onto_other_sealed_keys_is_refused() -> None:
    """If the kdf and cipher of one file are spliced into another's header, the header digest refuses it."""
    mine, theirs = json.loads(_sealed()), json.loads(_sealed(did="did:key:z6MkSomeoneElse"))
    mine["kdf"], mine["cipher"] = theirs["kdf"], theirs["cipher"]
    with pytest.raises(KeystoreCorrupted, match="header was altered"):
        Keystore.decrypt(json.dumps(mine).encode(), PASSPHRASE)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"not json",
        b"[]",
        b'"trellis-keystore"',
        b"\xff\xfe{}",
        b'{"format": "trellis-keystore", "version": NaN}',
        b'{"format": "trellis-keystore", "format": "trellis-keystore", "version": 1}',
        b'{"format": "trellis-keystore", "version": 1.0}',
        b'{"format": "trellis-keystore", "version": 1' + b"0" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["empty", "text", "array", "string", "bad utf-8", "nan", "duplicate", "float", "huge int", "deep"],
)
def test_not_a_keystore_is_corrupted(text: bytes) -> None:
    """If the bytes are not a keystore JSON object at all, opening raises KeystoreCorrupted."""
    with pytest.raises(KeystoreCorrupted):
        Keystore.decrypt(text, PASSPHRASE)


def test_unknown_version_is_reported_before_other_checks() -> None:
    """A file of a newer version is refused as unsupported even if its other members are unknown."""
    data = json.dumps({"format": "trellis-keystore", "version": 7, "anything": {}}).encode()
    with pytest.raises(UnsupportedKeystoreVersion, match="version 7"):
        Keystore.decrypt(data, PASSPHRASE)


def test_oversized_file_is_refused_unread(path: Path) -> None:
    """If the file is larger than MAX_KEYSTORE_SIZE, opening raises KeystoreCorrupted."""
    path.write_bytes(b" " * (MAX_KEYSTORE_SIZE + 1))
    with pytest.raises(KeystoreCorrupted, match="larger than"):
        Keystore.open(path, PASSPHRASE)


HOSTILE_KDF = [
    ("opslimit", 0),
    ("opslimit", MAX_OPSLIMIT + 1),
    ("opslimit", 2**32),
    ("opslimit", -1),
    ("opslimit", True),
    ("opslimit", 1.0),
    ("opslimit", "1"),
    ("opslimit", None),
    ("memlimit", 4096),
    ("memlimit", MAX_MEMLIMIT + 1024),
    ("memlimit", 2**40),
    ("memlimit", 8193),
    ("memlimit", "8192"),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE_KDF)
def test_hostile_kdf_parameters_are_refused_before_any_derivation(
    monkeypatch: pytest.MonkeyPatch, field: str, value: object
) -> None:
    """If a file asks for Argon2id limits outside [libsodium minimum, cap], it is refused without running Argon2id."""
    data = _edit(_sealed(), _set("kdf", field, value=value))

    def no_derivation(*args: object) -> bytes:
        raise AssertionError("Argon2id ran on hostile parameters")

    monkeypatch.setattr(keystore_module, "derive_key_argon2id", no_derivation)
    with pytest.raises(KeystoreCorrupted, match="kdf"):
        Keystore.decrypt(data, PASSPHRASE)


@pytest.mark.parametrize(
    "params",
    [KdfParams(0, 8192), KdfParams(1, 4096), KdfParams(1, 8193), KdfParams(MAX_OPSLIMIT + 1, 8192)],
)
def test_saving_with_unusable_parameters_is_refused(path: Path, params: KdfParams) -> None:
    """If asked to seal with limits that opening would refuse, save raises KeystoreError and writes nothing."""
    with pytest.raises(KeystoreError, match="kdf"):
        Keystore.new().save(path, PASSPHRASE, params=params)
    assert not path.exists()


# --- the decrypted payload -------------------------------------------------------------------


def _reseal(payload: dict[str, Any] | bytes) -> bytes:
    """Seal a hand-made payload under the real key schedule, with a correct header digest."""
    document = json.loads(_sealed())
    kdf = document["kdf"]
    salt = base64.b64decode(kdf["salt"])
    key, _ = keystore_module._derive(PASSPHRASE.encode(), salt, KdfParams(kdf["opslimit"], kdf["memlimit"]))
    nonce = base64.b64decode(document["cipher"]["nonce"])
    if isinstance(payload, dict):
        payload = json.dumps({"header": keystore_module._header_digest(document), **payload}).encode()
    sealed = secretbox_seal(key, nonce, payload)
    document["cipher"]["ciphertext"] = base64.b64encode(sealed).decode()
    return json.dumps(document).encode()


def _entry(key_id: str = "key-1", status: str = "current", **extra: object) -> dict[str, object]:
    entry = {
        "id": key_id,
        "secretKeyMultibase": encode_ed25519_private_key(Ed25519PrivateKey.generate()),
        "created": "2025-01-02T03:04:05Z",
        "status": status,
    }
    return {**entry, **extra}


def test_resealed_valid_payload_opens() -> None:
    """A payload built by hand to the documented format opens (the helper below is faithful)."""
    entry = _entry()
    opened = Keystore.decrypt(_reseal({"keys": [entry]}), PASSPHRASE)
    assert encode_ed25519_private_key(opened.current_key) == entry["secretKeyMultibase"]


BAD_PAYLOADS: list[tuple[str, dict[str, Any] | bytes]] = [
    ("not json", b"\x00\x01"),
    ("not an object", b"[]"),
    ("no keys", {"keys": []}),
    ("keys not a list", {"keys": {}}),
    ("key not object", {"keys": ["z3u2"]}),
    ("two current", {"keys": [_entry("a"), _entry("b")]}),
    ("none current", {"keys": [_entry("a", "retired", retired="2025-01-02T03:04:05Z")]}),
    ("retired without time", {"keys": [_entry("a", "retired"), _entry("b")]}),
    ("current with retired time", {"keys": [_entry("a", retired="2025-01-02T03:04:05Z")]}),
    ("unknown status", {"keys": [_entry("a", "revoked")]}),
    ("duplicate id", {"keys": [_entry("a", "retired", retired="2025-01-02T03:04:05Z"), _entry("a")]}),
    ("bad id", {"keys": [_entry("has space")]}),
    ("bad multikey", {"keys": [{**_entry(), "secretKeyMultibase": "z6MkNotAPrivateKey"}]}),
    (
        "public key",
        {
            "keys": [
                {
                    **_entry(),
                    "secretKeyMultibase": encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key),
                }
            ]
        },
    ),
    ("bad time", {"keys": [_entry(created="2025-01-02")]}),
    ("extra member", {"keys": [_entry(note="x")]}),
    ("extra top member", {"keys": [_entry()], "more": 1}),
]


@pytest.mark.parametrize("payload", [p for _, p in BAD_PAYLOADS], ids=[n for n, _ in BAD_PAYLOADS])
def test_malformed_payload_under_the_right_key_is_corrupted(payload: dict[str, Any] | bytes) -> None:
    """If the authenticated plaintext breaks the payload format, opening raises KeystoreCorrupted."""
    with pytest.raises(KeystoreCorrupted):
        Keystore.decrypt(_reseal(payload), PASSPHRASE)


def test_same_key_stored_twice_is_corrupted() -> None:
    """If the payload lists one private key under two ids, opening raises KeystoreCorrupted."""
    first = _entry("a", "retired", retired="2025-01-02T03:04:05Z")
    second = {**_entry("b"), "secretKeyMultibase": first["secretKeyMultibase"]}
    with pytest.raises(KeystoreCorrupted, match="twice"):
        Keystore.decrypt(_reseal({"keys": [first, second]}), PASSPHRASE)


def test_payload_with_wrong_header_digest_is_corrupted() -> None:
    """If the sealed header digest differs from the file's header, opening raises KeystoreCorrupted."""
    payload = json.dumps({"header": "00" * 32, "keys": [_entry()]}).encode()
    with pytest.raises(KeystoreCorrupted, match="header was altered"):
        Keystore.decrypt(_reseal(payload), PASSPHRASE)


# --- atomic writes ---------------------------------------------------------------------------


def test_file_mode_is_0600_even_with_a_permissive_umask(path: Path) -> None:
    """A new keystore file is readable and writable by its owner only, whatever the umask."""
    old = os.umask(0)
    try:
        Keystore.create(path, PASSPHRASE, params=KDF_TESTING)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replacing_a_0644_file_leaves_0600(created: Keystore, path: Path) -> None:
    """If an existing keystore was world-readable, saving over it leaves an owner-only file."""
    path.chmod(0o644)
    created.save(path, PASSPHRASE, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_create_refuses_an_existing_file(created: Keystore, path: Path) -> None:
    """If a file is already there, create raises KeystoreExists and leaves it byte for byte."""
    before = path.read_bytes()
    with pytest.raises(KeystoreExists):
        Keystore.create(path, "another passphrase", params=KDF_TESTING)
    assert path.read_bytes() == before
    assert _files(path.parent) == [path.name]


def test_create_with_overwrite_replaces(created: Keystore, path: Path) -> None:
    """With overwrite=True, create replaces the existing keystore."""
    new = Keystore.create(path, "another passphrase", params=KDF_TESTING, overwrite=True)
    assert Keystore.open(path, "another passphrase").current_key.seed == new.current_key.seed


def test_create_loses_a_race_without_clobbering(
    monkeypatch: pytest.MonkeyPatch, created: Keystore, path: Path
) -> None:
    """If the file appears after the early existence check, the hard-link step still refuses to replace it."""
    before = path.read_bytes()
    monkeypatch.setattr(os.path, "lexists", lambda p: False)
    with pytest.raises(KeystoreExists):
        Keystore.create(path, PASSPHRASE, params=KDF_TESTING)
    assert path.read_bytes() == before
    assert _files(path.parent) == [path.name]


def test_create_works_without_hard_links(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """On a file system without hard links, create falls back to a checked replace."""

    def no_links(src: object, dst: object) -> None:
        raise PermissionError("no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    made = Keystore.create(path, PASSPHRASE, params=KDF_TESTING)
    assert Keystore.open(path, PASSPHRASE).current_key.seed == made.current_key.seed
    assert _files(path.parent) == [path.name]


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Make one function (by module attribute) raise OSError."""

    def install(owner: str, name: str) -> None:
        target = {"os": os, "keystore": keystore_module}[owner]

        def boom(*args: object, **kwargs: object) -> None:
            raise OSError(f"injected failure in {name}")

        monkeypatch.setattr(target, name, boom)

    return install


@pytest.mark.parametrize(
    ("owner", "name"),
    [("os", "replace"), ("os", "fsync"), ("keystore", "secretbox_seal"), ("keystore", "derive_key_argon2id")],
)
@pytest.mark.parametrize("operation", ["rotate", "change_passphrase", "save"])
def test_failure_midway_leaves_the_old_file_intact(
    created: Keystore,
    path: Path,
    failing: Callable[[str, str], None],
    owner: str,
    name: str,
    operation: str,
) -> None:
    """If encryption, fsync or the final rename fails, the old file is intact byte for byte and no temp file is left."""
    before = path.read_bytes()
    failing(owner, name)
    with pytest.raises(OSError, match="injected"):
        if operation == "rotate":
            rotate_key(path, PASSPHRASE)
        elif operation == "change_passphrase":
            change_passphrase(path, PASSPHRASE, "new passphrase")
        else:
            created.save(path, "new passphrase", overwrite=True)
    assert path.read_bytes() == before
    assert _files(path.parent) == [path.name]


def test_no_temporary_file_is_left_after_saves(created: Keystore, path: Path) -> None:
    """After create, rotate and change_passphrase succeed, the directory holds only the keystore."""
    rotate_key(path, PASSPHRASE)
    change_passphrase(path, PASSPHRASE, "new passphrase")
    assert _files(path.parent) == [path.name]


# --- rotation, history and passphrase changes -----------------------------------------------


def test_rotation_keeps_history(created: Keystore, path: Path) -> None:
    """If the key is rotated twice, all three keys are kept, in order, with only the newest current."""
    first = created.current
    second = created.rotate(now=T0 + timedelta(days=1))
    third = created.rotate(Ed25519PrivateKey.generate(), now=T0 + timedelta(days=2))
    created.save(path, PASSPHRASE, overwrite=True)
    opened = Keystore.open(path, PASSPHRASE)
    assert [key.id for key in opened.keys] == ["key-1", "key-2", "key-3"]
    assert [key.status for key in opened.keys] == ["retired", "retired", "current"]
    assert _seeds(opened) == [k.private_key.seed for k in (first, second, third)]
    assert opened.current_key.seed == third.private_key.seed
    assert opened.keys[0].retired == second.created
    assert opened.keys[1].retired == third.created


def test_rotate_key_helper_persists(created: Keystore, path: Path) -> None:
    """rotate_key rotates the file in place, keeping the old key and the metadata."""
    new = Ed25519PrivateKey.generate()
    record = rotate_key(path, PASSPHRASE, new, key_id="device-key-2")
    opened = Keystore.open(path, PASSPHRASE)
    assert record.id == "device-key-2"
    assert opened.current_key.seed == new.seed
    assert opened.get("key-1") == created.current.__class__(
        "key-1", created.current_key, created.current.created, record.created
    )
    assert opened.did == DID


def test_rotate_refuses_a_key_already_stored(created: Keystore) -> None:
    """If the new key is one the keystore already holds, rotate raises KeystoreError and changes nothing."""
    before = created.keys
    with pytest.raises(KeystoreError, match="twice"):
        created.rotate(created.current_key)
    assert created.keys == before


def test_rotate_refuses_a_taken_id(created: Keystore) -> None:
    """If the new key's id is taken, rotate raises KeystoreError."""
    with pytest.raises(KeystoreError, match="unique"):
        created.rotate(key_id="key-1")


def test_default_ids_skip_taken_ones(created: Keystore) -> None:
    """Default ids count up as key-N and never reuse an id given by hand."""
    created.rotate(key_id="key-3")
    assert created.rotate().id == "key-4"
    assert [key.id for key in created.keys] == ["key-1", "key-3", "key-4"]


def test_get_and_find(created: Keystore) -> None:
    """Keys can be looked up by id and by public key; unknown ones give None."""
    old = created.current
    created.rotate()
    assert created.get("key-1") is not None
    assert created.get("key-1") == created.find(old.public_key)
    assert created.get("nope") is None
    assert created.find(Ed25519PrivateKey.generate().public_key) is None


def test_change_passphrase(created: Keystore, path: Path) -> None:
    """After change_passphrase, the old passphrase fails, the new one opens the same keys."""
    change_passphrase(path, PASSPHRASE, "new passphrase")
    with pytest.raises(WrongPassphrase):
        Keystore.open(path, PASSPHRASE)
    assert _seeds(Keystore.open(path, "new passphrase")) == _seeds(created)


def test_change_passphrase_with_wrong_old_passphrase_changes_nothing(created: Keystore, path: Path) -> None:
    """If the old passphrase is wrong, change_passphrase raises WrongPassphrase and leaves the file."""
    before = path.read_bytes()
    with pytest.raises(WrongPassphrase):
        change_passphrase(path, "wrong", "new passphrase")
    assert path.read_bytes() == before


def test_change_passphrase_can_change_the_cost(created: Keystore, path: Path) -> None:
    """change_passphrase can re-seal at a new cost, which the file then records."""
    params = KdfParams(2, 16 * 1024)
    change_passphrase(path, PASSPHRASE, "new passphrase", params=params)
    assert Keystore.open(path, "new passphrase").params == params


def test_resave_keeps_the_files_cost(created: Keystore, path: Path) -> None:
    """A keystore opened from a file is re-sealed at that file's cost unless told otherwise."""
    opened = Keystore.open(path, PASSPHRASE)
    opened.rotate()
    opened.save(path, PASSPHRASE, overwrite=True)
    assert Keystore.open(path, PASSPHRASE).params == KDF_TESTING


def test_metadata_can_be_set_after_creation(created: Keystore, path: Path) -> None:
    """Metadata set on an opened keystore (e.g. a did:trellis after registration) is saved and read back."""
    created.metadata["did"] = "did:trellis:testnet:abc"
    created.save(path, PASSPHRASE, overwrite=True)
    assert Keystore.open(path, PASSPHRASE).did == "did:trellis:testnet:abc"


@pytest.mark.parametrize(
    "metadata",
    [
        {"Bad": "x"},
        {"did": 1},
        {"": "x"},
        {"did": "x" * 5000},
        {f"k{i}": "v" for i in range(33)},
        {"did": "\ud800"},
    ],
    ids=["label case", "not text", "empty label", "too long", "too many", "lone surrogate"],
)
def test_bad_metadata_is_refused_on_save(path: Path, metadata: dict[str, Any]) -> None:
    """If metadata breaks the header rules, saving raises KeystoreError naming the file and writes nothing."""
    keystore = Keystore.new(params=KDF_TESTING)
    keystore.metadata.update(metadata)
    with pytest.raises(KeystoreError) as caught:
        keystore.save(path, PASSPHRASE)
    assert caught.value.path == str(path)
    assert not path.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: KeystoreKey("key 1", Ed25519PrivateKey.generate(), T0),
        lambda: KeystoreKey("", Ed25519PrivateKey.generate(), T0),
        lambda: KeystoreKey("key-1", Ed25519PrivateKey.generate(), datetime(2025, 1, 1)),
        lambda: KeystoreKey("key-1", b"\x00" * 32, T0),  # type: ignore[arg-type]
        lambda: Keystore([]),
        lambda: Keystore(
            [
                KeystoreKey("a", Ed25519PrivateKey.generate(), T0),
                KeystoreKey("b", Ed25519PrivateKey.generate(), T0),
            ]
        ),
        lambda: Keystore([KeystoreKey("a", Ed25519PrivateKey.generate(), T0, T1)]),
    ],
    ids=["space in id", "empty id", "naive time", "raw bytes key", "no keys", "two current", "none current"],
)
def test_invalid_in_memory_values_are_refused(make: Callable[[], object]) -> None:
    """If a key record or keystore is built against the rules, a KeystoreError says why."""
    with pytest.raises(KeystoreError):
        make()


# --- properties ------------------------------------------------------------------------------

_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


@st.composite
def _keystores(draw: st.DrawFn) -> Keystore:
    seeds = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6, unique=True))
    ids = draw(st.lists(_ids, min_size=len(seeds), max_size=len(seeds), unique=True))
    current = draw(st.integers(0, len(seeds) - 1))
    keys = [
        KeystoreKey(key_id, Ed25519PrivateKey(seed), draw(_times), None if i == current else draw(_times))
        for i, (key_id, seed) in enumerate(zip(ids, seeds, strict=True))
    ]
    labels = st.from_regex(r"[a-z][A-Za-z0-9_.-]{0,63}", fullmatch=True)
    values = st.text(st.characters(codec="utf-8"), max_size=64)
    metadata = draw(st.dictionaries(labels, values, max_size=4))
    return Keystore(keys, metadata=metadata, created=draw(_times), params=KDF_TESTING)


@settings(max_examples=60, deadline=None)
@given(_keystores(), st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_any_keystore_round_trips(keystore: Keystore, passphrase: str) -> None:
    """Any list of keys (one current), any metadata and any passphrase survive encrypt then decrypt."""
    opened = Keystore.decrypt(keystore.encrypt(passphrase), passphrase)
    assert opened.keys == keystore.keys
    assert opened.metadata == keystore.metadata
    assert opened.created == keystore.created
    assert opened.current.id == keystore.current.id


# --- passphrase input ------------------------------------------------------------------------


class Prompt:
    """A stand-in for getpass that answers from a list and records its prompts."""

    def __init__(self, *answers: str) -> None:
        self.answers: Iterator[str] = iter(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return next(self.answers)


def test_passphrase_comes_from_the_environment_first() -> None:
    """If TRELLIS_PASSPHRASE is set, it is returned and nobody is prompted."""
    prompt = Prompt()
    assert passphrase_from_env_or_prompt(environ={PASSPHRASE_ENV: "from env"}, prompt=prompt) == "from env"
    assert prompt.prompts == []


@pytest.mark.parametrize("environ", [{}, {PASSPHRASE_ENV: ""}], ids=["unset", "empty"])
def test_passphrase_is_prompted_without_the_environment(environ: dict[str, str]) -> None:
    """If TRELLIS_PASSPHRASE is unset or empty, the prompt's answer is returned, naming the file."""
    prompt = Prompt("typed")
    assert passphrase_from_env_or_prompt("w.keystore", environ=environ, prompt=prompt) == "typed"
    assert prompt.prompts == ["Passphrase for w.keystore: "]


def test_new_passphrase_is_confirmed() -> None:
    """With confirm=True the passphrase is asked twice and returned when both agree."""
    prompt = Prompt("typed", "typed")
    assert passphrase_from_env_or_prompt(confirm=True, environ={}, prompt=prompt) == "typed"
    assert len(prompt.prompts) == 2


@pytest.mark.parametrize(("answers", "reason"), [(("a", "b"), "differ"), (("",), "empty")])
def test_bad_confirmation_is_refused(answers: tuple[str, ...], reason: str) -> None:
    """With confirm=True, a mismatched or empty passphrase raises KeystoreError."""
    with pytest.raises(KeystoreError, match=reason):
        passphrase_from_env_or_prompt(confirm=True, environ={}, prompt=Prompt(*answers))


def test_a_malformed_secret_key_is_not_quoted_in_the_error() -> None:
    """A decrypted secretKeyMultibase of the wrong length (a 64-byte seed and public key, as other tools
    write) is refused without the secret in the message (the CLIs print it)."""
    seed = bytes(range(32))
    secret = encode_base58btc(ED25519_PRIV_HEADER + seed + bytes(Ed25519PrivateKey(seed).public_key))
    entry = {
        "id": "key-1",
        "secretKeyMultibase": secret,
        "created": "2025-01-01T00:00:00Z",
        "status": "current",
    }
    plaintext = json.dumps({"header": "d", "keys": [entry]}).encode()
    with pytest.raises(KeystoreCorrupted) as caught:
        _keystore_format.parse_payload(plaintext, "d", "<bytes>")
    assert "secretKeyMultibase" in str(caught.value)
    assert secret[:12] not in str(caught.value)

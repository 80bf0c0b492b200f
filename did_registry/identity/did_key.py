"""The did:key method (W3C CCG "The did:key Method v0.7") for Ed25519 keys.

``did:key:<mb>`` where ``<mb>`` is the Multikey form of the key: multibase base58btc of the
multicodec ``ed25519-pub`` header (``ed 01``) and the 32 raw key bytes, so every Ed25519 did:key
starts ``did:key:z6Mk``. Resolution expands the DID into a document with no I/O (§"Read"): one
signature method ``<did>#<mb>`` in ``authentication``, ``assertionMethod``, ``capabilityInvocation``
and ``capabilityDelegation`` and, when ``enable_encryption_key_derivation`` is on (the spec's
default), the X25519 key derived from it (RFC 7748 birational map) as ``<did>#<x25519 mb>`` in
``keyAgreement``.

Three representations are produced, each member for member as published:

* ``multikey`` (default): contexts ``did/v1`` + ``security/multikey/v1``, type ``Multikey``; with
  derivation off it equals Digital Bazaar's ``did-method-key`` 5.x output.
* ``legacy-2018``: ``Ed25519VerificationKey2018`` + ``X25519KeyAgreementKey2019`` with
  ``publicKeyBase58``, as in the spec's test vectors ``ed25519-x25519.json``.
* ``jwk-2020``: ``JsonWebKey2020`` with ``publicKeyJwk``, as in the same vectors (seed 5).

Only the bare form ``did:key:<mb>`` is accepted (no version segment, no other key type): a wrong
prefix, codec or length raises :class:`~did_registry.errors.InvalidDID` saying which (a value longer
than an ed25519-pub key's is refused before it is decoded), and 32 bytes that are not a point of the
Ed25519 curve's prime-order subgroup raise its subclass :class:`InvalidPublicKey`.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

from multiformats import multicodec, varint

from did_registry.errors import InvalidDID, InvalidKey, InvalidMultikey
from did_registry.identity import multibase, multikey
from did_registry.identity.crypto import ED25519_PUBLIC_KEY_SIZE, Ed25519PublicKey
from did_registry.identity.did import DID, parse_did
from did_registry.identity.did_document import DID_CONTEXT_V1, MULTIKEY_CONTEXT_V1, DIDDocument
from did_registry.identity.verification_method import MULTIKEY, VerificationMethod

__all__ = [
    "METHOD",
    "InvalidPublicKey",
    "Representation",
    "did_key",
    "public_key_from_did_key",
    "verification_method_id",
    "resolve_did_key",
]

METHOD: Final = "key"
"""The DID method name."""

_MULTIKEY_SIZE: Final = len(multikey.ED25519_PUB_HEADER) + ED25519_PUBLIC_KEY_SIZE


class InvalidPublicKey(InvalidDID):
    """A did:key whose 32 key bytes are not a valid Ed25519 public key: the did:key method's
    ``invalidPublicKey`` error ("Signature Method Creation Algorithm")."""


class Representation(StrEnum):
    """How :func:`resolve_did_key` writes the verification methods."""

    MULTIKEY = "multikey"
    LEGACY_2018 = "legacy-2018"
    JWK_2020 = "jwk-2020"


_SIGNATURE_ORDER = ("authentication", "assertionMethod", "capabilityDelegation", "capabilityInvocation")
_LEGACY_ORDER = ("assertionMethod", "authentication", "capabilityInvocation", "capabilityDelegation")
# representation -> (signature type, encryption type, contexts, contexts added with the encryption
# key, relationship order); the orders are those of the published documents.
_FORMS: Final[dict[Representation, tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    Representation.MULTIKEY: (
        MULTIKEY,
        MULTIKEY,
        (DID_CONTEXT_V1, MULTIKEY_CONTEXT_V1),
        (),
        _SIGNATURE_ORDER,
    ),
    Representation.LEGACY_2018: (
        "Ed25519VerificationKey2018",
        "X25519KeyAgreementKey2019",
        (DID_CONTEXT_V1, "https://w3id.org/security/suites/ed25519-2018/v1"),
        ("https://w3id.org/security/suites/x25519-2019/v1",),
        _LEGACY_ORDER,
    ),
    Representation.JWK_2020: (
        "JsonWebKey2020",
        "JsonWebKey2020",
        (DID_CONTEXT_V1, "https://w3id.org/security/suites/jws-2020/v1"),
        (),
        _LEGACY_ORDER,
    ),
}


def did_key(public_key: Ed25519PublicKey) -> DID:
    """Return the did:key of an Ed25519 public key (``did:key:z6Mk…``)."""
    return parse_did(f"did:key:{multikey.encode_ed25519_public_key(public_key)}")


def _codec_name(raw: bytes) -> str:
    try:
        code, _, _ = varint.decode_raw(raw)
        return f"{multicodec.get(code=code).name} (0x{code:x})"
    except (ValueError, KeyError):
        return f"unknown (bytes 0x{raw[:2].hex()})"


def public_key_from_did_key(did: DID | str) -> Ed25519PublicKey:
    """Return the Ed25519 key a did:key encodes; raise :class:`InvalidDID` saying what is wrong
    (:class:`InvalidPublicKey` when the key bytes are no valid Ed25519 public key)."""
    parsed = did if isinstance(did, DID) else parse_did(did)
    text, value = str(parsed), parsed.method_specific_id
    if parsed.method != METHOD:
        raise InvalidDID(text, f"not a did:key (the method is {parsed.method!r})")
    if ":" in value:
        raise InvalidDID(text, "a did:key has exactly one segment, did:key:<multibase key>")
    if not value.startswith("z"):
        raise InvalidDID(text, "a did:key must be multibase base58btc (start with 'z')")
    try:
        raw = multibase.decode_base58btc(value, max_size=_MULTIKEY_SIZE)
    except multibase.MultibaseError as exc:
        raise InvalidDID(text, f"not an ed25519-pub key: {exc}") from None
    if not raw.startswith(multikey.ED25519_PUB_HEADER):
        raise InvalidDID(text, f"unsupported multicodec {_codec_name(raw)}: only ed25519-pub (0xed)")
    try:
        key = multikey.decode_ed25519_public_key(value)
    except (InvalidMultikey, InvalidKey) as exc:
        raise InvalidDID(text, getattr(exc, "reason", str(exc))) from None
    if not key.is_valid_point():  # the codec and the length are right: the key itself is not
        raise InvalidPublicKey(text, multikey.NOT_A_VALID_POINT)
    return key


def verification_method_id(did: DID | str) -> str:
    """Return the id of a did:key's signature method: ``<did>#<multibase key>``."""
    parsed = did if isinstance(did, DID) else parse_did(did)
    public_key_from_did_key(parsed)
    return f"{parsed}#{parsed.method_specific_id}"


def resolve_did_key(
    did: DID | str,
    *,
    representation: Representation | str = Representation.MULTIKEY,
    enable_encryption_key_derivation: bool = True,
) -> DIDDocument:
    """Expand a did:key into its DID document (no I/O); raise :class:`InvalidDID` on a bad DID."""
    parsed = did if isinstance(did, DID) else parse_did(did)
    try:
        form = Representation(representation)
    except ValueError:
        choices = ", ".join(r.value for r in Representation)
        raise InvalidDID(
            str(parsed), f"unknown did:key representation {representation!r} ({choices})"
        ) from None
    return _resolve(parsed, form, bool(enable_encryption_key_derivation))


@lru_cache(maxsize=1024)
def _resolve(did: DID, form: Representation, derive: bool) -> DIDDocument:
    key = public_key_from_did_key(did)
    signature_type, encryption_type, contexts, encryption_contexts, order = _FORMS[form]
    text = str(did)
    signing = VerificationMethod(f"{text}#{did.method_specific_id}", signature_type, text, key)
    methods = [signing.to_json()]
    doc: dict[str, Any] = {"@context": list(contexts), "id": text, "verificationMethod": methods}
    for rel in order:
        doc[rel] = [signing.id]
    if derive:
        x25519 = key.to_x25519()
        fragment = multikey.encode_x25519_public_key(x25519)
        agreement = VerificationMethod(f"{text}#{fragment}", encryption_type, text, x25519)
        methods.append(agreement.to_json())
        doc["@context"].extend(encryption_contexts)
        doc["keyAgreement"] = [agreement.id]
    return DIDDocument(doc)

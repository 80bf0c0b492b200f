"""Ledger transactions: canonical JSON, identified by hash, signed by DID keys.

A transaction is a JSON object::

    {"type": "did.create", "network": "devnet", "submitter": "did:trellis:devnet:…", "nonce": 1,
     "body": {…}, "signatures": [{"verificationMethod": "did:…#key-1", "signature": "z…"}]}

Its *id* is the SHA-256 of the RFC 8785 (JCS) bytes of the transaction without ``signatures``, so
every signer of an m-of-n transaction signs the same thing. Each signature is Ed25519 over
``b"trellis/txn/v1\\x00" + id`` (the prefix separates transaction signatures from every other use of
a DID key), multibase base58btc. ``nonce`` is the submitter's, strictly increasing: a replayed or
duplicated transaction fails. Transaction types and their rules live in :mod:`did_registry.ledger.rules`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from did_registry.identity.jcs import canonicalize, holds_nul
from did_registry.identity.multibase import encode_base58btc

__all__ = [
    "MAX_TXN_BYTES",
    "MAX_TXN_DEPTH",
    "TXN_TYPES",
    "Signature",
    "Transaction",
    "TxnRejected",
    "signing_input",
]

MAX_TXN_BYTES = 256 * 1024
MAX_TXN_DEPTH = 32
"""Deepest nesting of arrays and objects in a transaction (the transaction object is depth 1).

Checked first, without recursion: a body nested deeper than the parsers' recursion goes would make
accepting it depend on how deep each node's stack happens to be, so honest validators could
disagree on one block. Documents and status updates need a handful of levels."""
_MAX_SIGNATURE = 100  # a base58btc Ed25519 signature is 'z' and at most 88 digits
_MAX_METHOD = 1024  # a DID URL naming a verification method
TXN_TYPES = frozenset(
    {
        "did.create",
        "did.update",
        "did.deactivate",
        "role.grant",
        "role.revoke",
        "status_list.create",
        "status_list.update",
        "trust.accredit",
        "trust.withdraw",
        "quarantine.report",
        "quarantine.clear",
        "validator.add",
        "validator.remove",
        "validator.rotate_key",
    }
)
_SIGNING_PREFIX = b"trellis/txn/v1\x00"


class TxnRejected(DidRegistryError):
    """A transaction is malformed, badly signed, not permitted, a replay or a conflict.

    ``code`` is one of ``malformed`` (HTTP 400), ``bad_signature`` (401), ``forbidden`` (403),
    ``replay`` and ``conflict`` (409), ``not_found`` (404 for the thing it refers to),
    ``payload_too_large`` (413: larger than the network's consensus takes), ``overloaded`` (503: the
    mempool is full).
    """

    HTTP_STATUS: ClassVar[dict[str, int]] = {
        "malformed": 400,
        "bad_signature": 401,
        "forbidden": 403,
        "not_found": 404,
        "payload_too_large": 413,
    }

    def __init__(self, code: str, detail: str, *, txn_id: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.txn_id = txn_id
        super().__init__(f"{code}: {detail}")

    @property
    def http_status(self) -> int:
        """The HTTP status an API answers with for this rejection."""
        return self.HTTP_STATUS.get(self.code, 409)


def signing_input(txn_id: bytes) -> bytes:
    """The bytes every signer of transaction ``txn_id`` signs."""
    return _SIGNING_PREFIX + txn_id


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature on a transaction: the verification method and the multibase signature."""

    verification_method: str
    signature: str

    def to_json(self) -> dict[str, str]:
        """The JSON form."""
        return {"verificationMethod": self.verification_method, "signature": self.signature}


def _malformed(detail: str) -> TxnRejected:
    return TxnRejected("malformed", detail)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A parsed transaction; ``canonical`` holds the JCS bytes its id is the hash of."""

    type: str
    network: str
    submitter: str
    nonce: int
    body: Mapping[str, Any]
    signatures: tuple[Signature, ...]
    canonical: bytes
    id_bytes: bytes
    _leaf: list[bytes] = field(default_factory=list, compare=False, repr=False)

    @property
    def leaf(self) -> bytes:
        """The JCS bytes of the signed transaction (its Merkle leaf and its consensus request),
        computed once per object.

        They are :attr:`canonical` with the ``signatures`` member put in its place: JCS writes an
        object's members in key order (``body``, ``network``, ``nonce``, ``signatures``,
        ``submitter``, ``type``), each as it would write the value alone, so only the signatures
        are encoded here, not the body again.
        """
        if not self._leaf:
            tail = b',"submitter":%s,"type":%s}' % (canonicalize(self.submitter), canonicalize(self.type))
            if self.canonical.endswith(tail):
                signatures = canonicalize([s.to_json() for s in self.signatures])
                leaf = b'%s,"signatures":%s%s' % (self.canonical[: -len(tail)], signatures, tail)
            else:  # not reached for a transaction made by from_json; kept as the definition
                leaf = canonicalize(self.to_json())
            self._leaf.append(leaf)
        return self._leaf[0]

    @property
    def id(self) -> str:
        """The transaction id: hex SHA-256 of the canonical unsigned transaction."""
        return self.id_bytes.hex()

    @classmethod
    def build(
        cls, txn_type: str, *, network: str, submitter: str, nonce: int, body: Mapping[str, Any]
    ) -> Transaction:
        """An unsigned transaction."""
        return cls.from_json(
            {"type": txn_type, "network": network, "submitter": submitter, "nonce": nonce, "body": dict(body)}
        )

    def unsigned_json(self) -> dict[str, Any]:
        """The transaction without signatures."""
        return {
            "type": self.type,
            "network": self.network,
            "submitter": self.submitter,
            "nonce": self.nonce,
            "body": self.body,
        }

    def to_json(self) -> dict[str, Any]:
        """The full JSON form, signatures included."""
        return {**self.unsigned_json(), "signatures": [s.to_json() for s in self.signatures]}

    def signed(self, key: Ed25519PrivateKey, verification_method: str) -> Transaction:
        """A copy with one more signature by ``key`` under ``verification_method``."""
        signature = Signature(verification_method, encode_base58btc(key.sign(signing_input(self.id_bytes))))
        return Transaction(
            self.type,
            self.network,
            self.submitter,
            self.nonce,
            self.body,
            (*self.signatures, signature),
            self.canonical,
            self.id_bytes,
        )

    @classmethod
    def from_json(cls, data: object) -> Transaction:
        """Parse and check the envelope of a transaction; raise ``TxnRejected('malformed')``."""
        if not isinstance(data, Mapping):
            raise _malformed("a transaction is a JSON object")
        if _deeper_than(data, MAX_TXN_DEPTH):
            raise _malformed(f"arrays and objects are nested more than {MAX_TXN_DEPTH} deep")
        unknown = set(data) - {"type", "network", "submitter", "nonce", "body", "signatures"}
        if unknown:
            raise _malformed(f"unknown members {sorted(unknown)}")
        txn_type, network, submitter = data.get("type"), data.get("network"), data.get("submitter")
        nonce, body = data.get("nonce"), data.get("body")
        if txn_type not in TXN_TYPES:
            raise _malformed(f"unknown transaction type {txn_type!r}")
        if not isinstance(network, str) or not network:
            raise _malformed("network must be a non-empty string")
        if not isinstance(submitter, str) or not submitter.startswith("did:"):
            raise _malformed("submitter must be a DID")
        if type(nonce) is not int or not 0 < nonce < 2**53:
            raise _malformed("nonce must be a positive integer below 2**53")
        if not isinstance(body, Mapping):
            raise _malformed("body must be a JSON object")
        signatures = _signatures(data.get("signatures", []))
        unsigned = {
            "type": txn_type,
            "network": network,
            "submitter": submitter,
            "nonce": nonce,
            "body": body,
        }
        try:
            canonical = canonicalize(unsigned)
        except DidRegistryError as exc:
            raise _malformed(f"not canonicalizable: {exc}") from None
        if holds_nul(canonical):  # PostgreSQL cannot store it while SQLite and memory can: refused alike
            raise _malformed("a string holds U+0000 (NUL)")
        if len(canonical) > MAX_TXN_BYTES:
            raise _malformed(f"transaction is {len(canonical)} bytes, more than {MAX_TXN_BYTES}")
        return cls(txn_type, network, submitter, nonce, body, signatures, canonical, sha256(canonical))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Transaction:
        """Parse a transaction from JSON bytes."""
        if len(raw) > 2 * MAX_TXN_BYTES:
            raise _malformed("transaction too large")
        try:
            return cls.from_json(json.loads(raw))
        except (ValueError, RecursionError) as exc:
            raise _malformed(f"not JSON: {exc}") from None


def _deeper_than(value: object, limit: int) -> bool:
    """Whether arrays and objects nest in ``value`` more than ``limit`` deep (level by level, no
    recursion: a limit set by how deep a node's stack happens to be would not be the same on every
    node). Every transaction parse runs it: only containers are visited twice."""
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            for child in item.values() if isinstance(item, Mapping) else item:
                kind = type(child)
                if kind is str or kind is int or kind is float or kind is bool or child is None:
                    continue
                if kind is dict or kind is list or isinstance(child, Mapping | list | tuple):
                    below.append(child)
        level = below
        depth += 1
    return False


def _signatures(value: object) -> tuple[Signature, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _malformed("signatures must be an array")
    if len(value) > 64:
        raise _malformed("at most 64 signatures")
    out = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"verificationMethod", "signature"}:
            raise _malformed("each signature is {verificationMethod, signature}")
        method, signature = item["verificationMethod"], item["signature"]
        if not isinstance(method, str) or not isinstance(signature, str) or not signature.startswith("z"):
            raise _malformed("signature members must be strings; signature is multibase base58btc")
        if len(signature) > _MAX_SIGNATURE or len(method) > _MAX_METHOD:  # before any decoding
            raise _malformed("a signature is at most 100 characters, its verificationMethod 1,024")
        if "\x00" in method or "\x00" in signature:
            raise _malformed("a string holds U+0000 (NUL)")
        if not (method.isascii() and signature.isascii()):  # a DID URL and base58: a lone surrogate
            raise _malformed("a signature's members are ASCII (a DID URL and base58btc)")  # broke SQL reads
        out.append(Signature(method, signature))
    return tuple(out)

"""Blocks, headers and commit certificates.

A header commits to everything a reader needs::

    {"network", "height", "previous_hash", "time", "proposer", "txn_count",
     "txn_root", "state_root", "validators_hash"}

``txn_root`` is the RFC 6962 Merkle root over the JCS bytes of the block's signed transactions, so
inclusion and consistency proofs work as in Certificate Transparency; ``state_root`` is the root of
the state map after the block; ``validators_hash`` names the set whose quorum certifies this block.
The block hash is SHA-256 of the header's JCS bytes. A commit certificate holds validators'
Ed25519 signatures over ``b"trellis/commit/v1\\x00" + block_hash``; it is valid with ``n - f``
distinct signatures of the set in force (one when ``n = 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from did_registry.errors import BadSignature, DidRegistryError
from did_registry.identity.crypto import ED25519_SIGNATURE_SIZE, Ed25519PrivateKey, sha256
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multibase import decode_base58btc, encode_base58btc
from did_registry.ledger import merkle
from did_registry.ledger.txn import Transaction
from did_registry.ledger.validators import ValidatorSet

__all__ = ["Block", "BlockHeader", "CommitCertificate", "InvalidCertificate", "commit_message"]

_COMMIT_PREFIX = b"trellis/commit/v1\x00"


class InvalidCertificate(DidRegistryError):
    """A commit certificate does not prove that a quorum of validators committed the block."""


def commit_message(block_hash: bytes) -> bytes:
    """The bytes a validator signs to commit the block with hash ``block_hash``."""
    return _COMMIT_PREFIX + block_hash


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """A block header (see the module docstring)."""

    network: str
    height: int
    previous_hash: str
    time: str
    proposer: str
    txn_count: int
    txn_root: str
    state_root: str
    validators_hash: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "network": self.network,
            "height": self.height,
            "previous_hash": self.previous_hash,
            "time": self.time,
            "proposer": self.proposer,
            "txn_count": self.txn_count,
            "txn_root": self.txn_root,
            "state_root": self.state_root,
            "validators_hash": self.validators_hash,
        }

    @classmethod
    def from_json(cls, data: Any) -> BlockHeader:
        """Parse a header; raise ``ValueError`` when a member is missing or of the wrong type."""
        if not isinstance(data, Mapping):
            raise ValueError("a block header is a JSON object")
        try:
            header = cls(**{name: data[name] for name in cls.__slots__})
        except KeyError as exc:
            raise ValueError(f"block header lacks {exc}") from None
        ints = (header.height, header.txn_count)
        strs = (header.network, header.previous_hash, header.time, header.proposer, header.txn_root)
        if not all(type(v) is int and v >= 0 for v in ints) or not all(isinstance(v, str) for v in strs):
            raise ValueError("block header members have the wrong types")
        if not isinstance(header.state_root, str) or not isinstance(header.validators_hash, str):
            raise ValueError("block header roots must be hex strings")
        return header

    @property
    def hash(self) -> bytes:
        """SHA-256 of the header's canonical bytes."""
        return sha256(canonicalize(self.to_json()))


@dataclass(frozen=True, slots=True)
class Block:
    """A header and the transactions it orders."""

    header: BlockHeader
    txns: tuple[Transaction, ...]

    @staticmethod
    def txn_leaves(txns: Sequence[Transaction]) -> list[bytes]:
        """The Merkle leaves of ``txns``: the JCS bytes of each signed transaction."""
        return [t.leaf for t in txns]

    @staticmethod
    def txn_root_of(txns: Sequence[Transaction]) -> str:
        """The RFC 6962 root over ``txns``, hex."""
        return merkle.root(Block.txn_leaves(txns)).hex()

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"header": self.header.to_json(), "txns": [t.to_json() for t in self.txns]}

    @classmethod
    def from_json(cls, data: Any) -> Block:
        """Parse a block and check that its transactions match its ``txn_root``.

        Each transaction is read back from its canonical bytes (JCS, what its id, signatures and the
        root commit to): a sender writing an integer as ``5.0`` sends the same bytes, so the block
        checks, but the rules would read a float and refuse what every other node executed."""
        if not isinstance(data, Mapping) or not isinstance(data.get("txns"), list):
            raise ValueError("a block is {header, txns}")
        txns = (Transaction.from_json(t) for t in data["txns"])
        block = cls(
            BlockHeader.from_json(data["header"]), tuple(Transaction.from_bytes(t.leaf) for t in txns)
        )
        if block.header.txn_count != len(block.txns) or cls.txn_root_of(block.txns) != block.header.txn_root:
            raise ValueError("the block's transactions do not match its header")
        return block


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """Validators' signatures committing the block with ``block_hash`` at ``height``."""

    height: int
    block_hash: str
    signatures: Mapping[str, str] = field(default_factory=dict)  # validator id -> multibase signature

    def to_json(self) -> dict[str, Any]:
        """The JSON form; signatures sorted by validator id."""
        return {
            "height": self.height,
            "block_hash": self.block_hash,
            "signatures": [
                {"validator": v, "signature": self.signatures[v]} for v in sorted(self.signatures)
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> CommitCertificate:
        """Parse a certificate; raise :class:`InvalidCertificate` when it is malformed."""
        try:
            signatures = {s["validator"]: s["signature"] for s in data["signatures"]}
            certificate = cls(data["height"], data["block_hash"], signatures)
        except (KeyError, TypeError) as exc:
            raise InvalidCertificate(f"malformed certificate: {exc}") from None
        if len(signatures) != len(data["signatures"]):
            raise InvalidCertificate("a validator signs a certificate once")
        return certificate

    @staticmethod
    def sign(block_hash: bytes, key: Ed25519PrivateKey) -> str:
        """One validator's commit signature over ``block_hash``."""
        return encode_base58btc(key.sign(commit_message(block_hash)))

    def verify(self, header: BlockHeader, validators: ValidatorSet) -> None:
        """Check that a quorum of ``validators`` signed ``header``; raise :class:`InvalidCertificate`."""
        block_hash = header.hash
        if self.height != header.height or self.block_hash != block_hash.hex():
            raise InvalidCertificate(f"certificate is for another block than height {header.height}")
        if header.validators_hash != validators.hash():
            raise InvalidCertificate("the header names another validator set than the one given")
        message = commit_message(block_hash)
        good = 0
        for validator_id, signature in self.signatures.items():
            validator = validators.by_id(validator_id)
            if validator is None:
                raise InvalidCertificate(f"{validator_id!r} is not a validator at height {header.height}")
            try:
                validator.key.verify(message, decode_base58btc(signature, max_size=ED25519_SIGNATURE_SIZE))
            except (BadSignature, ValueError) as exc:
                raise InvalidCertificate(f"bad signature by validator {validator_id}: {exc}") from None
            good += 1
        if good < validators.quorum:
            raise InvalidCertificate(f"{good} signature(s); height {header.height} needs {validators.quorum}")

"""Consensus messages, signed by their senders (``docs/consensus.md`` § Messages).

The types follow Castro & Liskov's PBFT (OSDI 1999, TOCS 2002): PRE-PREPARE, PREPARE, COMMIT,
CHECKPOINT, VIEW-CHANGE and NEW-VIEW, plus CERTIFY, which carries a validator's ledger commit
signature once the block is committed-local. REQUEST forwards client requests, and OVERTAKEN sends
the primary again those that later requests overtook (censorship detection); CERTIFICATE hands a
validator that is behind the certificate of a later block. The round-robin engine
has PROPOSE, VOTE and ROUND-CHANGE. The envelope (signing, strict parsing, :func:`encode` /
:func:`decode`) is in :mod:`did_registry.consensus.envelope`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from did_registry.consensus.envelope import (
    BLOB,
    CERTIFICATE,
    DIGEST,
    DOMAIN,
    HEIGHT,
    NAT,
    SIGNATURE,
    Codec,
    Message,
    decode,
    encode,
    listed,
    malformed,
    members,
    nested,
    optional,
)
from did_registry.ledger.block import CommitCertificate

__all__ = [
    "DOMAIN",
    "Message",
    "Request",
    "Certificate",
    "PrePrepare",
    "Prepare",
    "Commit",
    "Certify",
    "Checkpoint",
    "Overtaken",
    "PreparedCertificate",
    "ViewChange",
    "NewView",
    "Propose",
    "Vote",
    "RoundChange",
    "encode",
    "decode",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """REQUEST: client requests a validator received, forwarded to the others (opaque bytes)."""

    TYPE: ClassVar[str] = "request"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("requests", listed(BLOB, 1)),)
    requests: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate(Message):
    """CERTIFICATE: the commit certificate of the sender's last block, for a validator that is behind
    (the certificate proves itself; the signature only says who sent it)."""

    TYPE: ClassVar[str] = "certificate"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("certificate", CERTIFICATE),)
    certificate: CommitCertificate


# -- PBFT ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PrePrepare(Message):
    """PRE-PREPARE(v, n, d, block): the primary of view ``view`` assigns ``seq`` to the block."""

    TYPE: ClassVar[str] = "pbft/pre-prepare"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (
        ("view", NAT),
        ("seq", HEIGHT),
        ("digest", DIGEST),
        ("block", BLOB),
    )
    view: int
    seq: int
    digest: bytes
    block: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare(Message):
    """PREPARE(v, n, d): a backup accepted the primary's PRE-PREPARE."""

    TYPE: ClassVar[str] = "pbft/prepare"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("view", NAT), ("seq", HEIGHT), ("digest", DIGEST))
    view: int
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(Message):
    """COMMIT(v, n, d): the sender is prepared (the pre-prepare and a quorum of prepares)."""

    TYPE: ClassVar[str] = "pbft/commit"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("view", NAT), ("seq", HEIGHT), ("digest", DIGEST))
    view: int
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Certify(Message):
    """CERTIFY(n, d, sig): the sender committed the block locally; sig is its ledger commit signature."""

    TYPE: ClassVar[str] = "pbft/certify"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (
        ("seq", HEIGHT),
        ("digest", DIGEST),
        ("commit_signature", SIGNATURE),
    )
    seq: int
    digest: bytes
    commit_signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint(Message):
    """CHECKPOINT(n, d): the sender executed block ``seq`` (a multiple of K), whose digest is ``digest``."""

    TYPE: ClassVar[str] = "pbft/checkpoint"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("seq", HEIGHT), ("digest", DIGEST))
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Overtaken(Message):
    """OVERTAKEN: a backup's pending requests that later ones overtook, sent again to the primary
    (which admits them even when its pool is full, within the sender's share)."""

    TYPE: ClassVar[str] = "pbft/overtaken"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("requests", listed(BLOB, 1)),)
    requests: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """P_m: a PRE-PREPARE and the matching PREPAREs that made its holder prepared."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"pre_prepare": self.pre_prepare.to_json(), "prepares": [p.to_json() for p in self.prepares]}

    @classmethod
    def from_json_as(cls, data: Any) -> PreparedCertificate:
        """Parse strictly; raise :class:`InvalidMessage`."""
        data = members(data, frozenset({"pre_prepare", "prepares"}), "a prepared certificate")
        prepares = listed(nested(Prepare)).load(data["prepares"], "prepares")
        return cls(PrePrepare.from_json_as(data["pre_prepare"]), prepares)


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewChange(Message):
    """VIEW-CHANGE(v, C, P): the sender leaves its view for ``view``.

    ``executed`` is the commit certificate of the last block it executed (it stands in for the
    checkpoint proof C: it fixes every block up to that height); ``prepared`` is its prepared
    certificate for the next height, if it has one (P).
    """

    TYPE: ClassVar[str] = "pbft/view-change"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (
        ("view", HEIGHT),
        ("executed", optional(CERTIFICATE)),
        ("prepared", optional(nested(PreparedCertificate))),
    )
    view: int
    executed: CommitCertificate | None
    prepared: PreparedCertificate | None

    @property
    def height(self) -> int:
        """The height the ``executed`` certificate proves (0 without one)."""
        return self.executed.height if self.executed is not None else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NewView(Message):
    """NEW-VIEW(v, V, O): the primary of ``view`` proves the view change with a quorum of VIEW-CHANGEs
    (V) and re-issues the block prepared at the next height, if any (O)."""

    TYPE: ClassVar[str] = "pbft/new-view"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (
        ("view", HEIGHT),
        ("view_changes", listed(nested(ViewChange), 1)),
        ("pre_prepare", optional(nested(PrePrepare))),
    )
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepare: PrePrepare | None


# -- round robin -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Propose(Message):
    """PROPOSE(h, r, block): the proposer of round ``round`` at ``height`` offers a block."""

    TYPE: ClassVar[str] = "round-robin/propose"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (("height", HEIGHT), ("round", NAT), ("block", BLOB))
    height: int
    round: int
    block: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote(Message):
    """VOTE(h, r, d, sig): the sender accepted the round's block; sig is its ledger commit signature."""

    TYPE: ClassVar[str] = "round-robin/vote"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (
        ("height", HEIGHT),
        ("round", NAT),
        ("digest", DIGEST),
        ("commit_signature", SIGNATURE),
    )
    height: int
    round: int
    digest: bytes
    commit_signature: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundChange(Message):
    """ROUND-CHANGE(h, r, accepted): the sender moves to ``round`` and reports the block it last
    accepted at ``height`` (with that block's round), so the next proposer offers it again."""

    TYPE: ClassVar[str] = "round-robin/round-change"
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = (
        ("height", HEIGHT),
        ("round", HEIGHT),
        ("accepted_round", optional(NAT)),
        ("accepted_block", optional(BLOB)),
    )
    height: int
    round: int
    accepted_round: int | None
    accepted_block: bytes | None

    def check(self) -> None:
        """The accepted round and block are both set or both null, and the round is an earlier one."""
        if (self.accepted_round is None) != (self.accepted_block is None):
            raise malformed("'accepted_round' and 'accepted_block' are both set or both null")
        if self.accepted_round is not None and self.accepted_round >= self.round:
            raise malformed("'accepted_round' must be below 'round'")

"""Hand-made PBFT messages from the peers of a four-validator net, for the handler tests."""

from __future__ import annotations

from did_registry.consensus import PBFT
from did_registry.consensus.messages import Certify, Commit, Prepare, PrePrepare
from did_registry.identity.crypto import sha256
from did_registry.ledger.block import CommitCertificate
from tests.did_registry.consensus.conftest import Net
from tests.did_registry.consensus.fake_app import make_block

__all__ = ["BLOCK", "DIGEST", "certify", "pre_prepare", "prepared_backup", "vote"]

BLOCK = make_block(1, [b"req-1"])
DIGEST = sha256(BLOCK)


def pre_prepare(
    net: Net, block: bytes = BLOCK, *, view: int = 0, seq: int = 1, sender: str | None = None
) -> PrePrepare:
    """A PRE-PREPARE signed by the primary of ``view`` (or by ``sender``)."""
    who = sender or net.ids[view % 4]
    return net.sign(PrePrepare(sender=who, view=view, seq=seq, digest=sha256(block), block=block))


def vote(
    net: Net,
    kind: type[Prepare] | type[Commit],
    sender: str,
    digest: bytes = DIGEST,
    *,
    view: int = 0,
    seq: int = 1,
) -> Prepare | Commit:
    """A PREPARE or COMMIT signed by ``sender``."""
    return net.sign(kind(sender=sender, view=view, seq=seq, digest=digest))


def certify(net: Net, sender: str, digest: bytes = DIGEST, seq: int = 1) -> Certify:
    """A CERTIFY with ``sender``'s real commit signature."""
    signature = CommitCertificate.sign(digest, net.keys[sender])
    return net.sign(Certify(sender=sender, seq=seq, digest=digest, commit_signature=signature))


def prepared_backup(net: Net) -> PBFT:
    """v1 (a backup in view 0) prepared at height 1: it holds the PRE-PREPARE and two PREPAREs."""
    engine = net.pbft("v1")
    engine.on_tick(0.0)
    engine.on_message("v0", pre_prepare(net))
    engine.on_message("v2", vote(net, Prepare, "v2"))
    engine.on_message("v3", vote(net, Prepare, "v3"))
    return engine

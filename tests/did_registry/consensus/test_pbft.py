"""PBFT handlers one by one, fed by hand-made messages from honest and hostile peers (n = 4, f = 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from did_registry.consensus import encode
from did_registry.consensus.base import SetTimer
from did_registry.consensus.messages import (
    Certify,
    Commit,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
)
from did_registry.consensus.quorum import Quorum
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from tests.did_registry.consensus.conftest import TESTING, Net, committed, sent
from tests.did_registry.consensus.fake_app import make_block
from tests.did_registry.consensus.peers import BLOCK, DIGEST, certify, pre_prepare, prepared_backup, vote


class TestNormalCase:
    def test_backup_walks_the_three_phases_and_executes(self, net4: Net) -> None:
        """A backup prepares, commits, certifies and executes block 1 with a valid quorum certificate."""
        engine = net4.pbft("v1")
        engine.on_tick(0.0)
        out = engine.on_message("v0", pre_prepare(net4))
        assert [(p.view, p.seq, p.digest) for p in sent(out, Prepare)] == [(0, 1, DIGEST)]
        out = engine.on_message("v2", vote(net4, Prepare, "v2"))  # its own PREPARE and v2's: q - 1
        assert [c.digest for c in sent(out, Commit)] == [DIGEST]
        assert sent(engine.on_message("v2", vote(net4, Commit, "v2")), Certify) == []
        out = engine.on_message("v3", vote(net4, Commit, "v3"))
        [own] = sent(out, Certify)
        assert Quorum(net4.validators).commit_signature_ok("v1", DIGEST, own.commit_signature)
        engine.on_message("v2", certify(net4, "v2"))
        out = engine.on_message("v3", certify(net4, "v3"))
        [done] = committed(out)
        assert (done.height, done.block) == (1, BLOCK) and engine.height == 1
        assert sorted(done.certificate.signatures) == ["v1", "v2", "v3"]
        assert Quorum(net4.validators).check_certificate(done.certificate) == DIGEST

    def test_primary_batches_by_time(self, net4: Net) -> None:
        """The primary forwards a request at once and proposes it when the batch timeout passes."""
        engine = net4.pbft("v0")
        engine.on_tick(0.0)
        out = engine.on_request(b"req-1")
        assert [m.requests for m in sent(out, Request)] == [(b"req-1",)]
        assert sent(out, PrePrepare) == [] and SetTimer("batch", TESTING.batch_timeout) in out
        out = engine.on_tick(TESTING.batch_timeout)
        [proposal] = sent(out, PrePrepare)
        assert (proposal.view, proposal.seq) == (0, 1) and net4.apps["v0"].requests(proposal.block) == [
            b"req-1"
        ]

    def test_primary_batches_by_size(self, net4: Net) -> None:
        """With batch_size requests waiting, the primary proposes without waiting for the timeout."""
        engine = net4.pbft("v0", replace(TESTING, batch_size=2))
        engine.on_tick(0.0)
        engine.on_request(b"a")
        [proposal] = sent(engine.on_request(b"b"), PrePrepare)
        assert net4.apps["v0"].requests(proposal.block) == [b"a", b"b"]

    def test_next_block_waits_until_the_previous_one_is_applied(self, net4: Net) -> None:
        """After committing h the primary asks for a tick and only then proposes h + 1 (on the applied head)."""
        engine = net4.pbft("v0", replace(TESTING, batch_size=1))
        engine.on_tick(0.0)
        [first] = sent(engine.on_request(b"a"), PrePrepare)
        engine.on_request(b"b")
        digest = first.digest
        for v in ("v1", "v2"):
            engine.on_message(v, vote(net4, Prepare, v, digest))
        for v in ("v1", "v2"):
            engine.on_message(v, vote(net4, Commit, v, digest))
        engine.on_message("v1", certify(net4, "v1", digest))
        out = engine.on_message("v2", certify(net4, "v2", digest))
        assert [c.height for c in committed(out)] == [1] and sent(out, PrePrepare) == []
        assert SetTimer("continue", 0.0) in out
        net4.apps["v0"].apply(1, first.block)
        [second] = sent(engine.on_tick(0.0), PrePrepare)
        assert second.seq == 2 and net4.apps["v0"].requests(second.block) == [b"b"]

    def test_rejected_requests_are_not_kept(self, net4: Net) -> None:
        """A request the application refuses is dropped and not forwarded."""
        engine = net4.pbft("v1")
        assert sent(engine.on_request(b"bad-1"), Request) == []
        assert engine.pending == 0 and engine.dropped["rejected-request"] == 1


class TestHostilePeers:
    def test_pre_prepare_from_a_backup_is_dropped(self, net4: Net) -> None:
        """A PRE-PREPARE signed by a backup (not the primary of its view) is ignored."""
        engine = net4.pbft("v1")
        assert sent(engine.on_message("v2", pre_prepare(net4, sender="v2")), Prepare) == []
        assert engine.dropped["not-primary"] == 1

    def test_pre_prepare_with_another_digest_is_dropped(self, net4: Net) -> None:
        """A PRE-PREPARE whose digest is not its block's is ignored."""
        engine = net4.pbft("v1")
        bad = net4.sign(replace(pre_prepare(net4), digest=sha256(b"other")))
        assert sent(engine.on_message("v0", bad), Prepare) == [] and engine.dropped["bad-digest"] == 1

    def test_equivocating_primary_gets_one_prepare(self, net4: Net) -> None:
        """A second PRE-PREPARE for the same view and height with another block is refused."""
        engine = net4.pbft("v1")
        assert len(sent(engine.on_message("v0", pre_prepare(net4)), Prepare)) == 1
        twin = pre_prepare(net4, make_block(1, [b"req-twin"]))
        assert sent(engine.on_message("v0", twin), Prepare) == [] and engine.dropped["equivocation"] == 1

    def test_invalid_block_is_not_prepared_and_starts_the_timer(self, net4: Net) -> None:
        """A block the application rejects is not prepared; the validator starts its view-change timer."""
        engine = net4.pbft("v1")
        engine.on_tick(0.0)
        out = engine.on_message("v0", pre_prepare(net4, make_block(2, [b"x"])))
        assert sent(out, Prepare) == [] and engine.dropped["invalid-block"] == 1
        assert SetTimer("progress", TESTING.view_change_timeout) in out

    @pytest.mark.parametrize("fault", ["forged", "outsider", "tampered"])
    def test_badly_signed_votes_do_not_count(self, net4: Net, fault: str) -> None:
        """PREPAREs forged under v3's name, from a non-validator, or altered after signing, do not count."""
        engine = net4.pbft("v1")
        engine.on_message("v0", pre_prepare(net4))
        engine.on_message("v2", vote(net4, Prepare, "v2"))
        honest = Prepare(sender="v3", view=0, seq=1, digest=DIGEST)
        if fault == "forged":
            bad = honest.signed(net4.keys["v2"])
        elif fault == "outsider":
            bad = replace(honest, sender="mallory").signed(Ed25519PrivateKey(bytes(32)))
        else:
            bad = replace(net4.sign(honest), seq=2)
        assert sent(engine.on_message("v3", bad), Commit) == []
        assert engine.dropped["unknown-sender" if fault == "outsider" else "bad-signature"] == 1

    def test_a_validator_votes_once(self, net4: Net) -> None:
        """A second PREPARE from v3 for another digest is refused, so v3 cannot count twice."""
        engine = net4.pbft("v1")
        engine.on_message("v0", pre_prepare(net4))
        engine.on_message("v3", vote(net4, Prepare, "v3", sha256(b"other")))
        engine.on_message("v3", vote(net4, Prepare, "v3"))
        assert engine.dropped["equivocation"] == 1
        assert sent(engine.on_message("v0", vote(net4, Prepare, "v0")), Commit) == []
        assert engine.dropped["prepare-from-primary"] == 1

    def test_votes_outside_the_window_are_dropped(self, net4: Net) -> None:
        """Votes beyond the high watermark are dropped; votes for a later view are kept for when it starts."""
        engine = net4.pbft("v1")
        engine.on_message("v2", vote(net4, Prepare, "v2", seq=engine.high + 1))
        assert engine.dropped["outside-watermarks"] == 1
        engine.on_message("v2", vote(net4, Prepare, "v2", view=1))
        assert engine.dropped == {"outside-watermarks": 1}, "a later view's vote is kept for later"

    def test_certify_with_a_bad_commit_signature_is_dropped(self, net4: Net) -> None:
        """CERTIFYs carrying commit signatures over another digest never make a certificate."""
        engine = net4.pbft("v1")
        engine.on_message("v0", pre_prepare(net4))
        for v in ("v0", "v2", "v3"):
            forged = replace(certify(net4, v, sha256(b"other")), digest=DIGEST)
            assert committed(engine.on_message(v, net4.sign(forged))) == []
        assert engine.dropped["bad-commit-signature"] == 3 and engine.height == 0

    def test_hostile_bytes_never_raise(self, net4: Net) -> None:
        """Junk, truncated and oversized payloads are counted as dropped, never raised."""
        engine = net4.pbft("v1", replace(TESTING, max_message_bytes=2048))
        good = encode(pre_prepare(net4))
        for payload in (b"\x00junk", good[:-7], b"{}", b'{"type":"pbft/prepare"}', b"x" * 4096):
            assert engine.on_payload("v0", payload) == []
        assert engine.dropped == {"malformed": 4, "oversized": 1}

    def test_replayed_messages_after_execution_are_harmless(self, net4: Net) -> None:
        """Replaying the PRE-PREPARE and votes of an executed height changes nothing."""
        engine = prepared_backup(net4)
        for v in ("v2", "v3"):
            engine.on_message(v, vote(net4, Commit, v))
        for v in ("v2", "v3"):
            engine.on_message(v, certify(net4, v))
        net4.apps["v1"].apply(1, BLOCK)
        for message in (
            pre_prepare(net4),
            vote(net4, Prepare, "v2"),
            vote(net4, Commit, "v3"),
            certify(net4, "v2"),
        ):
            out = engine.on_message(message.sender, message)
            assert sent(out, Prepare) == [] and sent(out, Commit) == [] and committed(out) == []
        assert engine.height == 1


# -- votes before any PRE-PREPARE, and the blocks kept (a byzantine backup or primary) ---------------
def test_a_junk_prepare_before_the_pre_prepare_does_not_stop_the_primary(net4: Net) -> None:
    """A backup's PREPARE for (v, h + 1) with a made-up digest, sent before the primary proposed, made
    a slot the primary then took for its own proposal: it never proposed in that view again."""
    primary = net4.pbft("v0")
    primary.on_tick(0.0)
    primary.on_message("v3", net4.sign(Prepare(sender="v3", view=0, seq=1, digest=b"\x13" * 32)))
    primary.on_request(b"req-1")
    out = primary.on_tick(TESTING.batch_timeout)
    assert len(sent(out, PrePrepare)) == 1 and primary.view == 0


def test_a_junk_prepare_does_not_make_an_idle_backup_leave_its_view(net4: Net) -> None:
    """Votes alone, with no PRE-PREPARE behind them, are no block in flight: nothing to wait for."""
    backup = net4.pbft("v1")
    backup.on_tick(0.0)
    backup.on_message("v3", net4.sign(Prepare(sender="v3", view=0, seq=7, digest=b"\x01" * 32)))
    out = []
    for t in (5.0, 10.0, 20.0):
        out += backup.on_tick(t)
    assert sent(out, ViewChange) == [] and backup.view == 0


def test_a_primary_keeps_one_block_per_height_and_no_more_bytes_than_allowed(net4: Net) -> None:
    """Blocks kept out of the slots (for certificates that may name them later) are one per (v, n):
    another digest for the same height is equivocation; and they stay within max_kept_block_bytes."""
    config = replace(TESTING, max_kept_block_bytes=10_000)
    backup = net4.pbft("v1", config)
    backup.on_tick(0.0)
    high = config.watermark_window
    for i in range(50):  # the primary of view 0 offers 50 different blocks for one height
        block = i.to_bytes(4, "big") * 500
        backup.on_message(
            "v0", net4.sign(PrePrepare(sender="v0", view=0, seq=high, digest=sha256(block), block=block))
        )
    assert len(backup._log.blocks) == 1 and backup.dropped.get("equivocation") == 49
    for seq in range(2, high):  # and one block for each of many heights, 2,000 bytes each
        block = seq.to_bytes(4, "big") * 500
        backup.on_message(
            "v0", net4.sign(PrePrepare(sender="v0", view=0, seq=seq, digest=sha256(block), block=block))
        )
    assert backup._log.block_bytes <= config.max_kept_block_bytes + 2_000  # slots keep theirs regardless

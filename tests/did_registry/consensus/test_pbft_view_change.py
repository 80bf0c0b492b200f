"""PBFT view changes, checkpoints, state transfer and restarts, with hostile peers (n = 4, f = 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from did_registry.consensus import PBFT, ConsensusConfig
from did_registry.consensus.messages import (
    Certificate,
    Checkpoint,
    Commit,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
)
from did_registry.identity.crypto import sha256
from did_registry.ledger.block import CommitCertificate, InvalidCertificate
from tests.did_registry.consensus.conftest import TESTING, Net, need_state, sent
from tests.did_registry.consensus.fake_app import FakeApp, make_block
from tests.did_registry.consensus.peers import BLOCK, DIGEST, certify, pre_prepare, prepared_backup, vote


class TestViewChange:
    def test_silent_primary_is_voted_out(self, net4: Net) -> None:
        """A backup with a pending request and no progress sends VIEW-CHANGE(1) when its timer fires."""
        engine = net4.pbft("v1")
        engine.on_tick(0.0)
        engine.on_request(b"req-1")
        assert sent(engine.on_tick(TESTING.view_change_timeout - 0.01), ViewChange) == []
        [change] = sent(engine.on_tick(TESTING.view_change_timeout), ViewChange)
        assert (change.view, change.executed, change.prepared) == (1, None, None)
        assert not engine.active and engine.view == 1

    def test_view_change_carries_the_prepared_certificate(self, net4: Net) -> None:
        """A validator prepared at h + 1 puts the PRE-PREPARE and its PREPAREs in its VIEW-CHANGE (P)."""
        engine = prepared_backup(net4)
        [change] = sent(engine.on_tick(TESTING.view_change_timeout), ViewChange)
        assert change.prepared is not None and change.prepared.pre_prepare.digest == DIGEST
        assert sorted(p.sender for p in change.prepared.prepares) == ["v1", "v2"]  # prepared on the second

    def test_f_plus_one_view_changes_make_a_validator_join(self, net4: Net) -> None:
        """Two VIEW-CHANGEs (f + 1) for view 1 make v3 join at once; one alone does not."""
        engine = net4.pbft("v3")
        change = {
            v: net4.sign(ViewChange(sender=v, view=1, executed=None, prepared=None)) for v in ("v1", "v2")
        }
        assert sent(engine.on_message("v1", change["v1"]), ViewChange) == []
        [own] = sent(engine.on_message("v2", change["v2"]), ViewChange)
        assert own.view == 1 and not engine.active

    def test_one_byzantine_cannot_force_far_views(self, net4: Net) -> None:
        """VIEW-CHANGEs for views 5 to 50 from one validator leave the others in view 0."""
        engine = net4.pbft("v3")
        for view in range(5, 51):
            engine.on_message(
                "v0", net4.sign(ViewChange(sender="v0", view=view, executed=None, prepared=None))
            )
        assert engine.view == 0 and engine.active

    def test_new_primary_reissues_the_prepared_block(self, net4: Net) -> None:
        """The primary of view 1, given a quorum of VIEW-CHANGEs one of which holds P, re-issues that block (O)."""
        primary = prepared_backup(net4)  # v1 is the primary of view 1
        [own] = sent(primary.on_tick(TESTING.view_change_timeout), ViewChange)
        for v in ("v2", "v3"):
            out = primary.on_message(v, net4.sign(ViewChange(sender=v, view=1, executed=None, prepared=None)))
        [new_view] = sent(out, NewView)
        assert new_view.pre_prepare is not None and new_view.pre_prepare.block == BLOCK
        assert (new_view.pre_prepare.view, new_view.pre_prepare.seq) == (1, 1)
        assert own in new_view.view_changes and len(new_view.view_changes) == 3
        assert primary.active and primary.view == 1

    def _new_view(self, net4: Net, *, reissue: bool, prepared: bool = True) -> NewView:
        engine = prepared_backup(net4)
        [change_v1] = sent(engine.on_tick(TESTING.view_change_timeout), ViewChange)
        if not prepared:
            change_v1 = net4.sign(replace(change_v1, prepared=None))
        others = tuple(
            net4.sign(ViewChange(sender=v, view=1, executed=None, prepared=None)) for v in ("v2", "v0")
        )
        issued = (
            net4.sign(PrePrepare(sender="v1", view=1, seq=1, digest=DIGEST, block=BLOCK)) if reissue else None
        )
        return net4.sign(NewView(sender="v1", view=1, view_changes=(change_v1, *others), pre_prepare=issued))

    def test_backup_accepts_a_valid_new_view_and_prepares_o(self, net4: Net) -> None:
        """A backup in view change accepts a NEW-VIEW matching its VIEW-CHANGEs and prepares the O block."""
        engine = net4.pbft("v2")
        engine.on_tick(0.0)
        engine.on_request(b"req-1")
        engine.on_tick(TESTING.view_change_timeout)
        out = engine.on_message("v1", self._new_view(net4, reissue=True))
        assert engine.active and engine.view == 1
        assert [(p.view, p.seq, p.digest) for p in sent(out, Prepare)] == [(1, 1, DIGEST)]

    @pytest.mark.parametrize(
        "fault", ["fresh-o", "extra-o", "from-backup", "too-few", "repeated", "oversized"]
    )
    def test_bad_new_views_are_refused(self, net4: Net, fault: str) -> None:
        """A NEW-VIEW that drops the prepared block, invents one, comes from a backup, lacks a quorum
        of distinct VIEW-CHANGEs, or holds more than n, is refused."""
        if fault == "fresh-o":
            message = net4.sign(
                replace(
                    self._new_view(net4, reissue=True),
                    pre_prepare=pre_prepare(net4, make_block(1, [b"new"]), view=1),
                )
            )
        elif fault == "extra-o":
            message = self._new_view(net4, reissue=True, prepared=False)
        else:
            message = self._new_view(net4, reissue=True)
            if fault == "from-backup":
                message = replace(message, sender="v2").signed(net4.keys["v2"])
            elif fault == "too-few":
                message = net4.sign(replace(message, view_changes=message.view_changes[:2]))
            elif fault == "oversized":
                message = net4.sign(replace(message, view_changes=message.view_changes * 2))
            else:
                message = net4.sign(
                    replace(message, view_changes=(*message.view_changes[:2], message.view_changes[1]))
                )
        engine = net4.pbft("v3")
        engine.on_message(message.sender, message)
        assert engine.view == 0 and engine.dropped["invalid-new-view"] == 1

    @pytest.mark.parametrize(
        "fault", ["forged-certificate", "short-prepared", "not-from-primary", "wrong-height"]
    )
    def test_bogus_view_changes_are_refused(self, net4: Net, fault: str) -> None:
        """VIEW-CHANGEs with a forged certificate or a prepared certificate that proves nothing are dropped."""
        engine = prepared_backup(net4)
        [change] = sent(engine.on_tick(TESTING.view_change_timeout), ViewChange)
        assert change.prepared is not None
        if fault == "forged-certificate":
            fake = {v: CommitCertificate.sign(DIGEST, net4.keys["v3"]) for v in net4.ids}
            bogus = replace(change, executed=CommitCertificate(9, DIGEST.hex(), fake))
        elif fault == "short-prepared":
            bogus = replace(
                change,
                prepared=PreparedCertificate(change.prepared.pre_prepare, change.prepared.prepares[:1]),
            )
        elif fault == "not-from-primary":
            bogus = replace(
                change, prepared=replace(change.prepared, pre_prepare=pre_prepare(net4, sender="v3"))
            )
        else:
            bogus = replace(change, prepared=replace(change.prepared, pre_prepare=pre_prepare(net4, seq=2)))
        other = net4.pbft("v3")
        other.on_message("v1", net4.sign(bogus))
        assert other.dropped["invalid-view-change"] == 1

    def test_lagging_peer_gets_the_new_view(self, net4: Net) -> None:
        """A validator in view 1 answers a VIEW-CHANGE for view 1 from a late peer with its NEW-VIEW."""
        engine = net4.pbft("v2")
        engine.on_tick(0.0)
        engine.on_message("v1", self._new_view(net4, reissue=True))
        late = net4.sign(ViewChange(sender="v0", view=1, executed=None, prepared=None))
        assert [m.view for m in sent(engine.on_message("v0", late), NewView)] == [1]


def _execute(net: Net, engine: PBFT, seq: int) -> None:
    block = make_block(seq, [b"req-%d" % seq])
    digest = sha256(block)
    engine.on_message(net.ids[0], pre_prepare(net, block, seq=seq))
    for v in ("v2", "v3"):
        engine.on_message(v, vote(net, Prepare, v, digest, seq=seq))
    for v in ("v2", "v3"):
        engine.on_message(v, vote(net, Commit, v, digest, seq=seq))
    for v in ("v2", "v3"):
        engine.on_message(v, certify(net, v, digest, seq))
    net.apps[engine.validator_id].apply(seq, block)
    engine.on_tick(0.0)


class TestCheckpointsAndStateTransfer:
    config = replace(TESTING, checkpoint_interval=2, watermark_window=4)

    def test_stable_checkpoint_moves_the_low_watermark(self, net4: Net) -> None:
        """After block 2 a validator sends CHECKPOINT(2); with a quorum of matching ones it becomes stable."""
        engine = net4.pbft("v1", self.config)
        engine.on_tick(0.0)
        _execute(net4, engine, 1)
        block = make_block(2, [b"req-2"])
        engine.on_message("v0", pre_prepare(net4, block, seq=2))
        for kind in (Prepare, Commit):
            for v in ("v2", "v3"):
                engine.on_message(v, vote(net4, kind, v, sha256(block), seq=2))
        engine.on_message("v2", certify(net4, "v2", sha256(block), 2))
        out = engine.on_message("v3", certify(net4, "v3", sha256(block), 2))
        assert [(c.seq, c.digest) for c in sent(out, Checkpoint)] == [(2, sha256(block))]
        engine.on_message("v2", net4.sign(Checkpoint(sender="v2", seq=2, digest=sha256(block))))
        assert engine.low == 0
        engine.on_message("v3", net4.sign(Checkpoint(sender="v3", seq=2, digest=sha256(block))))
        assert engine.low == 2 and engine.high == 6
        conflicting = net4.sign(Checkpoint(sender="v2", seq=4, digest=bytes(32)))
        engine.on_message("v2", conflicting)
        engine.on_message("v2", net4.sign(replace(conflicting, digest=b"\x01" * 32)))
        assert engine.dropped["equivocation"] == 1

    def test_behind_validator_asks_for_state_and_resumes(self, net4: Net) -> None:
        """CERTIFYs from f + 1 validators five heights ahead lead to NeedState(1); the transfer moves it on."""
        engine = net4.pbft("v1")
        engine.on_tick(0.0)
        digest = sha256(b"block five")
        engine.on_message("v2", certify(net4, "v2", digest, 5))
        assert need_state(engine.on_message("v3", certify(net4, "v3", digest, 5))) == []
        assert [n.from_height for n in need_state(engine.on_tick(TESTING.retransmit_interval))] == [1]
        assert need_state(engine.on_tick(TESTING.retransmit_interval + 0.01)) == []
        signatures = {v: CommitCertificate.sign(digest, net4.keys[v]) for v in ("v0", "v2", "v3")}
        engine.on_state_transferred(CommitCertificate(5, digest.hex(), signatures))
        assert engine.height == 5 and need_state(engine.on_tick(10.0)) == []

    def test_a_peer_certificate_leads_to_state_transfer(self, net4: Net) -> None:
        """A CERTIFICATE for height 4 from a peer makes a validator at height 0 ask for state."""
        engine = net4.pbft("v1")
        engine.on_tick(0.0)
        digest = sha256(b"block four")
        signatures = {v: CommitCertificate.sign(digest, net4.keys[v]) for v in ("v0", "v2", "v3")}
        message = net4.sign(
            Certificate(sender="v2", certificate=CommitCertificate(4, digest.hex(), signatures))
        )
        engine.on_message("v2", message)
        assert [n.from_height for n in need_state(engine.on_tick(TESTING.retransmit_interval))] == [1]

    def test_a_forged_peer_certificate_is_dropped(self, net4: Net) -> None:
        """A CERTIFICATE whose signatures are not the validators' is dropped and teaches nothing."""
        engine = net4.pbft("v1")
        digest = sha256(b"block four")
        signatures = {v: CommitCertificate.sign(digest, net4.keys["v2"]) for v in ("v0", "v2", "v3")}
        engine.on_message(
            "v2",
            net4.sign(Certificate(sender="v2", certificate=CommitCertificate(4, digest.hex(), signatures))),
        )
        assert engine.dropped["invalid-certificate"] == 1
        assert need_state(engine.on_tick(10.0)) == []

    def test_a_bad_transfer_certificate_raises(self, net4: Net) -> None:
        """on_state_transferred refuses a certificate without a quorum."""
        engine = net4.pbft("v1")
        digest = sha256(b"x")
        with pytest.raises(InvalidCertificate):
            engine.on_state_transferred(
                CommitCertificate(3, digest.hex(), {"v0": CommitCertificate.sign(digest, net4.keys["v0"])})
            )

    def test_restart_resumes_after_the_certified_height(self, net4: Net) -> None:
        """An engine resumed from the certificate of block 3 proposes block 4 (v0 is primary of view 0)."""
        app = net4.apps.setdefault("v0", FakeApp())
        for seq in (1, 2, 3):
            app.apply(seq, make_block(seq, [b"old-%d" % seq]))
        digest = sha256(app.blocks[-1])
        signatures = {v: CommitCertificate.sign(digest, net4.keys[v]) for v in ("v0", "v1", "v2")}
        engine = net4.pbft("v0", resume=CommitCertificate(3, digest.hex(), signatures))
        engine.on_tick(0.0)
        engine.on_request(b"new")
        [proposal] = sent(engine.on_tick(0.1), PrePrepare)
        assert engine.height == 3 and proposal.seq == 4


def test_pbft_engine_works_with_default_config(net4: Net) -> None:
    """The default profile builds an engine in view 0 with the documented watermarks."""
    engine = net4.pbft("v2", ConsensusConfig())
    assert (engine.view, engine.active, engine.primary, engine.low, engine.high) == (0, True, "v0", 0, 200)


def test_peer_behind_in_height_gets_our_certificate(net4: Net) -> None:
    """A VIEW-CHANGE from a peer at a lower height, even for a later view, is answered with our certificate."""
    engine = net4.pbft("v1")
    engine.on_tick(0.0)
    _execute(net4, engine, 1)
    late = net4.sign(ViewChange(sender="v3", view=1, executed=None, prepared=None))
    [answer] = sent(engine.on_message("v3", late), Certificate)
    assert answer.certificate == engine.certificate and answer.certificate.height == 1
    assert engine.view == 0 and engine.active


def test_view_changes_for_view_after_view_leave_one_entry_per_sender(net4: Net) -> None:
    """One validator naming view after view (each VIEW-CHANGE valid) leaves only its highest: the
    views it left are forgotten, so honest VIEW-CHANGEs do not get slower with each one it sends."""
    engine = net4.pbft("v1")
    engine.on_tick(0.0)
    for view in range(1, 301):
        engine.on_message("v3", net4.sign(ViewChange(sender="v3", view=view, executed=None, prepared=None)))
    assert {v: sorted(c) for v, c in engine._view_changes.items() if v > engine.view} == {300: ["v3"]}
    assert len(engine._view_changes) <= 2  # that one, and the current view's


def test_pre_prepares_of_a_future_view_are_kept_within_the_block_budget(net4: Net) -> None:
    """PRE-PREPAREs of a view not entered yet are kept for when its NEW-VIEW comes, but within the
    sender's share of max_kept_block_bytes, not sixteen blocks of any size."""
    config = replace(TESTING, max_kept_block_bytes=4 * 1000)  # 1,000 bytes per validator
    engine = net4.pbft("v2", config)
    engine.on_tick(0.0)
    big = make_block(1, [b"b" * 450])  # hex in the fake block: over 900 bytes
    engine.on_message("v1", pre_prepare(net4, big, view=1, seq=1))
    engine.on_message("v1", pre_prepare(net4, make_block(2, [b"c" * 450]), view=1, seq=2))
    assert engine.dropped["wrong-view"] == 1
    assert [m.seq for m in engine._later["v1"]] == [1]

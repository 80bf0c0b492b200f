"""Round-robin handlers: proposals, votes, round changes after a silent proposer (n = 4, quorum 3)."""

from __future__ import annotations

from dataclasses import replace

from did_registry.consensus import NeedState, RoundRobin
from did_registry.consensus.messages import Certificate, Propose, RoundChange, Vote
from did_registry.consensus.quorum import Quorum
from did_registry.identity.crypto import sha256
from did_registry.ledger.block import CommitCertificate
from tests.did_registry.consensus.conftest import TESTING, Net, committed, sent
from tests.did_registry.consensus.fake_app import make_block

BLOCK = make_block(1, [b"req-1"])
DIGEST = sha256(BLOCK)


def vote(net: Net, sender: str, digest: bytes = DIGEST, *, round_: int = 0, height: int = 1) -> Vote:
    """A VOTE with ``sender``'s real commit signature."""
    signature = CommitCertificate.sign(digest, net.keys[sender])
    return net.sign(
        Vote(sender=sender, height=height, round=round_, digest=digest, commit_signature=signature)
    )


def proposal(net: Net, block: bytes = BLOCK, *, round_: int = 0, sender: str | None = None) -> Propose:
    """A PROPOSE for height 1, by the proposer of the round (v1 in round 0)."""
    return net.sign(Propose(sender=sender or net.ids[(1 + round_) % 4], height=1, round=round_, block=block))


def round_change(
    net: Net, sender: str, round_: int = 1, accepted: tuple[int, bytes] | None = None
) -> RoundChange:
    """A ROUND-CHANGE for height 1."""
    accepted_round, block = accepted if accepted else (None, None)
    return net.sign(
        RoundChange(
            sender=sender, height=1, round=round_, accepted_round=accepted_round, accepted_block=block
        )
    )


def test_proposer_of_height_one_proposes_and_votes(net4: Net) -> None:
    """v1, proposer of height 1, proposes its pending request after the batch timeout and votes for it."""
    engine = net4.round_robin("v1")
    engine.on_tick(0.0)
    engine.on_request(b"req-1")
    out = engine.on_tick(TESTING.batch_timeout)
    [offer] = sent(out, Propose)
    [own] = sent(out, Vote)
    assert (offer.height, offer.round) == (1, 0) and own.digest == sha256(offer.block)


def test_proposer_commits_its_own_block_on_a_quorum(net4: Net) -> None:
    """The proposer commits the block it offered as soon as two more votes make a quorum, with the
    block at hand (no state transfer asked for)."""
    engine = net4.round_robin("v1")
    engine.on_tick(0.0)
    engine.on_request(b"req-1")
    [offer] = sent(engine.on_tick(TESTING.batch_timeout), Propose)
    digest = sha256(offer.block)
    assert committed(engine.on_message("v2", vote(net4, "v2", digest))) == []
    out = engine.on_message("v3", vote(net4, "v3", digest))
    [done] = committed(out)
    assert done.height == 1 and done.block == offer.block
    assert not [o for o in out if isinstance(o, NeedState)] and engine.height == 1


def test_validator_votes_and_commits_on_a_quorum(net4: Net) -> None:
    """A validator votes for the proposal and commits when three votes of the round agree."""
    engine = net4.round_robin("v2")
    engine.on_tick(0.0)
    [own] = sent(engine.on_message("v1", proposal(net4)), Vote)
    assert Quorum(net4.validators).commit_signature_ok("v2", DIGEST, own.commit_signature)
    assert committed(engine.on_message("v1", vote(net4, "v1"))) == []
    [done] = committed(engine.on_message("v3", vote(net4, "v3")))
    assert done.height == 1 and sorted(done.certificate.signatures) == ["v1", "v2", "v3"]


def test_votes_of_different_rounds_do_not_add_up(net4: Net) -> None:
    """Votes for one block in rounds 0 and 1 are not a certificate: a quorum must share the round."""
    engine = net4.round_robin("v2")
    engine.on_message("v1", proposal(net4))
    engine.on_message("v1", vote(net4, "v1", round_=0))
    assert committed(engine.on_message("v3", vote(net4, "v3", round_=1))) == []


def test_proposals_from_others_or_twice_are_dropped(net4: Net) -> None:
    """A PROPOSE by a validator whose turn it is not, or a second block for a round, is refused."""
    engine = net4.round_robin("v2")
    assert sent(engine.on_message("v3", proposal(net4, sender="v3")), Vote) == []
    assert engine.dropped["not-proposer"] == 1
    engine.on_message("v1", proposal(net4))
    assert sent(engine.on_message("v1", proposal(net4, make_block(1, [b"other"]))), Vote) == []
    assert engine.dropped["equivocation"] == 1


def test_silent_proposer_leads_to_a_round_change(net4: Net) -> None:
    """With a pending request and no proposal, a validator moves to round 1 after the timeout."""
    engine = net4.round_robin("v3")
    engine.on_tick(0.0)
    engine.on_request(b"req-1")
    [change] = sent(engine.on_tick(TESTING.view_change_timeout), RoundChange)
    assert (change.height, change.round, change.accepted_block) == (1, 1, None)
    assert engine.round == 1 and engine.proposer == "v2"


def test_next_proposer_offers_the_accepted_block_again(net4: Net) -> None:
    """The proposer of round 1, told that a block was accepted in round 0, offers that block, not a fresh one."""
    engine = net4.round_robin("v2")
    engine.on_tick(0.0)
    engine.on_request(b"something-else")
    engine.on_message("v0", round_change(net4, "v0", accepted=(0, BLOCK)))
    out = engine.on_message("v3", round_change(net4, "v3"))
    [offer] = sent(out, Propose)
    assert (offer.round, offer.block) == (1, BLOCK)


def test_next_proposer_offers_a_fresh_block_when_none_was_accepted(net4: Net) -> None:
    """Without an accepted block among the ROUND-CHANGEs, the proposer of round 1 builds a fresh one."""
    engine = net4.round_robin("v2", replace(TESTING, batch_size=1))
    engine.on_tick(0.0)
    engine.on_request(b"fresh")
    engine.on_message("v0", round_change(net4, "v0"))
    [offer] = sent(engine.on_message("v3", round_change(net4, "v3")), Propose)
    assert net4.apps["v2"].requests(offer.block) == [b"fresh"]


def test_earlier_round_proposals_are_ignored_after_a_round_change(net4: Net) -> None:
    """Once in round 1, a validator does not vote for a round-0 proposal (it promised not to)."""
    engine = net4.round_robin("v3")
    engine.on_message("v0", round_change(net4, "v0"))
    assert engine.round == 1
    assert sent(engine.on_message("v1", proposal(net4)), Vote) == [] and engine.dropped["stale"] == 1


def test_lagging_validator_gets_the_certificate_of_the_last_block(net4: Net) -> None:
    """A ROUND-CHANGE for an executed height is answered with the certificate of that block."""
    engine = net4.round_robin("v2")
    engine.on_tick(0.0)
    engine.on_message("v1", proposal(net4))
    engine.on_message("v1", vote(net4, "v1"))
    engine.on_message("v3", vote(net4, "v3"))
    net4.apps["v2"].apply(1, BLOCK)
    [answer] = sent(engine.on_message("v0", round_change(net4, "v0")), Certificate)
    assert answer.certificate == engine.certificate and answer.certificate.height == 1


def test_a_certificate_from_a_peer_commits_a_block_at_hand(net4: Net) -> None:
    """With the proposal's block at hand, a peer's certificate for it is enough to commit."""
    engine = net4.round_robin("v0")
    engine.on_message("v1", proposal(net4))
    signatures = {v: CommitCertificate.sign(DIGEST, net4.keys[v]) for v in ("v1", "v2", "v3")}
    certificate = CommitCertificate(1, DIGEST.hex(), signatures)
    [done] = committed(engine.on_message("v3", net4.sign(Certificate(sender="v3", certificate=certificate))))
    assert done.certificate == certificate and engine.height == 1


def test_bad_commit_signatures_are_dropped(net4: Net) -> None:
    """A VOTE whose commit signature is over another digest does not count."""
    engine = net4.round_robin("v2")
    engine.on_message("v1", proposal(net4))
    for sender in ("v1", "v3"):
        forged = replace(vote(net4, sender, sha256(b"other")), digest=DIGEST)
        engine.on_message(sender, net4.sign(forged))
    assert engine.dropped["bad-commit-signature"] == 2 and engine.height == 0


def test_round_robin_is_the_engine_class(net4: Net) -> None:
    """The factory's round-robin engine starts at height 0, round 0, with v1 proposing height 1."""
    engine = net4.round_robin("v0")
    assert isinstance(engine, RoundRobin) and (engine.height, engine.round, engine.proposer) == (0, 0, "v1")


def test_a_restarted_proposer_does_not_propose_again(net4: Net) -> None:
    """A restarted proposer may have offered a block before it crashed: it leaves that height to others."""
    for restarted, expected in ((False, 1), (True, 0)):
        engine = net4.round_robin("v1", restarted=restarted)
        engine.on_tick(0.0)
        engine.on_request(b"req-1")
        assert len(sent(engine.on_tick(TESTING.batch_timeout), Propose)) == expected

"""ConsensusConfig, the quorum helper, commit certificates, the request pool and deadlines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from did_registry.consensus import ENGINES, ConsensusConfig, InvalidConsensusConfig, create_engine
from did_registry.consensus.base import CancelTimer, SetTimer
from did_registry.consensus.messages import Request
from did_registry.consensus.pool import Deadlines, RequestPool
from did_registry.consensus.quorum import Quorum
from did_registry.identity.crypto import sha256
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.block import BlockHeader, CommitCertificate, InvalidCertificate
from did_registry.ledger.validators import Validator, ValidatorSet
from tests.did_registry.consensus.conftest import TESTING, Net, make_net
from tests.did_registry.consensus.fake_app import FakeApp


class TestConsensusConfig:
    def test_default_and_testing_profiles_are_valid(self) -> None:
        """Both shipped profiles pass validation, and the test profile has shorter timeouts."""
        default, testing = ConsensusConfig().validate(), ConsensusConfig.testing().validate()
        assert testing.view_change_timeout < default.view_change_timeout
        assert testing.checkpoint_interval < default.checkpoint_interval

    @pytest.mark.parametrize(
        "change",
        [
            {"batch_size": 0},
            {"batch_timeout": 0.0},
            {"view_change_timeout": 0.01, "batch_timeout": 0.05},
            {"view_change_timeout_max": 1.0, "view_change_timeout": 2.0},
            {"checkpoint_interval": 0},
            {"watermark_window": 150, "checkpoint_interval": 100},
            {"retransmit_interval": 0.0},
            {"max_pending": 10, "batch_size": 20},
            {"max_request_bytes": 0},
            {"max_message_bytes": 100},
            {"overtake_batches": 0},
            {"overtake_margin": -0.1},
        ],
    )
    def test_out_of_range_values_are_refused(self, change: dict[str, Any]) -> None:
        """A config value out of range raises InvalidConsensusConfig (a ValueError)."""
        with pytest.raises(InvalidConsensusConfig):
            replace(ConsensusConfig(), **change).validate()
        assert issubclass(InvalidConsensusConfig, ValueError)

    def test_backoff_doubles_and_is_capped(self) -> None:
        """The view-change timeout doubles per failed view, up to the maximum."""
        config = ConsensusConfig(view_change_timeout=1.0, view_change_timeout_max=5.0)
        assert [config.backoff(k) for k in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
        assert config.backoff(10_000) == 5.0


class TestQuorum:
    def test_sizes_and_leaders(self) -> None:
        """n = 4 and n = 7 give f = 1 and 2, quorums n - f, and leaders in set order."""
        for n, f in ((1, 0), (4, 1), (5, 1), (7, 2)):
            quorum = Quorum(make_net(n).validators)
            assert (quorum.f, quorum.size) == (f, n - f)
            assert [quorum.leader(t) for t in range(n + 1)] == [*quorum.ids, quorum.ids[0]]

    def test_certificate_round_trip(self, net4: Net) -> None:
        """A certificate of three valid signatures passes and yields the digest."""
        quorum, digest = Quorum(net4.validators), sha256(b"block")
        signatures = {v: quorum.sign_commit(digest, net4.keys[v]) for v in ("v0", "v2", "v3")}
        assert quorum.check_certificate(quorum.certificate(5, digest, signatures)) == digest

    @pytest.mark.parametrize("fault", ["too-few", "bad-signature", "non-validator", "other-digest"])
    def test_bad_certificates_are_refused(self, net4: Net, fault: str) -> None:
        """Too few signatures, a bad one, a non-validator's or one over another digest: refused."""
        quorum, digest = Quorum(net4.validators), sha256(b"block")
        signatures = {v: quorum.sign_commit(digest, net4.keys[v]) for v in ("v0", "v1", "v2")}
        if fault == "too-few":
            del signatures["v2"]
        elif fault == "bad-signature":
            signatures["v2"] = quorum.sign_commit(digest, net4.keys["v3"])
        elif fault == "non-validator":
            signatures["mallory"] = signatures["v0"]
        else:
            signatures["v2"] = quorum.sign_commit(sha256(b"other"), net4.keys["v2"])
        with pytest.raises(InvalidCertificate):
            quorum.check_certificate(quorum.certificate(5, digest, signatures))

    def test_engine_certificates_pass_the_ledger_check(self, net4: Net) -> None:
        """A certificate built here over a header's hash passes CommitCertificate.verify of the ledger."""
        validators = net4.validators
        header = BlockHeader(
            "testnet", 3, "00" * 32, "2026-01-01T00:00:00Z", "v0", 0, "00" * 32, "11" * 32, validators.hash()
        )
        quorum = Quorum(validators)
        signatures = {v: quorum.sign_commit(header.hash, net4.keys[v]) for v in ("v1", "v2", "v3")}
        certificate = quorum.certificate(3, header.hash, signatures)
        certificate.verify(header, validators)
        assert CommitCertificate.from_json(certificate.to_json()) == certificate


class TestPoolAndDeadlines:
    def test_pool_keeps_arrival_order_and_times(self) -> None:
        """Requests come out oldest first; duplicates and overflow are refused."""
        pool = RequestPool(limit=3)
        assert [pool.add(r, t) for r, t in ((b"a", 1.0), (b"b", 2.0), (b"a", 3.0), (b"c", 4.0), (b"d", 5.0))] == [
            True, True, False, True, False,
        ]  # fmt: skip
        assert pool.batch(2) == [b"a", b"b"] and pool.oldest() == 1.0
        pool.discard([b"a"])
        pool.retain(lambda r: r != b"c")
        assert pool.batch(5) == [b"b"] and pool.oldest() == 2.0 and len(pool) == 1

    def test_pool_holds_at_most_its_bytes(self) -> None:
        """Past ``max_bytes`` of pending requests the pool refuses more, until some leave."""
        pool = RequestPool(limit=100, max_bytes=10)
        assert [pool.add(r, 1.0) for r in (b"aaaa", b"bbbb", b"ccc", b"dd")] == [True, True, False, True]
        assert pool.bytes == 10
        pool.discard([b"aaaa"])
        assert pool.add(b"ccc", 2.0) and pool.bytes == 9
        pool.retain(lambda r: r != b"bbbb")
        assert pool.bytes == 5

    def test_an_engine_pool_is_bounded_by_the_configured_bytes(self, net4: Net) -> None:
        """Requests a peer forwards count against max_pending_bytes: past it, they are dropped."""
        engine = net4.pbft("v1", replace(TESTING, max_pending_bytes=600, max_request_bytes=256))
        engine.on_tick(0.0)
        for i in range(5):
            engine.on_message("v2", net4.sign(Request(sender="v2", requests=(b"%d" % i + b"x" * 199,))))
        assert engine.dropped["pool-full"] == 2

    def test_deadlines_announce_changes_only(self) -> None:
        """Deadlines yield SetTimer when set or moved, CancelTimer when cleared, nothing otherwise."""
        deadlines = Deadlines()
        deadlines.set("a", 1.0)
        assert deadlines.outputs() == [SetTimer("a", 1.0)]
        assert deadlines.outputs() == []
        deadlines.set("a", 2.0)
        deadlines.set("b", 3.0)
        assert deadlines.outputs() == [SetTimer("a", 2.0), SetTimer("b", 3.0)]
        assert deadlines.due("a", 2.5) and not deadlines.due("b", 2.5)
        deadlines.clear("b")
        assert deadlines.outputs() == [CancelTimer("a"), CancelTimer("b")]

    def test_a_fired_deadline_kept_is_announced_again(self) -> None:
        """When the driver's timer fired but the engine keeps the deadline, it is announced again."""
        deadlines = Deadlines()
        deadlines.set("a", 1.0)
        deadlines.outputs()
        deadlines.fired(1.5)
        assert deadlines.outputs() == [SetTimer("a", 1.0)]


class TestEngineFactory:
    def test_every_engine_is_built_by_name(self) -> None:
        """create_engine builds each named engine for a set it suits."""
        for name, kind in ENGINES.items():
            net = make_net(1 if name == "solo" else 4)
            engine = create_engine(
                name, "v0", net.keys["v0"], net.validators, FakeApp(), ConsensusConfig.testing()
            )
            assert isinstance(engine, kind) and engine.height == 0

    def test_unknown_engine_is_refused(self, net4: Net) -> None:
        """An unknown engine name raises InvalidConsensusConfig naming the known ones."""
        with pytest.raises(InvalidConsensusConfig, match="pbft"):
            create_engine("raft", "v0", net4.keys["v0"], net4.validators, FakeApp())

    @pytest.mark.parametrize("name", sorted(ENGINES))
    def test_wrong_identity_is_refused(self, name: str) -> None:
        """A validator id outside the set, or a key that is not the validator's, is refused."""
        net = make_net(1 if name == "solo" else 4)
        with pytest.raises(InvalidConsensusConfig):
            create_engine(name, "nobody", net.keys["v0"], net.validators, FakeApp())
        other = make_net(1 if name == "solo" else 4, seed=99)
        with pytest.raises(InvalidConsensusConfig):
            create_engine(name, "v0", other.keys["v0"], net.validators, FakeApp())

    def test_solo_needs_a_set_of_one(self, net4: Net) -> None:
        """The solo engine refuses a set of four."""
        with pytest.raises(InvalidConsensusConfig, match="one validator"):
            create_engine("solo", "v0", net4.keys["v0"], net4.validators, FakeApp())

    @pytest.mark.parametrize("name", sorted(ENGINES))
    def test_resume_certificate_is_checked(self, name: str) -> None:
        """Resuming from a certificate without a quorum raises InvalidCertificate."""
        net = make_net(1 if name == "solo" else 4)
        digest = sha256(b"b")
        lone = {"v0": CommitCertificate.sign(digest, net.keys["v0"])}
        certificate = CommitCertificate(4, digest.hex(), lone if name != "solo" else {"v0": "z1"})
        with pytest.raises(InvalidCertificate):
            create_engine(name, "v0", net.keys["v0"], net.validators, FakeApp(), resume=certificate)


def test_validator_set_order_is_the_leader_order() -> None:
    """Leaders follow the set's own order, not the ids' sort order."""
    net = make_net(3)
    members = tuple(reversed(net.validators.validators))
    reordered = ValidatorSet(
        tuple(Validator(v.id, encode_ed25519_public_key(v.key), v.address) for v in members)
    )
    assert Quorum(reordered).leader(0) == members[0].id


def test_package_exports_are_documented() -> None:
    """Every name the consensus package exports exists and has a docstring."""
    import did_registry.consensus as consensus

    assert len(consensus.__all__) == len(set(consensus.__all__))
    for name in consensus.__all__:
        assert getattr(consensus, name).__doc__, name

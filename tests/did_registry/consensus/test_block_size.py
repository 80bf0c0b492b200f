"""A block is never larger than a NEW-VIEW can carry again (up to n + 1 copies within
max_message_bytes): otherwise a block prepared by some backups when its primary crashed could never
be re-issued, and no view change would ever complete."""

from __future__ import annotations

from dataclasses import replace

from did_registry.consensus import ConsensusConfig
from did_registry.consensus.core import max_block_bytes
from did_registry.consensus.messages import Prepare, PrePrepare, Request, decode
from tests.did_registry.consensus.conftest import TESTING, Net, sent
from tests.did_registry.consensus.fake_app import make_block
from tests.did_registry.consensus.peers import pre_prepare
from tests.did_registry.consensus.scenarios import Scenario
from tests.did_registry.consensus.simulator import FRESHNESS_INTERVAL, Simulator

SEED = 4242
MAX_MESSAGE = 50_000


class _LosesOnePrePrepare(Simulator):
    """The network loses v0's PRE-PREPAREs to v3, so v1 and v2 prepare what v3 never saw."""

    def _route(self, sender: str, to: str, payload: bytes) -> None:
        try:
            message = decode(payload)
        except Exception:
            message = None
        if sender == "v0" and to == "v3" and isinstance(message, PrePrepare):
            return
        super()._route(sender, to, payload)


def test_a_view_change_re_issues_a_prepared_block_of_a_crashed_primary() -> None:
    """v0 proposes a full batch and crashes before committing it; v1 and v2 prepared it, v3 did not.
    Every NEW-VIEW re-issues that block, in O and in each prepared VIEW-CHANGE: with blocks bounded,
    it fits, the view changes and all 40 requests commit (before, every NEW-VIEW was oversized and
    the validators climbed through the views at height 0 for ever)."""
    config = replace(
        ConsensusConfig.testing(),
        freshness_interval=FRESHNESS_INTERVAL,
        batch_size=40,
        max_message_bytes=MAX_MESSAGE,
    )
    scenario = Scenario(engine="pbft", n=4, crashes=(("v0", 0.1001, None),), requests=0, chaos=1.0)
    sim = _LosesOnePrePrepare(SEED, scenario, config)
    for i in range(40):  # 40 requests of 250 bytes: one full batch for v0 at t = 0.1
        sim.push(0.1, "request", "v0", b"R%03d" % i + b"x" * 246)
    sim.run()  # raises InvariantViolation (liveness) if the network stalls
    heights = {sim.nodes[v].app.height for v in ("v1", "v2", "v3")}  # (the run checked every request)
    assert len(heights) == 1 and heights.pop() > 0


def test_the_block_budget_leaves_room_for_n_plus_one_encoded_copies() -> None:
    for n in (1, 4, 7, 31):
        budget = max_block_bytes(16 << 20, n)
        assert (n + 1) * (budget * 4 // 3 + 1024 + 400 * n) <= 16 << 20
        assert budget > (16 << 20) // (n + 1) // 2  # and still most of what a message holds


def test_a_backup_refuses_a_block_over_the_budget(net4: Net) -> None:
    """A primary (byzantine, or of a smaller set) proposing a block over the budget gets no PREPARE:
    the backup drops it as oversized-block."""
    config = replace(TESTING, max_message_bytes=20_000)
    engine = net4.pbft("v1", config)
    engine.on_tick(0.0)
    big = make_block(1, [b"r" * (max_block_bytes(20_000, 4) + 1)])
    assert sent(engine.on_message("v0", pre_prepare(net4, big)), Prepare) == []
    assert engine.dropped["oversized-block"] == 1
    fresh = net4.pbft("v2", config)
    fresh.on_tick(0.0)
    small = make_block(1, [b"r" * 100])
    assert len(sent(fresh.on_message("v0", pre_prepare(net4, small)), Prepare)) == 1


def test_the_primary_fills_a_block_only_up_to_the_budget(net4: Net) -> None:
    """With more bytes waiting than a block may hold, the primary proposes the oldest requests that
    fit, and the rest in the next block."""
    config = replace(TESTING, max_message_bytes=40_000, batch_size=100)
    engine = net4.pbft("v0", config)
    engine.on_tick(0.0)
    requests = [b"%03d" % i + b"x" * 247 for i in range(30)]  # 7.5 kB waiting, twice that in blocks
    for request in requests:
        engine.on_request(request)
    [proposal] = sent(engine.on_tick(TESTING.batch_timeout), PrePrepare)
    taken = net4.apps["v0"].requests(proposal.block)
    assert taken == requests[: len(taken)] and 0 < len(taken) < len(requests)
    assert len(proposal.block) <= max_block_bytes(40_000, 4)


def test_a_request_no_block_can_hold_is_refused(net4: Net) -> None:
    config = replace(TESTING, max_message_bytes=40_000)
    engine = net4.pbft("v0", config)
    engine.on_tick(0.0)
    assert sent(engine.on_request(b"x" * max_block_bytes(40_000, 4)), Request) == []
    assert engine.dropped["bad-request"] == 1
    assert len(sent(engine.on_request(b"x" * 100), Request)) == 1


def test_a_pool_of_requests_no_block_can_hold_proposes_nothing(net4: Net) -> None:
    """Requests taken while the set was smaller, now over the block budget, leave the pool; the
    primary proposes no block for them (an empty block would be refused by its backups)."""
    config = replace(TESTING, max_message_bytes=40_000)
    engine = net4.pbft("v0", config)
    engine.on_tick(0.0)
    engine._pool.add(b"x" * max_block_bytes(40_000, 4), 0.0)  # as if taken under a larger budget
    assert sent(engine.on_tick(TESTING.batch_timeout), PrePrepare) == []
    assert engine.dropped["oversized-request"] == 1 and len(engine._pool) == 0


def test_an_engine_says_the_largest_request_it_takes(net4: Net) -> None:
    """Nodes refuse larger transactions at their door with what ``max_request_bytes`` says: exactly
    the largest the engine keeps (within a block's budget, and within the configured bound)."""
    config = replace(TESTING, max_message_bytes=40_000)
    engine = net4.pbft("v0", config)
    engine.on_tick(0.0)
    largest = engine.max_request_bytes
    assert 0 < largest < max_block_bytes(40_000, 4)
    engine.on_request(b"y" * (largest + 1))
    assert engine.dropped["bad-request"] == 1
    engine.on_request(b"y" * largest)  # taken, then left to the application (which wants 256 at most)
    assert engine.dropped["bad-request"] == 1 and engine.dropped["rejected-request"] == 1
    bounded = net4.pbft("v1", replace(config, max_request_bytes=1_000))
    assert bounded.max_request_bytes == 1_000

"""Freshness (``docs/consensus.md`` § Freshness): an idle network commits an empty block every
``freshness_interval``, so the newest certified block time tells a reader how fresh its view is;
a proposer that does not deliver one is replaced as if it held back a request."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import pytest

from did_registry.consensus import PBFT, ConsensusConfig, Solo, create_engine
from did_registry.consensus.base import Broadcast, Committed, Output, Send
from did_registry.consensus.messages import Certificate, Message, Prepare, Vote
from did_registry.consensus.messages import Commit as CommitVote
from did_registry.consensus.messages import Prepare as PrepareVote
from tests.did_registry.consensus.byzantine import Byzantine
from tests.did_registry.consensus.conftest import Net, sent
from tests.did_registry.consensus.fake_app import FakeApp, make_block
from tests.did_registry.consensus.peers import certify, pre_prepare, vote
from tests.did_registry.consensus.scenarios import Scenario, make_validators
from tests.did_registry.consensus.simulator import Node, Simulator

ENGINES = [("pbft", 4), ("round_robin", 4), ("solo", 1)]


def _idle(
    engine: str, n: int, interval: float, crashes: tuple[tuple[str, float, None], ...] = ()
) -> Simulator:
    config = replace(ConsensusConfig.testing(), freshness_interval=interval)
    return Simulator(7, Scenario(engine, n, requests=0, chaos=0.0, crashes=crashes), config)


def _heights(simulator: Simulator) -> list[int]:
    return [simulator.nodes[v].app.height for v in simulator.honest if simulator.nodes[v].engine is not None]


@pytest.mark.parametrize(("engine", "n"), ENGINES)
def test_an_idle_network_commits_an_empty_block_every_interval(engine: str, n: int) -> None:
    simulator = _idle(engine, n, 2.0)
    simulator.run_for(21.0)
    heights = _heights(simulator)
    assert min(heights) >= 9 and max(heights) <= 11, heights
    node = simulator.nodes[simulator.honest[0]]
    assert all(FakeApp().requests(block) == [] for block in node.app.blocks)


@pytest.mark.parametrize(("engine", "n"), ENGINES)
def test_with_freshness_off_an_idle_network_commits_nothing(engine: str, n: int) -> None:
    simulator = _idle(engine, n, 0.0)
    simulator.run_for(10.0)
    assert _heights(simulator) == [0] * n


@pytest.mark.parametrize("engine", ["pbft", "round_robin"])
def test_a_crashed_proposer_of_an_idle_network_is_replaced_when_a_block_falls_due(engine: str) -> None:
    """The first proposer is down from the start and nothing is asked of the network: the others
    still wait for the block that falls due, time out, and move on to a proposer that delivers it."""
    simulator = _idle(engine, 4, 2.0, crashes=(("v0", 0.0, None),))
    simulator.run_for(20.0)
    heights = _heights(simulator)
    assert len(heights) == 3 and min(heights) >= 3, heights


def test_a_lone_validator_proposes_an_empty_block_only_when_it_falls_due() -> None:
    """Engine-level: nothing before the interval, one empty block at it, the next one interval later."""
    validators, keys = make_validators(random.Random(1), 1)
    app = FakeApp()
    engine = Solo(
        "v0", keys["v0"], validators, app, replace(ConsensusConfig.testing(), freshness_interval=5.0)
    )
    assert not [o for o in engine.on_tick(100.0) if isinstance(o, Committed)]
    assert not [o for o in engine.on_tick(104.9) if isinstance(o, Committed)]
    committed = [o for o in engine.on_tick(105.0) if isinstance(o, Committed)]
    assert len(committed) == 1 and app.requests(committed[0].block) == []
    app.apply(1, committed[0].block)
    engine.on_tick(105.0)
    assert not [o for o in engine.on_tick(109.9) if isinstance(o, Committed)]
    assert len([o for o in engine.on_tick(110.0) if isinstance(o, Committed)]) == 1


# -- what a backup accepts (review findings: backdated blocks, censorship by empty blocks) ----------
FRESH = replace(ConsensusConfig.testing(), freshness_interval=2.0)


def test_a_backup_does_not_prepare_a_block_its_app_finds_untimely(net4: Net) -> None:
    """A block dated far from the backup's clock (BlockApp.timely): no PREPARE, counted as untimely."""
    backup = net4.pbft("v1", FRESH)
    backup.on_tick(0.0)
    net4.apps["v1"].untimely = lambda block: True
    out = backup.on_message("v0", pre_prepare(net4))
    assert sent(out, Prepare) == [] and backup.dropped.get("untimely-block") == 1


def _executed_block_1(net: Net, v: str) -> PBFT:
    """Backup ``v`` that executed block 1 (requests ``req-1``) at time 10.0."""
    backup = net.pbft(v, FRESH)
    backup.on_tick(10.0)
    backup.on_message("v0", pre_prepare(net))
    for peer in ("v2", "v3") if v == "v1" else ("v1", "v3"):
        backup.on_message(peer, vote(net, PrepareVote, peer))
    out: list[Output] = []
    for peer in ("v0", "v2", "v3") if v == "v1" else ("v0", "v1", "v3"):
        out += backup.on_message(peer, vote(net, CommitVote, peer))
    for peer in ("v0", "v2", "v3") if v == "v1" else ("v0", "v1", "v3"):
        out += backup.on_message(peer, certify(net, peer))
    (done,) = [o for o in out if isinstance(o, Committed)]
    net.apps[v].apply(1, done.block)
    return backup


@pytest.mark.parametrize(("at", "prepared"), [(10.9, False), (11.0, True)])
def test_a_backup_prepares_an_empty_block_only_once_one_is_nearly_due(
    net4: Net, at: float, prepared: bool
) -> None:
    """After executing a block, empty blocks faster than half the interval are refused; one at half
    the interval is prepared."""
    backup = _executed_block_1(net4, "v1")
    backup.on_tick(at)
    out = backup.on_message("v0", pre_prepare(net4, make_block(2, [], f"t+{at}"), seq=2))
    assert len(sent(out, Prepare)) == (1 if prepared else 0)
    assert (backup.dropped.get("early-empty-block") == 1) is not prepared


def test_a_backup_that_just_started_takes_the_first_empty_block(net4: Net) -> None:
    """Reached its head by starting, a backup cannot tell when the others reached it: it prepares the
    first empty block however soon (else a restart would cost a view change)."""
    backup = net4.pbft("v1", FRESH)
    backup.on_tick(0.0)
    backup.on_tick(0.1)
    assert len(sent(backup.on_message("v0", pre_prepare(net4, make_block(1, []))), Prepare)) == 1


@dataclass(frozen=True, slots=True)
class _Unchecked(ConsensusConfig):
    """Settings a byzantine validator runs whatever the rules (an interval an honest one may not use)."""

    def validate(self) -> ConsensusConfig:
        return self


def test_empty_blocks_cannot_shield_a_censoring_primary() -> None:
    """The primary never takes one request and proposes empty blocks every 0.1 s, faster than the
    backups' progress timer: the backups refuse those early empty blocks, so their timers run out,
    a view change replaces the primary, and the request commits."""
    censored = b"censored-request"
    fast = _Unchecked(**{f.name: getattr(FRESH, f.name) for f in fields(FRESH)} | {"freshness_interval": 0.1})

    class Censor(Simulator):
        def _start(self, node: Node) -> None:
            resume = node.certificates[-1] if node.certificates else None
            config = fast if node.id == "v0" else FRESH
            node.engine = create_engine(
                "pbft", node.id, node.key, self.validators, node.app, config,
                resume=resume, restarted=node.incarnation > 0, timestamp=lambda now: f"t+{now:.3f}",
            )  # fmt: skip
            node.incarnation += 1
            node.timers.clear()
            self._tick(node)

    simulator = Censor(7, Scenario("pbft", 4, requests=0, chaos=0.0), FRESH)
    v0 = simulator.nodes["v0"]
    v0.byzantine = Byzantine(
        simulator.rng, "v0", v0.key, simulator.ids, frozenset({"censor"}), frozenset({censored})
    )
    simulator.push(2.0, "request", "v2", censored)
    simulator.run_for(30.0)
    assert all(censored in simulator.nodes[v].app.committed for v in ("v1", "v2", "v3"))
    assert all(simulator.nodes[v].engine.view >= 1 for v in ("v1", "v2", "v3"))  # type: ignore[union-attr]


def test_restarted_pbft_backups_take_the_next_empty_block_without_a_view_change() -> None:
    """Two backups restart on an idle network: they cannot tell when the others reached the head, so
    they accept the primary's next empty block rather than refuse it as early (a view change)."""
    crashes = (("v1", 5.5, 5.55), ("v2", 5.5, 5.55))
    simulator = _idle("pbft", 4, 2.0, crashes=crashes)
    simulator.run_for(30.0)
    heights = _heights(simulator)
    assert len(set(heights)) == 1 and heights[0] >= 12, heights
    assert all(simulator.nodes[v].engine.view == 0 for v in simulator.ids)  # type: ignore[union-attr]


def test_a_round_robin_set_restarted_at_one_height_never_commits_another_block_there(net4: Net) -> None:
    """v3 alone committed block A at height 1 (round 1); the other three restart together, having
    lost their votes, while v3 is cut off. They must not commit another block at height 1: each
    abstains from proposing there in every round (the network waits for v3, not a fork)."""
    apps: dict[str, FakeApp] = {}
    engines = {v: net4.round_robin(v, FRESH) for v in net4.ids}
    apps.update(net4.apps)
    commits: dict[str, Committed] = {}

    def run(live: list[str], start: float, stop: float, drop: Callable[[str, str, Message], bool]) -> None:
        queue: list[tuple[str, str, Message]] = []

        def route(sender: str, outs: list[Output]) -> None:
            for out in outs:
                if isinstance(out, Broadcast):
                    queue.extend((sender, to, out.message) for to in live if to != sender)
                elif isinstance(out, Send) and out.to in live:
                    queue.append((sender, out.to, out.message))
                elif isinstance(out, Committed):
                    apps[sender].apply(out.height, out.block)
                    commits.setdefault(sender, out)

        now = start
        while now <= stop:
            for v in live:
                route(v, engines[v].on_tick(now))
            while queue:
                sender, to, message = queue.pop(0)
                if not drop(sender, to, message):
                    route(to, engines[to].on_message(sender, message))
            now = round(now + 0.05, 3)

    def only_v3_hears_votes(sender: str, to: str, message: Message) -> bool:
        return (isinstance(message, Vote) and to != "v3") or (
            sender == "v3" and isinstance(message, Vote | Certificate)
        )

    run(["v0", "v2", "v3"], 0.0, 4.0, only_v3_hears_votes)  # v1, round 0's proposer, is cut off
    assert list(commits) == ["v3"]
    block_a = commits["v3"].block
    for v in ("v0", "v1", "v2"):
        net4.apps[v] = apps[v] = FakeApp()
        engines[v] = net4.round_robin(v, FRESH, restarted=True)
    commits.clear()
    run(["v0", "v1", "v2"], 10.0, 20.0, lambda sender, to, message: False)
    assert all(c.block == block_a for c in commits.values()), "a second block at height 1: a fork"

"""Freshness (``docs/consensus.md`` § Freshness): an idle network commits an empty block every
``freshness_interval``, so the newest certified block time tells a reader how fresh its view is;
a proposer that does not deliver one is replaced as if it held back a request."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from did_registry.consensus import ConsensusConfig, Solo
from did_registry.consensus.base import Committed
from tests.did_registry.consensus.fake_app import FakeApp
from tests.did_registry.consensus.scenarios import Scenario, make_validators
from tests.did_registry.consensus.simulator import Simulator

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
    simulator = _idle(engine, n, 1.0)
    simulator.run_for(10.5)
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
    simulator = _idle(engine, 4, 1.0, crashes=(("v0", 0.0, None),))
    simulator.run_for(15.0)
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

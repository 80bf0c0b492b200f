"""The engines in the seeded network simulator: safety at every commit, liveness after the heal.

CI runs 400 PBFT seeds, 150 round-robin seeds and 20 solo seeds; ``make soak`` (``TRELLIS_SOAK=1``,
marker ``soak``) runs 20,000 more. A failure names its seed; replay it with
``pytest tests/did_registry/consensus/test_simulation.py --seed N`` (or ``TRELLIS_SEED=N``).
"""

from __future__ import annotations

import random

import pytest

from did_registry.consensus import Committed
from did_registry.identity.crypto import sha256
from did_registry.ledger.block import CommitCertificate
from tests.did_registry.consensus.conftest import chosen_seed
from tests.did_registry.consensus.fake_app import make_block
from tests.did_registry.consensus.scenarios import Scenario, random_scenario
from tests.did_registry.consensus.simulator import InvariantViolation, Simulator, run_seed

CI_SEEDS = {"pbft": range(400), "round_robin": range(150), "solo": range(20)}
SOAK_SEEDS = {"pbft": range(100_000, 116_000), "round_robin": range(100_000, 104_000)}
ENGINE_OF = {"test_pbft_seed": "pbft", "test_round_robin_seed": "round_robin", "test_solo_seed": "solo"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the seeded tests: the CI seeds, or the one seed given by ``--seed`` / ``TRELLIS_SEED``."""
    engine = ENGINE_OF.get(metafunc.function.__name__)
    if engine is not None:
        seed = chosen_seed(metafunc.config)
        metafunc.parametrize("seed", [seed] if seed is not None else list(CI_SEEDS[engine]))


def _check(seed: int, engine: str) -> None:
    report = run_seed(seed, engine)
    assert report.height >= 1, f"seed {seed}: nothing was committed"
    assert report.recovery <= random_scenario(seed, engine).bound


def test_pbft_seed(seed: int) -> None:
    """PBFT under the seed's faults (f byzantine or crashed, partitions, loss): no fork, recovery in bound."""
    _check(seed, "pbft")


def test_round_robin_seed(seed: int) -> None:
    """Round robin under the seed's crashes, partitions and loss: no fork, recovery in bound."""
    _check(seed, "round_robin")


def test_solo_seed(seed: int) -> None:
    """The solo engine commits every request of the seed."""
    _check(seed, "solo")


SOAK_CHUNK = 250


@pytest.mark.soak
@pytest.mark.parametrize(
    ("engine", "first"),
    [(engine, first) for engine, seeds in SOAK_SEEDS.items() for first in seeds[::SOAK_CHUNK]],
)
def test_soak(engine: str, first: int) -> None:
    """``make soak``: 20,000 more seeds in chunks of 250; every failing seed of a chunk is listed."""
    failures = []
    for seed in range(first, first + SOAK_CHUNK):
        try:
            _check(seed, engine)
        except AssertionError as exc:
            failures.append(f"{engine} seed {seed}: {str(exc).splitlines()[0]}")
    assert not failures, f"{len(failures)} failing seed(s):\n" + "\n".join(failures)


def test_a_seed_replays_exactly() -> None:
    """Running a seed twice gives the same chain, the same number of events and the same timings."""
    runs = []
    for _ in range(2):
        simulator = Simulator(11, random_scenario(11, "pbft"))
        report = simulator.run()
        runs.append(
            (report.height, report.events, report.delivered, report.recovery, sorted(simulator.chain.items()))
        )
    assert runs[0] == runs[1]


def _quiet(engine: str = "pbft", n: int = 4, **changes: object) -> Scenario:
    settings: dict[str, object] = {"engine": engine, "n": n, "requests": 8, "chaos": 1.0, **changes}
    return Scenario(**settings)  # type: ignore[arg-type]


SCENARIOS = {
    "equivocating primary": _quiet(byzantine=(("v0", frozenset({"equivocate"})),)),
    "silent primary": _quiet(byzantine=(("v0", frozenset({"silent"})),)),
    "lying primary and voters": _quiet(
        n=7,
        byzantine=(
            ("v0", frozenset({"equivocate", "conflicting-votes"})),
            ("v1", frozenset({"conflicting-votes", "bogus-view-change"})),
        ),
    ),
    "forger and replayer": _quiet(
        byzantine=(("v2", frozenset({"forge", "replay", "corrupt"})),), outsider=True
    ),
    "primary cut off, then healed": _quiet(partitions=((0.1, 0.9, frozenset({"v0"})),)),
    "crash and restart": _quiet(crashes=(("v2", 0.2, 0.6),)),
    "primary crashes for good": _quiet(crashes=(("v0", 0.1, None),)),
    "lossy network": _quiet(drop=0.3, duplicate=0.2, slow=0.05),
    "round robin, proposer crashes": _quiet(engine="round_robin", crashes=(("v1", 0.0, None),)),
    "round robin, cut and lossy": _quiet(
        engine="round_robin", n=5, drop=0.2, partitions=((0.0, 0.8, frozenset({"v0", "v1"})),)
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_named_scenario(name: str) -> None:
    """Each named fault pattern ends with every request committed on every honest validator."""
    simulator = Simulator(1, SCENARIOS[name])
    report = simulator.run()
    assert report.height >= 1 and report.recovery <= SCENARIOS[name].bound
    heights = {
        node.app.height
        for node in simulator.nodes.values()
        if node.engine is not None and node.byzantine is None
    }
    assert heights == {report.height}


def test_restarted_validator_catches_up_by_state_transfer() -> None:
    """A validator down for most of the run is brought to the others' height by state transfer."""
    simulator = Simulator(2, _quiet(crashes=(("v3", 0.05, 0.95),), requests=20))
    simulator.run()
    restarted = simulator.nodes["v3"]
    assert restarted.engine is not None and restarted.app.height == max(
        n.app.height for n in simulator.nodes.values()
    )
    assert simulator.transfers["v3"] >= 1


def test_more_than_f_crashes_fail_liveness_with_the_seed_named() -> None:
    """With two of four validators down for good, the liveness check fails and names the seed to replay."""
    scenario = _quiet(crashes=(("v1", 0.0, None), ("v2", 0.0, None)), bound=5.0)
    with pytest.raises(InvariantViolation, match=r"(?s)seed 5 .*liveness.*--seed 5"):
        Simulator(5, scenario).run()


def _forged_commit(simulator: Simulator, signers: tuple[str, ...]) -> Committed:
    block = make_block(1, [b"forged"])
    digest = sha256(block)
    keys = {v: node.key for v, node in simulator.nodes.items()}
    certificate = CommitCertificate(
        1, digest.hex(), {v: CommitCertificate.sign(digest, keys[v]) for v in signers}
    )
    return Committed(1, block, certificate)


def test_a_fork_is_caught() -> None:
    """A second, differently certified block at height 1 on an honest validator is an agreement violation."""
    simulator = Simulator(3, _quiet())
    simulator.run()
    node = simulator.nodes["v1"]
    node.app.blocks.clear()
    with pytest.raises(InvariantViolation, match="AGREEMENT"):
        simulator._apply(node, [_forged_commit(simulator, ("v0", "v2", "v3"))])


def test_a_certificate_short_of_a_quorum_is_caught() -> None:
    """A committed block with two signatures out of four fails the certificate check."""
    simulator = Simulator(3, _quiet())
    with pytest.raises(InvariantViolation, match="quorum"):
        simulator._apply(simulator.nodes["v1"], [_forged_commit(simulator, ("v0", "v2"))])


def test_scenarios_respect_the_fault_budget() -> None:
    """Random scenarios never make more than f validators faulty (byzantine or crashing)."""
    for seed in range(300):
        for engine in ("pbft", "round_robin"):
            scenario = random_scenario(seed, engine)
            assert len(scenario.byzantine) + len(scenario.crashes) <= (scenario.n - 1) // 3
            assert engine == "pbft" or not scenario.byzantine


def test_seeds_draw_varied_scenarios() -> None:
    """The CI seeds cover byzantine validators, crashes, partitions, loss and several set sizes."""
    scenarios = [random_scenario(seed, "pbft") for seed in CI_SEEDS["pbft"]]
    assert {s.n for s in scenarios} == {4, 5, 7}
    assert sum(1 for s in scenarios if s.byzantine) > 100 and sum(1 for s in scenarios if s.crashes) > 50
    assert sum(1 for s in scenarios if s.partitions) > 100 and sum(1 for s in scenarios if s.drop) > 100
    assert random.Random(0).random() == random.Random(0).random()

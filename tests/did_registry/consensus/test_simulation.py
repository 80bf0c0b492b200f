"""The engines in the seeded network simulator: safety at every commit, liveness after the heal.

CI runs 400 PBFT seeds, 150 round-robin seeds and 20 solo seeds; ``make soak`` (``TRELLIS_SOAK=1``,
marker ``soak``) runs 20,000 more. A failure names its seed; replay it with
``pytest tests/did_registry/consensus/test_simulation.py --seed N`` (or ``TRELLIS_SEED=N``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from did_registry.consensus import PBFT, Committed, ConsensusConfig, Message
from did_registry.consensus.messages import Overtaken, ViewChange
from did_registry.identity.crypto import sha256
from did_registry.ledger.block import CommitCertificate
from tests.did_registry.consensus.conftest import chosen_seed
from tests.did_registry.consensus.fake_app import make_block
from tests.did_registry.consensus.scenarios import Scenario, random_scenario
from tests.did_registry.consensus.simulator import InvariantViolation, Node, Simulator, run_seed

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
    "censoring primary": _quiet(byzantine=(("v0", frozenset({"censor"})),), censored=(b"r-1-0",)),
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


class Watched(Simulator):
    """A simulator that records when each request committed, the first honest VIEW-CHANGE, how many
    OVERTAKEN were sent, and untracks client requests the receiving validator refused (full pool)."""

    def __init__(self, seed: int, scenario: Scenario, config: ConsensusConfig | None = None) -> None:
        super().__init__(seed, scenario, config)
        self.committed_at: dict[bytes, dict[str, float]] = {}
        self.first_view_change: float | None = None
        self.resends = 0

    def _emit(self, node: Node, message: Message, recipients: Sequence[str]) -> None:
        if node.byzantine is None and isinstance(message, ViewChange) and self.first_view_change is None:
            self.first_view_change = self.now
        self.resends += isinstance(message, Overtaken)
        super()._emit(node, message, recipients)

    def _check_commit(self, node: Node, height: int, block: bytes, certificate: CommitCertificate) -> None:
        super()._check_commit(node, height, block, certificate)
        for request in node.app.requests(block):
            self.committed_at.setdefault(request, {})[node.id] = self.now

    def _on_request(self, v: str, request: bytes) -> None:
        engine = self.nodes[v].engine
        refused = engine.dropped.get("pool-full", 0) if engine is not None else 0
        super()._on_request(v, request)
        if engine is not None and engine.dropped.get("pool-full", 0) > refused:
            self.tracked.pop(request, None)  # the client was told no: it is not a lost request

    def views(self) -> set[int]:
        """The views the honest validators are in."""
        return {node.engine.view for node in self._up_honest() if isinstance(node.engine, PBFT)}


def _censored_run(seed: int, config: ConsensusConfig | None = None) -> Watched:
    """v0, primary of view 0, never takes b"censored" (given to v1 at 0.2 s) while 200 other requests
    arrive over 4 s: a steady flow of blocks, so the progress timer never fires."""
    scenario = _quiet(
        byzantine=(("v0", frozenset({"censor"})),), requests=200, chaos=4.0, censored=(b"censored",)
    )
    simulator = Watched(seed, scenario, config)
    simulator.push(0.2, "request", "v1", b"censored")
    simulator.run()
    return simulator


@pytest.mark.parametrize("seed", range(3))
def test_censoring_primary_is_replaced_and_the_censored_request_commits(seed: int) -> None:
    """Blocks keep coming without the censored request: the backups send it again, then suspect the
    primary; after the view change it commits at once, well before the load stops (no progress
    timeout was needed), with agreement, certificates and no lost request checked throughout."""
    simulator = _censored_run(seed)
    detected = simulator.first_view_change
    commits = simulator.committed_at[b"censored"]
    assert detected is not None and detected < 0.2 + 3.0  # K = 16 requests, twice, at 50 a second
    assert set(commits) >= set(simulator.honest) and simulator.resends >= 3
    assert max(commits[v] for v in simulator.honest) <= detected + 1.0 < simulator.scenario.chaos
    assert simulator.views() == {1}


def test_without_the_rule_the_censored_request_waits_for_the_load_to_stop() -> None:
    """The gap the rule closes: with K out of reach, the censor keeps its view while blocks flow, and
    the request commits only after the load stopped and the progress timer ran out."""
    simulator = _censored_run(0, replace(ConsensusConfig.testing(), overtake_batches=10**6))
    commits = simulator.committed_at[b"censored"]
    assert min(commits[v] for v in simulator.honest) > simulator.scenario.chaos
    assert simulator.first_view_change is not None and simulator.first_view_change > 3.5


@pytest.mark.parametrize("seed", range(2))
def test_honest_primary_under_overload_is_not_suspected(seed: int) -> None:
    """1,500 requests over 10 s against a drain of about 90 a second, pools of 200: pools stay full,
    every validator refuses requests, and backups hold requests the primary refused. They send them
    again (OVERTAKEN); the primary keeps them past its limit. No view change happens, and every
    request a validator admitted is committed."""
    config = replace(ConsensusConfig.testing(), max_pending=200)
    scenario = _quiet(requests=1500, chaos=10.0, delay=0.05)
    simulator = Watched(seed, scenario, config)
    simulator.run()
    primary = simulator.nodes["v0"].engine
    assert primary is not None and primary.dropped["pool-full"] > 0
    assert simulator.resends > 0 and len(simulator.tracked) > 1000
    assert simulator.first_view_change is None and simulator.views() == {0}


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
    assert sum(1 for s in scenarios if s.censored) > 20
    assert random.Random(0).random() == random.Random(0).random()

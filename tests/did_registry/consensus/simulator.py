"""A deterministic, seeded network simulator that drives the consensus engines (``docs/consensus.md`` § Simulation).

One ``random.Random`` drives everything: message delays, drops, duplicates and reordering,
partitions and heals, crashes and restarts (an engine rebuilt from its committed height and
certificate), client requests, and the byzantine validators of :mod:`byzantine`. Events run in
simulated time from a heap, so a seed replays exactly. After the *chaos* period every partition heals,
drops stop, crashed nodes that will restart have restarted, and fresh requests arrive.

Invariants, checked at every commit: no two honest validators commit different blocks at a height;
every committed block has a certificate with a quorum of valid commit signatures from the set; blocks
commit in height order, and no request is committed twice. At the end: every request given to an
honest validator that stayed up is committed, and all honest validators reach the same height, within
``bound`` simulated seconds of the heal. A failure raises :class:`InvariantViolation` naming the seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from did_registry.consensus import (
    Broadcast,
    CancelTimer,
    Committed,
    ConsensusConfig,
    Engine,
    Message,
    NeedState,
    Output,
    Send,
    SetTimer,
    create_engine,
    encode,
)
from did_registry.errors import BadSignature
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from did_registry.identity.multibase import decode_base58btc
from did_registry.ledger.block import CommitCertificate, commit_message
from tests.did_registry.consensus.byzantine import Byzantine, Outsider
from tests.did_registry.consensus.fake_app import FakeApp
from tests.did_registry.consensus.scenarios import Scenario, make_validators, random_scenario

__all__ = ["FRESHNESS_INTERVAL", "InvariantViolation", "Node", "Report", "Simulator", "run_seed"]

FRESHNESS_INTERVAL = 2.0
"""The simulated networks commit an empty block when none came for this long (short, so that every
scenario has empty blocks in flight through its faults)."""


class InvariantViolation(AssertionError):
    """A safety or liveness property failed."""


@dataclass
class Node:
    """One validator: its app (the durable ledger), its engine (gone while crashed), its timers."""

    id: str
    key: Ed25519PrivateKey
    app: FakeApp = field(default_factory=FakeApp)
    certificates: list[CommitCertificate] = field(default_factory=list)
    engine: Engine | None = None
    timers: dict[str, float] = field(default_factory=dict)
    incarnation: int = 0
    last_tick: float = -1.0
    byzantine: Byzantine | None = None


@dataclass
class Report:
    """What a run did."""

    height: int
    recovery: float
    delivered: int
    events: int
    dropped: dict[str, int]


class Simulator:
    """Runs one scenario under one seed; :meth:`run` returns a :class:`Report` or raises."""

    def __init__(self, seed: int, scenario: Scenario, config: ConsensusConfig | None = None) -> None:
        self.seed, self.scenario = seed, scenario
        self.config = config or replace(ConsensusConfig.testing(), freshness_interval=FRESHNESS_INTERVAL)
        self.rng = random.Random(seed)
        self.validators, keys = make_validators(self.rng, scenario.n)
        self.nodes = {v: Node(v, k) for v, k in keys.items()}
        self.ids = list(self.nodes)
        for v, behaviours in scenario.byzantine:
            self.nodes[v].byzantine = Byzantine(
                self.rng, v, keys[v], self.ids, behaviours, frozenset(scenario.censored)
            )
        self.honest = [v for v in self.ids if self.nodes[v].byzantine is None]
        self.keys = {v.id: v.key for v in self.validators.validators}
        self.now = 0.0
        self._queue: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._counter = 0
        self.cuts: list[frozenset[str]] = []
        self.chaos = True
        self.healed_at: float | None = None
        self.chain: dict[int, bytes] = {}
        self.tracked: dict[bytes, str] = {}
        self.delivered = 0
        self.events = 0
        self.transfers: dict[str, int] = dict.fromkeys(self.ids, 0)

    # -- the event queue -------------------------------------------------------------------------
    def push(self, at: float, kind: str, *args: Any) -> None:
        """Schedule an event."""
        self._counter += 1
        heapq.heappush(self._queue, (max(at, self.now), self._counter, kind, args))

    def fail(self, reason: str) -> InvariantViolation:
        """The error for a broken invariant, naming the seed to replay."""
        return InvariantViolation(
            f"seed {self.seed} ({self.scenario.describe()}) at t={self.now:.3f}: {reason}\n"
            f"replay: pytest tests/did_registry/consensus/test_simulation.py --seed {self.seed}"
        )

    def run(self) -> Report:
        """Play the scenario; check the invariants; return the report."""
        s = self.scenario
        for node in self.nodes.values():
            self._start(node)
        for i in range(s.requests):
            self.push(
                self.rng.uniform(0, s.chaos),
                "request",
                self.rng.choice(self.ids),
                b"r-%d-%d" % (self.seed, i),
            )
        self.push(self.rng.uniform(0, s.chaos), "request", self.rng.choice(self.ids), b"bad-request")
        for v, at, restart in s.crashes:
            self.push(at, "crash", v)
            if restart is not None:
                self.push(restart, "restart", v)
        for start, until, side in s.partitions:
            self.push(start, "cut", side)
            self.push(until, "mend", side)
        for node in self.nodes.values():
            if node.byzantine is not None:
                self.push(self.rng.uniform(0, 0.3), "mischief", node.id)
        if s.outsider:
            self.push(self.rng.uniform(0, 0.3), "outsider", Outsider(self.rng, self.ids))
        self.push(s.chaos, "heal")
        deadline = s.chaos + s.bound
        while self._queue:
            at, _, kind, args = heapq.heappop(self._queue)
            self.now = at
            if at > deadline:
                raise self.fail(f"liveness: not done {s.bound}s after the heal; {self._progress()}")
            self.events += 1
            getattr(self, f"_on_{kind}")(*args)
            if self.healed_at is not None and kind in ("deliver", "timer", "transfer") and self._done():
                break
        height = max(self.nodes[v].app.height for v in self.honest)
        dropped: dict[str, int] = {}
        for node in self.nodes.values():
            for reason, count in (node.engine.dropped if node.engine else {}).items():
                dropped[reason] = dropped.get(reason, 0) + count
        recovery = self.now - (self.healed_at or 0.0)
        return Report(height, recovery, self.delivered, self.events, dropped)

    def run_for(self, seconds: float) -> None:
        """Start every validator and play ``seconds`` of simulated time with no requests and no faults
        but the scenario's crashes, checking the invariants at each commit (what an idle network does)."""
        for node in self.nodes.values():
            self._start(node)
        for v, at, restart in self.scenario.crashes:
            self.push(at, "crash", v)
            if restart is not None:
                self.push(restart, "restart", v)
        self.chaos = False
        while self._queue and self._queue[0][0] <= seconds:
            at, _, kind, args = heapq.heappop(self._queue)
            self.now = at
            getattr(self, f"_on_{kind}")(*args)

    # -- events ----------------------------------------------------------------------------------
    def _start(self, node: Node) -> None:
        resume = node.certificates[-1] if node.certificates else None
        node.engine = create_engine(
            self.scenario.engine, node.id, node.key, self.validators, node.app, self.config,
            resume=resume, restarted=node.incarnation > 0, timestamp=lambda now: f"t+{now:.3f}",
        )  # fmt: skip
        node.incarnation += 1
        node.timers.clear()
        self._tick(node)

    def _tick(self, node: Node) -> None:
        assert node.engine is not None
        node.last_tick = self.now
        self._apply(node, node.engine.on_tick(self.now))

    def _on_request(self, v: str, request: bytes) -> None:
        node = self.nodes[v]
        if node.engine is None:
            return
        if node.byzantine is None and not request.startswith(b"bad"):
            self.tracked[request] = v
        self._tick(node)
        if node.byzantine is not None and node.byzantine.censors(request):
            return
        self._apply(node, node.engine.on_request(request))

    def _on_deliver(self, v: str, sender: str, payload: bytes) -> None:
        node = self.nodes[v]
        if node.engine is None or not self._connected(sender, v):
            return
        self.delivered += 1
        if node.byzantine is not None:
            node.byzantine.observe(payload)
            if node.byzantine.refuses(payload):
                return
        if self.now - node.last_tick > 0.005:
            self._tick(node)
        self._apply(node, node.engine.on_payload(sender, payload))

    def _on_timer(self, v: str, name: str, at: float, incarnation: int) -> None:
        node = self.nodes[v]
        if node.engine is not None and node.incarnation == incarnation and node.timers.get(name) == at:
            del node.timers[name]
            self._tick(node)

    def _on_crash(self, v: str) -> None:
        node = self.nodes[v]
        node.engine = None
        node.timers.clear()
        for request, holder in list(self.tracked.items()):
            if holder == v:
                del self.tracked[request]  # a request held only in a crashed validator's memory is lost

    def _on_restart(self, v: str) -> None:
        self._start(self.nodes[v])

    def _on_cut(self, side: frozenset[str]) -> None:
        self.cuts.append(side)

    def _on_mend(self, side: frozenset[str]) -> None:
        if side in self.cuts:
            self.cuts.remove(side)

    def _on_heal(self) -> None:
        self.cuts.clear()
        self.chaos = False
        self.healed_at = self.now
        up = [v for v in self.honest if self.nodes[v].engine is not None]
        for i in range(3):
            self.push(
                self.now + 0.01 * i, "request", self.rng.choice(up), b"after-heal-%d-%d" % (self.seed, i)
            )

    def _on_mischief(self, v: str) -> None:
        node = self.nodes[v]
        assert node.byzantine is not None
        if node.engine is not None:
            for to, payload in node.byzantine.mischief():
                self._route(v, to, payload)
        self.push(self.now + self.rng.uniform(0.05, 0.3), "mischief", v)

    def _on_outsider(self, outsider: Outsider) -> None:
        for to, payload in outsider.mischief():
            self._route("mallory", to, payload)
        self.push(self.now + self.rng.uniform(0.1, 0.5), "outsider", outsider)

    def _on_transfer(self, v: str, incarnation: int) -> None:
        node = self.nodes[v]
        if node.engine is None or node.incarnation != incarnation:
            return
        sources = [
            self.nodes[s]
            for s in self.honest
            if s != v and self.nodes[s].engine is not None and self._connected(s, v)
        ]
        if not sources:
            return
        source = max(sources, key=lambda s: s.app.height)
        if source.app.height <= node.app.height:
            return
        assert node.engine.height == node.app.height
        for height in range(node.app.height + 1, source.app.height + 1):
            block, certificate = source.app.blocks[height - 1], source.certificates[height - 1]
            self._check_commit(node, height, block, certificate)
            node.app.apply(height, block)
            node.certificates.append(certificate)
        self.transfers[v] += 1
        self._apply(node, node.engine.on_state_transferred(node.certificates[-1]))

    # -- the network -----------------------------------------------------------------------------
    def _connected(self, a: str, b: str) -> bool:
        return all((a in side) == (b in side) for side in self.cuts) or "mallory" in (a, b)

    def _route(self, sender: str, to: str, payload: bytes) -> None:
        if not self._connected(sender, to):
            return
        s = self.scenario
        if self.chaos and self.rng.random() < s.drop:
            return
        copies = 2 if self.chaos and self.rng.random() < s.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(0.0005, s.delay)
            if self.rng.random() < s.slow:
                delay += self.rng.uniform(0.0, 0.5)
            self.push(self.now + delay, "deliver", to, sender, payload)

    def _emit(self, node: Node, message: Message, recipients: Sequence[str]) -> None:
        if node.byzantine is not None:
            packets = node.byzantine.outgoing(message, list(recipients), self.now)
        else:
            payload = encode(message)
            packets = [(to, payload) for to in recipients]
        for to, payload in packets:
            self._route(node.id, to, payload)

    def _apply(self, node: Node, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._emit(node, out.message, [out.to])
            elif isinstance(out, Broadcast):
                self._emit(node, out.message, [v for v in self.ids if v != node.id])
            elif isinstance(out, SetTimer):
                node.timers[out.name] = out.at
                self.push(out.at, "timer", node.id, out.name, out.at, node.incarnation)
            elif isinstance(out, CancelTimer):
                node.timers.pop(out.name, None)
            elif isinstance(out, Committed):
                self._check_commit(node, out.height, out.block, out.certificate)
                node.app.apply(out.height, out.block)
                node.certificates.append(out.certificate)
            elif isinstance(out, NeedState):
                if out.from_height != node.app.height + 1:
                    raise self.fail(
                        f"{node.id} asked for state from {out.from_height} at height {node.app.height}"
                    )
                self.push(self.now + self.rng.uniform(0.01, 0.05), "transfer", node.id, node.incarnation)

    # -- invariants ------------------------------------------------------------------------------
    def _check_commit(self, node: Node, height: int, block: bytes, certificate: CommitCertificate) -> None:
        if height != node.app.height + 1:
            raise self.fail(
                f"{node.id} committed height {height} after {node.app.height} (a gap or a repeat)"
            )
        digest = sha256(block)
        if certificate.height != height or certificate.block_hash != digest.hex():
            raise self.fail(f"{node.id}: the certificate of height {height} names another block")
        self.check_certificate(certificate, digest)
        if node.byzantine is None:
            agreed = self.chain.setdefault(height, digest)
            if agreed != digest:
                raise self.fail(
                    f"AGREEMENT: {node.id} committed {digest.hex()[:12]} at {height}, others {agreed.hex()[:12]}"
                )
        repeated = [r for r in node.app.requests(block) if r in node.app.committed]
        if repeated:
            raise self.fail(f"{node.id} committed request {repeated[0]!r} twice")

    def check_certificate(self, certificate: CommitCertificate, digest: bytes) -> None:
        """A quorum of distinct validators of the set signed ``commit_message(digest)``."""
        for validator, signature in certificate.signatures.items():
            key = self.keys.get(validator)
            if key is None:
                raise self.fail(f"certificate signed by non-validator {validator!r}")
            try:
                key.verify(commit_message(digest), decode_base58btc(signature))
            except (BadSignature, ValueError):
                raise self.fail(f"certificate carries a bad signature by {validator}") from None
        if len(certificate.signatures) < self.validators.quorum:
            raise self.fail(
                f"certificate has {len(certificate.signatures)} signatures, quorum {self.validators.quorum}"
            )

    def _up_honest(self) -> list[Node]:
        return [self.nodes[v] for v in self.honest if self.nodes[v].engine is not None]

    def _done(self) -> bool:
        up = self._up_honest()
        heights = {node.app.height for node in up}
        return len(heights) == 1 and all(r in node.app.committed for node in up for r in self.tracked)

    def _progress(self) -> str:
        parts = []
        for node in self._up_honest():
            missing = sum(1 for r in self.tracked if r not in node.app.committed)
            engine = node.engine
            state = f"view={getattr(engine, 'view', '-')} active={getattr(engine, 'active', '-')} round={getattr(engine, 'round', '-')}"
            parts.append(f"{node.id}: height={node.app.height} missing={missing} {state}")
        return "; ".join(parts)


def run_seed(seed: int, engine: str) -> Report:
    """Run the random scenario of ``seed`` for ``engine``."""
    return Simulator(seed, random_scenario(seed, engine)).run()

"""A whole-platform run: validators, the portal's enrolment, two verifier-protected services, devices, faults.

:func:`simulate` does, in order:

1. starts ``validators`` validator processes on loopback (:class:`fleet.network.FleetNetwork`, the
   embedded SQLite default, links through fault-injecting relays), or uses the nodes given;
2. sets up the issuer organisation and a reporter (:class:`fleet.operator.Operator`) and starts the
   two example services (``telemetry`` and ``firmware``, :mod:`fleet.service`), each its own process
   with its own verifier;
3. enrols ``devices`` devices through the portal's bulk path, then has the services read the fleet
   in (an edge gateway provisioned with its devices) and write a snapshot;
4. for ``duration`` seconds runs the workload — devices authenticating (:class:`fleet.traffic.Traffic`),
   the issuer revoking, suspending and reinstating devices, devices rotating keys, a rogue device
   replaying requests until the reporter quarantines it — while the faults are injected on time;
5. waits for the validators to agree, checks the invariants (:mod:`fleet.invariants`) and returns
   the figures of the report (:mod:`fleet.report`'s schema).

Progress lines go to ``progress`` every two seconds.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from did_registry.client import LedgerClient
from did_registry.errors import DidRegistryError
from did_registry.genesis_file import GenesisFileError, read_genesis_file
from fleet.devices import SimulatedDevice
from fleet.errors import FleetError, UnusableInput
from fleet.external import ExternalNetwork
from fleet.faults import FaultInjector, parse_faults
from fleet.invariants import Judgement, Verdict, check_roots, check_writes, judge_decisions
from fleet.metrics import Recorder, percentile
from fleet.network import FleetNetwork
from fleet.operator import ENROL_BATCH, Operator
from fleet.service_process import ServiceProcess
from fleet.traffic import RENEWAL_REASONS, Endpoint, Traffic
from wallet.errors import KeystoreError
from wallet.keystore import Keystore
from wallet.localnet import free_base_port
from web.organisation import PortalError

__all__ = ["MAX_DURATION", "MIN_DURATION", "SERVICES", "SimulationConfig", "simulate"]

SERVICES: Final = ("telemetry", "firmware")
"""The example services the devices authenticate to."""
MIN_DURATION: Final = 5.0
"""The shortest workload (seconds) worth a run."""
MAX_DURATION: Final = 7 * 24 * 3600.0
"""The longest workload (seconds): a week."""
_NETWORK: Final = "fleet"
_PASSPHRASE: Final = "trellis-fleet-simulation"  # noqa: S105 - a throwaway local network


@dataclass
class SimulationConfig:
    """What to simulate (``trellis simulate``'s options)."""

    devices: int = 200
    validators: int = 4
    engine: str = "pbft"
    duration: float = 30.0
    faults: str = ""
    nodes: Sequence[str] = ()
    """Use this running network instead of starting one (``genesis`` and ``trustee`` are then needed)."""
    genesis: Path | None = None
    trustee: Path | None = None
    passphrase: str = _PASSPHRASE
    """The trustee keystore's pass phrase."""
    directory: Path | None = None
    """Where the run keeps its files (a temporary folder, removed at the end, by default)."""
    clients: int = 8
    revoke_fraction: float = 0.02
    suspend_fraction: float = 0.02
    rotate_fraction: float = 0.01
    batch: int = ENROL_BATCH
    seed: int = 1
    progress: Callable[[str], None] | None = field(default=None, repr=False)

    def check(self) -> None:
        """Raise :class:`FleetError` naming the first option out of range."""
        if self.devices < 10:
            raise FleetError("--devices must be at least 10")
        if not self.nodes and not 1 <= self.validators <= 16:
            raise FleetError("--validators must be between 1 and 16")
        if not MIN_DURATION <= self.duration <= MAX_DURATION:  # (not NaN either)
            raise FleetError(f"--duration must be from {MIN_DURATION:g} to {MAX_DURATION:g} seconds")
        if self.nodes and (self.genesis is None or self.trustee is None):
            raise FleetError("--node needs --genesis and --trustee (the network's trustee keystore)")
        if self.nodes and self.faults.strip() not in ("", "none"):
            raise FleetError("faults need a network the simulation starts itself (leave out --node)")
        for name in ("revoke_fraction", "suspend_fraction", "rotate_fraction"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise FleetError(f"{name} must be between 0 and 0.5")


def simulate(config: SimulationConfig) -> dict[str, Any]:
    """Run the simulation (see the module docstring); the report's figures."""
    config.check()
    faults = parse_faults(config.faults, config.duration, SERVICES)
    owned = config.directory is None
    directory = Path(tempfile.mkdtemp(prefix="trellis-fleet-")) if owned else Path(config.directory or ".")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return _Run(config, directory, faults).run()
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


class _Run:
    def __init__(self, config: SimulationConfig, directory: Path, faults: list[Any]) -> None:
        self.config = config
        self.directory = directory
        self.faults = faults
        self.recorder = Recorder()
        self.rng = random.Random(config.seed)  # noqa: S311 - a reproducible workload, not secrets
        self.say = config.progress or (lambda _: None)
        self.phase = "starting"
        self.devices: list[SimulatedDevice] = []
        self.phases: dict[str, float] = {}
        self._stop = threading.Event()
        self.heights: list[int] = [0]
        self.errors: list[str] = []
        self._injector: FaultInjector | None = None

    def _begin(self, phase: str, detail: str) -> None:
        """Enter ``phase`` and say so (the progress lines then name it)."""
        self.phase = phase
        self.say(f"[{self.recorder.now():6.1f}s] {phase}: {detail}")

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        config = self.config
        network: FleetNetwork | ExternalNetwork
        if config.nodes:
            network = ExternalNetwork(config.nodes)
            genesis, trustee = self._given_files()
        else:
            self.say(f"starting {config.validators} {config.engine} validators")
            network = FleetNetwork(
                self.directory / "net",
                config.validators,
                engine=config.engine,
                network=_NETWORK,
                passphrase=config.passphrase,
            )
            network.start()
            genesis = json.loads((self.directory / "net" / "genesis.json").read_text())
            trustee = Keystore.open(self.directory / "net" / "trustee.key", config.passphrase)
        services: list[ServiceProcess] = []
        progress = threading.Thread(target=self._progress, args=(network,), daemon=True)
        try:
            with LedgerClient(network.urls, genesis, timeout=30) as ledger:
                threading.Thread(target=self._follow, args=(network.urls, genesis), daemon=True).start()
                progress.start()
                operator = Operator(
                    self.directory / "portal", ledger, trustee, self.recorder, "http://127.0.0.1"
                )
                self._begin("setting up", "the organisation, a reporter and the two services")
                operator.set_up()
                base = free_base_port(len(SERVICES))
                for n, name in enumerate(SERVICES):
                    service = ServiceProcess(
                        name,
                        self.directory / name,
                        genesis["network"],
                        network.service_urls_for(name),
                        genesis,
                        base + n,
                    )
                    # A snapshot proves every cached record: cheap for a small fleet, a minute of
                    # work at 100,000 devices, so large fleets keep the one taken after provisioning.
                    service.snapshot_every = 5.0 if config.devices <= 5_000 else 0.0
                    service.start()
                    services.append(service)
                figures = self._workload(network, operator, services, genesis)
        finally:
            self._stop.set()
            for service in services:
                service.stop()
            if not config.nodes:
                network.stop()
        return figures

    def _given_files(self) -> tuple[dict[str, Any], Keystore]:
        """The genesis and the trustee keystore of a network given by URL; :class:`UnusableInput`,
        naming the file and why, when one cannot be used."""
        config = self.config
        try:
            genesis = read_genesis_file(Path(config.genesis or "")).to_json()
        except GenesisFileError as exc:
            raise UnusableInput(str(exc)) from None
        try:
            trustee = Keystore.open(Path(config.trustee or ""), config.passphrase)
        except KeystoreError as exc:
            raise UnusableInput(f"the trustee keystore does not open: {exc}") from None
        return genesis, trustee

    def _workload(
        self,
        network: FleetNetwork | ExternalNetwork,
        operator: Operator,
        services: list[ServiceProcess],
        genesis: dict[str, Any],
    ) -> dict[str, Any]:
        config = self.config
        self._begin("enrolling", f"{config.devices} devices through the portal's bulk path")
        began = self.recorder.now()
        self.devices = operator.enrol(config.devices, batch=config.batch, stop=self._stop)
        self.phases["enrolment_s"] = self.recorder.now() - began
        if not self.devices:
            raise FleetError("no device was enrolled")
        self._begin("provisioning services", "each reads the fleet in and writes a snapshot")
        dids = [d.did for d in self.devices]

        def provision(service: ServiceProcess) -> None:
            service.call("POST", "/prefetch", json={"dids": dids}, timeout=900.0)
            service.call("POST", "/snapshot", timeout=900.0)

        with ThreadPoolExecutor(len(services)) as pool:
            list(pool.map(provision, services))
        self.phases["provisioning_s"] = self.recorder.now() - began - self.phases["enrolment_s"]
        endpoints = [Endpoint(s.name, s.url) for s in services]
        traffic = Traffic(self.devices, endpoints, self.recorder, clients=config.clients, seed=config.seed)
        by_name = {s.name: s for s in services}
        injector = FaultInjector(
            self.faults,
            network,  # type: ignore[arg-type]  # only a FleetNetwork gets faults (config.check)
            lambda name: by_name[name].restart_from_snapshot(),
            self.recorder,
        )
        self._begin(
            "workload", f"{config.duration:g} s" + (f", faults {config.faults}" if self.faults else "")
        )
        self._injector = injector
        workload_began = self.recorder.now()
        rogue = self.devices[self.rng.randrange(len(self.devices))]
        rogue.rogue = True
        traffic.start()
        injector.start()
        actors = [
            threading.Thread(target=self._issuer, args=(operator, traffic), daemon=True),
            threading.Thread(target=self._reporter, args=(operator, traffic, services), daemon=True),
            threading.Thread(target=self._rogue, args=(traffic, rogue), daemon=True),
        ]
        for actor in actors:
            actor.start()
        self._stop.wait(max(0.0, workload_began + config.duration - self.recorder.now()))
        self._begin("stopping", "the devices, the issuer, the reporter and the faults")
        injector.stop()
        self._stop.set()
        for actor in actors:
            actor.join(90)
        traffic.stop()
        self.phases["workload_s"] = self.recorder.now() - workload_began
        self._begin("probing", "waiting for the last changes to be refused")
        traffic.finish_probes()
        self._begin("checking", "the invariants")
        heads = network.wait_converged(timeout=120.0)
        nodes = {n: network.url(n) for n in network.running()}
        writes, lost = check_writes(nodes, genesis, operator.acknowledged, self.devices)
        judgement = judge_decisions(traffic.decisions, traffic.probes)
        verdicts = [writes, check_roots(heads), *judgement.verdicts]
        if injector.errors:
            verdicts.append(Verdict("every fault injected", False, "; ".join(injector.errors[:5])))
        return self._figures(traffic, injector, verdicts, lost, judgement, heads, services)

    # -- actors -----------------------------------------------------------------------------
    def _issuer(self, operator: Operator, traffic: Traffic) -> None:
        """Revocations, suspensions, reinstatements and key rotations, spread over the first 80 %."""
        config, n = self.config, len(self.devices)
        plan = (
            ["revocation"] * math.ceil(n * config.revoke_fraction)
            + ["suspension"] * math.ceil(n * config.suspend_fraction)
            + ["rotation"] * math.ceil(n * config.rotate_fraction)
        )
        actions = min(len(plan), max(1, int(config.duration * 0.8 / 0.5)))  # at most one every 0.5 s
        per_action = math.ceil(len(plan) / actions) if plan else 0
        self.rng.shuffle(plan)
        start, window = self.recorder.now(), config.duration * 0.8
        suspended: list[SimulatedDevice] = []
        untouched = [d for d in self.devices if not d.rogue]
        self.rng.shuffle(untouched)
        for k in range(actions):
            if self._stop.wait(max(0.0, start + window * k / actions - self.recorder.now())):
                return
            kinds = Counter(plan[k * per_action : (k + 1) * per_action])
            try:
                for kind, count in sorted(kinds.items()):
                    chosen = [untouched.pop() for _ in range(min(count, len(untouched)))]
                    if not chosen:
                        continue
                    if kind == "rotation":
                        for device in chosen:
                            with device.lock:
                                operator.rotate(device)
                        continue
                    operator.change_status(kind, chosen)
                    self._probe(traffic, chosen[0], kind)
                    if kind == "suspension":
                        suspended.extend(chosen)
                if suspended and k % 3 == 2:  # lift some suspensions: those devices are legitimate again
                    operator.change_status("reinstatement", [suspended.pop(0)])
            except (FleetError, PortalError, DidRegistryError) as exc:
                self.errors.append(f"issuer: {exc}")

    def _probe(self, traffic: Traffic, device: SimulatedDevice, kind: str) -> None:
        traffic.start_probe(device, kind, max(c.submitted for c in device.changes if c.kind == kind))

    def _reporter(self, operator: Operator, traffic: Traffic, services: list[ServiceProcess]) -> None:
        """Quarantine the devices the services report as suspects."""
        reported: set[str] = set()
        by_did = {d.did: d for d in self.devices}
        while not self._stop.wait(1.0):
            for service in services:
                try:
                    suspects = service.status()["suspects"]
                except FleetError:
                    continue  # restarting
                for did in suspects:
                    if did in reported or did not in by_did:
                        continue
                    reported.add(did)
                    try:
                        operator.quarantine(by_did[did], f"replayed signed requests seen by {service.name}")
                        self._probe(traffic, by_did[did], "quarantine")
                    except (FleetError, DidRegistryError) as exc:
                        self.errors.append(f"reporter: {exc}")

    def _rogue(self, traffic: Traffic, device: SimulatedDevice) -> None:
        """The rogue device replays a signed request to a service about every 0.3 s."""
        import httpx

        with httpx.Client(timeout=10.0) as http:
            while not self._stop.wait(0.3) and not device.blocked:
                with device.lock:
                    try:
                        traffic.replay(http, device, self.rng.choice(traffic.services))
                    except httpx.HTTPError as exc:
                        self.errors.append(f"rogue: {exc}")

    # -- watching ---------------------------------------------------------------------------
    def _follow(self, urls: list[str], genesis: dict[str, Any]) -> None:
        """Count committed transactions per second from the certified header stream."""
        with LedgerClient(urls, genesis, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    for header in client.follow(self.heights[-1]):
                        self.recorder.count("ledger_txns", header.txn_count)
                        self.heights.append(header.height)
                        if self._stop.is_set():
                            return
                except Exception:
                    self._stop.wait(0.5)

    def _progress(self, network: FleetNetwork | ExternalNetwork) -> None:
        last_auth, last_t = 0.0, self.recorder.now()
        while not self._stop.wait(2.0):
            now = self.recorder.now()
            auth = self.recorder.total("admitted") + self.recorder.total("refused")
            rate = (auth - last_auth) / max(1e-9, now - last_t)
            last_auth, last_t = auth, now
            faults = self._injector
            active = ", ".join(f"{f.kind} {f.target}" for f in faults.active()) if faults else ""
            self.say(
                f"[{now:6.1f}s] {self.phase:<22} height {self.heights[-1]:>6}  enrolled "
                f"{int(self.recorder.total('enrolled')):>6}/{self.config.devices}  auth {int(auth):>7} "
                f"({rate:5.0f}/s)  refused {int(self.recorder.total('refused')):>5}  revoked "
                f"{int(self.recorder.total('revocation'))} suspended {int(self.recorder.total('suspension'))} "
                f"quarantined {int(self.recorder.total('quarantine'))} rotated {int(self.recorder.total('rotation'))}"
                + (f"  faults: {active}" if active else "")
            )

    # -- the figures ------------------------------------------------------------------------
    def _figures(
        self,
        traffic: Traffic,
        injector: FaultInjector,
        verdicts: list[Verdict],
        lost: int,
        judgement: Judgement,
        heads: Mapping[str, Mapping[str, Any]],
        services: list[ServiceProcess],
    ) -> dict[str, Any]:
        config, recorder = self.config, self.recorder
        end = recorder.last_second()
        latency = recorder.percentiles_by_second("write_latency_ms", (50, 99), end)
        txns = recorder.rates("ledger_txns", end)
        counted = [d for d in traffic.decisions if d.admitted or d.reason not in RENEWAL_REASONS]
        workload = [d for d in counted if d.flow not in ("replay", "probe")]
        reasons = Counter(str(d.reason) for d in counted if not d.admitted)
        probe_ms = [p.ms for p in traffic.probes if p.ms is not None]
        writes = recorder.values("write_latency_ms")
        run_s = max(1e-9, recorder.now())
        enrolled = len(self.devices)
        return {
            "title": f"Trellis fleet simulation: {enrolled} devices, {config.duration:.0f} s",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {
                "devices": config.devices,
                "validators": len(heads),
                "engine": config.engine if not config.nodes else "external",
                "duration_s": config.duration,
                "faults": [f"{f.kind}:{f.target}@{f.start:g}+{f.duration:g}" for f in self.faults],
                "services": len(services),
                "clients": config.clients,
                "seed": config.seed,
            },
            "summary": {
                "devices": config.devices,
                "enrolled": enrolled,
                "enrol_per_s": enrolled / max(1e-9, self.phases.get("enrolment_s", 0.0)),
                "authentications": len(workload),
                "auth_per_s": len(workload) / max(1e-9, self.phases.get("workload_s", 0.0)),
                "refusals": sum(reasons.values()),
                "revocation_to_refusal_ms_p50": percentile(probe_ms, 50),
                "revocation_to_refusal_ms_p99": percentile(probe_ms, 99),
                "ledger_txn_per_s": recorder.total("ledger_txns") / run_s,
                "write_latency_ms_p50": percentile(writes, 50),
                "write_latency_ms_p99": percentile(writes, 99),
                "final_height": max(int(h["height"]) for h in heads.values()),
                "lost_writes": lost,
                "wrong_decisions": judgement.wrong_decisions,
                "unanswered_requests": int(recorder.total("traffic_errors")),
            },
            "invariants": [v.to_json() for v in verdicts],
            "series": {
                "ledger": [
                    {"t": float(s), "txn_per_s": n, "latency_ms_p50": p[0], "latency_ms_p99": p[1]}
                    for (s, n), (_, p) in zip(txns, latency, strict=True)
                ],
                "enrolment": [
                    {"t": float(s), "enrolled_per_s": n} for s, n in recorder.rates("enrolled", end)
                ],
                "auth": [
                    {"t": float(s), "admitted_per_s": a, "refused_per_s": r}
                    for (s, a), (_, r) in zip(
                        recorder.rates("admitted", end), recorder.rates("refused", end), strict=True
                    )
                ],
            },
            "refusals_by_reason": dict(sorted(reasons.items())),
            "revocations": [
                {
                    "t": recorder.at(p.submitted),
                    "kind": p.kind,
                    "did": p.did,
                    "service": p.service,
                    "ms": p.ms,
                }
                for p in traffic.probes
                if p.ms is not None
            ],
            "faults": [f.to_json() for f in injector.injected],
            "phases": self.phases,
            "wrong_decision_examples": [
                {
                    "t": recorder.at(d.ended),
                    "service": d.service,
                    "flow": d.flow,
                    "did": d.device.did,
                    "admitted": d.admitted,
                    "reason": d.reason,
                    "detail": d.detail,
                    "view_height": d.view_height,
                    "changes": [[c.kind, c.height] for c in d.device.changes],
                }
                for d in judgement.wrong[:50]
            ],
            "errors": (self.errors + traffic.errors + injector.errors)[:50],
            "changes": {
                k: int(recorder.total(k))
                for k in ("revocation", "suspension", "reinstatement", "quarantine", "rotation")
            },
            "services": {s.name: {"restarts": s.restarts} for s in services},
        }

"""Faults a simulation injects: what ``--faults`` says, and the thread that injects them on time.

``--faults`` is a comma-separated list of ``KIND[:TARGET][@START][+DURATION]``:

- ``kill``: SIGKILL a validator, start it again on its files ``DURATION`` s later;
- ``partition``: cut a validator off from the others (consensus and state transfer), heal later;
- ``slow``: hold every byte to and from a validator for :data:`SLOW_DELAY` s, then undo it;
- ``verifier-restart``: make the ledger unreachable for a service, crash it and start it again
  from its snapshot, and give the ledger back ``DURATION`` s later (the other service keeps it).

``TARGET`` of a validator fault is ``primary`` (resolved when the fault is injected), ``backup``
(a validator that is not the primary) or a node id (``node-3``); of ``verifier-restart`` a service
name. ``START`` is seconds into the workload; without it, faults are spread evenly over the run.
``all`` stands for one fault of each kind, the primary and a backup each killed once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from fleet.errors import FleetError
from fleet.metrics import Recorder

__all__ = ["KINDS", "SLOW_DELAY", "Fault", "FaultInjector", "InvalidFaultSpec", "Injected", "parse_faults"]

KINDS: Final = ("kill", "partition", "slow", "verifier-restart")
SLOW_DELAY: Final = 0.15
"""Seconds every chunk to and from a slowed validator is held."""
_DEFAULT_DURATION: Final = {"kill": 6.0, "partition": 6.0, "slow": 8.0, "verifier-restart": 8.0}
_ITEM: Final = re.compile(
    r"(?P<kind>[a-z-]+)(?::(?P<target>[A-Za-z0-9_.-]+))?(?:@(?P<start>\d+(?:\.\d+)?))?(?:\+(?P<duration>\d+(?:\.\d+)?))?"
)


class InvalidFaultSpec(FleetError, ValueError):
    """``--faults`` does not parse (the message names the item and what is wrong)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject: kind, target, start (s into the workload) and duration."""

    kind: str
    target: str
    start: float
    duration: float


@dataclass(frozen=True, slots=True)
class Injected:
    """A fault as injected: run times from ``t`` to ``until``, the resolved target and a note."""

    t: float
    until: float | None
    kind: str
    target: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The report's form."""
        return {
            "t": self.t,
            "until": self.until,
            "kind": self.kind,
            "target": self.target,
            "detail": self.detail,
        }


def parse_faults(spec: str, duration: float, services: Sequence[str]) -> list[Fault]:
    """The faults of ``spec`` (see the module docstring) for a workload of ``duration`` seconds."""
    spec = spec.strip()
    if not spec or spec == "none":
        return []
    if spec == "all":
        spec = "kill:primary,partition:backup,slow:backup,verifier-restart,kill:backup"
    parsed: list[tuple[str, str, float | None, float]] = []
    for item in (part.strip() for part in spec.split(",")):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise InvalidFaultSpec(f"fault {item!r} is not KIND[:TARGET][@START][+DURATION]")
        kind = match["kind"]
        if kind not in KINDS:
            raise InvalidFaultSpec(f"fault {item!r}: kind must be one of {', '.join(KINDS)}")
        target = match["target"] or (
            "primary" if kind == "kill" else services[0] if kind == "verifier-restart" else "backup"
        )
        if kind == "verifier-restart" and target not in services:
            raise InvalidFaultSpec(f"fault {item!r}: no service {target!r} (services: {', '.join(services)})")
        if kind != "verifier-restart" and not re.fullmatch(r"primary|backup|node-\d+", target):
            raise InvalidFaultSpec(f"fault {item!r}: target must be primary, backup or node-N")
        length = float(match["duration"]) if match["duration"] else _DEFAULT_DURATION[kind]
        if length <= 0:
            raise InvalidFaultSpec(f"fault {item!r}: the duration must be positive")
        start = float(match["start"]) if match["start"] else None
        parsed.append((kind, target, start, length))
    faults = []
    for n, (kind, target, start, length) in enumerate(parsed):
        if start is None:  # spread evenly; each ends before the next begins when the run is long enough
            start = duration * (n + 0.5) / len(parsed) - length / 2
        start = max(1.0, start)
        if start + length > duration:
            raise InvalidFaultSpec(
                f"fault {kind}:{target} from {start:.1f} s for {length:.1f} s ends after the {duration:.0f} s run"
            )
        faults.append(Fault(kind, target, start, length))
    return sorted(faults, key=lambda f: f.start)


class FaultTarget(Protocol):
    """What the injector acts on: the validators (a :class:`fleet.network.FleetNetwork`)."""

    def kill(self, node_id: str) -> None: ...
    def restart(self, node_id: str) -> None: ...
    def partition(self, node_id: str) -> None: ...
    def heal(self, node_id: str) -> None: ...
    def slow(self, node_id: str, delay: float) -> None: ...
    def unslow(self, node_id: str) -> None: ...
    def cut_services(self, service: str | None = None) -> None: ...
    def restore_services(self, service: str | None = None) -> None: ...
    def primary(self) -> str: ...
    def running(self) -> list[str]: ...


class FaultInjector:
    """Injects ``faults`` on time in a thread, from when :meth:`start` is called (see the module docstring).

    ``restart_service(name)`` crashes a service and starts it from its snapshot.
    """

    def __init__(
        self,
        faults: Sequence[Fault],
        network: FaultTarget,
        restart_service: Callable[[str], None],
        recorder: Recorder,
    ) -> None:
        self.faults = list(faults)
        self.network = network
        self.restart_service = restart_service
        self.recorder = recorder
        self.injected: list[Injected] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Begin the schedule now."""
        self._thread = threading.Thread(target=self._run, name="fleet-faults", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until every fault is injected and undone."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Stop early (a fault under way is still undone)."""
        self._stop.set()
        self.join(60)

    def active(self) -> list[Injected]:
        """The faults in force now."""
        with self._lock:
            return [f for f in self.injected if f.until is None]

    def _run(self) -> None:
        began = self.recorder.now()
        for fault in self.faults:
            if self._stop.wait(max(0.0, began + fault.start - self.recorder.now())):
                return
            try:
                self._inject(fault)
            except Exception as exc:
                self.errors.append(f"{fault.kind}:{fault.target}: {exc}")

    def _resolve(self, target: str) -> str:
        if target.startswith("node-"):
            return target
        primary = self.network.primary()
        if target == "primary":
            return primary
        backups = [n for n in sorted(self.network.running()) if n != primary]
        if not backups:
            raise FleetError("no running backup to fault")
        return backups[-1]

    def _inject(self, fault: Fault) -> None:
        target = self._resolve(fault.target) if fault.kind != "verifier-restart" else fault.target
        detail = f"{fault.target}" if target != fault.target else ""
        record = Injected(self.recorder.now(), None, fault.kind, target, detail)
        with self._lock:
            self.injected.append(record)
        try:
            if fault.kind == "kill":
                self.network.kill(target)
                self._stop.wait(fault.duration)
                self.network.restart(target)
            elif fault.kind == "partition":
                self.network.partition(target)
                self._stop.wait(fault.duration)
                self.network.heal(target)
            elif fault.kind == "slow":
                self.network.slow(target, SLOW_DELAY)
                self._stop.wait(fault.duration)
                self.network.unslow(target)
            else:
                self.network.cut_services(target)
                try:
                    self.restart_service(target)
                    self._stop.wait(fault.duration)
                finally:
                    self.network.restore_services(target)
        finally:
            with self._lock:
                self.injected[self.injected.index(record)] = replace(record, until=self.recorder.now())

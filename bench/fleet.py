"""``python -m bench.fleet [--quick]``: the whole platform at fleet scale (``trellis simulate`` without faults).

Four PBFT validator processes on loopback (SQLite, the embedded default), the portal's bulk
enrolment, two example services each in its own process with its own verifier, and device client
threads (:mod:`fleet.simulation`). The figures:

- ``devices``: devices enrolled (full run: 100,000; ``--quick``: 1,000);
- ``enrol_per_s``: complete enrolments per second through the bulk path (device key, self-signed
  ``did.create``, endorsement, ledger commit, credential with status entries);
- ``auth_per_s``: authentications answered per second by both services together, sustained over
  the workload (session, signed-request and challenge-response flows as devices choose them);
- ``revocation_to_refusal_ms_p99``: from the issuer's revocation, suspension or quarantine being
  submitted until each service refuses the device, 99th percentile over every change probed;
- ``lost_writes`` and ``wrong_decisions``: from the simulation's own invariants (both must be 0).

Progress lines go to stderr. The yardstick ``raw_verify_per_s`` is measured in the same run.
Targets: 100,000 devices; ``revocation_to_refusal_ms_p99`` <= 2,000; no lost write, no wrong decision.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from bench._common import parse_args, raw_verify_per_s, report
from fleet.simulation import SimulationConfig, simulate

__all__ = ["main"]


def main() -> None:
    """Measure and print the JSON."""
    args = parse_args(__doc__ or "")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the validators and services
    devices, duration = (1_000, 20.0) if args.quick else (100_000, 60.0)
    raw = raw_verify_per_s(1.0 if args.quick else 3.0)
    config = SimulationConfig(
        devices=devices,
        duration=duration,
        batch=5_000,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    figures = simulate(config)
    summary = figures["summary"]
    result: dict[str, Any] = {
        "raw_verify_per_s": raw,
        "network": "4 PBFT validators, separate processes, SQLite, loopback; 2 services, separate processes",
        "devices": summary["enrolled"],
        "enrol_per_s": summary["enrol_per_s"],
        "auth_per_s": summary["auth_per_s"],
        "auth_per_s_over_raw": summary["auth_per_s"] / raw,
        "revocation_to_refusal_ms_p50": summary["revocation_to_refusal_ms_p50"],
        "revocation_to_refusal_ms_p99": summary["revocation_to_refusal_ms_p99"],
        "changes_probed": len(figures["revocations"]),
        "lost_writes": summary["lost_writes"],
        "wrong_decisions": summary["wrong_decisions"],
        "invariants_ok": all(i["ok"] for i in figures["invariants"]),
        "phases_s": figures["phases"],
    }
    p99 = summary["revocation_to_refusal_ms_p99"]
    targets = {
        "devices >= 100000": summary["enrolled"] >= 100_000,
        "revocation_to_refusal_ms_p99 <= 2000": p99 is not None and p99 <= 2_000,
        "lost_writes == 0": summary["lost_writes"] == 0,
        "wrong_decisions == 0": summary["wrong_decisions"] == 0,
    }
    report("fleet", result, targets, args.quick)


if __name__ == "__main__":
    main()

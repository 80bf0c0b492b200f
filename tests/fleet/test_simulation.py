"""``trellis simulate`` end to end: a small fleet on four real validator processes, one fault of each kind.

The run enrols a few hundred devices through the portal's bulk path, has them authenticate to the two
example services for a minute while the issuer revokes and suspends, a device rotates its key, a rogue
device replays requests until it is quarantined, and the primary and a backup are killed, a backup is
partitioned and slowed, and a verifier is restarted from its snapshot while the ledger is out of its
reach. The simulation checks its own invariants; this test reads them back from the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fleet.report import read_embedded_figures

pytestmark = pytest.mark.slow


class _Cells(HTMLParser):
    """The summary cells of the report page: ``data-key`` -> ``data-value`` (JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, Any] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "td" and named.get("data-key") and named.get("data-value") is not None:
            self.cells[str(named["data-key"])] = json.loads(str(named["data-value"]))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    folder = tmp_path_factory.mktemp("simulate")
    command = [sys.executable, "-c", "from fleet.cli import main; main()", "simulate", "--devices", "300",
               "--duration", "75", "--faults", "all", "--report", str(folder / "report"), "--clients", "6"]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=540, check=False, env={**os.environ}
    )
    return result, folder / "report"


@pytest.mark.timeout(600)
def test_the_run_exits_0_and_every_invariant_holds(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, report = run
    figures = json.loads((report / "report.json").read_text())
    failed = [i for i in figures["invariants"] if not i["ok"]]
    assert result.returncode == 0, (failed, result.stdout[-3000:], result.stderr[-3000:])
    assert not failed
    assert figures["summary"]["lost_writes"] == 0
    assert figures["summary"]["wrong_decisions"] == 0


@pytest.mark.timeout(600)
def test_one_fault_of_each_kind_was_injected_and_undone(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    figures = json.loads((run[1] / "report.json").read_text())
    faults = figures["faults"]
    assert sorted({f["kind"] for f in faults}) == ["kill", "partition", "slow", "verifier-restart"]
    assert {f["detail"] for f in faults if f["kind"] == "kill"} == {"primary", "backup"}
    assert all(f["until"] is not None and f["until"] > f["t"] for f in faults)
    assert figures["services"]["telemetry"]["restarts"] == 1


@pytest.mark.timeout(600)
def test_every_kind_of_change_happened_and_was_refused(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    figures = json.loads((run[1] / "report.json").read_text())
    assert figures["summary"]["enrolled"] == 300
    assert all(
        figures["changes"][kind] >= 1 for kind in ("revocation", "suspension", "quarantine", "rotation")
    )
    assert {"revoked", "suspended", "quarantined", "replayed"} <= set(figures["refusals_by_reason"])
    assert {r["kind"] for r in figures["revocations"]} == {"revocation", "suspension", "quarantine"}
    assert figures["summary"]["authentications"] > 1000


@pytest.mark.timeout(600)
def test_the_reports_json_matches_its_html(run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    report = run[1]
    figures = json.loads((report / "report.json").read_text())
    page = (report / "report.html").read_text()
    assert read_embedded_figures(page) == figures
    cells = _Cells()
    cells.feed(page)
    assert {k: cells.cells[k] for k in figures["summary"]} == figures["summary"]


@pytest.mark.timeout(600)
def test_the_summary_printed_at_the_end_names_every_invariant(
    run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, report = run
    figures = json.loads((report / "report.json").read_text())
    assert all(f"OK      {i['name']}" in result.stdout for i in figures["invariants"])
    for phase in ("enrolling: 300 devices", "workload: 75 s, faults all", "checking: the invariants"):
        assert phase in result.stderr  # progress while it ran
    assert result.stderr.count(" auth ") >= 10  # and a progress line every 2 s


def test_bad_options_exit_2_with_the_problem_named() -> None:
    from click.testing import CliRunner

    from fleet.cli import main

    result = CliRunner().invoke(main, ["simulate", "--faults", "meteor", "--devices", "50"])
    assert result.exit_code == 2
    assert "kind must be one of" in result.output
    result = CliRunner().invoke(main, ["simulate", "--devices", "3"])
    assert result.exit_code == 2
    assert "--devices must be at least 10" in result.output


@pytest.mark.timeout(300)
def test_a_running_network_given_by_url_is_simulated_against_and_left_running(tmp_path: Path) -> None:
    from fleet.simulation import SimulationConfig, simulate
    from wallet.localnet import LocalNetwork

    with LocalNetwork(tmp_path / "net", 1, network="given", passphrase="given pass phrase") as net:
        config = SimulationConfig(
            devices=40,
            duration=8,
            clients=3,
            nodes=net.urls,
            genesis=net.directory / "genesis.json",
            trustee=net.directory / "trustee.key",
            passphrase="given pass phrase",
        )
        figures = simulate(config)
        assert net.running() == ["node-1"]
    assert [i["name"] for i in figures["invariants"] if not i["ok"]] == []
    assert figures["config"]["engine"] == "external"
    assert figures["summary"]["enrolled"] == 40


def test_faults_are_refused_for_a_network_the_simulation_did_not_start(tmp_path: Path) -> None:
    from fleet.errors import FleetError
    from fleet.simulation import SimulationConfig, simulate

    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    config = SimulationConfig(nodes=["http://127.0.0.1:9"], genesis=genesis, trustee=genesis, faults="kill")
    with pytest.raises(FleetError, match="faults need a network the simulation starts"):
        simulate(config)


@pytest.mark.timeout(300)
def test_sigterm_stops_the_run_and_every_process_it_started(tmp_path: Path) -> None:
    """A simulation stopped with SIGTERM midway leaves no validator or service process behind."""
    import signal
    import time

    keep = tmp_path / "run"
    command = [sys.executable, "-c", "from fleet.cli import main; main()", "simulate", "--devices", "20",
               "--validators", "1", "--duration", "120", "--keep", str(keep)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 180
    for line in process.stderr:
        if "workload" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    process.stderr.close()
    survivors = [
        p for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(keep) in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    ]  # fmt: skip
    assert survivors == []

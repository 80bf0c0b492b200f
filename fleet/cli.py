"""``trellis simulate``: the fleet simulation from the command line; and the ``trellis`` command itself.

The ``trellis`` entry point is :func:`main`: the portal's command group (:mod:`web.cli`, which
gathers the lower layers' groups) with ``simulate`` added on top, since the simulation drives every
layer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from fleet.errors import FleetError, UnusableInput
from fleet.simulation import MAX_DURATION, MIN_DURATION, SimulationConfig, simulate
from web.cli import main

__all__ = ["main", "simulate_command"]


def _duration(ctx: click.Context, param: click.Parameter, seconds: float) -> float:
    """``--duration``: from :data:`MIN_DURATION` to :data:`MAX_DURATION` seconds (not inf, not nan)."""
    if not MIN_DURATION <= seconds <= MAX_DURATION:  # NaN compares false
        raise click.BadParameter(f"{seconds:g} is not from {MIN_DURATION:g} to {MAX_DURATION:g} seconds")
    return seconds


@click.command("simulate")
@click.option("--devices", type=int, default=200, show_default=True, help="Devices to enrol.")
@click.option("--validators", type=int, default=4, show_default=True, help="Validators to start.")
@click.option(
    "--engine",
    type=click.Choice(["pbft", "round_robin", "solo"]),
    default=None,
    help="Consensus engine (default: solo for one validator, else pbft).",
)
@click.option(
    "--duration",
    type=float,
    callback=_duration,
    default=30.0,
    show_default=True,
    help="Seconds of mixed workload.",
)
@click.option(
    "--faults",
    default="",
    help="KIND[:TARGET][@START][+DURATION],… with KIND kill, partition, slow or verifier-restart; 'all' for one of each.",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.html and report.json here.",
)
@click.option(
    "--node",
    "nodes",
    multiple=True,
    help="Use this running network (repeat per node) instead of starting one.",
)
@click.option(
    "--genesis",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --node: its genesis.json.",
)
@click.option(
    "--trustee",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --node: a trustee's keystore (pass phrase in TRELLIS_PASSPHRASE).",
)
@click.option("--clients", type=int, default=8, show_default=True, help="Device client threads.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the workload's choices.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the run's files here.")
def simulate_command(
    devices: int,
    validators: int,
    engine: str | None,
    duration: float,
    faults: str,
    report_dir: Path | None,
    nodes: tuple[str, ...],
    genesis: Path | None,
    trustee: Path | None,
    clients: int,
    seed: int,
    keep: Path | None,
) -> None:
    """Run a simulated fleet against the whole platform, with faults, and check the invariants.

    Exits 0 when every invariant holds, 1 when one does not, 2 on bad options or a genesis or
    trustee keystore that cannot be used.
    """
    from fleet.report import InvalidFigures, summary_text, write_report

    config = SimulationConfig(
        devices=devices,
        validators=validators,
        engine=engine or ("solo" if validators == 1 else "pbft"),
        duration=duration,
        faults=faults,
        nodes=nodes,
        genesis=genesis,
        trustee=trustee,
        clients=clients,
        seed=seed,
        directory=keep,
        progress=lambda line: click.echo(line, err=True),
    )
    if nodes:
        config.passphrase = os.environ.get("TRELLIS_PASSPHRASE", "")
    # SIGTERM unwinds like Ctrl-C, so the validators and services the run started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        figures = simulate(config)
    except UnusableInput as exc:  # one line, no usage text: the options were right, a file is not
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (FleetError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if report_dir is not None:
        try:
            data, html = write_report(figures, report_dir)
        except InvalidFigures as exc:
            click.echo(json.dumps(figures, indent=2, default=str), err=True)
            raise click.ClickException(f"the figures do not make a report: {exc}") from None
        click.echo(f"report: {html} (figures: {data})")
    click.echo(summary_text(figures))
    sys.exit(0 if all(item["ok"] for item in figures["invariants"]) else 1)


main.add_command(simulate_command)

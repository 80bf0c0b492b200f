"""Parsing ``--faults`` (fleet.faults)."""

from __future__ import annotations

import itertools

import pytest

from fleet.faults import Fault, InvalidFaultSpec, parse_faults

SERVICES = ("telemetry", "firmware")


def test_an_empty_spec_or_none_injects_nothing() -> None:
    assert parse_faults("", 60, SERVICES) == []
    assert parse_faults("none", 60, SERVICES) == []


def test_a_full_item_is_read_as_written() -> None:
    assert parse_faults("partition:node-3@12+4.5", 60, SERVICES) == [Fault("partition", "node-3", 12.0, 4.5)]


def test_targets_default_to_the_primary_for_kills_a_backup_otherwise_and_the_first_service() -> None:
    faults = {f.kind: f.target for f in parse_faults("kill,slow,partition,verifier-restart", 100, SERVICES)}
    assert faults == {
        "kill": "primary",
        "slow": "backup",
        "partition": "backup",
        "verifier-restart": "telemetry",
    }


def test_faults_without_a_start_are_spread_over_the_run_in_order() -> None:
    faults = parse_faults("kill+4,partition+4,slow+4", 90, SERVICES)
    starts = [f.start for f in faults]
    assert starts == sorted(starts)
    assert all(a.start + a.duration < b.start for a, b in itertools.pairwise(faults))
    assert faults[-1].start + faults[-1].duration <= 90


def test_all_is_one_of_each_kind_with_the_primary_and_a_backup_killed() -> None:
    faults = parse_faults("all", 120, SERVICES)
    assert sorted({f.kind for f in faults}) == ["kill", "partition", "slow", "verifier-restart"]
    assert sorted(f.target for f in faults if f.kind == "kill") == ["backup", "primary"]


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("explode", "kind must be one of"),
        ("kill:the-boss", "target must be primary, backup or node-N"),
        ("verifier-restart:billing", "no service 'billing'"),
        ("kill@50+20", "ends after the 60 s run"),
        ("kill+0", "duration must be positive"),
        ("kill;slow", "is not KIND"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_item_and_the_problem(spec: str, named: str) -> None:
    with pytest.raises(InvalidFaultSpec, match=named):
        parse_faults(spec, 60, SERVICES)

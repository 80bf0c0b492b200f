"""Per-second counts and samples (fleet.metrics)."""

from __future__ import annotations

from fleet.metrics import Recorder, percentile


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_are_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_counts_fall_into_the_second_they_happened_in() -> None:
    clock = _Clock()
    recorder = Recorder(clock)
    recorder.count("admitted")
    clock.now += 2.5
    recorder.count("admitted", 3)
    assert recorder.rates("admitted") == [(0, 1.0), (1, 0.0), (2, 3.0)]
    assert recorder.total("admitted") == 4


def test_samples_give_percentiles_per_second_and_none_for_empty_seconds() -> None:
    clock = _Clock()
    recorder = Recorder(clock)
    for value in (10.0, 20.0, 30.0):
        recorder.sample("latency", value)
    clock.now += 2.2
    recorder.sample("latency", 99.0)
    assert recorder.percentiles_by_second("latency", (50, 99)) == [
        (0, [20.0, 30.0]),
        (1, [None, None]),
        (2, [99.0, 99.0]),
    ]

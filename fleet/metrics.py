"""What a simulation measures, by the second: counts, latency samples and events, thread-safe.

Times are seconds since the :class:`Recorder` was made (its clock is monotonic). Counts fall into
one-second buckets (:meth:`Recorder.count`); samples keep their time and value
(:meth:`Recorder.sample`); :meth:`Recorder.rates` and :meth:`Recorder.percentiles_by_second`
turn them into the per-second series of the report.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

__all__ = ["Recorder", "percentile"]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0 < p <= 100) by nearest rank; ``None`` without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


class Recorder:
    """Counts and samples of one run (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._counts: dict[str, defaultdict[int, float]] = defaultdict(lambda: defaultdict(float))
        self._samples: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def now(self) -> float:
        """Seconds since the run began."""
        return self.clock() - self.started

    def at(self, monotonic: float) -> float:
        """A monotonic clock reading as seconds since the run began."""
        return monotonic - self.started

    def count(self, name: str, n: float = 1, at: float | None = None) -> None:
        """Add ``n`` to counter ``name`` in the second of ``at`` (default now, run time)."""
        second = int(self.now() if at is None else at)
        with self._lock:
            self._counts[name][second] += n

    def total(self, name: str) -> float:
        """Counter ``name`` over the whole run."""
        with self._lock:
            return sum(self._counts[name].values())

    def sample(self, name: str, value: float, at: float | None = None) -> None:
        """Record one ``value`` of ``name`` at ``at`` (default now, run time)."""
        with self._lock:
            self._samples[name].append((self.now() if at is None else at, value))

    def samples(self, name: str) -> list[tuple[float, float]]:
        """Every ``(time, value)`` of ``name``, in time order."""
        with self._lock:
            return sorted(self._samples[name])

    def values(self, name: str) -> list[float]:
        """Every value of ``name``."""
        with self._lock:
            return [v for _, v in self._samples[name]]

    def last_second(self) -> int:
        """The last whole second any counter or sample reached (0 for an empty run)."""
        with self._lock:
            seconds = [max(c) for c in self._counts.values() if c]
            seconds += [int(max(t for t, _ in s)) for s in self._samples.values() if s]
        return max(seconds, default=0)

    def rates(self, name: str, end: int | None = None) -> list[tuple[int, float]]:
        """``(second, count)`` for every second from 0 to ``end`` (default the last one seen)."""
        end = self.last_second() if end is None else end
        with self._lock:
            counts = dict(self._counts[name])
        return [(s, counts.get(s, 0.0)) for s in range(end + 1)]

    def percentiles_by_second(
        self, name: str, ps: Sequence[float], end: int | None = None
    ) -> list[tuple[int, list[float | None]]]:
        """For each second up to ``end``, the percentiles ``ps`` of the samples of ``name`` in it."""
        end = self.last_second() if end is None else end
        by_second: defaultdict[int, list[float]] = defaultdict(list)
        for t, value in self.samples(name):
            by_second[int(t)].append(value)
        return [(s, [percentile(by_second.get(s, []), p) for p in ps]) for s in range(end + 1)]

"""Pending requests and named deadlines: the bookkeeping every engine shares (``docs/consensus.md``).

:class:`RequestPool` keeps the client requests a validator knows of and has not seen committed, oldest
first, with the time each arrived (batching and censorship detection look at the oldest): a primary
proposes them in that order (first in, first out). :class:`Overtaking` counts, for each pending
request, the requests that arrived clearly later and were executed before it (censorship detection,
``docs/consensus.md`` § Censorship). :class:`Deadlines` keeps named deadlines and turns their changes
into ``SetTimer`` / ``CancelTimer`` outputs, so an engine only states when it next wants a tick.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from did_registry.consensus.base import CancelTimer, Output, SetTimer

__all__ = ["Deadlines", "Overtaking", "RequestPool"]


class RequestPool:
    """Requests waiting to be committed, in arrival order, each with its arrival time."""

    def __init__(self, limit: int, max_bytes: int | None = None) -> None:
        """At most ``limit`` requests and ``max_bytes`` of them (``None``: no byte bound)."""
        self.limit, self.max_bytes = limit, max_bytes
        self._items: dict[bytes, float] = {}
        self.bytes = 0
        """The size of the pending requests."""

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, request: object) -> bool:
        return request in self._items

    def add(self, request: bytes, now: float, *, beyond_limit: bool = False) -> bool:
        """Keep ``request`` (arrived at ``now``, so last in line); ``False`` when it is known already or
        the pool is full (unless ``beyond_limit``: the caller bounds those itself)."""
        if request in self._items or (
            not beyond_limit
            and (
                len(self._items) >= self.limit
                or (self.max_bytes is not None and self.bytes + len(request) > self.max_bytes)
            )
        ):
            return False
        self._items[request] = now
        self.bytes += len(request)
        return True

    def full(self) -> bool:
        """Whether ``limit`` requests (or more) are pending."""
        return len(self._items) >= self.limit

    def arrival(self, request: bytes) -> float | None:
        """When ``request`` arrived, or ``None`` when it is not pending."""
        return self._items.get(request)

    def arrivals(self) -> Iterator[tuple[bytes, float]]:
        """The pending requests with their arrival times, oldest first."""
        return iter(self._items.items())

    def discard(self, requests: Iterable[bytes]) -> None:
        """Forget ``requests`` (committed, or no longer valid)."""
        for request in requests:
            if self._items.pop(request, None) is not None:
                self.bytes -= len(request)

    def oldest(self) -> float | None:
        """When the oldest pending request arrived, or ``None`` when there is none."""
        return next(iter(self._items.values()), None)

    def batch(self, size: int) -> list[bytes]:
        """The ``size`` oldest requests."""
        return list(islice(self._items, size))

    def retain(self, keep: Callable[[bytes], bool]) -> None:
        """Drop every request for which ``keep`` is false (re-checking after the head moved)."""
        self._items = {r: t for r, t in self._items.items() if keep(r)}
        self.bytes = sum(len(r) for r in self._items)


@dataclass(slots=True)
class _Watch:
    since: float  # overtaking requests arrived more than the margin after this time
    count: int = 0  # how many were executed since
    resent: bool = False  # already sent to the primary again (OVERTAKEN)


class Overtaking:
    """The censorship watch of a backup: for each pending request ``r``, how many requests this
    validator first saw more than ``margin`` seconds after ``r`` (after the last re-send of ``r``, if
    any) the primary's blocks have included while ``r`` stayed pending. A primary that proposes in
    order of arrival lets that happen only through a network delay beyond the margin, or a request it
    never received. :meth:`executed` returns the requests overtaken ``threshold`` times; the engine
    sends them to the primary again (:meth:`resent`), and suspects the primary when one is overtaken
    again after that."""

    def __init__(self, threshold: int, margin: float) -> None:
        self.threshold = threshold
        self.margin = margin
        self._watch: dict[bytes, _Watch] = {}

    def executed(self, pool: RequestPool, arrivals: Sequence[float]) -> list[bytes]:
        """A block the primary proposed was executed and its requests left ``pool``; ``arrivals`` are
        the arrival times of those this validator held. Count them against each request still pending;
        return the pending requests overtaken ``threshold`` times (oldest first)."""
        if not arrivals:
            return []
        times = sorted(arrivals)
        overtaken = []
        for request, arrived in pool.arrivals():  # oldest first: none after ``latest - margin`` counts
            if arrived + self.margin >= times[-1]:
                break
            watch = self._watch.get(request)
            since = arrived if watch is None else watch.since
            later = len(times) - bisect_right(times, since + self.margin)
            if not later:
                continue
            if watch is None:
                watch = self._watch[request] = _Watch(arrived)
            watch.count += later
            if watch.count >= self.threshold:
                overtaken.append(request)
        if len(self._watch) > 2 * len(pool) + 64:  # requests that left the pool otherwise (re-checks)
            self._watch = {r: w for r, w in self._watch.items() if r in pool}
        return overtaken

    def resent(self, request: bytes, now: float) -> None:
        """``request`` was sent to the primary again at ``now``: count afresh from then."""
        self._watch[request] = _Watch(now, resent=True)

    def was_resent(self, request: bytes) -> bool:
        """Whether ``request`` was sent to this primary again already."""
        watch = self._watch.get(request)
        return watch is not None and watch.resent

    def count(self, request: bytes) -> int:
        """How many overtaking requests count against ``request`` now."""
        watch = self._watch.get(request)
        return 0 if watch is None else watch.count

    def discard(self, requests: Iterable[bytes]) -> None:
        """Forget ``requests`` (committed, or no longer valid)."""
        for request in requests:
            self._watch.pop(request, None)

    def reset(self) -> None:
        """Forget every count: a new primary is judged afresh."""
        self._watch.clear()


class Deadlines:
    """Named deadlines (monotonic seconds); :meth:`outputs` says what changed since the last call."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._announced: dict[str, float] = {}

    def set(self, name: str, at: float) -> None:
        """Want a tick at ``at`` under ``name``."""
        self._at[name] = at

    def clear(self, name: str) -> None:
        """No longer want the tick ``name``."""
        self._at.pop(name, None)

    def get(self, name: str) -> float | None:
        """The deadline ``name``, or ``None``."""
        return self._at.get(name)

    def due(self, name: str, now: float) -> bool:
        """Whether the deadline ``name`` is set and has passed; a due deadline is cleared."""
        at = self._at.get(name)
        if at is None or at > now:
            return False
        del self._at[name]
        return True

    def fired(self, now: float) -> None:
        """The driver's timers up to ``now`` have fired: announce again any deadline still kept."""
        for name in [n for n, at in self._announced.items() if at <= now]:
            del self._announced[name]

    def outputs(self) -> list[Output]:
        """``SetTimer`` for each new or moved deadline, ``CancelTimer`` for each dropped one."""
        out: list[Output] = []
        for name, at in self._at.items():
            if self._announced.get(name) != at:
                out.append(SetTimer(name, at))
                self._announced[name] = at
        for name in [n for n in self._announced if n not in self._at]:
            out.append(CancelTimer(name))
            del self._announced[name]
        return out

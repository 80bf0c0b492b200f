"""Pending requests and named deadlines: the bookkeeping every engine shares (``docs/consensus.md``).

:class:`RequestPool` keeps the client requests a validator knows of and has not seen committed, oldest
first, with the time each arrived (batching and censorship detection look at the oldest).
:class:`Deadlines` keeps named deadlines and turns their changes into ``SetTimer`` / ``CancelTimer``
outputs, so an engine only states when it next wants a tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

from did_registry.consensus.base import CancelTimer, Output, SetTimer

__all__ = ["Deadlines", "RequestPool"]


class RequestPool:
    """Requests waiting to be committed, in arrival order, each with its arrival time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, request: object) -> bool:
        return request in self._items

    def add(self, request: bytes, now: float) -> bool:
        """Keep ``request`` (arrived at ``now``); ``False`` when it is known already or the pool is full."""
        if request in self._items or len(self._items) >= self.limit:
            return False
        self._items[request] = now
        return True

    def discard(self, requests: Iterable[bytes]) -> None:
        """Forget ``requests`` (committed, or no longer valid)."""
        for request in requests:
            self._items.pop(request, None)

    def oldest(self) -> float | None:
        """When the oldest pending request arrived, or ``None`` when there is none."""
        return next(iter(self._items.values()), None)

    def batch(self, size: int) -> list[bytes]:
        """The ``size`` oldest requests."""
        return list(islice(self._items, size))

    def retain(self, keep: Callable[[bytes], bool]) -> None:
        """Drop every request for which ``keep`` is false (re-checking after the head moved)."""
        self._items = {r: t for r, t in self._items.items() if keep(r)}


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

"""Admission of inbound connections before they authenticate (``docs/transport.md`` §5).

A connection that has not completed the handshake holds one of ``max_handshakes`` slots, and at
most ``max_handshakes_per_ip`` of them from one source address. A connection is *silent* until its
first handshake message (the Hello) has arrived, which it must send within ``hello_timeout``. When a
newcomer finds its address's share or all slots taken, the oldest silent connection (of that
address, or of any) is dropped to make room, else the oldest whose handshake has taken longer than
``grace`` (an honest one ends within a round trip of its Hello; a Hello can be made from public data
and never confirmed): holding slots costs an attacker a steady stream of new connections, and a
validator, which completes its handshake at once, gets in. The newcomer is refused only when every
slot it could take belongs to a connection that spoke within ``grace``.
"""

from __future__ import annotations

from dataclasses import dataclass

from did_registry.transport.stream import FrameStream

__all__ = ["Admission", "Pending"]


@dataclass(slots=True, eq=False)
class Pending:
    """One inbound connection that has not completed the handshake."""

    stream: FrameStream
    ip: str
    since: float = 0.0
    """When it was admitted (the event loop's clock)."""
    spoke: bool = False
    """Whether its Hello has arrived (it is then dropped for a newcomer only once ``grace`` is over)."""
    evicted: bool = False
    """Whether it was dropped to make room for a newcomer."""


class Admission:
    """The inbound connections in handshake, oldest first, with the eviction rule of the module."""

    __slots__ = ("_pending", "per_ip", "total")

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self._pending: list[Pending] = []

    def __len__(self) -> int:
        return len(self._pending)

    def admit(
        self, stream: FrameStream, now: float = 0.0, grace: float = float("inf")
    ) -> tuple[Pending | None, Pending | None]:
        """Take a slot for ``stream`` at ``now``: ``(its entry or None when refused, the connection
        evicted for it)``; a connection that spoke is evicted only once ``grace`` seconds are over.

        The evicted connection, if any, is closed already and no longer holds a slot.
        """
        ip = _source_ip(stream)
        same = [p for p in self._pending if p.ip == ip]
        victim: Pending | None = None
        if len(same) >= self.per_ip:
            victim = _evictable(same, now - grace)
            if victim is None:
                return None, None
        elif len(self._pending) >= self.total:
            victim = _evictable(self._pending, now - grace)
            if victim is None:
                return None, None
        if victim is not None:
            self.release(victim)
            victim.evicted = True
            victim.stream.close()
        entry = Pending(stream, ip, since=now)
        self._pending.append(entry)
        return entry, victim

    def release(self, entry: Pending) -> None:
        """Give up ``entry``'s slot (its handshake ended, either way); releasing twice is harmless."""
        if entry in self._pending:
            self._pending.remove(entry)


def _evictable(entries: list[Pending], spoke_before: float) -> Pending | None:
    """The oldest silent entry, else the oldest that spoke before ``spoke_before`` (and is stuck)."""
    silent = next((p for p in entries if not p.spoke), None)
    return silent or next((p for p in entries if p.since < spoke_before), None)


def _source_ip(stream: FrameStream) -> str:
    peer = stream.writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"

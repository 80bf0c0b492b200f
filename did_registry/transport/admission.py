"""Admission of inbound connections before they authenticate (``docs/transport.md`` §5).

A connection that has not completed the handshake holds one of ``max_handshakes`` slots, and at
most ``max_handshakes_per_ip`` of them from one source address. A connection is *silent* until its
first handshake message (the Hello) has arrived, which it must send within ``hello_timeout``. When a
newcomer finds its address's share or all slots taken, the oldest silent connection (of that
address, or of any) is dropped to make room: holding slots costs an attacker a steady stream of new
connections, and a validator, which sends its Hello at once, gets in. The newcomer is refused only
when every slot it could take belongs to a connection that has sent its Hello.
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
    spoke: bool = False
    """Whether its Hello has arrived (it is then no longer dropped for a newcomer)."""
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

    def admit(self, stream: FrameStream) -> tuple[Pending | None, Pending | None]:
        """Take a slot for ``stream``: ``(its entry or None when refused, the connection evicted for it)``.

        The evicted connection, if any, is closed already and no longer holds a slot.
        """
        ip = _source_ip(stream)
        same = [p for p in self._pending if p.ip == ip]
        victim: Pending | None = None
        if len(same) >= self.per_ip:
            victim = _oldest_silent(same)
            if victim is None:
                return None, None
        elif len(self._pending) >= self.total:
            victim = _oldest_silent(self._pending)
            if victim is None:
                return None, None
        if victim is not None:
            self.release(victim)
            victim.evicted = True
            victim.stream.close()
        entry = Pending(stream, ip)
        self._pending.append(entry)
        return entry, victim

    def release(self, entry: Pending) -> None:
        """Give up ``entry``'s slot (its handshake ended, either way); releasing twice is harmless."""
        if entry in self._pending:
            self._pending.remove(entry)


def _oldest_silent(entries: list[Pending]) -> Pending | None:
    return next((p for p in entries if not p.spoke), None)


def _source_ip(stream: FrameStream) -> str:
    peer = stream.writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"

"""What the transport reports for ``/metrics`` and ``/health`` (``docs/transport.md`` §7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Counters", "TransportStats", "PeerStatus"]


@dataclass(slots=True)
class Counters:
    """Monotonic counters of the transport, or of one peer; snapshots are copies.

    Frames and bytes count what crossed the wire (keepalives, the 4-byte prefix and the 16-byte tag
    included); ``dropped`` counts payloads the outbound queue discarded; ``protocol_errors`` counts
    sessions closed for a frame that failed (oversized, altered, replayed, reordered);
    ``connections`` counts sessions established, ``reconnects`` those after a peer's first.
    Handshake failures of inbound connections are counted on the transport only, as the peer's
    identity is not established.
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0
    handshake_failures: int = 0
    protocol_errors: int = 0
    dial_failures: int = 0
    connections: int = 0
    reconnects: int = 0

    def to_json(self) -> dict[str, int]:
        """The JSON form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TransportStats:
    """A snapshot of the whole transport: counters, peers connected, payloads waiting to be received."""

    counters: Counters
    peers: int
    connected: int
    inbound_waiting: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "peers": self.peers,
            "connected": self.connected,
            "inbound_waiting": self.inbound_waiting,
            **self.counters.to_json(),
        }


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One peer's state: its connection (direction, since when), when last heard, queue and counters.

    Times are Unix seconds; ``direction`` is ``"outbound"`` (this validator dialed) or ``"inbound"``.
    """

    id: str
    address: str
    connected: bool
    direction: str | None
    connected_since: float | None
    last_seen: float | None
    queued_frames: int
    queued_bytes: int
    counters: Counters

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "id": self.id,
            "address": self.address,
            "connected": self.connected,
            "direction": self.direction,
            "connected_since": self.connected_since,
            "last_seen": self.last_seen,
            "queued_frames": self.queued_frames,
            "queued_bytes": self.queued_bytes,
            **self.counters.to_json(),
        }

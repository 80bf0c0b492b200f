"""The transport's options: frame and queue bounds, timeouts and back-off (``docs/transport.md`` §6).

A :class:`TransportConfig` is checked when it is made, so an invalid one never exists. The default
suits a production network carrying blocks of up to 16 MiB. :meth:`TransportConfig.testing` has short
timeouts for tests on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from did_registry.errors import InvalidTransportConfig
from did_registry.identity.crypto import SECRETBOX_MAC_SIZE

__all__ = ["MiB", "TransportConfig"]

MiB = 1 << 20
"""One mebibyte."""

_LENGTH_LIMIT = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Bounds and timers of a :class:`~did_registry.transport.Transport`; sizes in bytes, times in seconds.

    ``max_frame`` bounds a sealed frame (the value of its length prefix), so a payload may be
    ``max_frame - 16`` bytes. The outbound queue of each peer holds at most ``outbound_frames``
    payloads and ``outbound_bytes`` bytes and drops its oldest when full; each peer may have at most
    ``inbound_frames`` payloads and ``inbound_bytes`` bytes waiting for :meth:`receive`, after which
    its connection is no longer read. At most ``max_handshakes`` inbound handshakes run at once, at
    most ``max_handshakes_per_ip`` from one source address; an inbound connection must send its first
    handshake message within ``hello_timeout`` (``docs/transport.md`` §5).
    """

    max_frame: int = 16 * MiB
    outbound_frames: int = 1024
    outbound_bytes: int = 64 * MiB
    inbound_frames: int = 256
    inbound_bytes: int = 32 * MiB
    read_chunk: int = 256 * 1024
    max_handshakes: int = 64
    max_handshakes_per_ip: int = 8
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    hello_timeout: float = 0.5
    keepalive_interval: float = 5.0
    idle_timeout: float = 20.0
    write_timeout: float = 30.0
    backoff_initial: float = 0.1
    backoff_max: float = 10.0

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def testing(cls) -> TransportConfig:
        """A profile for tests on loopback: second-scale timeouts and a sub-second back-off."""
        return cls(
            connect_timeout=1.0,
            handshake_timeout=1.0,
            keepalive_interval=0.5,
            idle_timeout=3.0,
            write_timeout=3.0,
            backoff_initial=0.02,
            backoff_max=0.25,
        )

    @property
    def max_payload(self) -> int:
        """The largest payload :meth:`~did_registry.transport.Transport.send` takes."""
        return self.max_frame - SECRETBOX_MAC_SIZE

    def backoff(self, attempt: int) -> float:
        """The back-off before redial ``attempt`` (0 for the first): doubling from the initial, capped."""
        return min(self.backoff_max, self.backoff_initial * 2.0 ** min(max(attempt, 0), 64))

    def validate(self) -> TransportConfig:
        """Return ``self`` if every value is in range, or raise :class:`InvalidTransportConfig`."""
        for field in fields(self):
            value = getattr(self, field.name)
            kind = int if field.type == "int" else float
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise InvalidTransportConfig(f"{field.name} must be {kind.__name__}, not {value!r}")
            if not value > 0:
                raise InvalidTransportConfig(f"{field.name} must be positive, not {value!r}")
        if not SECRETBOX_MAC_SIZE < self.max_frame <= _LENGTH_LIMIT:
            raise InvalidTransportConfig(
                f"max_frame must be above {SECRETBOX_MAC_SIZE} and at most {_LENGTH_LIMIT}, not {self.max_frame}"
            )
        if self.outbound_bytes < self.max_frame:
            raise InvalidTransportConfig("outbound_bytes must hold at least one frame of max_frame bytes")
        if self.idle_timeout <= self.keepalive_interval:
            raise InvalidTransportConfig("idle_timeout must be longer than keepalive_interval")
        if self.backoff_max < self.backoff_initial:
            raise InvalidTransportConfig("backoff_max must be at least backoff_initial")
        return self

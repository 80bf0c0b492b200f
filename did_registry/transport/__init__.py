"""Validator-to-validator transport: authenticated, encrypted, length-prefixed frames over asyncio TCP.

The protocol, its security properties and its limits are specified in ``docs/transport.md``;
consensus engines stay sans-IO and hand it opaque payloads (``did_registry/consensus/README.md``).
"""

from __future__ import annotations

from did_registry.transport.config import TransportConfig
from did_registry.transport.status import Counters, PeerStatus, TransportStats
from did_registry.transport.transport import Transport

__all__ = ["Transport", "TransportConfig", "TransportStats", "PeerStatus", "Counters"]

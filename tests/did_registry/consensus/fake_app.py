"""A small deterministic BlockApp for the consensus tests.

A block is the JCS bytes of ``{"height", "requests": [hex…], "time"}``; its digest is SHA-256 of
those bytes. The app keeps the applied blocks and the requests they hold, and refuses blocks that are
not well formed, not at the next height, or that repeat a request. An empty block is built when the
engine asks for one (``propose`` with no requests: a block falling due, ``docs/consensus.md``
§ Freshness) and accepted like any other. Calling ``propose`` or
``validate`` for another height than the next one breaks the engines' contract (``base.py``): it
raises :class:`ContractViolation`, which the tests let through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from did_registry.identity.crypto import sha256
from did_registry.identity.jcs import canonicalize

__all__ = ["ContractViolation", "FakeApp", "make_block"]

MAX_REQUEST = 256


class ContractViolation(AssertionError):
    """An engine called the app for a height whose parent is not applied."""


def make_block(height: int, requests: Sequence[bytes], time: str = "1970-01-01T00:00:00Z") -> bytes:
    """The canonical bytes of a block (also used by tests to forge blocks)."""
    return canonicalize({"height": height, "requests": [r.hex() for r in requests], "time": time})


class FakeApp:
    """BlockApp over an in-memory chain of JSON blocks."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.committed: set[bytes] = set()
        self.untimely: Callable[[bytes], bool] | None = None

    @property
    def height(self) -> int:
        """The last applied height."""
        return len(self.blocks)

    def check_many(self, requests: Sequence[bytes]) -> list[bool]:
        """:meth:`check` of each."""
        return [self.check(r) for r in requests]

    def check(self, request: bytes) -> bool:
        """A request is acceptable when short, not marked ``bad`` and not committed yet."""
        return (
            0 < len(request) <= MAX_REQUEST
            and not request.startswith(b"bad")
            and request not in self.committed
        )

    def propose(self, height: int, requests: Sequence[bytes], time: str) -> bytes | None:
        """A block of the acceptable requests (first occurrence each), or ``None`` when there are none
        (an empty block when asked for one with no requests)."""
        if height != self.height + 1:
            raise ContractViolation(f"propose({height}) with {self.height} applied")
        fresh = [r for r in dict.fromkeys(requests) if self.check(r)]
        return make_block(height, fresh, time) if fresh or not requests else None

    def validate(self, height: int, block: bytes) -> bytes:
        """The digest of a well-formed next block; ``ValueError`` otherwise."""
        if height != self.height + 1:
            raise ContractViolation(f"validate({height}) with {self.height} applied")
        data = self._parse(block)
        if data["height"] != height:
            raise ValueError(f"block of height {data['height']} offered at {height}")
        requests = [bytes.fromhex(r) for r in data["requests"]]
        if len(set(requests)) != len(requests) or not all(self.check(r) for r in requests):
            raise ValueError("a block holds new, acceptable requests, each once")
        return sha256(block)

    def timely(self, block: bytes) -> bool:
        """Every block is dated in time unless ``untimely`` is set (the simulator's times are
        ``t+<seconds>``, which a test may judge by setting it)."""
        return self.untimely is None or not self.untimely(block)

    def digest(self, block: bytes) -> bytes:
        """SHA-256 of the block bytes."""
        return sha256(block)

    def requests(self, block: bytes) -> list[bytes]:
        """The requests of a block (none when it does not parse)."""
        try:
            return [bytes.fromhex(r) for r in self._parse(block)["requests"]]
        except ValueError:
            return []

    def apply(self, height: int, block: bytes) -> None:
        """Append a committed block (the driver's job)."""
        if height != self.height + 1:
            raise ContractViolation(f"apply({height}) with {self.height} applied")
        self.blocks.append(block)
        self.committed.update(self.requests(block))

    @staticmethod
    def _parse(block: bytes) -> dict[str, Any]:
        try:
            data = json.loads(block)
        except (ValueError, RecursionError):
            raise ValueError("a block is JSON") from None
        if not isinstance(data, dict) or set(data) != {"height", "requests", "time"}:
            raise ValueError("a block is {height, requests, time}")
        if type(data["height"]) is not int or not isinstance(data["time"], str):
            raise ValueError("block height or time of the wrong type")
        if not isinstance(data["requests"], list) or not all(isinstance(r, str) for r in data["requests"]):
            raise ValueError("block requests are hex strings")
        try:
            for r in data["requests"]:
                bytes.fromhex(r)
            if canonicalize(data) != block:
                raise ValueError("a block is canonical JSON")
        except ValueError as exc:
            raise ValueError(f"malformed block: {exc}") from None
        return data

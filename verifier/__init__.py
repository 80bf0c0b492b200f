"""Trellis verifier: authenticate devices against on-chain DID documents (built in its own issue)."""

from __future__ import annotations

__all__: list[str] = []

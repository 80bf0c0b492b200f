"""Trellis web portal (built in its own issue) and the ``trellis`` command (:mod:`web.cli`)."""

from __future__ import annotations

__all__: list[str] = []

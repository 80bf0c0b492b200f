"""The Trellis operator portal (:func:`web.app.create_app`, ``docs/portal.md``) and the ``trellis`` command.

The package exports nothing at its top: the app factory is :mod:`web.app`, the command :mod:`web.cli`.
"""

from __future__ import annotations

__all__: list[str] = []

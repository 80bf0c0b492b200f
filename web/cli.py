"""The ``trellis`` command: one group per area, each defined in its own layer."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
@click.version_option(package_name="trellis")
def main() -> None:
    """Trellis: self-sovereign identity and device authentication for IoT fleets."""

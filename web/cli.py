"""The ``trellis`` command: one group per area, each defined in its own layer."""

from __future__ import annotations

import click

from did_registry.cli import did_group
from wallet.cli import key_group, vc_group
from wallet.network_cli import network_group, node_group

__all__ = ["main"]


@click.group()
@click.version_option(package_name="trellis")
def main() -> None:
    """Trellis: self-sovereign identity and device authentication for IoT fleets."""


main.add_command(key_group)
main.add_command(vc_group)
main.add_command(did_group)
main.add_command(network_group)
main.add_command(node_group)

"""``trellis did …``: DID commands that need no wallet (resolution)."""

from __future__ import annotations

import json

import click

from did_registry.identity.resolution import DIDKeyResolver, MultiResolver, Resolver

__all__ = ["did_group", "default_resolver"]


def default_resolver() -> Resolver:
    """The resolver the command line uses offline: did:key (did:trellis arrives with the ledger)."""
    return MultiResolver({"key": DIDKeyResolver()})


@click.group("did")
def did_group() -> None:
    """Create, resolve and manage DIDs."""


@did_group.command("resolve")
@click.argument("did")
def resolve(did: str) -> None:
    """Print the W3C DID Resolution result for DID (exit 1 when resolution fails)."""
    result = default_resolver().resolve(did)
    click.echo(json.dumps(result.to_json(), indent=2))
    if result.error is not None:
        raise SystemExit(1)

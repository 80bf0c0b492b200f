"""``trellis did resolve``: DID resolution from the command line (did:key offline, did:trellis via nodes)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from did_registry.client import LedgerClient, TrellisResolver
from did_registry.errors import DidRegistryError
from did_registry.genesis_file import GenesisFileError, read_genesis_file
from did_registry.identity.resolution import DIDKeyResolver, MultiResolver, Resolver

__all__ = ["did_group", "default_resolver", "ledger_client", "optional_client"]


def ledger_client(nodes: tuple[str, ...] | list[str], genesis_file: Path | None) -> LedgerClient:
    """A client for ``nodes``, anchored in ``genesis_file`` or else in the first node's genesis.

    Fetching the genesis from a node trusts that node once (trust on first use): pass the
    network's ``genesis.json`` to trust nobody. A genesis file that is missing, no JSON or no
    genesis raises :class:`~did_registry.genesis_file.GenesisFileError` (naming it) before any node
    is asked.
    """
    genesis: Any
    if genesis_file is not None:
        genesis = read_genesis_file(genesis_file)
    else:
        genesis = httpx.get(nodes[0].rstrip("/") + "/genesis", timeout=10).raise_for_status().json()
        print(f"note: trusting the genesis served by {nodes[0]} (pass --genesis to pin it)", file=sys.stderr)
    return LedgerClient(list(nodes), genesis)


def default_resolver(client: LedgerClient | None = None) -> Resolver:
    """did:key offline, plus did:trellis through ``client`` when given."""
    resolvers: dict[str, Resolver] = {"key": DIDKeyResolver()}
    if client is not None:
        resolvers["trellis"] = TrellisResolver(client)
    return MultiResolver(resolvers)


@contextmanager
def optional_client(nodes: tuple[str, ...], genesis_file: Path | None) -> Iterator[LedgerClient | None]:
    """A client for ``nodes`` (closed afterwards), or ``None`` when no node is given."""
    if not nodes:
        yield None
        return
    try:
        client = ledger_client(nodes, genesis_file)
    except GenesisFileError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except (httpx.HTTPError, ValueError, RecursionError, DidRegistryError) as exc:
        click.echo(f"error: cannot get a valid genesis from {nodes[0]}: {exc}", err=True)
        raise SystemExit(1) from None
    with client:
        yield client


node_option = click.option("--node", "nodes", multiple=True, help="A ledger node URL (repeatable).")
genesis_option = click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="TRELLIS_GENESIS",
    help="The network's genesis.json, the trust anchor (default: fetched from the first node).",
)


@click.group("did")
def did_group() -> None:
    """Create, resolve and manage DIDs."""


@did_group.command("resolve")
@click.argument("did")
@node_option
@genesis_option
@click.option("--version-id", help="Resolve this version of the DID document.")
def resolve(did: str, nodes: tuple[str, ...], genesis_file: Path | None, version_id: str | None) -> None:
    """Print the W3C DID Resolution result for DID (exit 1 when resolution fails)."""
    with optional_client(nodes, genesis_file) as client:
        options = None if version_id is None else {"versionId": version_id}
        result = default_resolver(client).resolve(did, options)
    click.echo(json.dumps(result.to_json(), indent=2))
    if result.error is not None:
        raise SystemExit(1)

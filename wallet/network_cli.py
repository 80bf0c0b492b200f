"""``trellis network init``, ``trellis node start`` and ``trellis node check``: set up a ledger network,
run one of its nodes, check a node's store.

These commands live in :mod:`wallet` although they serve the ledger, because both handle encrypted
keystores (the ``trellis-keystore`` format, ``docs/keystore.md``), which belong to the wallet, and
:mod:`did_registry` never imports :mod:`wallet` (imports point down only). The node itself takes its
validator key as an argument (:func:`did_registry.node.config.build_service`); this module opens the
keystore and hands the key over. :mod:`web.cli` registers both groups on the ``trellis`` command.

``network init`` writes, into ``--dir``: ``genesis.json`` (the solo engine for one validator, PBFT
by default for more), one ``node-<i>.toml`` and encrypted ``node-<i>.key`` per validator, and
``trustee.key``, the first trustee's key with its ``did:trellis`` in the metadata. Node ``i`` serves
its API on ``base-port + 2(i-1)`` and listens for peers on the port after it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from did_registry.errors import DidRegistryError, InvalidDID
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.identity.timestamps import format_timestamp
from did_registry.ledger.genesis import ENGINES, Genesis
from did_registry.node.config import (
    NodeConfig,
    Peer,
    build_service,
    check_database,
    check_runnable,
    default_database_url,
    load_config,
    write_config,
)
from did_registry.node.logs import configure_logging
from did_registry.node.server import serve
from wallet.errors import KeystoreError
from wallet.keystore import (
    KDF_INTERACTIVE,
    KDF_MODERATE,
    KDF_SENSITIVE,
    Keystore,
    passphrase_from_env_or_prompt,
)

__all__ = ["network_group", "node_group"]

_KDF = {"interactive": KDF_INTERACTIVE, "moderate": KDF_MODERATE, "sensitive": KDF_SENSITIVE}


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@click.group("network")
def network_group() -> None:
    """Set up a ledger network."""


@network_group.command("init")
@click.option(
    "--validators", "count", type=click.IntRange(1, 100), required=True, help="How many validators."
)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--network", "network", default="devnet", show_default=True, help="The network name.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=7700, show_default=True)
@click.option(
    "--engine", type=click.Choice(sorted(ENGINES)), help="Consensus (default: solo for 1, else pbft)."
)
@click.option(
    "--kdf", type=click.Choice(sorted(_KDF)), default="moderate", show_default=True, help="Argon2id cost."
)
def network_init(
    count: int, directory: Path, network: str, base_port: int, engine: str | None, kdf: str
) -> None:
    """Write genesis.json, node-<i>.toml/.key per validator and trustee.key into DIR.

    The keystores' passphrase comes from TRELLIS_PASSPHRASE, else a prompt.
    """
    engine = engine or ("solo" if count == 1 else "pbft")
    if base_port + 2 * count > 65535:
        _fail(f"--base-port {base_port} leaves no room for {count} validators")
    directory = directory.resolve()
    ids = [f"node-{i}" for i in range(1, count + 1)]
    files = ["genesis.json", "trustee.key", *(f"{i}{ext}" for i in ids for ext in (".toml", ".key", ".db"))]
    taken = [name for name in files if (directory / name).exists()]
    if taken:
        _fail(f"{directory} already holds a network ({', '.join(taken)}); choose an empty folder")
    trustee_key = Ed25519PrivateKey.generate()
    try:
        trustee = str(trellis_did(network, trustee_key.public_key))
    except InvalidDID as exc:
        _fail(f"--network: {exc.reason}")
    keys = [Ed25519PrivateKey.generate() for _ in range(count)]
    peers = [
        Peer(ids[i], f"127.0.0.1:{base_port + 2 * i + 1}", f"http://127.0.0.1:{base_port + 2 * i}")
        for i in range(count)
    ]
    try:
        genesis = Genesis.from_json(
            {
                "network": network,
                "time": format_timestamp(datetime.now(UTC)),
                "consensus": {"engine": engine},
                "trustees": [initial_document(trustee, trustee_key.public_key).to_json()],
                "validators": [
                    {
                        "id": peer.id,
                        "public_key": encode_ed25519_public_key(key.public_key),
                        "address": peer.address,
                    }
                    for peer, key in zip(peers, keys, strict=True)
                ],
            }
        )
    except (DidRegistryError, ValueError) as exc:
        _fail(str(exc))
    try:
        passphrase = passphrase_from_env_or_prompt(directory / "*.key", confirm=True)
        directory.mkdir(parents=True, exist_ok=True)
        params = _KDF[kdf]
        Keystore.new(trustee_key, metadata={"did": trustee}, params=params).save(
            directory / "trustee.key", passphrase
        )
        for i, (node_id, key) in enumerate(zip(ids, keys, strict=True)):
            key_file = directory / f"{node_id}.key"
            Keystore.new(key, metadata={"validator": node_id, "network": network}, params=params).save(
                key_file, passphrase
            )
            config = NodeConfig(
                id=node_id,
                port=base_port + 2 * i,
                database=default_database_url(directory, node_id),
                key_file=key_file,
                genesis=directory / "genesis.json",
                peers=tuple(p for p in peers if p.id != node_id),
            )
            write_config(config, directory / f"{node_id}.toml")
        (directory / "genesis.json").write_text(
            json.dumps(genesis.to_json(), indent=2) + "\n", encoding="utf-8"
        )
    except (KeystoreError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"network {network} ({engine}, {count} validator(s)) in {directory}")
    click.echo(f"trustee {trustee} (trustee.key)")


@click.group("node")
def node_group() -> None:
    """Run a ledger node."""


@node_group.command("start")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--port", type=click.IntRange(0, 65535), help="Listen on this port instead (0: any free port).")
def node_start(config_file: Path, port: int | None) -> None:
    """Run the node described by a node-<i>.toml; print 'serving on <url>' once listening.

    The validator keystore's passphrase comes from TRELLIS_PASSPHRASE, else a prompt. Stops on
    SIGTERM or SIGINT.
    """
    try:
        config = load_config(config_file)
        check_runnable(config)
    except DidRegistryError as exc:
        _fail(str(exc))
    try:
        keystore = Keystore.open(config.key_file, passphrase_from_env_or_prompt(config.key_file))
    except (KeystoreError, OSError) as exc:
        _fail(f"validator key: {exc}")
    try:
        service = build_service(config, keystore.current_key)
    except DidRegistryError as exc:
        _fail(str(exc))
    configure_logging()
    try:
        settings = config.server_settings()
        serve(
            service,
            host=config.host,
            port=config.port if port is None else port,
            threads=settings["threads"],
            max_streams=settings["max_streams"],
            max_waits=settings["max_waits"],
            limits=config.connection_limits(),
        )
    except ValueError as exc:  # [api] caps that leave too few threads
        _fail(f"{config_file}: [api]: {exc}")
    except OSError as exc:
        _fail(
            f"cannot listen on {config.host}:{config.port if port is None else port}: {exc.strerror or exc}"
        )
    if service.halted is not None:  # fail-stop: restart it, and it catches up by state transfer
        _fail(f"the node halted: {service.halted}")


@node_group.command("check")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
def node_check(config_file: Path) -> None:
    """Check the integrity of a node's store: every block, transaction and state row against the chain.

    Prints 'OK' with the head height (exit 0), or what is broken (exit 1). Needs no passphrase and
    changes nothing in the ledger; run it after an unclean shutdown, or when a node halts because a certified block
    does not execute on it. It reads the whole store (about 0.1 ms per DID on SQLite).
    """
    try:
        config = load_config(config_file)
        height = check_database(config)
    except DidRegistryError as exc:
        _fail(str(exc))
    click.echo(f"OK: the store of {config.id} is consistent, head at height {height}")

"""`trellis did create|update|deactivate|resolve --node`: DIDs on a live single-validator node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from did_registry.node.config import build_service, load_config
from did_registry.node.server import NodeServer
from wallet.keystore import Keystore
from web.cli import main

ENV = {"TRELLIS_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`network init --validators 1`, and its node serving on a free loopback port."""
    result = CliRunner().invoke(
        main, ["network", "init", "--validators", "1", "--network", "clinet", "--dir", str(tmp_path), "--kdf",
               "interactive"], env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "node-1.toml")
    key = Keystore.open(config.key_file, ENV["TRELLIS_PASSPHRASE"]).current_key
    server = NodeServer(build_service(config, key))
    server.start()
    yield tmp_path, server.url
    server.stop()


def _run(*args: str, folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=ENV)
    return result.exit_code, result.output


def test_create_resolve_rotate_deactivate(network: tuple[Path, str]) -> None:
    """A DID is created, resolved, rotated to a new key (kept in the keystore) and deactivated."""
    folder, url = network
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / "device.key"), folder=folder)  # fmt: skip
    assert code == 0, out
    did = out.strip().splitlines()[-1]
    assert did.startswith("did:trellis:clinet:")

    code, out = _run("did", "resolve", did, *common, folder=folder)
    assert code == 0, out
    assert json.loads(out)["didDocumentMetadata"]["versionId"] == "1"

    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate",
                     "--add-service", "status", "DeviceStatus", "https://device.example/status", folder=folder)  # fmt: skip
    assert code == 0, out
    document = json.loads(_run("did", "resolve", did, *common, folder=folder)[1])["didDocument"]
    fragments = sorted(m["id"].partition("#")[2] for m in document["verificationMethod"])
    assert fragments == ["key-2", "key-agreement-2"]
    assert document["service"][0]["serviceEndpoint"] == "https://device.example/status"
    keystore = Keystore.open(folder / "device.key", ENV["TRELLIS_PASSPHRASE"])
    assert [k.id for k in keystore.keys] == ["key-1", "key-2"]

    code, out = _run(
        "did", "deactivate", *common, "--key", str(folder / "device.key"), "--yes", folder=folder
    )
    assert code == 0, out
    code, out = _run("did", "resolve", did, *common, folder=folder)
    assert json.loads(out)["didDocumentMetadata"]["deactivated"] is True


def test_create_with_a_non_endorser_is_refused(network: tuple[Path, str]) -> None:
    """A DID endorsed by a key without an endorsing role is refused, naming the rule."""
    folder, url = network
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / "a.key"), folder=folder)  # fmt: skip
    assert code == 0, out
    code, out = _run("did", "create", *common, "--endorser", str(folder / "a.key"), "--out",
                     str(folder / "b.key"), folder=folder)  # fmt: skip
    assert code == 1
    assert "forbidden" in out


def test_unreachable_node_is_a_clear_error(network: tuple[Path, str]) -> None:
    """A node that does not answer gives exit 1 and says so, without a traceback."""
    folder, _ = network
    code, out = _run("did", "resolve", "did:trellis:clinet:4mJ1PRfKvTDzaWMTnMpTqq", "--node", "http://127.0.0.1:9",
                     "--genesis", str(folder / "genesis.json"), folder=folder)  # fmt: skip
    assert code == 1
    assert "internalError" in out or "error" in out

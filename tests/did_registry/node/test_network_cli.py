"""``trellis network init`` and ``trellis node start``, down to a real node process on loopback."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.txn import Transaction
from did_registry.node.config import load_config
from did_registry.node.server import ConnectionLimits
from wallet.keystore import Keystore
from web.cli import main

PASSPHRASE = "correct horse battery staple"
ENV = {"TRELLIS_PASSPHRASE": PASSPHRASE}


def _init(directory: Path, *args: str) -> Any:
    return CliRunner().invoke(
        main, ["network", "init", "--dir", str(directory), "--kdf", "interactive", *args], env=ENV
    )


class TestInit:
    def test_one_validator_network(self, tmp_path: Path) -> None:
        """One validator: a solo genesis, its node config and key, and the trustee's keystore."""
        result = _init(tmp_path, "--validators", "1", "--network", "labnet", "--base-port", "9100")
        assert result.exit_code == 0, result.output
        genesis = Genesis.from_json(json.loads((tmp_path / "genesis.json").read_text()))
        assert genesis.network == "labnet" and genesis.consensus["engine"] == "solo"
        config = load_config(tmp_path / "node-1.toml")
        assert (config.id, config.host, config.port, config.peers) == ("node-1", "127.0.0.1", 9100, ())
        assert config.database == f"sqlite:///{tmp_path.resolve()}/node-1.db"
        node_key = Keystore.open(config.key_file, PASSPHRASE).current_key
        assert genesis.validators[0]["public_key"] == encode_ed25519_public_key(node_key.public_key)
        trustee = Keystore.open(tmp_path / "trustee.key", PASSPHRASE)
        assert trustee.did == str(trellis_did("labnet", trustee.current_key.public_key))
        assert trustee.did == genesis.trustees[0]["id"] and trustee.did in result.output

    def test_four_validators_default_to_pbft_with_peers(self, tmp_path: Path) -> None:
        """Four validators: PBFT, distinct ports, and each node lists the three others as peers."""
        assert _init(tmp_path, "--validators", "4").exit_code == 0
        genesis = json.loads((tmp_path / "genesis.json").read_text())
        assert genesis["consensus"]["engine"] == "pbft" and len(genesis["validators"]) == 4
        configs = [load_config(tmp_path / f"node-{i}.toml") for i in range(1, 5)]
        assert len({c.port for c in configs}) == 4
        for config in configs:
            assert sorted(p.id for p in config.peers) == sorted(
                {f"node-{i}" for i in range(1, 5)} - {config.id}
            )
        addresses = {v["id"]: v["address"] for v in genesis["validators"]}
        assert all(addresses[p.id] == p.address for c in configs for p in c.peers)

    @pytest.mark.parametrize(
        ("args", "complaint"),
        [
            (["--validators", "1", "--network", "Bad_Name"], "--network"),
            (["--validators", "4", "--engine", "solo"], "solo engine runs exactly one validator"),
            (["--validators", "0"], "--validators"),
        ],
    )
    def test_bad_options_are_refused(self, tmp_path: Path, args: list[str], complaint: str) -> None:
        """Impossible networks are refused saying why, writing nothing."""
        result = _init(tmp_path / "net", *args)
        assert result.exit_code != 0 and complaint in result.output
        assert not (tmp_path / "net" / "genesis.json").exists()

    def test_existing_network_is_not_overwritten(self, tmp_path: Path) -> None:
        """A folder already holding a network is refused."""
        assert _init(tmp_path, "--validators", "1").exit_code == 0
        before = (tmp_path / "genesis.json").read_bytes()
        result = _init(tmp_path, "--validators", "1")
        assert result.exit_code == 1 and "already holds a network" in result.output
        assert (tmp_path / "genesis.json").read_bytes() == before


class TestStartRefusals:
    def test_init_writes_each_peer_s_transport_address_and_api(self, tmp_path: Path) -> None:
        """A four-validator network: each node knows the other three's transport address and API."""
        assert _init(tmp_path, "--validators", "4", "--base-port", "9100").exit_code == 0
        config = load_config(tmp_path / "node-2.toml")
        assert [(p.id, p.address, p.api) for p in config.peers] == [
            ("node-1", "127.0.0.1:9101", "http://127.0.0.1:9100"),
            ("node-3", "127.0.0.1:9105", "http://127.0.0.1:9104"),
            ("node-4", "127.0.0.1:9107", "http://127.0.0.1:9106"),
        ]

    def test_missing_config(self, tmp_path: Path) -> None:
        """A configuration file that is not there is a clear error."""
        result = CliRunner().invoke(main, ["node", "start", "--config", str(tmp_path / "none.toml")], env=ENV)
        assert result.exit_code == 1 and "cannot read" in result.output

    def test_wrong_passphrase(self, tmp_path: Path) -> None:
        """A wrong passphrase for the validator key is a clear error."""
        assert _init(tmp_path, "--validators", "1").exit_code == 0
        result = CliRunner().invoke(
            main,
            ["node", "start", "--config", str(tmp_path / "node-1.toml")],
            env={"TRELLIS_PASSPHRASE": "nope"},
        )
        assert result.exit_code == 1 and "validator key" in result.output and "passphrase" in result.output


def test_start_serves_with_the_configured_connection_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The [api] table's connection limits reach the server `trellis node start` runs."""
    import wallet.network_cli

    assert _init(tmp_path, "--validators", "1").exit_code == 0
    config = tmp_path / "node-1.toml"
    config.write_text(config.read_text() + "\n[api]\nconnections = 64\nper_address = 64\nidle_timeout = 5\n")
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(wallet.network_cli, "serve", lambda service, **options: served.append(options))
    result = CliRunner().invoke(main, ["node", "start", "--config", str(config)], env=ENV)
    assert result.exit_code == 0, result.output
    assert served[0]["limits"] == ConnectionLimits(connections=64, per_address=64, idle_timeout_s=5.0)


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)


def _http(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_node_process_end_to_end(tmp_path: Path) -> None:
    """init, start a real node process, create a DID endorsed by the trustee, resolve it, stop with SIGTERM."""
    assert _init(tmp_path, "--validators", "1", "--network", "e2e").exit_code == 0
    command = [sys.executable, "-c", "from web.cli import main; main()", "node", "start",
               "--config", str(tmp_path / "node-1.toml"), "--port", "0"]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        output: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(process.stdout, output), daemon=True).start()
        first = output.get(timeout=60)
        assert first.startswith("serving on http://127.0.0.1:"), first
        url = first.split()[-1]

        trustee = Keystore.open(tmp_path / "trustee.key", PASSPHRASE)
        assert trustee.did is not None
        device_key = Ed25519PrivateKey.generate()
        device = str(trellis_did("e2e", device_key.public_key))
        txn = (
            Transaction.build("did.create", network="e2e", submitter=device, nonce=1,
                              body={"document": initial_document(device, device_key.public_key).to_json()})
            .signed(device_key, f"{device}#key-1")
            .signed(trustee.current_key, f"{trustee.did}#key-1")
        )  # fmt: skip
        status, answer = _http(url + "/txns", txn.to_json())
        assert status == 202, answer
        deadline = time.monotonic() + 30
        while True:
            status, answer = _http(f"{url}/txns/{txn.id}?wait=5")
            if answer.get("status") == "committed" or time.monotonic() > deadline:
                break
        assert answer["status"] == "committed", answer
        status, resolved = _http(f"{url}/1.0/identifiers/{device}")
        assert status == 200 and resolved["didDocument"]["id"] == device
        assert resolved["didDocumentMetadata"]["versionId"] == "1"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

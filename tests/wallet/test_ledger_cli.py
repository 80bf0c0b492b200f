"""`trellis did create|update|deactivate|resolve --node`: DIDs on a live single-validator node."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from did_registry.client import LedgerClient
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node.config import build_service, load_config
from did_registry.node.server import NodeServer
from wallet import ledger_cli
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


def _created(folder: Path, url: str, name: str) -> tuple[str, list[str]]:
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / name), folder=folder)  # fmt: skip
    assert code == 0, out
    return out.strip().splitlines()[-1], common


def test_a_refused_rotation_leaves_the_keys_the_ledger_knows(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation the ledger refuses (here: another update took its nonce first) puts the keystore
    back as it was, and the next update signs and rotates as usual."""
    folder, url = network
    did, common = _created(folder, url, "device.key")
    real = LedgerClient.submit_and_wait

    def refused(self: LedgerClient, txn: Transaction, timeout: float = 30.0) -> Any:
        raise TxnRejected("replay", f"nonce {txn.nonce} of {did} is not above the last one", txn_id=txn.id)

    monkeypatch.setattr(LedgerClient, "submit_and_wait", refused)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert code == 1 and "refused" in out
    assert [k.id for k in Keystore.open(folder / "device.key", ENV["TRELLIS_PASSPHRASE"]).keys] == ["key-1"]
    monkeypatch.setattr(LedgerClient, "submit_and_wait", real)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert code == 0, out


def test_after_a_rotation_that_never_committed_the_key_the_ledger_knows_signs(
    network: tuple[Path, str],
) -> None:
    """A keystore whose current key the ledger never learnt (the update's answer was lost and it did
    not commit) still updates its DID: the kept key the document lists signs, and rotating again works."""
    folder, url = network
    did, common = _created(folder, url, "device.key")
    path = folder / "device.key"
    keystore = Keystore.open(path, ENV["TRELLIS_PASSPHRASE"])
    keystore.rotate()  # as a rotation does before it submits
    keystore.save(path, ENV["TRELLIS_PASSPHRASE"], overwrite=True)
    code, out = _run("did", "update", *common, "--key", str(path), "--add-service", "s", "T", "https://x.example",
                     folder=folder)  # fmt: skip
    assert code == 0, out
    code, out = _run("did", "update", *common, "--key", str(path), "--rotate", folder=folder)
    assert code == 0, out
    document = json.loads(_run("did", "resolve", did, *common, folder=folder)[1])["didDocument"]
    assert sorted(m["id"].partition("#")[2] for m in document["verificationMethod"]) == [
        "key-3",
        "key-agreement-3",
    ]


def _prompting(monkeypatch: pytest.MonkeyPatch, answer: Callable[[str], str]) -> None:
    """The commands ask passphrases on the terminal with ``answer`` (no TRELLIS_PASSPHRASE)."""
    real = ledger_cli.passphrase_from_env_or_prompt

    def asking(path: Path | None = None, *, confirm: bool = False) -> str:
        return real(path, confirm=confirm, environ={}, prompt=answer)

    monkeypatch.setattr(ledger_cli, "passphrase_from_env_or_prompt", asking)


def test_a_new_keystore_s_passphrase_is_asked_twice(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without TRELLIS_PASSPHRASE, `did create` asks the new keystore's passphrase twice, and a typo in
    the second answer refuses before anything is written or sent."""
    folder, url = network
    answers = iter(
        [ENV["TRELLIS_PASSPHRASE"], "correct horse battery staple", "correct horse battery stapel"]
    )
    _prompting(monkeypatch, lambda prompt: next(answers))
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    result = CliRunner().invoke(main, ["did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                                       str(folder / "typo.key")], env={"TRELLIS_PASSPHRASE": ""})  # fmt: skip
    assert result.exit_code == 1 and "passphrase" in result.output
    assert not (folder / "typo.key").exists()


def test_a_rotation_seals_the_keystore_with_the_passphrase_that_opened_it(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keystore is not asked for a second passphrase to seal it after a rotation."""
    folder, url = network
    _, common = _created(folder, url, "device.key")
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return ENV["TRELLIS_PASSPHRASE"] if len(asked) == 1 else "a typo the second time"

    _prompting(monkeypatch, answer)
    result = CliRunner().invoke(main, ["did", "update", *common, "--key", str(folder / "device.key"), "--rotate"],
                                env={"TRELLIS_PASSPHRASE": ""})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(asked) == 1
    keystore = Keystore.open(folder / "device.key", ENV["TRELLIS_PASSPHRASE"])
    assert [k.id for k in keystore.keys] == ["key-1", "key-2"]

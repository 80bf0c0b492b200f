"""``trellis node check`` and ``[storage] verify_on_start``: the store's whole integrity check, run by
the operator or before the node serves."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.storage.integrity import CorruptStore
from did_registry.node.config import (
    InvalidConfig,
    NodeConfig,
    build_service,
    default_database_url,
    load_config,
    write_config,
)
from tests.did_registry.ledger.conftest import Actor, make_genesis, new_actor
from web.cli import main


def _node(directory: Path, **settings: object) -> tuple[Path, NodeConfig, Ed25519PrivateKey, Actor]:
    """A solo node's configuration file on SQLite (its store not created yet), its key and trustee."""
    key, trustee = Ed25519PrivateKey.generate(), new_actor()
    (directory / "genesis.json").write_text(json.dumps(make_genesis(trustee, key).to_json()))
    config = NodeConfig(
        id="node-1",
        port=0,
        database=default_database_url(directory, "node-1"),
        key_file=directory / "node-1.key",
        genesis=directory / "genesis.json",
        **settings,  # type: ignore[arg-type]
    )
    path = directory / "node-1.toml"
    write_config(config, path)
    return path, config, key, trustee


def _chain(config: NodeConfig, key: Ed25519PrivateKey, trustee: Actor) -> str:
    """Run the node for one block (a device's DID) and stop it; return an ordinary DID on its ledger."""
    service = build_service(config, key)
    device = new_actor()
    service.submit([device.txn("did.create", {"document": device.document()}, trustee)])
    assert service.produce_block() is not None
    service.app.store.close()  # type: ignore[attr-defined]
    return device.did


def _make_trustee(directory: Path, did: str) -> None:
    """Edit the database behind the node's back: ``did`` becomes a trustee in ledger_state only."""
    with sqlite3.connect(directory / "node-1.db") as db:
        db.execute("INSERT INTO ledger_state (key, value) VALUES (?, ?)", (f"role:{did}", '["trustee"]'))


def _check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["node", "check", "--config", str(path)])
    return result.exit_code, result.output


class TestNodeCheck:
    def test_a_consistent_store_is_reported_ok_with_its_head(self, tmp_path: Path) -> None:
        """A store the node wrote is reported OK with its head height, exit status 0."""
        path, config, key, trustee = _node(tmp_path)
        _chain(config, key, trustee)
        code, output = _check(path)
        assert code == 0, output
        assert output.startswith("OK") and "height 1" in output

    def test_an_edited_state_row_is_reported_with_exit_status_1(self, tmp_path: Path) -> None:
        """A role row inserted behind the node's back (an ordinary DID made trustee on this node
        only) is reported: the state rows no longer hash to the head's root; exit status 1."""
        path, config, key, trustee = _node(tmp_path)
        _make_trustee(tmp_path, _chain(config, key, trustee))
        code, output = _check(path)
        assert code == 1
        assert "state rows hash to root" in output and "block 1 commits to" in output
        assert "corrupt" in output

    def test_a_missing_database_is_reported_and_not_created(self, tmp_path: Path) -> None:
        """Checking a node whose database file does not exist says so (exit status 1) and creates
        no database (a mistyped configuration must not pass as an empty, consistent store)."""
        path, _, _, _ = _node(tmp_path)
        code, output = _check(path)
        assert code == 1 and "no such file" in output
        assert not (tmp_path / "node-1.db").exists()


class TestVerifyOnStart:
    def test_a_node_asked_to_verify_on_start_refuses_an_edited_store(self, tmp_path: Path) -> None:
        """With ``[storage] verify_on_start = true`` the node runs the whole check before it serves
        and refuses to start on a store whose state rows were edited (without it, the edit goes
        unnoticed at start: only the head's block and certificate are checked then)."""
        path, config, key, trustee = _node(tmp_path, verify_on_start=True)
        _make_trustee(tmp_path, _chain(config, key, trustee))
        with pytest.raises(CorruptStore, match="state rows hash to root"):
            build_service(load_config(path), key)

    def test_the_storage_table_is_read_and_written(self, tmp_path: Path) -> None:
        """``[storage] verify_on_start`` round-trips through the TOML file; it is off by default."""
        path, config, _, _ = _node(tmp_path, verify_on_start=True)
        assert "[storage]" in path.read_text() and load_config(path) == config
        assert load_config(path).verify_on_start is True
        plain, _, _, _ = _node(tmp_path)  # the same file, written without it
        assert load_config(plain).verify_on_start is False and "[storage]" not in plain.read_text()

    @pytest.mark.parametrize(
        ("table", "complaint"),
        [
            ("[storage]\nverify_on_start = 1\n", "verify_on_start must be true or false"),
            ("[storage]\nverify = true\n", "unknown [storage] settings ['verify']"),
            ("storage = 3\n", "[storage] must be a table"),
        ],
    )
    def test_a_bad_storage_table_is_refused_saying_why(
        self, tmp_path: Path, table: str, complaint: str
    ) -> None:
        """Each mistake in ``[storage]`` is an InvalidConfig naming the setting."""
        path = tmp_path / "bad.toml"
        path.write_text(f'id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n{table}')
        with pytest.raises(InvalidConfig, match=complaint.replace("[", r"\[").replace("]", r"\]")):
            load_config(path)

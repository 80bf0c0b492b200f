"""Node configuration: TOML round trips, validation with clear errors, and building a node from it."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.node.config import (
    MEMORY_DATABASE,
    InvalidConfig,
    NodeConfig,
    NodeUnavailable,
    Peer,
    build_service,
    check_runnable,
    default_database_url,
    load_config,
    load_genesis,
    open_store,
    write_config,
)
from did_registry.node.server import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_WAITS, ConnectionLimits
from tests.did_registry.ledger.conftest import make_genesis, new_actor
from tests.did_registry.validator_chain import SetChangeChain


@pytest.fixture
def network(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey, Genesis]:
    """A genesis.json for validator node-1 in ``tmp_path``, its key and the parsed genesis."""
    key = Ed25519PrivateKey.generate()
    genesis = make_genesis(new_actor(), key)
    (tmp_path / "genesis.json").write_text(json.dumps(genesis.to_json()))
    return tmp_path, key, genesis


def _config(directory: Path, **changes: object) -> NodeConfig:
    values: dict[str, object] = {
        "id": "node-1", "port": 7700, "database": MEMORY_DATABASE, "key_file": directory / "node-1.key",
        "genesis": directory / "genesis.json",
    }  # fmt: skip
    values.update(changes)
    return NodeConfig(**values)  # type: ignore[arg-type]


class TestToml:
    def test_round_trip(self, tmp_path: Path) -> None:
        """A written configuration reads back equal, its paths relative in the file."""
        config = _config(tmp_path, peers=(Peer("node-2", "127.0.0.1:7703"),), host="0.0.0.0")
        write_config(config, tmp_path / "node-1.toml")
        text = (tmp_path / "node-1.toml").read_text()
        assert 'key_file = "node-1.key"' in text and 'genesis = "genesis.json"' in text
        assert load_config(tmp_path / "node-1.toml") == config

    def test_the_api_table_sets_the_server_s_threads(self, tmp_path: Path) -> None:
        """[api] settings round-trip and reach the server; absent ones take its defaults."""
        config = _config(tmp_path, api={"threads": 32, "max_streams": 12})
        write_config(config, tmp_path / "node-1.toml")
        loaded = load_config(tmp_path / "node-1.toml")
        assert loaded == config
        assert loaded.server_settings() == {"threads": 32, "max_streams": 12, "max_waits": DEFAULT_MAX_WAITS}

    def test_the_api_table_sets_the_connection_limits(self, tmp_path: Path) -> None:
        """[api] connection limits round-trip and reach the server (a node behind a proxy takes as many
        connections from the proxy's address as in all); absent ones take its defaults."""
        config = _config(tmp_path, api={"connections": 5000, "per_address": 5000, "request_timeout": 10.5})
        write_config(config, tmp_path / "node-1.toml")
        loaded = load_config(tmp_path / "node-1.toml")
        assert loaded == config
        assert loaded.connection_limits() == ConnectionLimits(
            connections=5000, per_address=5000, request_timeout_s=10.5, idle_timeout_s=DEFAULT_IDLE_TIMEOUT_S
        )
        assert _config(tmp_path).connection_limits() == ConnectionLimits()

    def test_a_connections_limit_alone_caps_the_share_of_one_address(self, tmp_path: Path) -> None:
        """With only ``connections`` set below the default share, one address may take them all."""
        assert _config(tmp_path, api={"connections": 50}).connection_limits() == ConnectionLimits(
            connections=50, per_address=50
        )

    def test_defaults(self, tmp_path: Path) -> None:
        """Host defaults to loopback and the database to sqlite beside the file."""
        (tmp_path / "n.toml").write_text('id = "node-3"\nport = 0\nkey_file = "k"\ngenesis = "g.json"\n')
        config = load_config(tmp_path / "n.toml")
        assert config.host == "127.0.0.1" and config.peers == ()
        assert config.database == default_database_url(tmp_path, "node-3")
        assert config.database == f"sqlite:///{tmp_path.resolve()}/node-3.db"
        assert config.key_file == tmp_path.resolve() / "k"

    @pytest.mark.parametrize(
        ("text", "complaint"),
        [
            ('id = "node-1"\nport = 1\nkey_file = "k"\n', "missing settings ['genesis']"),
            ('id = "node-1"\nport = 1\nkey_file = "k"\ngenesis = "g"\nprot = 2\n', "unknown settings ['prot']"),
            ('id = "no de"\nport = 1\nkey_file = "k"\ngenesis = "g"\n', "id must be"),
            ('id = "n"\nport = 70000\nkey_file = "k"\ngenesis = "g"\n', "port must be"),
            ('id = "n"\nport = true\nkey_file = "k"\ngenesis = "g"\n', "port must be"),
            ('id = "n"\nport = "80"\nkey_file = "k"\ngenesis = "g"\n', "port must be"),
            ('id = "n"\nport = 1\nkey_file = 3\ngenesis = "g"\n', "key_file must be"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\ndatabase = "x"\n', "database must be"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\nhost = ""\n', "host must be"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\npeers = [{id = "m"}]\n', "needs an address, an api"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\npeers = [{id = "m", x = 1}]\n', "[[peers]]"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[[peers]]\nid = "m"\napi = "ftp://x"\n',
             "api must be an http\\(s\\) URL"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[consensus]\nbatch_size = 0\n', "batch_size"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[consensus]\nbogus = 1\n', "unknown [consensus]"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[[peers]]\nid = "m"\naddress = "nowhere"\n',
             "address must be host:port"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[[peers]]\nid = "n"\naddress = "h:1"\n',
             "peer ids must be distinct"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nthread = 4\n', "unknown [api]"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nthreads = "16"\n', "[api] threads"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nmax_waits = -1\n', "[api] max_waits"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nconnections = 0\n', "[api] connections"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nper_address = 1.5\n', "[api] per_address"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nconnections = 10\nper_address = 20\n',
             "per_address \\(20\\) must be from 1 to connections \\(10\\)"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nrequest_timeout = 0\n', "[api] request_timeout"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nidle_timeout = "60"\n', "[api] idle_timeout"),
            ('id = "n"\nport = 1\nkey_file = "k"\ngenesis = "g"\n[api]\nidle_timeout = inf\n', "[api] idle_timeout"),
            ("id = ", "is not TOML"),
        ],
    )  # fmt: skip
    def test_invalid_is_refused_saying_why(self, tmp_path: Path, text: str, complaint: str) -> None:
        """Each mistake is an InvalidConfig naming the file and the setting."""
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(InvalidConfig, match=complaint.replace("[", r"\[").replace("]", r"\]")) as info:
            load_config(path)
        assert str(path) in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that is not there is an InvalidConfig, not an OSError."""
        with pytest.raises(InvalidConfig, match="cannot read"):
            load_config(tmp_path / "absent.toml")


class TestBuilding:
    def test_memory_node(self, network: tuple[Path, Ed25519PrivateKey, Genesis]) -> None:
        """A solo network's validator builds a service at genesis."""
        directory, key, genesis = network
        service = build_service(_config(directory), key)
        assert service.app.height == 0 and service.validator_id == "node-1"
        assert service.app.genesis.hash == genesis.hash

    def test_sqlite_node_keeps_its_chain(self, network: tuple[Path, Ed25519PrivateKey, Genesis]) -> None:
        """A node on SQLite finds its chain again when rebuilt from the same configuration."""
        directory, key, _ = network
        config = _config(directory, database=default_database_url(directory, "node-1"))
        first = build_service(config, key)
        trustee_block = first.app.head
        again = build_service(config, key)
        assert again.app.head == trustee_block and (directory / "node-1.db").exists()

    def test_wrong_key_is_refused(self, network: tuple[Path, Ed25519PrivateKey, Genesis]) -> None:
        """A key that is not the validator's genesis key is refused."""
        directory, _, _ = network
        with pytest.raises(InvalidConfig, match="not validator node-1's key"):
            build_service(_config(directory), Ed25519PrivateKey.generate())

    def test_a_key_the_ledger_rotated_the_validator_to_is_accepted(self, tmp_path: Path) -> None:
        """A validator restarted with the key a committed validator.rotate_key names (pending here)."""
        chain = SetChangeChain(1)
        rotate = chain.rotate("v1", 5)
        chain.block(rotate)
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        new_key = chain.keys[rotate.body["public_key"]]
        service = build_service(_config(tmp_path, id="v1"), new_key, store=chain.app.store)
        assert service.app.height == 1

    def test_a_key_neither_genesis_nor_the_ledger_names_is_refused(self, tmp_path: Path) -> None:
        """Once the store holds blocks, a key the ledger never named for the validator is refused."""
        chain = SetChangeChain(1)
        chain.block(chain.rotate("v1", 5))
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        with pytest.raises(InvalidConfig, match="nor one the ledger"):
            build_service(_config(tmp_path, id="v1"), Ed25519PrivateKey.generate(), store=chain.app.store)

    def test_a_new_node_of_a_multi_validator_network_follows_with_a_key_it_cannot_check_yet(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With no block yet and peers to follow, a key that is not the genesis key may be a rotated one:
        the node is built (it votes only once the ledger puts its key in force), with a warning."""
        chain = SetChangeChain(4)
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        peers = (Peer("v1", "127.0.0.1:7001", "http://127.0.0.1:7700"),)
        with caplog.at_level(logging.WARNING, logger="did_registry.node"):
            service = build_service(_config(tmp_path, id="v2", peers=peers), Ed25519PrivateKey.generate())
        assert service.app.height == 0 and "names for validator v2: following" in caplog.text

    def test_another_validator_s_key_is_refused_even_with_peers(self, tmp_path: Path) -> None:
        """Key files swapped between two validators are refused: genesis names the key for another id."""
        chain = SetChangeChain(4)
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        peers = (Peer("v1", "127.0.0.1:7001", "http://127.0.0.1:7700"),)
        v1_key = chain.keys[chain.genesis.validators[0]["public_key"]]
        with pytest.raises(InvalidConfig, match="is validator v1's key, not v2's"):
            build_service(_config(tmp_path, id="v2", peers=peers), v1_key)

    def test_a_validator_added_later_is_refused_another_s_key(self, tmp_path: Path) -> None:
        """An id genesis does not name but the ledger adds: a key the ledger names for another id is
        refused, the key it names for this id is taken."""
        chain = SetChangeChain(1)
        add = chain.add("v2", 5)
        chain.block(add)
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        peers = (Peer("v1", "127.0.0.1:7001", "http://127.0.0.1:7700"),)
        v1_key = chain.keys[chain.genesis.validators[0]["public_key"]]
        config = _config(tmp_path, id="v2", peers=peers)
        with pytest.raises(InvalidConfig, match="is validator v1's key, not v2's"):
            build_service(config, v1_key, store=chain.app.store)
        v2_key = chain.keys[add.body["validator"]["public_key"]]
        assert build_service(config, v2_key, store=chain.app.store).app.height == 1

    def test_unknown_validator_is_refused(self, network: tuple[Path, Ed25519PrivateKey, Genesis]) -> None:
        """A configuration naming a validator genesis does not know is refused."""
        directory, key, _ = network
        with pytest.raises(InvalidConfig, match="not a validator"):
            build_service(_config(directory, id="node-9"), key)

    def test_other_networks_store_is_refused(self, network: tuple[Path, Ed25519PrivateKey, Genesis]) -> None:
        """A store holding another network's chain is refused."""
        directory, key, _ = network
        store = MemoryLedgerStore()
        other_key = Ed25519PrivateKey.generate()
        build_service(_config(directory), key, store=store)
        (directory / "other.json").write_text(json.dumps(make_genesis(new_actor(), other_key).to_json()))
        with pytest.raises(InvalidConfig, match="another network"):
            build_service(_config(directory, genesis=directory / "other.json"), other_key, store=store)

    def test_unknown_engine_is_unavailable(self, tmp_path: Path) -> None:
        """A genesis naming an engine this build does not have: NodeUnavailable names the engine."""
        key = Ed25519PrivateKey.generate()
        data = make_genesis(new_actor(), key).to_json()
        data["consensus"] = {"engine": "hotstuff"}
        (tmp_path / "genesis.json").write_text(json.dumps(data))
        with pytest.raises((NodeUnavailable, InvalidConfig), match=r"consensus\.engine must be one of"):
            check_runnable(_config(tmp_path))

    def test_a_node_outside_the_set_needs_peers_to_follow(self, tmp_path: Path) -> None:
        """A node that is not a validator is an observer, and an observer needs a peer api."""
        key = Ed25519PrivateKey.generate()
        (tmp_path / "genesis.json").write_text(json.dumps(make_genesis(new_actor(), key).to_json()))
        outsider = replace(_config(tmp_path), id="observer-1")
        with pytest.raises(InvalidConfig, match="an observer needs"):
            check_runnable(outsider)
        check_runnable(replace(outsider, peers=(Peer("node-1", api="http://127.0.0.1:7700"),)))

    @pytest.mark.parametrize(
        ("content", "complaint"), [(None, "cannot read"), ("{", "not JSON"), ("{}", "genesis")]
    )
    def test_bad_genesis(self, tmp_path: Path, content: str | None, complaint: str) -> None:
        """A missing, non-JSON or invalid genesis is an InvalidConfig."""
        if content is not None:
            (tmp_path / "genesis.json").write_text(content)
        with pytest.raises(InvalidConfig, match=complaint):
            load_genesis(tmp_path / "genesis.json")

    @pytest.mark.parametrize("url", ["mysql://u@127.0.0.1/db", "nonsense://x"])
    def test_unsupported_database(self, url: str) -> None:
        """A database the store cannot run on is an InvalidConfig naming it."""
        with pytest.raises(InvalidConfig, match="database"):
            open_store(url)


class TestStoredKeys:
    def test_a_key_given_to_another_id_after_its_rotation_away_is_taken(self, tmp_path: Path) -> None:
        """v1 rotates away from its genesis key, and v2 rotates to it (the ledger allows it once no
        member holds it): v2 starts with the key the ledger has in force for it."""
        chain = SetChangeChain(4)
        v1_genesis = chain.genesis.validators[0]["public_key"]
        chain.block(chain.rotate("v1", 3))
        chain.block()
        rotate = chain.trustee.txn(
            "validator.rotate_key", {"id": "v2", "public_key": v1_genesis, "effective_height": 5}
        )
        chain.block(rotate)
        chain.empty_blocks(2)
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        service = build_service(_config(tmp_path, id="v2"), chain.keys[v1_genesis], store=chain.app.store)
        assert service.app.height == 5

    def test_a_malformed_stored_validators_record_is_a_configuration_error(self, tmp_path: Path) -> None:
        chain = SetChangeChain(1)
        (tmp_path / "genesis.json").write_text(json.dumps(chain.genesis.to_json()))
        store = chain.app.store
        original = store.get

        def broken(key: str) -> bytes | None:
            return b'{"set": [], "pending": ["x"]}' if key == "validators" else original(key)

        store.get = broken  # type: ignore[method-assign]
        with pytest.raises(InvalidConfig, match="validators record is malformed"):
            build_service(_config(tmp_path, id="v1"), Ed25519PrivateKey.generate(), store=store)

"""Node configuration: one TOML file (TOML v1.0.0) per node, and building a node from it.

::

    id = "node-1"                                   # this validator's id in genesis
    host = "127.0.0.1"                              # where the HTTP API listens
    port = 7700                                     # 0: any free port
    database = "sqlite:////srv/trellis/node-1.db"   # SQLAlchemy URL (SQLite or PostgreSQL); "memory:" for tests
    key_file = "node-1.key"                         # encrypted keystore holding the validator key
    genesis = "genesis.json"

    [[peers]]                                       # the other nodes
    id = "node-2"
    address = "127.0.0.1:7703"                      # its consensus transport (validators)
    api = "http://127.0.0.1:7702"                   # its HTTP API: state transfer, following

    [consensus]                                     # optional: engine settings (ConsensusConfig)
    view_change_timeout = 2.0

    [api]                                           # optional: the HTTP server's worker threads
    threads = 16                                    # in all
    max_streams = 6                                 # held by header streams at most
    max_waits = 4                                   # held by waiting requests at most
    connections = 1000                              # open connections at most
    per_address = 100                               # from one client address (behind a proxy: = connections)
    request_timeout = 30.0                          # seconds for a request to arrive, however slowly
    idle_timeout = 60.0                             # seconds a kept-alive connection may idle

    [storage]                                       # optional
    verify_on_start = false                         # true: the full integrity check before serving

A node whose ``id`` is a validator of the set in force votes; any other node is an *observer*: it
follows the chain from its peers' ``api`` (verifying every block and certificate) and serves reads,
and it starts voting if a validator-set transaction later adds it.

Opening the database checks its head against its blocks (cheap, always). ``verify_on_start`` runs the
whole integrity check of a SQL store (every block, transaction and state row against the chain: what
``trellis node check`` runs, :func:`check_database`) before the node serves, and refuses to start on a
store that fails it; it costs about 0.1 ms per DID on SQLite (docs/ledger.md).

Relative paths are taken from the configuration file's folder. The validator key is not read here:
the keystore format belongs to :mod:`wallet`, which :mod:`did_registry` never imports, so whoever
opens the keystore passes the decrypted key to :func:`build_service`.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import tomli_w

from did_registry.consensus import ConsensusConfig, ConsensusError
from did_registry.errors import DidRegistryError
from did_registry.genesis_file import GenesisFileError, read_genesis_file
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.application import InvalidBlock, LedgerApplication
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.state import decode_value
from did_registry.ledger.storage.base import LedgerStore
from did_registry.ledger.storage.integrity import CorruptStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.validators import valid_address
from did_registry.node.server import DEFAULT_MAX_STREAMS, DEFAULT_MAX_WAITS, DEFAULT_THREADS, ConnectionLimits
from did_registry.node.service import NodeService
from did_registry.transport import TransportConfig

__all__ = [
    "RUNNABLE_ENGINES",
    "MEMORY_DATABASE",
    "InvalidConfig",
    "NodeUnavailable",
    "Peer",
    "NodeConfig",
    "default_database_url",
    "load_config",
    "write_config",
    "load_genesis",
    "check_runnable",
    "open_store",
    "check_database",
    "build_service",
]

_log = logging.getLogger("did_registry.node")

RUNNABLE_ENGINES: Final = frozenset({"solo", "pbft", "round_robin"})
"""Consensus engines this build can run."""
MEMORY_DATABASE: Final = "memory:"
"""The ``database`` value of a node that keeps its chain in memory only (tests, demonstrations)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEYS: Final = frozenset(
    {"id", "host", "port", "database", "key_file", "genesis", "peers", "consensus", "api", "storage"}
)
_STORAGE_KEYS: Final = frozenset({"verify_on_start"})
_API_THREAD_KEYS: Final = frozenset({"threads", "max_streams", "max_waits"})
_API_LIMIT_KEYS: Final = frozenset({"connections", "per_address", "request_timeout", "idle_timeout"})
_API_KEYS: Final = _API_THREAD_KEYS | _API_LIMIT_KEYS
_MAX_CONNECTIONS: Final = 1_000_000
_MAX_TIMEOUT_S: Final = 86_400.0
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]{1,253}(/[A-Za-z0-9._~/-]*)?")


class InvalidConfig(DidRegistryError, ValueError):
    """A node configuration (or the genesis or database it names) is missing, malformed or inconsistent."""


class NodeUnavailable(DidRegistryError):
    """The configuration asks for something this build cannot run (a consensus engine, a store)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Another node: its id, the ``host:port`` its consensus transport listens on (validators), and
    its HTTP API's base URL (for state transfer and following)."""

    id: str
    address: str = ""
    api: str = ""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's configuration (see the module docstring); paths are absolute once loaded."""

    id: str
    port: int
    database: str
    key_file: Path
    genesis: Path
    host: str = "127.0.0.1"
    peers: tuple[Peer, ...] = field(default=())
    consensus: Mapping[str, Any] = field(default_factory=dict)
    api: Mapping[str, int | float] = field(default_factory=dict)
    """Settings of the HTTP server (:class:`~did_registry.node.server.NodeServer`): ``threads``,
    ``max_streams``, ``max_waits``, and its :class:`~did_registry.node.server.ConnectionLimits`
    (``connections``, ``per_address``, ``request_timeout``, ``idle_timeout``); absent ones take the
    server's defaults."""
    verify_on_start: bool = False
    """``[storage] verify_on_start``: run the store's whole integrity check before serving."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise InvalidConfig(f"id must be a validator id ([A-Za-z0-9._-], at most 64), not {self.id!r}")
        if not isinstance(self.host, str) or not 0 < len(self.host) <= 253:
            raise InvalidConfig(f"host must be a host name or address, not {self.host!r}")
        if type(self.port) is not int or not 0 <= self.port <= 65535:
            raise InvalidConfig(f"port must be an integer from 0 to 65535, not {self.port!r}")
        if not isinstance(self.database, str) or ":" not in self.database:
            raise InvalidConfig(
                f"database must be a SQLAlchemy URL or {MEMORY_DATABASE!r}, not {self.database!r}"
            )
        for name in ("key_file", "genesis"):
            if not isinstance(getattr(self, name), Path):
                raise InvalidConfig(f"{name} must be a path")
        ids = [peer.id for peer in self.peers]
        for peer in self.peers:
            if not isinstance(peer.id, str) or not _ID.fullmatch(peer.id):
                raise InvalidConfig(f"peer id {peer.id!r} is not a validator id")
            if not (peer.address == "" or valid_address(peer.address)):
                raise InvalidConfig(
                    f"peer {peer.id} address must be host:port with a port from 1 to 65535, not {peer.address!r}"
                )
            if not isinstance(peer.api, str) or not (peer.api == "" or _URL.fullmatch(peer.api)):
                raise InvalidConfig(f"peer {peer.id} api must be an http(s) URL, not {peer.api!r}")
            if not peer.address and not peer.api:
                raise InvalidConfig(f"peer {peer.id} needs an address, an api, or both")
        self.consensus_config()
        unknown_api = set(self.api) - _API_KEYS
        if unknown_api:
            raise InvalidConfig(f"unknown [api] settings {sorted(unknown_api)}; they are {sorted(_API_KEYS)}")
        for name, value in self.api.items():
            if name in _API_THREAD_KEYS and (type(value) is not int or not 0 <= value <= 1024):
                raise InvalidConfig(f"[api] {name} must be an integer from 0 to 1024, not {value!r}")
            if name in ("connections", "per_address") and (
                type(value) is not int or not 1 <= value <= _MAX_CONNECTIONS
            ):
                raise InvalidConfig(
                    f"[api] {name} must be an integer from 1 to {_MAX_CONNECTIONS}, not {value!r}"
                )
            if name in ("request_timeout", "idle_timeout") and (
                type(value) not in (int, float) or not 0 < value <= _MAX_TIMEOUT_S
            ):
                raise InvalidConfig(
                    f"[api] {name} must be seconds above 0, at most {_MAX_TIMEOUT_S:.0f}, not {value!r}"
                )
        self.connection_limits()
        if type(self.verify_on_start) is not bool:
            raise InvalidConfig(
                f"[storage] verify_on_start must be true or false, not {self.verify_on_start!r}"
            )
        if len(set(ids)) != len(ids) or self.id in ids:
            raise InvalidConfig("peer ids must be distinct and differ from this node's id")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: Path) -> NodeConfig:
        """Read a parsed TOML document; relative paths are taken from ``base``."""
        unknown = set(data) - _KEYS
        if unknown:
            raise InvalidConfig(f"unknown settings {sorted(unknown)}; the settings are {sorted(_KEYS)}")
        missing = {"id", "port", "key_file", "genesis"} - set(data)
        if missing:
            raise InvalidConfig(f"missing settings {sorted(missing)}")
        peers = data.get("peers", [])
        if not isinstance(peers, list) or not all(
            isinstance(p, dict) and "id" in p and set(p) <= {"id", "address", "api"} for p in peers
        ):
            raise InvalidConfig("each [[peers]] entry has an id, and an address, an api or both")
        consensus = data.get("consensus", {})
        if not isinstance(consensus, dict):
            raise InvalidConfig("[consensus] must be a table of engine settings")
        api = data.get("api", {})
        if not isinstance(api, dict):
            raise InvalidConfig("[api] must be a table of server settings")
        storage = data.get("storage", {})
        if not isinstance(storage, dict):
            raise InvalidConfig("[storage] must be a table of storage settings")
        unknown_storage = set(storage) - _STORAGE_KEYS
        if unknown_storage:
            raise InvalidConfig(
                f"unknown [storage] settings {sorted(unknown_storage)}; they are {sorted(_STORAGE_KEYS)}"
            )
        for name in ("key_file", "genesis"):
            if not isinstance(data[name], str) or not data[name]:
                raise InvalidConfig(f"{name} must be a file path")
        return cls(
            id=data["id"],
            port=data["port"],
            database=data.get("database", default_database_url(base, data["id"])),
            key_file=base / data["key_file"],
            genesis=base / data["genesis"],
            host=data.get("host", "127.0.0.1"),
            peers=tuple(Peer(p["id"], p.get("address", ""), p.get("api", "")) for p in peers),
            consensus=consensus,
            api=api,
            verify_on_start=storage.get("verify_on_start", False),
        )

    def server_settings(self) -> dict[str, int]:
        """The ``[api]`` settings as :func:`~did_registry.node.server.serve` takes them (absent ones:
        the server's defaults)."""
        return {
            "threads": int(self.api.get("threads", DEFAULT_THREADS)),
            "max_streams": int(self.api.get("max_streams", DEFAULT_MAX_STREAMS)),
            "max_waits": int(self.api.get("max_waits", DEFAULT_MAX_WAITS)),
        }

    def connection_limits(self) -> ConnectionLimits:
        """The ``[api]`` connection limits (absent ones: the server's defaults); raise
        :class:`InvalidConfig` when they do not fit together."""
        api, default = self.api, ConnectionLimits()
        try:
            connections = int(api.get("connections", default.connections))
            return ConnectionLimits(
                connections=connections,
                per_address=int(api.get("per_address", min(default.per_address, connections))),
                request_timeout_s=float(api.get("request_timeout", default.request_timeout_s)),
                idle_timeout_s=float(api.get("idle_timeout", default.idle_timeout_s)),
            )
        except ValueError as exc:
            raise InvalidConfig(f"[api]: {exc}") from None

    def consensus_config(self) -> ConsensusConfig:
        """The engine settings: defaults, overridden by the ``[consensus]`` table."""
        known = set(ConsensusConfig.__dataclass_fields__)
        unknown = set(self.consensus) - known
        if unknown:
            raise InvalidConfig(f"unknown [consensus] settings {sorted(unknown)}; they are {sorted(known)}")
        for name, value in self.consensus.items():
            if type(value) not in (int, float):
                raise InvalidConfig(f"[consensus] {name} must be a number, not {value!r}")
        try:
            return ConsensusConfig(**self.consensus).validate()
        except (TypeError, ConsensusError) as exc:
            raise InvalidConfig(f"[consensus]: {exc}") from None

    def to_toml(self, base: Path | None = None) -> str:
        """The TOML text; paths under ``base`` are written relative to it."""

        def relative(path: Path) -> str:
            return (
                str(path.relative_to(base)) if base is not None and path.is_relative_to(base) else str(path)
            )

        document: dict[str, Any] = {
            "id": self.id,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "key_file": relative(self.key_file),
            "genesis": relative(self.genesis),
        }
        if self.peers:
            document["peers"] = [
                {k: v for k, v in (("id", p.id), ("address", p.address), ("api", p.api)) if v}
                for p in self.peers
            ]
        if self.consensus:
            document["consensus"] = dict(self.consensus)
        if self.api:
            document["api"] = dict(self.api)
        if self.verify_on_start:
            document["storage"] = {"verify_on_start": True}
        return tomli_w.dumps(document)


def default_database_url(directory: Path, node_id: str) -> str:
    """``sqlite:///<directory>/<node_id>.db`` with an absolute path."""
    return f"sqlite:///{(directory / f'{node_id}.db').resolve()}"


def load_config(path: str | Path) -> NodeConfig:
    """Read and check the node configuration at ``path``; raise :class:`InvalidConfig` saying what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidConfig(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"{path} is not TOML: {exc}") from None
    try:
        return NodeConfig.from_mapping(data, path.resolve().parent)
    except InvalidConfig as exc:
        raise InvalidConfig(f"{path}: {exc}") from None


def write_config(config: NodeConfig, path: str | Path) -> None:
    """Write ``config`` to ``path`` as TOML, with paths relative to its folder where possible."""
    path = Path(path)
    path.write_text(config.to_toml(path.resolve().parent), encoding="utf-8")


def load_genesis(path: str | Path) -> Genesis:
    """Read and check a ``genesis.json`` (:func:`~did_registry.genesis_file.read_genesis_file`);
    raise :class:`InvalidConfig` naming the file and the problem."""
    try:
        return read_genesis_file(Path(path))
    except GenesisFileError as exc:
        raise InvalidConfig(str(exc)) from None


def check_runnable(config: NodeConfig) -> Genesis:
    """The genesis of ``config``, once checked that this build can run its engine as this node: a
    validator of genesis, or an observer with at least one peer ``api`` to follow."""
    genesis = load_genesis(config.genesis)
    engine = genesis.consensus.get("engine")
    if engine not in RUNNABLE_ENGINES:
        raise NodeUnavailable(
            f"consensus engine {engine!r} is not available in this build "
            f"(it runs {', '.join(sorted(RUNNABLE_ENGINES))})"
        )
    validator = any(v.get("id") == config.id for v in genesis.validators)
    if not validator and not any(p.api for p in config.peers):
        raise InvalidConfig(
            f"{config.id!r} is not a validator of network {genesis.network!r}; an observer needs "
            "[[peers]] with an api URL to follow"
        )
    return genesis


_CORRUPT_ADVICE: Final = (
    "the store is corrupt: restore the database from a backup, or move it aside and start the node on an"
    " empty one (it catches up from its peers)"
)


def open_store(database: str) -> LedgerStore:
    """The ledger store a ``database`` setting names: the SQL store by URL, or memory.

    Raises :class:`InvalidConfig` for a database it cannot use, and
    :class:`~did_registry.ledger.storage.integrity.CorruptStore` for a store whose head height does not
    match its blocks (the check every opening runs)."""
    if database == MEMORY_DATABASE:
        return MemoryLedgerStore()
    try:
        from sqlalchemy.exc import SQLAlchemyError

        from did_registry.ledger.storage.sql import SQLLedgerStore
    except ImportError as exc:  # pragma: no cover - the SQL store ships with this package
        raise NodeUnavailable(f"the SQL ledger store is not available in this build: {exc}") from None
    try:
        return SQLLedgerStore(database)
    except (ValueError, SQLAlchemyError) as exc:
        raise InvalidConfig(f"database {_shown(database)}: {exc}") from None
    except CorruptStore as exc:
        raise CorruptStore(f"database {_shown(database)}: {exc}; {_CORRUPT_ADVICE}") from None


def _shown(database: str) -> str:
    """A database URL as messages show it (its password, if any, hidden)."""
    try:
        from sqlalchemy import make_url

        return repr(make_url(database).render_as_string(hide_password=True))
    except Exception:  # not a URL: shown as given (it holds no password then)
        return repr(database)


def _sqlite_file(database: str) -> Path | None:
    """The file a SQLite URL names (None for any other setting, or SQLite in memory)."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _verify(store: LedgerStore, database: str) -> int | None:
    """The SQL store's whole integrity check (its head height); raise :class:`CorruptStore`."""
    verify = getattr(store, "verify_integrity", None)
    if not callable(verify):
        raise InvalidConfig(f"database {_shown(database)} keeps nothing to check (a memory store)")
    from sqlalchemy.exc import SQLAlchemyError

    try:
        height: int | None = verify()
    except CorruptStore as exc:
        raise CorruptStore(f"database {_shown(database)}: {exc}; {_CORRUPT_ADVICE}") from None
    except SQLAlchemyError as exc:
        raise InvalidConfig(f"database {_shown(database)} could not be read: {exc}") from None
    return height


def check_database(config: NodeConfig) -> int:
    """``trellis node check``: the whole integrity check of the node's SQL store (every block,
    transaction and state row against the chain: :meth:`SQLLedgerStore.verify_integrity
    <did_registry.ledger.storage.sql.SQLLedgerStore.verify_integrity>`), then the checks a node runs on
    its head when it starts (genesis, parent, certificate). Changes nothing in the ledger (a SQLite file
    that does not exist is not created). Returns the head height;
    raises :class:`~did_registry.ledger.storage.integrity.CorruptStore` when the store breaks an
    invariant, :class:`InvalidConfig` when there is no chain to check or it is another network's."""
    genesis = load_genesis(config.genesis)
    file = _sqlite_file(config.database)
    if file is not None and not file.exists():  # opening it would create an empty database
        raise InvalidConfig(f"database {_shown(config.database)}: no such file")
    store = open_store(config.database)
    try:
        height = _verify(store, config.database)
        if height is None:
            raise InvalidConfig(f"database {_shown(config.database)} holds no chain yet")
        try:
            LedgerApplication(store, genesis)
        except InvalidBlock as exc:
            raise InvalidConfig(f"database {_shown(config.database)}: {exc}") from None
        return height
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def _check_key(
    config: NodeConfig, genesis: Genesis, application: LedgerApplication, validator_key: Ed25519PrivateKey
) -> None:
    """Refuse a key file that cannot be this node's. The ledger as stored (genesis's set at block 0)
    names keys for validator ids (in force, or pending from a ``validator.add`` or
    ``validator.rotate_key``): a key it names for another id is refused (key files swapped); one it
    names for this id, or any key for an id it names none for (an observer), is taken. A key they do not name for an id they name other
    keys for may be a rotation this store has not seen yet: a node of a multi-validator network with
    peers to follow starts with a warning, and votes only once the ledger puts its key in force (until
    then it follows, as any node whose key is not in force does); any other node is refused."""
    key = encode_ed25519_public_key(validator_key.public_key)
    named: dict[str, set[str]] = {}  # key -> the ids the ledger as stored names it for

    def name(member: Any) -> None:
        if isinstance(member, Mapping) and isinstance(member.get("id"), str):
            named.setdefault(str(member.get("public_key")), set()).add(member["id"])

    # the stored record only: it holds genesis's set at block 0, and later a key the set no longer
    # holds may be given to another id (a rotation away frees it)
    try:
        record = decode_value(application.store.get("validators") or b"null")
        for member in record["set"]:
            name(member)
        for pending in record["pending"]:
            change = pending["change"]
            name(change.get("validator", change))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidConfig(
            f"database {_shown(config.database)}: the validators record is malformed: {exc!r}"
        ) from None
    others = sorted(named.get(key, set()) - {config.id})
    if others:
        raise InvalidConfig(f"the key in {config.key_file} is validator {others[0]}'s key, not {config.id}'s")
    if config.id in named.get(key, set()) or not any(config.id in ids for ids in named.values()):
        return
    if genesis.consensus.get("engine") != "solo" and any(p.api for p in config.peers):
        _log.warning(
            "the key in %s is not one genesis or the ledger as stored (height %d) names for validator %s: "
            "following until the ledger puts it in force",
            config.key_file,
            application.height,
            config.id,
        )
        return
    raise InvalidConfig(
        f"the key in {config.key_file} is not validator {config.id}'s key in genesis, nor one the ledger "
        f"(height {application.height}) names for it, in force or pending"
    )


def build_service(
    config: NodeConfig,
    validator_key: Ed25519PrivateKey,
    *,
    store: LedgerStore | None = None,
    transport_config: TransportConfig | None = None,
) -> NodeService:
    """The node ``config`` describes, signing with ``validator_key`` (its genesis key, for a genesis
    validator). Multi-validator engines and observers get a :class:`Replica` as the service's runner."""
    genesis = check_runnable(config)
    entry = next((v for v in genesis.validators if v.get("id") == config.id), None)
    opened = store is None
    store = store if store is not None else open_store(config.database)
    try:
        if config.verify_on_start:
            _log.info(
                "checking the integrity of database %s ([storage] verify_on_start)", _shown(config.database)
            )
            _verify(store, config.database)
        try:
            application = LedgerApplication(store, genesis)
        except InvalidBlock as exc:
            raise InvalidConfig(f"database {_shown(config.database)}: {exc}") from None
        _check_key(config, genesis, application, validator_key)
    except BaseException:
        close = getattr(store, "close", None) if opened else None
        if close is not None:  # refused: its connections are closed here, not left to the collector
            close()
        raise
    service = NodeService(
        application,
        validator_id=config.id,
        validator_key=validator_key,
        freshness_interval=config.consensus_config().freshness_interval,
    )
    if genesis.consensus.get("engine") != "solo" or entry is None:
        from did_registry.node.replica import Replica, ReplicaConfig

        Replica(
            service,
            validator_key,
            ReplicaConfig(
                sync_urls=tuple(p.api for p in config.peers if p.api),
                consensus=config.consensus_config(),
                transport=transport_config or TransportConfig(),
                peer_addresses={p.id: p.address for p in config.peers if p.address},
            ),
        )
    return service

"""A local validator network whose links can fail: kill, partition, slow, and cut the services off.

:class:`FleetNetwork` wraps :class:`wallet.localnet.LocalNetwork` (``trellis network init`` in a
folder, one ``trellis node start`` process per validator, SQLite files). Before the nodes start it
rewrites each ``node-<i>.toml`` so that node *i* reaches peer *j*'s consensus ``address`` and its
``api`` each through a :class:`~fleet.relay.Relay` of its own for the ordered pair (i, j); the
services (verifiers) reach each node's API through one more relay per node (:attr:`service_urls`),
while :attr:`urls` stay the nodes' own URLs, for the simulator's writes and checks.

Faults: :meth:`kill` (SIGKILL) and :meth:`restart` on the same files; :meth:`partition` and
:meth:`heal` (every relay between a node and the others, both ways); :meth:`slow` and :meth:`unslow`
(a delay on those relays); :meth:`cut_services` and :meth:`restore_services`.
"""

from __future__ import annotations

import collections
import json
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypedDict

import httpx
import tomli_w

from fleet.errors import NetworkFault
from fleet.relay import Relay, RelayHub
from wallet.localnet import LocalNetwork, LocalNetworkError

__all__ = ["FleetNetwork", "Head"]


class Head(TypedDict):
    """Where a node's chain stands."""

    height: int
    state_root: str


_Kind = Literal["address", "api"]
_KINDS: Final[tuple[_Kind, ...]] = ("address", "api")
_HEALTH_TIMEOUT: Final = 3.0
_POLL: Final = 0.2


class FleetNetwork:
    """``validators`` node processes in ``directory``, every link between them through a relay."""

    def __init__(
        self,
        directory: Path,
        validators: int = 4,
        *,
        engine: str | None = None,
        network: str = "fleet",
        passphrase: str = "trellis-fleet-network",  # noqa: S107 - a throwaway local network
        consensus: dict[str, float] | None = None,
    ) -> None:
        try:
            self._local = LocalNetwork(
                directory,
                validators,
                engine=engine,
                network=network,
                passphrase=passphrase,
                consensus=consensus,
            )
        except LocalNetworkError as exc:
            raise NetworkFault(
                f"cannot set up a {validators}-validator network in {directory}: {exc}"
            ) from exc
        self.directory: Final = self._local.directory
        self.network: Final = network
        self.passphrase: Final = passphrase
        self.node_ids: Final = list(self._local.nodes)
        self._targets = _targets(self.directory, self.node_ids)
        self._hub: RelayHub | None = None
        self._pairs: dict[tuple[_Kind, str, str], Relay] = {}
        self._services: dict[str, Relay] = {}
        self._service_groups: dict[str, dict[str, Relay]] = {}
        self._partitioned: set[str] = set()
        self._slow: dict[str, float] = {}
        self._http: httpx.Client | None = None

    # -- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the relays, point every node's peers at them, and start every node."""
        if self._hub is not None:
            raise NetworkFault("the fleet network is already started")
        self._hub = RelayHub().start()
        try:
            self._open_relays(self._hub)
            self._rewrite_configs()
            self._local.start()
        except BaseException as exc:
            self.stop()
            if isinstance(exc, LocalNetworkError):
                raise NetworkFault(f"the fleet network did not start: {exc}") from exc
            raise

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL), then close every relay and the hub's thread."""
        try:
            self._local.stop()
        finally:
            hub, self._hub = self._hub, None
            self._pairs.clear()
            self._services.clear()
            self._service_groups.clear()
            self._partitioned.clear()
            self._slow.clear()
            http, self._http = self._http, None
            if http is not None:
                http.close()
            if hub is not None:
                hub.close()

    def __enter__(self) -> FleetNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        """Each node's own API base URL, in node order (no relay: for the simulator's writes and checks)."""
        return self._local.urls

    @property
    def service_urls(self) -> list[str]:
        """Each node's API through its service relay, in node order (for verifiers; see :meth:`cut_services`)."""
        self._require_started()
        return [f"http://127.0.0.1:{self._services[node].port}" for node in self.node_ids]

    def url(self, node_id: str) -> str:
        """A node's own API base URL."""
        return self._local.nodes[self._check_id(node_id)].url

    def relay(self, kind: _Kind, node_id: str, peer_id: str) -> Relay:
        """The relay ``node_id`` goes through to reach ``peer_id``'s consensus ``address`` or its ``api``."""
        self._require_started()
        relay = self._pairs.get((kind, self._check_id(node_id), self._check_id(peer_id)))
        if relay is None:
            raise NetworkFault(f"no {kind} relay from {node_id} to {peer_id}")
        return relay

    def relayed_consensus(self) -> list[tuple[str, str]]:
        """The ordered pairs (i, j) whose consensus relay carries an open connection now (i dialed j).

        Empty while the nodes dial each other directly, which happens when the node build ignores
        the ``[[peers]]`` address: then :meth:`partition` and :meth:`slow` reach the API links only.
        """
        self._require_started()
        return sorted(
            (a, b) for (kind, a, b), relay in self._pairs.items() if kind == "address" and relay.connections
        )

    # -- faults ----------------------------------------------------------------------------------
    def running(self) -> list[str]:
        """The ids of the nodes whose process runs."""
        return self._local.running()

    def kill(self, node_id: str) -> None:
        """SIGKILL a node's process (no clean shutdown) and reap it."""
        self._local.kill(self._check_id(node_id))

    def restart(self, node_id: str) -> None:
        """Start a stopped or killed node again on the same files; wait until it serves."""
        self._require_started()
        try:
            self._local.start([self._check_id(node_id)])
        except LocalNetworkError as exc:
            raise NetworkFault(f"{node_id} did not restart: {exc}") from exc

    def partition(self, node_id: str) -> None:
        """Cut every relay between ``node_id`` and the others, both ways, consensus and API."""
        self._require_started()
        self._partitioned.add(self._check_id(node_id))
        for relay in self._links_of(node_id):
            relay.cut()

    def heal(self, node_id: str) -> None:
        """Undo :meth:`partition` (links to nodes still partitioned themselves stay cut)."""
        self._require_started()
        self._partitioned.discard(self._check_id(node_id))
        for (_, a, b), relay in self._pairs.items():
            if node_id in (a, b) and not {a, b} & self._partitioned:
                relay.heal()

    def slow(self, node_id: str, delay: float) -> None:
        """Delay every chunk to and from ``node_id`` on its peer links by ``delay`` seconds (each way).

        A link between two slow nodes carries the sum of their delays.
        """
        self._require_started()
        if not delay >= 0:
            raise NetworkFault(f"a node's delay is 0 or more seconds, not {delay!r}")
        self._slow[self._check_id(node_id)] = float(delay)
        self._apply_delays(node_id)

    def unslow(self, node_id: str) -> None:
        """Remove the delay :meth:`slow` put on ``node_id``'s links."""
        self._require_started()
        self._slow.pop(self._check_id(node_id), None)
        self._apply_delays(node_id)

    def service_urls_for(self, service: str) -> list[str]:
        """Each node's API through relays of ``service``'s own, in node order: :meth:`cut_services`
        can then cut that one service off the ledger while the others keep it."""
        self._require_started()
        group = self._service_groups.get(service)
        if group is None:
            assert self._hub is not None
            group = {node: self._hub.relay(*self._targets[node]["api"]) for node in self.node_ids}
            self._service_groups[service] = group
        return [f"http://127.0.0.1:{group[node].port}" for node in self.node_ids]

    def _service_relays(self, service: str | None) -> list[Relay]:
        if service is None:
            groups = [self._services, *self._service_groups.values()]
            return [relay for group in groups for relay in group.values()]
        if service not in self._service_groups:
            raise NetworkFault(f"no service {service!r} reads through this network's relays")
        return list(self._service_groups[service].values())

    def cut_services(self, service: str | None = None) -> None:
        """Make the ledger unreachable for the services (or just ``service``): reset every
        connection to their URLs and refuse new ones."""
        self._require_started()
        for relay in self._service_relays(service):
            relay.cut()

    def restore_services(self, service: str | None = None) -> None:
        """Let the services (or just ``service``) reach the ledger again."""
        self._require_started()
        for relay in self._service_relays(service):
            relay.heal()

    # -- observing -------------------------------------------------------------------------------
    def health(self, node_id: str) -> dict[str, Any]:
        """A node's ``GET /health``; raises :class:`NetworkFault` when it does not answer."""
        url = f"{self.url(node_id)}/health"
        try:
            answer = self._client().get(url)
            answer.raise_for_status()
            result: dict[str, Any] = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise NetworkFault(f"{node_id} did not answer GET /health: {exc}") from exc
        return result

    def heads(self) -> dict[str, Head]:
        """``{node id: {"height", "state_root"}}`` of every running node (from ``GET /health``)."""
        heads = {}
        for node_id in self.running():
            health = self.health(node_id)
            heads[node_id] = Head(height=int(health["height"]), state_root=str(health["state_root"]))
        return heads

    def primary(self) -> str:
        """The primary that a majority of the running nodes' ``GET /health`` names."""
        answers: dict[str, str | None] = {}
        for node_id in self.running():
            try:
                answers[node_id] = self.health(node_id)["consensus"].get("primary")
            except NetworkFault:
                continue
        if not answers:
            raise NetworkFault("no running node answered GET /health: no primary known")
        named, count = collections.Counter(answers.values()).most_common(1)[0]
        if named is None or 2 * count <= len(answers):
            raise NetworkFault(f"the running nodes do not agree on a primary: {answers}")
        return named

    def wait_converged(self, timeout: float = 30.0) -> dict[str, Head]:
        """Wait until every running node has the same height and state root; return their heads.

        Raises :class:`NetworkFault` naming the nodes that disagree (or do not answer) after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            heads: dict[str, Head] = {}
            silent: dict[str, str] = {}
            for node_id in self.running():
                try:
                    health = self.health(node_id)
                    heads[node_id] = {
                        "height": int(health["height"]),
                        "state_root": str(health["state_root"]),
                    }
                except NetworkFault as exc:
                    silent[node_id] = str(exc)
            if heads and not silent and len({(h["height"], h["state_root"]) for h in heads.values()}) == 1:
                return heads
            if time.monotonic() >= deadline:
                raise NetworkFault(_disagreement(heads, silent, timeout))
            time.sleep(_POLL)

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Wait until every running validator reports a consensus connection to every other running one.

        After :meth:`heal` or :meth:`restart` the dialers may still be backing off (up to the transport's
        ``backoff_max``); raises :class:`NetworkFault` naming the missing links after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            running = set(self.running())
            missing = []
            for node_id in sorted(running):
                try:
                    peers = self.health(node_id)["consensus"].get("peers", {})
                except NetworkFault as exc:
                    missing.append(f"{node_id} did not answer ({exc})")
                    continue
                missing += [
                    f"{node_id} -> {peer}"
                    for peer, info in sorted(peers.items())
                    if peer in running and not info.get("connected", True)
                ]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise NetworkFault(f"consensus links not connected within {timeout} s: {'; '.join(missing)}")
            time.sleep(_POLL)

    def log(self, node_id: str) -> str:
        """What the node's process printed so far (its last 500 lines)."""
        return self._local.log(self._check_id(node_id))

    # -- inside ----------------------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=_HEALTH_TIMEOUT)
        return self._http

    def _check_id(self, node_id: str) -> str:
        if node_id not in self._local.nodes:
            raise NetworkFault(f"no node {node_id!r} in this network (nodes: {', '.join(self.node_ids)})")
        return node_id

    def _require_started(self) -> None:
        if self._hub is None:
            raise NetworkFault("the fleet network is not started (call start() or use it in a with block)")

    def _links_of(self, node_id: str) -> Iterator[Relay]:
        for (_, a, b), relay in self._pairs.items():
            if node_id in (a, b):
                yield relay

    def _apply_delays(self, node_id: str) -> None:
        for (_, a, b), relay in self._pairs.items():
            if node_id in (a, b):
                relay.set_delay(self._slow.get(a, 0.0) + self._slow.get(b, 0.0))

    def _open_relays(self, hub: RelayHub) -> None:
        for node_id in self.node_ids:
            for peer_id in self.node_ids:
                if peer_id == node_id:
                    continue
                for kind in _KINDS:
                    host, port = self._targets[peer_id][kind]
                    self._pairs[kind, node_id, peer_id] = hub.relay(host, port)
            host, port = self._targets[node_id]["api"]
            self._services[node_id] = hub.relay(host, port)

    def _rewrite_configs(self) -> None:
        """Point each node's ``[[peers]]`` at its own relays (before the nodes start)."""
        for node_id in self.node_ids:
            path = self._local.nodes[node_id].config
            document = tomllib.loads(path.read_text(encoding="utf-8"))
            peers: list[dict[str, Any]] = []
            for entry in document.get("peers", []):
                peer_id = entry.get("id")
                if peer_id in self._targets and peer_id != node_id:
                    entry = {
                        "id": peer_id,
                        "address": self._pairs["address", node_id, peer_id].address,
                        "api": f"http://{self._pairs['api', node_id, peer_id].address}",
                    }
                peers.append(entry)
            document["peers"] = peers
            path.write_text(tomli_w.dumps(document), encoding="utf-8")


def _targets(directory: Path, node_ids: Sequence[str]) -> dict[str, dict[_Kind, tuple[str, int]]]:
    """Where each node really listens: its consensus transport (genesis) and its API (its own config)."""
    try:
        genesis = json.loads((directory / "genesis.json").read_text(encoding="utf-8"))
        addresses = {v["id"]: str(v["address"]) for v in genesis["validators"]}
        targets: dict[str, dict[_Kind, tuple[str, int]]] = {}
        for node_id in node_ids:
            config = tomllib.loads((directory / f"{node_id}.toml").read_text(encoding="utf-8"))
            host, _, port = addresses[node_id].rpartition(":")
            targets[node_id] = {
                "address": (host.strip("[]"), int(port)),
                "api": (str(config.get("host", "127.0.0.1")), int(config["port"])),
            }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NetworkFault(f"cannot read where the nodes of {directory} listen: {exc!r}") from exc
    return targets


def _disagreement(heads: dict[str, Head], silent: dict[str, str], timeout: float) -> str:
    """Which nodes disagree with the most common head (or did not answer), for an error message."""
    parts = [f"{node} did not answer ({reason})" for node, reason in sorted(silent.items())]
    if heads:
        views = collections.Counter((h["height"], h["state_root"]) for h in heads.values())
        (height, root), _ = views.most_common(1)[0]
        agree = sorted(n for n, h in heads.items() if (h["height"], h["state_root"]) == (height, root))
        parts.insert(0, f"{', '.join(agree)} at height {height} (root {root[:12]})")
        parts += [
            f"{node} at height {h['height']} (root {str(h['state_root'])[:12]})"
            for node, h in sorted(heads.items())
            if node not in agree
        ]
    else:
        parts.append("no node is running")
    return f"the nodes did not converge within {timeout} s: " + "; ".join(parts)

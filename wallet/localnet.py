"""A local network of validator processes on loopback: for ``make demo``, tests and benchmarks.

:class:`LocalNetwork` runs ``trellis network init`` into a folder (unless it already holds a
network), then one ``trellis node start`` process per validator, each with its own SQLite file, and
waits until every node serves. Nodes can be killed with SIGKILL and started again on the same
files, as an operator (or a crash) would. Everything listens on 127.0.0.1 only.

The node processes never outlive the process that started them, however it ends (Ctrl-C, SIGTERM,
SIGHUP, SIGKILL): each runs through :func:`tied_command`, which watches its parent and stops itself
(SIGTERM, then exit) once the parent is gone. ``trellis node start`` run by an operator is untouched.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import httpx

from wallet.errors import WalletError

__all__ = ["LocalNetwork", "LocalNetworkError", "free_base_port", "tied_command"]

_START_TIMEOUT: Final = 60.0
_WATCH_INTERVAL: Final = 0.2  # how often a tied process looks whether its parent is still there
_ORPHAN_GRACE: Final = 15.0  # how long a tied process whose parent is gone has to stop on SIGTERM


class LocalNetworkError(WalletError):
    """A local network could not be set up or a node did not start (the message says which and why)."""


def free_base_port(count: int, *, low: int = 20000, high: int = 32000) -> int:
    """A port ``p`` such that ``p … p + count - 1`` are all free on 127.0.0.1 right now (below the
    kernel's ephemeral range, so an outbound connection cannot take one before the node binds it)."""
    first: int = low + (os.getpid() * 37) % 997 * 10
    candidates: list[int] = [*range(first, high, 97), *range(low, high, 89)]
    for start in candidates:
        sockets = []
        try:
            for port in range(start, start + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise LocalNetworkError(f"no {count} consecutive free ports between {low} and {high}")


@dataclass
class _Node:
    id: str
    config: Path
    url: str
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)


class LocalNetwork:
    """``count`` validator processes of one network, set up in ``directory``."""

    def __init__(
        self,
        directory: Path,
        count: int = 4,
        *,
        engine: str | None = None,
        network: str = "devnet",
        passphrase: str = "trellis-local-network",  # noqa: S107 - a throwaway local network
        base_port: int | None = None,
        kdf: str = "interactive",
        consensus: dict[str, float] | None = None,
    ) -> None:
        self.directory = directory.resolve()
        self.count = count
        self.network = network
        self.passphrase = passphrase
        self._env = {**os.environ, "TRELLIS_PASSPHRASE": passphrase}
        if not (self.directory / "genesis.json").exists():
            base = base_port if base_port is not None else free_base_port(2 * count)
            args = ["network", "init", "--validators", str(count), "--dir", str(self.directory),
                    "--network", network, "--base-port", str(base), "--kdf", kdf]  # fmt: skip
            if engine is not None:
                args += ["--engine", engine]
            self._trellis(args)
            if consensus:
                for i in range(1, count + 1):
                    path = self.directory / f"node-{i}.toml"
                    table = "".join(f"{k} = {v!r}\n" for k, v in consensus.items())
                    path.write_text(path.read_text() + "\n[consensus]\n" + table)
        self.nodes: dict[str, _Node] = {}
        for i in range(1, count + 1):
            config = self.directory / f"node-{i}.toml"
            port = _port_of(config)
            self.nodes[f"node-{i}"] = _Node(f"node-{i}", config, f"http://127.0.0.1:{port}")

    # -- running ----------------------------------------------------------------------------
    def start(self, node_ids: Sequence[str] | None = None) -> None:
        """Start the given nodes (all by default) and wait until each serves."""
        chosen = [self.nodes[i] for i in node_ids] if node_ids else list(self.nodes.values())
        waiting = []
        for node in chosen:
            if node.process is not None and node.process.poll() is None:
                continue
            command = tied_command("web.cli", "node", "start", "--config", str(node.config))
            node.process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
                command,
                cwd=self.directory,
                env=self._env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            lines: queue.Queue[str] = queue.Queue()
            threading.Thread(target=_pump, args=(node.process.stdout, lines, node.log), daemon=True).start()
            waiting.append((node, lines))
        for node, lines in waiting:
            deadline = time.monotonic() + _START_TIMEOUT
            while True:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise LocalNetworkError(f"{node.id} did not start: {''.join(node.log[-20:])}") from None
                if line.startswith("serving on "):
                    break
                assert node.process is not None
                if node.process.poll() is not None and lines.empty():
                    raise LocalNetworkError(f"{node.id} exited: {''.join(node.log[-20:])}")

    def kill(self, node_id: str) -> None:
        """SIGKILL a node (no clean shutdown), and reap it."""
        node = self.nodes[node_id]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)
        if node.process is not None and node.process.stdout is not None:
            node.process.stdout.close()

    def stop(self) -> None:
        """Stop every node with SIGTERM (SIGKILL after 10 s)."""
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
                if node.process.stdout is not None:
                    node.process.stdout.close()

    def __enter__(self) -> LocalNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading ----------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        """Every node's API base URL."""
        return [n.url for n in self.nodes.values()]

    def running(self) -> list[str]:
        """The ids of the nodes whose process runs."""
        return [i for i, n in self.nodes.items() if n.process is not None and n.process.poll() is None]

    def health(self, node_id: str) -> dict[str, Any]:
        """A node's ``GET /health``."""
        answer = httpx.get(f"{self.nodes[node_id].url}/health", timeout=5)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def log(self, node_id: str) -> str:
        """What the node process printed so far."""
        return "".join(self.nodes[node_id].log)

    def _trellis(self, args: list[str]) -> None:
        result = subprocess.run(  # noqa: S603 - our own interpreter and CLI
            [sys.executable, "-c", "from web.cli import main; main()", *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise LocalNetworkError(f"trellis {' '.join(args[:2])} failed: {result.stdout}{result.stderr}")


def tied_command(module: str, *args: str) -> list[str]:
    """The command running ``MODULE.main()`` with ``args`` (``tied_command("web.cli", "node", "start",
    ...)`` is ``trellis node start ...``) in a child of this process that stops when this process ends.

    The child gets this process's id and, before anything else, checks that it is still its parent
    (it may have ended while the child started) and starts a thread that looks again every 0.2 s;
    once the parent is gone (ended in any way, SIGKILL included) the child sends itself SIGTERM, its
    clean shutdown, and exits regardless 15 s later. Its own parent *process* is watched, not the
    thread that started it (as ``PR_SET_PDEATHSIG`` would), so a node started again from a thread that
    ends later, as the fleet simulation's faults do, keeps running. Start it directly (``Popen``, no
    shell in between: a child whose parent is not this process exits at once).
    """
    code = f"from wallet.localnet import _watch_parent; _watch_parent(); from {module} import main; main()"
    return [sys.executable, "-c", code, str(os.getpid()), *args]


def _watch_parent() -> None:
    """In a child started by :func:`tied_command`: take the parent's id from ``sys.argv`` and stop
    with it."""
    parent = int(sys.argv.pop(1))
    if os.getppid() != parent:  # it ended before this process got here
        raise SystemExit(f"the process that started this one ({parent}) has ended")
    threading.Thread(target=_stop_when_orphaned, args=(parent,), name="parent-watch", daemon=True).start()


def _stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCH_INTERVAL)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_ORPHAN_GRACE)
    os._exit(1)


def _port_of(config: Path) -> int:
    import tomllib

    return int(tomllib.loads(config.read_text())["port"])


def _pump(stream: IO[str] | None, lines: queue.Queue[str], log: list[str]) -> None:
    if stream is None:
        return
    with contextlib.suppress(ValueError, OSError):
        for line in iter(stream.readline, ""):
            log.append(line)
            del log[:-500]
            lines.put(line)

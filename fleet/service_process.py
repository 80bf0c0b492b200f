"""Running the example services (:mod:`fleet.service`) as processes: start, kill, start from a snapshot.

A :class:`ServiceProcess` is one service on a free loopback port; its trust file names the network,
the node URLs it reads through and the genesis document; its snapshot lives in the run's folder.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Final

import httpx

from fleet.errors import FleetError
from wallet.localnet import tied_command

__all__ = ["ServiceFailed", "ServiceProcess"]

_START_TIMEOUT: Final = 60.0


class ServiceFailed(FleetError):
    """A service process did not start or answer (the message has the end of its output)."""


class ServiceProcess:
    """One example service process (see the module docstring)."""

    def __init__(
        self, name: str, directory: Path, network: str, nodes: list[str], genesis: dict[str, Any], port: int
    ) -> None:
        self.name = name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.trust = directory / "trust.json"
        self.trust.write_text(json.dumps({"network": network, "nodes": nodes, "genesis": genesis}))
        self.snapshot = directory / "snapshot.json"
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.restarts = 0
        self.snapshot_every = 5.0
        """Seconds between the snapshots the service writes (0: only on ``POST /snapshot``)."""

    def start(self, *, from_snapshot: bool = False) -> None:
        """Start the process and wait until it serves."""
        # tied: the service stops once the process that started it is gone, however that ended
        command = tied_command("fleet.service", "--name", self.name, "--port", str(self.port),
                               "--trust", str(self.trust), "--snapshot", str(self.snapshot),
                               "--snapshot-every", str(self.snapshot_every))  # fmt: skip
        if from_snapshot:
            command.append("--from-snapshot")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.process.stdout, ready), daemon=True).start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ServiceFailed(f"service {self.name} did not start: {''.join(self.log[-20:])}")

    def _pump(self, stream: IO[str] | None, ready: threading.Event) -> None:
        if stream is None:
            return
        try:
            for line in iter(stream.readline, ""):
                self.log = [*self.log[-499:], line]
                if line.startswith("serving on "):
                    ready.set()
        except (ValueError, OSError):
            return

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> None:
        """SIGTERM the process (SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            self._close()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close()

    def restart_from_snapshot(self) -> None:
        """Crash the service and start it again from its last snapshot."""
        if not self.snapshot.exists():
            raise ServiceFailed(f"service {self.name} has written no snapshot yet")
        self.kill()
        self.start(from_snapshot=True)
        self.restarts += 1

    def call(self, method: str, path: str, **options: Any) -> Any:
        """A JSON request to the service; its JSON answer."""
        try:
            response = httpx.request(method, self.url + path, timeout=options.pop("timeout", 60.0), **options)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceFailed(f"service {self.name}: {method} {path}: {exc}") from None
        return response.json()

    def status(self) -> dict[str, Any]:
        """``GET /status``."""
        result: dict[str, Any] = self.call("GET", "/status", timeout=5.0)
        return result

"""A network the simulation did not start (``trellis simulate --node URL …``): read, never faulted.

The simulation writes through its nodes and the services read through them; at the end the heads
are compared as for a network it started. Faults need processes and links the simulation owns, so
none can be injected here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from fleet.errors import FleetError

__all__ = ["ExternalNetwork"]


class ExternalNetwork:
    """Validators reached by URL (``node-1`` … in the order given)."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise FleetError("an external network needs at least one node URL")
        self.nodes = {f"node-{n}": url.rstrip("/") for n, url in enumerate(urls, start=1)}

    @property
    def urls(self) -> list[str]:
        """The node URLs."""
        return list(self.nodes.values())

    @property
    def service_urls(self) -> list[str]:
        """What the services read through: the same URLs."""
        return self.urls

    def url(self, node_id: str) -> str:
        """A node's URL."""
        return self.nodes[node_id]

    def service_urls_for(self, service: str) -> list[str]:
        """What ``service`` reads through: the same URLs."""
        return self.urls

    def running(self) -> list[str]:
        """Every node given (their processes are not ours to watch)."""
        return list(self.nodes)

    def heads(self) -> dict[str, dict[str, Any]]:
        """``{node id: {"height", "state_root"}}`` from each node's ``GET /health``."""
        heads = {}
        with httpx.Client(timeout=5.0) as http:
            for node_id, url in self.nodes.items():
                health = http.get(f"{url}/health")
                health.raise_for_status()
                body = health.json()
                heads[node_id] = {"height": int(body["height"]), "state_root": str(body["state_root"])}
        return heads

    def wait_converged(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """Wait until every node has the same height and state root; return the heads."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                heads = self.heads()
                if len({(h["height"], h["state_root"]) for h in heads.values()}) == 1:
                    return heads
            except httpx.HTTPError as exc:
                heads = {"error": {"height": -1, "state_root": str(exc)}}
            if time.monotonic() >= deadline:
                raise FleetError(f"the nodes did not converge within {timeout:.0f} s: {heads}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Nothing to stop: the network is not ours."""

"""Operating a node: ``GET /health``, ``GET /metrics`` (Prometheus text format 0.0.4), ``GET /openapi.json``.

Metrics are read from the service when scraped (height, pending transactions and the service's
counters) plus ``trellis_http_requests_total{method,path,status}``, counted per route template
(``/blocks/<int:height>``, never the raw path, so hostile paths cannot grow the label set; a path
no route matches counts as ``unmatched``) and per method, any outside :data:`HTTP_METHODS` (a client
may send any token as a method) counting as ``other``. Each app keeps its own registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from flask import Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from did_registry.node.api_support import json_response, node_service
from did_registry.node.openapi import openapi_document
from did_registry.node.service import NodeService

__all__ = ["HTTP_METHODS", "METRICS", "NodeCollector", "install_ops"]

METRICS: Final = "trellis.metrics"
"""Key under ``app.extensions`` holding the app's Prometheus registry."""
HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
"""The methods counted under their own name (RFC 9110 §9 and PATCH); any other counts as ``other``."""

_REQUESTS: Final = "trellis.http_requests"


class NodeCollector(Collector):
    """Reads a service's height, mempool and counters at each scrape."""

    def __init__(self, service: NodeService) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        """The node's gauges and counters, as of now."""
        service, counters = self.service, self.service.counters
        yield GaugeMetricFamily("trellis_height", "Height of the last committed block", service.app.height)
        yield GaugeMetricFamily(
            "trellis_pending_txns", "Transactions waiting for a block", service.pending_count
        )
        for name, helptext in (
            ("txns_submitted", "Transactions admitted to the mempool"),
            ("txns_committed", "Transactions committed in blocks"),
            ("txns_rejected", "Admitted transactions a block rejected"),
            ("blocks_committed", "Blocks committed by this node"),
        ):
            yield CounterMetricFamily(f"trellis_{name}", helptext, counters[name])
        if service.runner is None:
            return
        status = service.runner.status()
        if status.get("view") is not None:
            yield GaugeMetricFamily("trellis_consensus_view", "The consensus view", status["view"])
        role = GaugeMetricFamily(
            "trellis_consensus_validator", "1 while this node votes, 0 while it observes"
        )
        role.add_metric([], 1 if status.get("role") == "validator" else 0)
        yield role
        lag = GaugeMetricFamily(
            "trellis_peer_lag_blocks", "This node's height minus the peer's", labels=["peer"]
        )
        connected = GaugeMetricFamily(
            "trellis_peer_connected", "1 while the peer is connected", labels=["peer"]
        )
        for peer, info in sorted(status.get("peers", {}).items()):
            if info.get("lag") is not None:
                lag.add_metric([peer], info["lag"])
            if "connected" in info:
                connected.add_metric([peer], 1 if info["connected"] else 0)
        yield lag
        yield connected
        dropped = CounterMetricFamily(
            "trellis_consensus_dropped", "Consensus inputs dropped, by reason", labels=["reason"]
        )
        for reason, value in sorted(status.get("dropped", {}).items()):
            dropped.add_metric([reason], value)
        yield dropped


def _count_request(response: Response) -> Response:
    rule = request.url_rule
    path = rule.rule if rule is not None else "unmatched"
    method = request.method if request.method in HTTP_METHODS else "other"
    current_app.extensions[_REQUESTS].labels(method, path, str(response.status_code)).inc()
    return response


def health() -> Response:
    """Liveness and where the node stands."""
    service = node_service()
    with service.lock:
        head = service.app.head
    genesis = service.app.genesis
    return json_response(
        {
            "status": "ok" if service.halted is None else "halted",
            "halted": service.halted,
            "network": genesis.network,
            "engine": genesis.consensus.get("engine"),
            "validator_id": service.validator_id,
            "height": head.height,
            "state_root": head.state_root,
            "pending": service.pending_count,
            "uptime_s": round(time.monotonic() - service.started, 3),
            "consensus": _consensus(service),
        }
    )


def _consensus(service: NodeService) -> dict[str, object]:
    """The runner's view of consensus, or the solo engine's (this node is the only validator)."""
    if service.runner is not None:
        return service.runner.status()
    return {"engine": "solo", "role": "validator", "view": None, "primary": service.validator_id, "peers": {}}


def metrics() -> Response:
    """The node's metrics in the Prometheus text format."""
    registry: CollectorRegistry = current_app.extensions[METRICS]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    return json_response(openapi_document())


def install_ops(app: Flask, service: NodeService) -> None:
    """Add the operations routes and the per-route request counter to ``app``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(service))
    app.extensions[METRICS] = registry
    app.extensions[_REQUESTS] = Counter(
        "trellis_http_requests",
        "HTTP requests answered, by method, route template and status",
        ["method", "path", "status"],
        registry=registry,
    )
    app.after_request(_count_request)
    app.add_url_rule("/health", view_func=health, methods=["GET"])
    app.add_url_rule("/metrics", view_func=metrics, methods=["GET"])
    app.add_url_rule("/openapi.json", view_func=openapi, methods=["GET"])

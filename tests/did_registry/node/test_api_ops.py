"""Health, Prometheus metrics, the OpenAPI document and the last-resort error handler."""

from __future__ import annotations

import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from did_registry.node.api import create_app
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import PROBLEM_JSON, Node, make_node


def _samples(node: Node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = node.client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_health(node: Node) -> None:
    """Health names the network, engine, validator and head."""
    node.onboard()
    body = node.client.get("/health").get_json()
    head = node.service.app.head
    assert body["status"] == "ok" and body["network"] == "testnet" and body["engine"] == "solo"
    assert body["validator_id"] == "node-1" and body["height"] == 1 and body["state_root"] == head.state_root
    assert body["pending"] == 0 and body["uptime_s"] >= 0


def test_metrics_count_the_ledger(node: Node) -> None:
    """Height, committed and rejected transactions, blocks and pending ones are exported."""
    device = new_actor()
    create = device.txn("did.create", {"document": device.document()}, node.trustee)
    clash = device.txn("did.create", {"document": device.document()}, node.trustee)
    node.submit(create)
    node.submit(clash)
    node.service.produce_block()
    waiting = new_actor()
    node.submit(waiting.txn("did.create", {"document": waiting.document()}, node.trustee))
    samples = _samples(node)
    assert samples[("trellis_height", ())] == 1
    assert samples[("trellis_txns_committed_total", ())] == 1
    assert samples[("trellis_txns_rejected_total", ())] == 1
    assert samples[("trellis_blocks_committed_total", ())] == 1
    assert samples[("trellis_pending_txns", ())] == 1


def test_metrics_count_requests_by_route_template(node: Node) -> None:
    """Requests are counted per route template and status, never per raw path."""
    node.client.get("/blocks/0")
    node.client.get("/blocks/5")
    node.client.get("/no/such/path")
    samples = _samples(node)
    assert samples[("trellis_http_requests_total", (("method", "GET"), ("path", "/blocks/<int:height>"),
                                                    ("status", "200")))] == 1  # fmt: skip
    assert samples[("trellis_http_requests_total", (("method", "GET"), ("path", "/blocks/<int:height>"),
                                                    ("status", "404")))] == 1  # fmt: skip
    assert samples[("trellis_http_requests_total", (("method", "GET"), ("path", "unmatched"),
                                                    ("status", "404")))] == 1  # fmt: skip
    assert not any("/no/such/path" in str(labels) for _, labels in samples)


def test_metrics_count_made_up_methods_as_other(node: Node) -> None:
    """Methods outside HTTP's own are counted under one ``other`` label, so clients inventing
    methods cannot grow the label set."""
    for n in range(20):
        node.client.open("/health", method=f"X{n:03d}")
    node.client.open("/health", method="DELETE")
    samples = _samples(node)
    methods = {dict(labels)["method"] for name, labels in samples if name == "trellis_http_requests_total"}
    assert methods == {"DELETE", "other"}
    assert samples[("trellis_http_requests_total", (("method", "other"), ("path", "unmatched"),
                                                    ("status", "405")))] == 20  # fmt: skip


def test_openapi_describes_every_route_and_only_routes(node: Node) -> None:
    """Every Flask route (and method) is in the OpenAPI document, and every documented path is a route."""
    document = node.client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    routes = {
        (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in node.app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented


def test_openapi_path_parameters_match_templates(node: Node) -> None:
    """Each documented path declares exactly the parameters its template names."""
    document = node.client.get("/openapi.json").get_json()
    for path, item in document["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{([^}]+)}", path)), path


def test_status_list_credential_integrity_is_documented(node: Node) -> None:
    """The credential's description says its integrity comes from the state proof."""
    document = node.client.get("/openapi.json").get_json()
    assert (
        "/proofs/state" in document["paths"]["/status-lists/{issuer}/{name}/credential"]["get"]["description"]
    )


def test_a_bug_is_a_logged_500_problem(caplog: pytest.LogCaptureFixture) -> None:
    """An exception no handler expects is logged and answered as a 500 problem, without its text."""
    node = make_node()
    app = create_app(node.service)

    def broken() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/broken", view_func=broken)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/broken")
    assert response.status_code == 500 and response.mimetype == PROBLEM_JSON
    assert response.get_json()["code"] == "internal" and "secret" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text


def test_routing_redirect_is_not_turned_into_a_problem() -> None:
    """A routing redirect (a rule with a trailing slash) stays a redirect with its Location."""
    app = create_app(make_node().service)
    app.add_url_rule("/folder/", view_func=lambda: "ok")
    response = app.test_client().get("/folder")
    assert response.status_code == 308 and response.headers["Location"].endswith("/folder/")

"""Hostile input never gets a 500: property-based requests against every route, each error a problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from did_registry.ledger.txn import TXN_TYPES, Transaction, TxnRejected
from tests.did_registry.node.conftest import PROBLEM_JSON, RESOLUTION_TYPE, Node, make_node

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ERRORS = {400, 401, 403, 404, 405, 409, 410, 413, 415, 501, 503}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """One node for every example of a test (its mempool fills; it never commits)."""
    made = make_node()
    made.onboard("issuer")
    yield made
    made.service.stop()


def check(response: Any, path: str) -> None:
    """Not a 500; an error is a problem (or, on the resolver path, a DID Resolution error result)."""
    assert response.status_code < 500 or response.status_code == 503, response.get_data(as_text=True)
    if response.status_code < 400:
        return
    assert response.status_code in ERRORS, response.status_code
    body = json.loads(response.get_data())
    if response.content_type == RESOLUTION_TYPE:
        assert path.startswith("/1.0/identifiers/")
        assert body["didResolutionMetadata"]["error"] or body["didDocumentMetadata"]["deactivated"]
        return
    assert response.mimetype == PROBLEM_JSON
    assert body["status"] == response.status_code
    assert body["type"] == "https://trellis.dev/problems/" + body["code"] and body["title"] and body["detail"]


@st.composite
def envelopes(draw: st.DrawFn, node: Node) -> Any:
    """Transaction-shaped objects, most of them well-formed and signed by the trustee so the rules run."""
    trustee = node.trustee.did
    words = st.sampled_from([trustee, "issuer", "trustee", "revocation", "suspension", "a", "127.0.0.1:1"])
    values = words | json_values | st.lists(st.integers(min_value=-5, max_value=2**25), max_size=5)
    document = st.fixed_dictionaries(
        {"id": st.just(trustee) | st.text(max_size=10)},
        optional={"@context": json_values, "verificationMethod": json_values, "capabilityInvocation": json_values,
                  "authentication": st.lists(words, max_size=2), "controller": words},
    )  # fmt: skip

    def sometimes(usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
        return draw(hostile if draw(st.sampled_from([False] * 9 + [True])) else usual)

    bodies = st.dictionaries(st.sampled_from(["did", "role", "list", "purpose", "length", "set", "clear", "issuer",
                                              "types", "evidence", "id", "public_key", "address",
                                              "effective_height"]), values, max_size=5)  # fmt: skip
    data: dict[str, Any] = {
        "type": sometimes(st.sampled_from(sorted(TXN_TYPES)), st.text(max_size=12)),
        "network": sometimes(st.just("testnet"), st.text(max_size=8)),
        "submitter": sometimes(st.just(trustee), st.text(max_size=30)),
        "nonce": sometimes(st.integers(min_value=1, max_value=2**52), json_values),
        "body": sometimes(bodies | st.fixed_dictionaries({"document": document}), json_values),
    }
    if draw(st.sampled_from([False] * 9 + [True])):
        del data[draw(st.sampled_from(sorted(data)))]
    if draw(st.sampled_from([True] * 3 + [False])):
        try:
            return Transaction.from_json(data).signed(node.trustee.key, node.trustee.method).to_json()
        except TxnRejected:
            pass
    if draw(st.booleans()):
        data["signatures"] = draw(json_values)
    return data


@given(data=st.data())
@SETTINGS
def test_hostile_transactions(node: Node, data: st.DataObject) -> None:
    """Arbitrary bytes, JSON values and transaction-shaped objects never get a 500 from POST /txns."""
    kind = data.draw(st.sampled_from(["bytes", "json", "envelope", "envelope", "envelope", "batch"]))
    if kind == "bytes":
        body = data.draw(st.binary(max_size=500))
    elif kind == "json":
        body = json.dumps(data.draw(json_values)).encode()
    elif kind == "envelope":
        body = json.dumps(data.draw(envelopes(node))).encode()
    else:
        body = json.dumps(data.draw(st.lists(envelopes(node), max_size=4))).encode()
    content_type = data.draw(
        st.sampled_from(["application/json"] * 6 + ["text/plain", "", "application/x+json"])
    )
    headers = {"Content-Type": content_type} if content_type else {}
    check(node.client.post("/txns", data=body, headers=headers), "/txns")


ROUTES = [
    "/txns/", "/1.0/identifiers/", "/proofs/state", "/blocks/", "/blocks", "/status-lists/", "/status-lists",
    "/trust-registry/", "/trust-registry", "/quarantine/", "/quarantine", "/validators", "/genesis",
    "/audit/txns", "/health", "/metrics", "/openapi.json", "/", "/1.0/identifiers/did:trellis:testnet:",
]  # fmt: skip
PARAMS = ["key", "from", "limit", "after", "issuer", "did", "type", "submitter", "from_height", "to_height",
          "from_time", "to_time", "cursor", "versionId", "versionTime", "wait"]  # fmt: skip
segments = st.text(max_size=40) | st.sampled_from(
    ["did:trellis:testnet:abc", "0", "head", "x" * 3000, "..", "%00", "1.0", "9999-12-31T23:59:59.5-14:00",
     "0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00Z", "18446744073709551616"]
)  # fmt: skip


@given(
    route=st.sampled_from(ROUTES),
    tail=st.lists(segments, max_size=3),
    query=st.dictionaries(
        st.sampled_from(PARAMS) | st.text(max_size=5), segments | st.integers().map(str), max_size=4
    ),
    method=st.sampled_from(["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"]),
)
@SETTINGS
def test_hostile_reads(node: Node, route: str, tail: list[str], query: dict[str, str], method: str) -> None:
    """Arbitrary paths, segments, queries and methods on the read routes never get a 500."""
    path = route + "/".join(quote(segment, safe=":") for segment in tail)
    if path.startswith("//"):  # the test client reads "//host:port/..." as a network-path reference
        path = "/" + path.lstrip("/")
    if "wait" in query:
        query["wait"] = query["wait"][:3]  # keep the worst case short
    check(node.client.open(path, method=method, query_string=query), path)


@given(
    did=st.text(max_size=80), options=st.dictionaries(st.sampled_from(["versionId", "versionTime"]), segments)
)
@SETTINGS
def test_hostile_dids(node: Node, did: str, options: dict[str, str]) -> None:
    """Any text as a DID, with any options, is a resolution result (success or error), never a 500."""
    path = "/1.0/identifiers/" + quote(did, safe=":")
    response = node.client.get(path, query_string=options)
    check(response, path)


@given(last=st.text(max_size=30))
@SETTINGS
def test_hostile_last_event_id(node: Node, last: str) -> None:
    """Any Last-Event-ID opens a stream or is a 400 problem."""
    response = node.client.get("/events", headers={"Last-Event-ID": last.replace("\n", "").replace("\r", "")},
                               buffered=False)  # fmt: skip
    check(response, "/events")
    response.close()

"""Hostile request bodies get a 400 problem, never a 500: JSON nested too deeply, keys that are not Unicode."""

from __future__ import annotations

import pytest

from tests.did_registry.node.conftest import PROBLEM_JSON, Node

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("path", ["/txns", "/txns/status", "/proofs/state"])
@pytest.mark.parametrize("body", [DEEP, '{"ids": ' + DEEP + "}"], ids=["array", "member"])
def test_json_nested_too_deeply_is_400(node: Node, path: str, body: str) -> None:
    """A JSON body too deeply nested to parse is refused as malformed."""
    response = node.client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400 and response.mimetype == PROBLEM_JSON
    assert response.get_json()["code"] == "malformed"


def test_state_key_with_a_lone_surrogate_is_400_naming_its_index(node: Node) -> None:
    """POST /proofs/state refuses a key holding a lone surrogate (not UTF-8), naming its position."""
    body = '{"keys": ["did:fine", "did:\\ud800"]}'
    response = node.client.post("/proofs/state", data=body, content_type="application/json")
    assert response.status_code == 400 and response.mimetype == PROBLEM_JSON
    problem = response.get_json()
    assert problem["code"] == "malformed" and problem["index"] == 1 and "key 1" in problem["detail"]


def test_a_state_key_holding_nul_is_400(node: Node) -> None:
    assert node.client.get("/proofs/state", query_string={"key": "did:x\x00"}).status_code == 400
    answer = node.client.post("/proofs/state", json={"keys": ["did:a", "did:x\x00"]})
    assert answer.status_code == 400 and answer.get_json()["index"] == 1

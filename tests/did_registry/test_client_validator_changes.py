"""LedgerClient follows validator set changes through the chain, and no node can make it trust a set
the chain did not put in force."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient, LedgerUnavailable, UntrustedValidatorSet
from did_registry.ledger.block import BlockHeader, CommitCertificate
from tests.did_registry.validator_chain import SetChangeChain

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class Rewriting(httpx.BaseTransport):
    """Serves the chain's node, rewriting the JSON answers of ``path``; counts the requests to it."""

    def __init__(self, chain: SetChangeChain, path: str, rewrite: Rewrite) -> None:
        self._inner = httpx.WSGITransport(app=chain.wsgi)
        self._path, self._rewrite = path, rewrite
        self.asked = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != self._path:
            return response
        self.asked += 1
        return httpx.Response(200, json=self._rewrite(json.loads(response.read())))


class TwoNodes(httpx.BaseTransport):
    """``http://liar`` through one transport, any other host through another."""

    def __init__(self, liar: httpx.BaseTransport, honest: httpx.BaseTransport) -> None:
        self._liar, self._honest = liar, honest

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return (self._liar if request.url.host == "liar" else self._honest).handle_request(request)


def withhold(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "changes": [], "more": False}


@pytest.fixture
def chain() -> SetChangeChain:
    """v5 joins at block 3, v2's key is rotated at block 6, v1 leaves at block 8; head at 9."""
    made = SetChangeChain()
    made.block(made.add("v5", 3))
    made.empty_blocks(2)
    made.block(made.rotate("v2", 6))
    made.block(made.remove("v1", 8))
    made.empty_blocks(4)
    assert made.height == 9
    return made


def test_a_client_anchored_in_genesis_reads_past_every_change(chain: SetChangeChain) -> None:
    client = chain.client()
    value, header = client.prove("validators")
    assert header.height == 9
    assert [v["id"] for v in value["set"]] == ["v2", "v3", "v4", "v5"]
    assert [json.loads(json.dumps(c))["height"] for c in client.validator_changes()] == [2, 5, 7]


def test_headers_before_a_change_are_still_checked_against_the_set_of_their_height(
    chain: SetChangeChain,
) -> None:
    client = chain.client()
    client.prove("validators")  # learns the three changes
    for height in range(1, 10):
        found = chain.app.store.block(height)
        assert found is not None
        client.verify_header(found[0].header, found[1])


def test_the_old_set_cannot_certify_a_block_past_a_change_the_client_knows(chain: SetChangeChain) -> None:
    """v1..v4 (v1 and v2's old key since replaced) sign a block 10 naming their old set: refused."""
    client = chain.client()
    client.prove("validators")
    genuine = chain.header(9)
    forged = dataclasses.replace(genuine, height=10, validators_hash=chain.header(1).validators_hash)
    old_keys = [chain.keys[v["public_key"]] for v in chain.genesis.validators]
    certificate = CommitCertificate(
        10,
        forged.hash.hex(),
        {f"v{i}": CommitCertificate.sign(forged.hash, key) for i, key in enumerate(old_keys, start=1)},
    )
    with pytest.raises(UntrustedValidatorSet):
        client.verify_header(forged, certificate)


def test_a_node_that_withholds_the_changes_leaves_the_new_headers_refused(chain: SetChangeChain) -> None:
    liar = Rewriting(chain, "/validators/changes", withhold)
    client = chain.client(liar)
    with pytest.raises(LedgerUnavailable, match="validator set"):
        client.prove("validators")


def test_an_honest_node_proves_what_a_withholding_one_did_not(chain: SetChangeChain) -> None:
    liar = Rewriting(chain, "/validators/changes", withhold)
    client = LedgerClient(
        ["http://liar", "http://honest"],
        chain.genesis,
        transport=TwoNodes(liar, httpx.WSGITransport(app=chain.wsgi)),
    )
    _, header = client.prove("validators")
    assert header.height == 9
    assert liar.asked >= 1


def forge_set(answer: dict[str, Any]) -> dict[str, Any]:
    """The first change claims v1 alone certifies from then on."""
    changes = answer["changes"]
    record = changes[0]["value"]
    changes[0]["value"] = {"set": record["set"][:1], "pending": []}
    return answer


def test_a_forged_change_is_refused_and_named(chain: SetChangeChain) -> None:
    liar = Rewriting(chain, "/validators/changes", forge_set)
    client = chain.client(liar)
    with pytest.raises(LedgerUnavailable):
        client.prove("validators")
    assert any("validator set changes" in failure for failure in client.failures)
    assert client.validator_changes() == []


def test_a_set_no_node_proves_is_asked_about_once_a_second(chain: SetChangeChain) -> None:
    liar = Rewriting(chain, "/validators/changes", withhold)
    client = chain.client(liar)
    header: BlockHeader = chain.header(9)
    certificate = chain.app.store.block(9)
    assert certificate is not None
    for _ in range(5):
        with pytest.raises(UntrustedValidatorSet):
            client.verify_header(header, certificate[1])
    assert liar.asked == 1


def test_changes_learned_by_one_client_are_trusted_by_another_without_asking(chain: SetChangeChain) -> None:
    first = chain.client()
    first.prove("validators")
    counting = Rewriting(chain, "/validators/changes", lambda answer: answer)
    second = chain.client(counting)
    assert second.learn_validator_changes(first.validator_changes()) == 3
    found = chain.app.store.block(9)
    assert found is not None
    second.verify_header(found[0].header, found[1])
    assert counting.asked == 0

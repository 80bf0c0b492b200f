"""LedgerClient follows validator set changes through the chain, and no node can make it trust a set
the chain did not put in force."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from did_registry import certified_headers
from did_registry.client import LedgerClient, LedgerUnavailable, UntrustedValidatorSet
from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.validators import set_at
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


def liar_then_honest(chain: SetChangeChain, liar: httpx.BaseTransport) -> LedgerClient:
    """A client asking ``http://liar`` (through ``liar``) first, then the chain's node."""
    return LedgerClient(
        ["http://liar", "http://honest"],
        chain.genesis,
        transport=TwoNodes(liar, httpx.WSGITransport(app=chain.wsgi)),
    )


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


def forged_by_the_genesis_set(chain: SetChangeChain) -> tuple[BlockHeader, CommitCertificate]:
    """A block 10 naming the genesis set, signed by v1..v4's genesis keys (v1 since removed, v2's key
    since replaced)."""
    forged = dataclasses.replace(chain.header(9), height=10, validators_hash=chain.header(1).validators_hash)
    old_keys = [chain.keys[v["public_key"]] for v in chain.genesis.validators]
    certificate = CommitCertificate(
        10,
        forged.hash.hex(),
        {f"v{i}": CommitCertificate.sign(forged.hash, key) for i, key in enumerate(old_keys, start=1)},
    )
    return forged, certificate


def test_the_old_set_cannot_certify_a_block_past_a_change_the_client_knows(chain: SetChangeChain) -> None:
    """v1..v4 (v1 and v2's old key since replaced) sign a block 10 naming their old set: refused."""
    client = chain.client()
    client.prove("validators")
    with pytest.raises(UntrustedValidatorSet):
        client.verify_header(*forged_by_the_genesis_set(chain))


def test_a_node_that_withholds_the_changes_leaves_the_new_headers_refused(chain: SetChangeChain) -> None:
    liar = Rewriting(chain, "/validators/changes", withhold)
    client = chain.client(liar)
    with pytest.raises(LedgerUnavailable, match="validator set"):
        client.prove("validators")


def test_an_honest_node_proves_what_a_withholding_one_did_not(chain: SetChangeChain) -> None:
    liar = Rewriting(chain, "/validators/changes", withhold)
    _, header = liar_then_honest(chain, liar).prove("validators")
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


def random_set(header: BlockHeader) -> BlockHeader:
    return dataclasses.replace(header, validators_hash=secrets.token_hex(32))


def test_headers_naming_new_sets_each_time_cost_one_round_of_questions_a_second(
    chain: SetChangeChain,
) -> None:
    """A node showing a different unproven set in every answer is asked about none of them again
    within RELEARN_INTERVAL of a round that proved nothing."""
    counting = Rewriting(chain, "/validators/changes", lambda answer: answer)
    client = chain.client(counting)
    client.prove("validators")  # learns the three changes: one round
    asked = counting.asked
    found = chain.app.store.block(9)
    assert found is not None
    for _ in range(5):
        with pytest.raises(UntrustedValidatorSet):
            client.verify_header(random_set(found[0].header), found[1])
    assert counting.asked == asked + 1


class Slow(httpx.BaseTransport):
    """The chain's node, answering ``/validators/changes`` after ``delay`` seconds; counts those."""

    def __init__(self, chain: SetChangeChain, delay: float) -> None:
        self._inner = httpx.WSGITransport(app=chain.wsgi)
        self._delay, self.asked = delay, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/validators/changes":
            self.asked += 1
            time.sleep(self._delay)
        return self._inner.handle_request(request)


def test_threads_meeting_one_unproven_set_share_one_round_of_questions(chain: SetChangeChain) -> None:
    """Eight request threads meet a header naming a set no node proves while a round is under way:
    they wait for that round and take its outcome, instead of each asking every node in turn."""
    slow = Slow(chain, 0.2)
    client = chain.client(slow)
    client.prove("validators")
    asked = slow.asked
    found = chain.app.store.block(9)
    assert found is not None
    header = random_set(found[0].header)

    def verify(_: int) -> bool:
        try:
            client.verify_header(header, found[1])
        except UntrustedValidatorSet:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert not any(pool.map(verify, range(8)))
    assert slow.asked == asked + 1


class Raw(httpx.BaseTransport):
    """Answers ``path`` with ``body`` (raw bytes), anything else as the chain's node."""

    def __init__(self, chain: SetChangeChain, path: str, body: bytes) -> None:
        self._inner = httpx.WSGITransport(app=chain.wsgi)
        self._path, self._body = path, body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self._path:
            return httpx.Response(200, content=self._body, headers={"content-type": "application/json"})
        return self._inner.handle_request(request)


@pytest.mark.parametrize("path", ["/validators/changes", "/proofs/state"])
def test_an_answer_nested_too_deeply_to_read_passes_over_that_node(chain: SetChangeChain, path: str) -> None:
    """JSON nested past the parser's depth raises RecursionError: that node failed, the next answers."""
    hostile = Raw(chain, path, b"[" * 100_000 + b"]" * 100_000)
    _, header = liar_then_honest(chain, hostile).prove("validators")
    assert header.height == 9


def test_clients_sharing_a_trust_both_refuse_the_old_set_once_one_learned_the_change(
    chain: SetChangeChain,
) -> None:
    """A verifier's clients share one trust: after one learned the changes, another that never read
    past them refuses a block the replaced set certifies (alone, it would trust the genesis set)."""
    first = chain.client()
    first.prove("validators")
    second = chain.client(trust=first.trust)
    with pytest.raises(UntrustedValidatorSet):
        second.verify_header(*forged_by_the_genesis_set(chain))


def test_a_set_trusted_out_of_band_holds_for_every_client_sharing_the_trust(chain: SetChangeChain) -> None:
    withholding = Rewriting(chain, "/validators/changes", withhold)
    first = chain.client(withholding)
    second = chain.client(withholding, trust=first.trust)
    found = chain.app.store.block(9)
    assert found is not None
    record = json.loads(chain.app.store.get("validators") or b"null")
    first.trust_validators(set_at(record, 9))
    second.verify_header(found[0].header, found[1])


class Trickling(httpx.BaseTransport):
    """``/validators/changes`` answered a byte every ``pause`` seconds; anything else by the chain."""

    def __init__(self, chain: SetChangeChain, pause: float) -> None:
        self._inner = httpx.WSGITransport(app=chain.wsgi)
        self._pause = pause

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/validators/changes":
            return self._inner.handle_request(request)
        pause = self._pause

        class Stream(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for byte in b'{"changes": [], "more": false}' * 10:
                    time.sleep(pause)
                    yield bytes([byte])

        return httpx.Response(200, stream=Stream(), headers={"content-type": "application/json"})


def test_a_node_trickling_its_answer_is_given_up_within_the_time_an_answer_has(
    chain: SetChangeChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node sending its set changes a byte at a time holds a read for its answer's time (0.3 s
    here), not for as long as it goes on; the honest node then answers."""
    monkeypatch.setattr(certified_headers, "_CHANGES_TIMEOUT", 0.3)
    client = liar_then_honest(chain, Trickling(chain, 0.05))  # 300 bytes: 15 s at that pace
    started = time.monotonic()
    _, header = client.prove("validators")
    assert header.height == 9 and time.monotonic() - started < 5


def test_a_trust_from_another_genesis_of_the_same_name_is_refused(chain: SetChangeChain) -> None:
    """Sharing a trust across networks is refused by genesis, not by name: two test networks called
    alike are two chains."""
    other = SetChangeChain()  # the same network name, other validators
    with pytest.raises(ValueError, match="another genesis"):
        chain.client(trust=other.client().trust)

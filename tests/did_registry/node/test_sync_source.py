"""State transfer's BlockSource: a node whose answer cannot be read is passed over, never fatal."""

from __future__ import annotations

import json

import httpx
import pytest

from did_registry.node.sync import BlockSource

HOSTILE = "http://hostile.test"
GOOD = "http://good.test"


@pytest.mark.parametrize(
    "answer",
    [
        b"[" * 100_000,
        b'{"head": 1e999, "blocks": []}',
        b'{"head": 3, "blocks": [[[[]]]]}',
        '{"head": "١٢", "blocks": []}'.encode(),
        b'{"head": 12.5, "blocks": []}',
        b'{"head": true, "blocks": []}',
    ],
    ids=[
        "nested too deeply",
        "head beyond any integer",
        "blocks that are not blocks",
        "head in other digits",
        "head not whole",
        "head not a number",
    ],
)
def test_an_unreadable_answer_passes_to_the_next_node(answer: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hostile.test":
            return httpx.Response(200, content=answer, headers={"Content-Type": "application/json"})
        return httpx.Response(200, json={"head": 7, "blocks": []})

    source = BlockSource([HOSTILE, GOOD])
    source._client.close()
    source._client = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        assert source.fetch(1) == []
        assert source.heads == {GOOD: 7}
    finally:
        source.close()


def test_a_batch_refused_for_one_transaction_is_forwarded_one_by_one() -> None:
    """A validator takes a batch whole or not at all: when it refuses one (a nonce another waiting
    transaction holds), the observer hands the others in on their own rather than losing them."""
    posted: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        posted.append([t["id"] for t in batch])
        if any(t["id"] == "A" for t in batch):
            return httpx.Response(409, json={"code": "conflict", "detail": "nonce 5 is taken"})
        return httpx.Response(202, json={"txns": [{"id": t["id"], "status": "pending"} for t in batch]})

    source = BlockSource([GOOD])
    source._client.close()
    source._client = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        admitted = source.submit([b'{"id":"A"}', b'{"id":"B"}'])
    finally:
        source.close()
    assert posted == [["A", "B"], ["A"], ["B"]]
    assert admitted is False  # A was refused; B went in


def test_a_known_transaction_counts_as_forwarded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"code": "replay", "detail": "already submitted"})

    source = BlockSource([GOOD])
    source._client.close()
    source._client = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        assert source.submit([b'{"id":"A"}', b'{"id":"B"}']) is True
    finally:
        source.close()


def _source(handler: object, urls: list[str]) -> BlockSource:
    source = BlockSource(urls)
    source._client.close()
    source._client = httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return source


def _too_large(request: httpx.Request) -> httpx.Response:
    """A validator that refuses request A for good, and admits any other."""
    batch = json.loads(request.content)
    if any(t["id"] == "A" for t in batch):
        return httpx.Response(413, json={"code": "payload_too_large", "detail": "more than a block takes"})
    return httpx.Response(202, json={"txns": []})


def test_a_request_every_validator_refuses_is_reported_with_the_refusal() -> None:
    """An observer can then settle it as rejected: no validator will ever order it."""
    source = _source(_too_large, [GOOD, HOSTILE])
    try:
        forwarded = source.forward([b'{"id":"A"}', b'{"id":"B"}'])
    finally:
        source.close()
    assert forwarded.admitted is False
    assert forwarded.refused == {b'{"id":"A"}': ("payload_too_large", "more than a block takes")}


def test_a_refusal_is_not_final_while_another_validator_failed_to_answer() -> None:
    """One validator's refusal (it may be byzantine, or behind) settles nothing while another could
    not be asked."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hostile.test":
            raise httpx.ConnectError("refused")
        return _too_large(request)

    source = _source(handler, [GOOD, HOSTILE])
    try:
        forwarded = source.forward([b'{"id":"A"}'])
    finally:
        source.close()
    assert forwarded.admitted is False and forwarded.refused == {}


def test_a_request_one_validator_admits_is_not_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hostile.test":  # a lying validator
            return httpx.Response(403, json={"code": "forbidden", "detail": "no"})
        return httpx.Response(202, json={"txns": []})

    source = _source(handler, [HOSTILE, GOOD])
    try:
        forwarded = source.forward([b'{"id":"A"}'])
    finally:
        source.close()
    assert forwarded.admitted is True and forwarded.refused == {}


@pytest.mark.parametrize("status", [408, 429, 503])
def test_answers_asking_to_try_again_refuse_nothing_for_good(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": "overloaded", "detail": "later"})

    source = _source(handler, [GOOD])
    try:
        forwarded = source.forward([b'{"id":"A"}'])
    finally:
        source.close()
    assert forwarded.admitted is False and forwarded.refused == {}


def test_a_refusal_nested_too_deeply_is_no_refusal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, content=b"[" * 100_000, headers={"Content-Type": "application/json"})

    source = _source(handler, [GOOD])
    try:
        forwarded = source.forward([b'{"id":"A"}'])  # (it raised RecursionError before)
    finally:
        source.close()
    assert forwarded.admitted is False and forwarded.refused == {}


def test_a_batch_refused_as_a_replay_of_one_hands_the_others_in() -> None:
    """A validator takes a batch whole or not at all: a 409 replay for one transaction (committed
    already, its client retrying) means it took none of them. Before, the observer counted the batch
    as forwarded, and the others stayed pending for ever."""
    posted: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        posted.append([t["id"] for t in batch])
        if any(t["id"] == "A" for t in batch):
            return httpx.Response(409, json={"code": "replay", "detail": "A is already on the ledger"})
        return httpx.Response(202, json={"txns": []})

    source = _source(handler, [GOOD])
    try:
        forwarded = source.forward([b'{"id":"A"}', b'{"id":"B"}'])
    finally:
        source.close()
    assert posted == [["A", "B"], ["A"], ["B"]]
    assert forwarded.admitted is True and forwarded.refused == {}

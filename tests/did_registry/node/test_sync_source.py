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

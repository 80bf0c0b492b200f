"""State transfer's BlockSource: a node whose answer cannot be read is passed over, never fatal."""

from __future__ import annotations

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

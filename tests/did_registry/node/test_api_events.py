"""GET /events: certified headers as Server-Sent Events, with Last-Event-ID replay and heartbeats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.validators import ValidatorSet
from did_registry.node import api_events
from tests.did_registry.node.conftest import Node


class EventReader:
    """Reads a streamed test-client response event by event (comments included)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self._chunks: Iterator[bytes] = iter(response.response)
        self._buffer = ""

    def next_block(self) -> str:
        """The next raw event block (lines up to a blank line)."""
        while "\n\n" not in self._buffer:
            self._buffer += next(self._chunks).decode()
        block, _, self._buffer = self._buffer.partition("\n\n")
        return block

    def next_event(self) -> dict[str, str]:
        """The next event that is not a comment, as its fields."""
        while True:
            block = self.next_block()
            fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
            if fields:
                return fields

    def close(self) -> None:
        """Close the stream (the server unsubscribes)."""
        self.response.close()


def _open(node: Node, last_event_id: str | None = None) -> EventReader:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    response = node.client.get("/events", headers=headers, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    return EventReader(response)


def _subscribers(node: Node) -> int:
    return len(node.service._subscribers)


def test_live_header_event_verifies(node: Node) -> None:
    """A block committed while the stream is open arrives as a 'header' event whose certificate verifies."""
    reader = _open(node)
    assert reader.next_block().startswith(":")  # the opening comment
    node.onboard()
    event = reader.next_event()
    assert event["event"] == "header" and event["id"] == "1"
    data = json.loads(event["data"])
    header = BlockHeader.from_json(data["header"])
    validators = ValidatorSet.from_json(node.client.get("/validators").get_json()["set"])
    CommitCertificate.from_json(data["certificate"]).verify(header, validators)
    reader.close()


def test_last_event_id_replays_then_goes_live(node: Node) -> None:
    """With Last-Event-ID 1, blocks 2 and 3 are replayed, then a new block 4 arrives live."""
    node.onboard("issuer")  # blocks 1, 2
    node.onboard()  # block 3
    reader = _open(node, "1")
    assert [reader.next_event()["id"] for _ in range(2)] == ["2", "3"]
    node.onboard()
    assert reader.next_event()["id"] == "4"
    reader.close()


def test_replay_is_bounded(node: Node, monkeypatch: Any) -> None:
    """A reader further behind than the replay bound gets that many headers, then the stream ends."""
    monkeypatch.setattr(api_events, "MAX_REPLAY", 2)
    for _ in range(3):
        node.onboard()
    reader = _open(node, "0")
    assert [reader.next_event()["id"] for _ in range(2)] == ["1", "2"]
    rest = b"".join(reader._chunks)
    assert b"event:" not in rest
    assert _subscribers(node) == 0


def test_heartbeat_comment_when_idle(node: Node) -> None:
    """With no block for a heartbeat interval, a comment line keeps the stream alive."""
    reader = _open(node)
    reader.next_block()  # opening comment
    assert reader.next_block() == ": heartbeat"
    reader.close()


def test_stream_ends_when_node_stops(node: Node) -> None:
    """Stopping the service ends every open stream and drops its subscription."""
    reader = _open(node)
    reader.next_block()
    node.service.stop()
    assert b"".join(reader._chunks) in (b"", b": heartbeat\n\n")
    assert _subscribers(node) == 0


def test_closing_unsubscribes(node: Node) -> None:
    """A reader that goes away is unsubscribed, even one that never read."""
    reader = _open(node)
    assert _subscribers(node) == 1
    reader.close()
    assert _subscribers(node) == 0


def test_bad_last_event_id_is_400(node: Node) -> None:
    """A Last-Event-ID that is not a height is a malformed problem."""
    response = node.client.get("/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert _subscribers(node) == 0

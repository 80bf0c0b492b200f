"""The stream of certified headers: ``GET /events``, Server-Sent Events (WHATWG HTML §9.2).

Each committed block is one event ``header`` whose ``id`` is the block height and whose ``data`` is
one line of JSON ``{"header": …, "certificate": …}``, so a reader verifies every header on its own.
A reader that reconnects with ``Last-Event-ID: <height>`` first gets the headers committed after
that height (at most :data:`MAX_REPLAY`; one further behind gets those, then the stream ends and
it reconnects from where it got to), then live ones. A comment line is sent every heartbeat
(15 s by default) so proxies keep the connection open; the stream ends when the node stops. A
reader that falls :data:`QUEUE_SIZE` headers behind is cut off the same way. The generator never
holds the service lock while it waits or writes.
"""

from __future__ import annotations

import json
import queue
import re
from collections.abc import Iterator
from typing import Any, Final

from flask import Blueprint, Response, current_app, request

from did_registry.ledger.block import BlockHeader
from did_registry.node.api_reads import headers_from
from did_registry.node.api_support import ApiProblem, node_service
from did_registry.node.service import NodeService

__all__ = ["MAX_REPLAY", "QUEUE_SIZE", "events_bp"]

MAX_REPLAY: Final = 1000
"""The most past headers one connection replays after ``Last-Event-ID``."""
QUEUE_SIZE: Final = 1024
"""Headers a reader may fall behind before it is cut off (it then resumes with ``Last-Event-ID``)."""

_REPLAY_CHUNK: Final = 100
_HEIGHT = re.compile(r"[0-9]{1,18}")

events_bp = Blueprint("events", __name__)
"""The header stream route."""


def _event(item: dict[str, Any]) -> str:
    data = json.dumps(item, separators=(",", ":"))
    return f"event: header\nid: {item['header']['height']}\ndata: {data}\n\n"


def _live_item(service: NodeService, header: BlockHeader) -> dict[str, Any]:
    with service.lock:
        found = service.app.store.block(header.height)
    certificate = None if found is None else found[1]
    return {"header": header.to_json(), "certificate": None if certificate is None else certificate.to_json()}


def _stream(
    service: NodeService,
    subscriber: queue.Queue[BlockHeader | None],
    sent: int,
    replay: bool,
    heartbeat: float,
) -> Iterator[str]:
    """Events after height ``sent``: replayed from the store first if ``replay``, then live."""
    try:
        yield ": trellis certified headers\n\n"
        replayed = 0
        while replay and sent < service.app.height:
            if replayed >= MAX_REPLAY:
                return  # the reader reconnects with the last id it got and replays on from there
            items = headers_from(service, sent + 1, min(_REPLAY_CHUNK, MAX_REPLAY - replayed))
            for item in items:
                yield _event(item)
            sent += len(items)
            replayed += len(items)
        while True:
            if subscriber.full():
                return  # the service dropped this reader for falling behind
            try:
                header = subscriber.get(timeout=heartbeat)
            except queue.Empty:
                yield ": heartbeat\n\n"
                continue
            if header is None:
                return  # the node stops
            if header.height <= sent:
                continue
            yield _event(_live_item(service, header))
            sent = header.height
    finally:
        service.unsubscribe(subscriber)


@events_bp.get("/events")
def events() -> Response:
    """Certified headers as Server-Sent Events, replaying after ``Last-Event-ID``."""
    service = node_service()
    last = request.headers.get("Last-Event-ID", "").strip()
    if last and not _HEIGHT.fullmatch(last):
        raise ApiProblem(400, "malformed", "Last-Event-ID must be a block height")
    heartbeat = float(current_app.config["TRELLIS_SSE_HEARTBEAT"])
    subscriber = service.subscribe(QUEUE_SIZE)  # before the replay, so no block falls in between
    with service.lock:
        head = service.app.height
    response = Response(
        _stream(service, subscriber, int(last) if last else head, bool(last), heartbeat),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(lambda: service.unsubscribe(subscriber))  # also when never iterated (HEAD)
    return response

"""The stream of certified headers: ``GET /events``, Server-Sent Events (WHATWG HTML §9.2).

Each committed block is one event ``header`` whose ``id`` is the block height and whose ``data`` is
one line of JSON ``{"header": …, "certificate": …}``, so a reader verifies every header on its own.
A reader that reconnects with ``Last-Event-ID: <height>`` first gets the headers committed after
that height (at most :data:`MAX_REPLAY`; one further behind gets those, then the stream ends and
it reconnects from where it got to), then live ones. A comment line is sent every heartbeat
(15 s by default) so proxies keep the connection open; the stream ends when the node stops. A
reader that falls :data:`QUEUE_SIZE` headers behind is cut off the same way, and every stream ends
after its lifetime (:data:`MAX_STREAM_S` by default), so one whose reader stopped reading gives its
worker thread back; readers reconnect with ``Last-Event-ID``. A node serves a capped number of
streams at once (:func:`~did_registry.node.api_support.limit_held_threads`); beyond it the answer
is a 503 problem with ``Retry-After``. The generator never holds the service lock while it waits
or writes.
"""

from __future__ import annotations

import json
import queue
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from flask import Blueprint, Response, current_app, request

from did_registry.ledger.block import BlockHeader
from did_registry.node.api_reads import headers_from
from did_registry.node.api_support import ApiProblem, held_threads, node_service
from did_registry.node.service import NodeService

__all__ = ["MAX_REPLAY", "MAX_STREAM_S", "QUEUE_SIZE", "events_bp"]

MAX_REPLAY: Final = 1000
"""The most past headers one connection replays after ``Last-Event-ID``."""
QUEUE_SIZE: Final = 1024
"""Headers a reader may fall behind before it is cut off (it then resumes with ``Last-Event-ID``)."""
MAX_STREAM_S: Final = 600.0
"""How long one stream lasts by default before it ends (the reader resumes with ``Last-Event-ID``)."""

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
    timing: tuple[float, float],
    release: Callable[[], None],
) -> Iterator[str]:
    """Events after height ``sent``: replayed from the store first if ``replay``, then live, for
    ``timing`` = (heartbeat, lifetime) seconds; ``release`` gives the worker thread's slot back."""
    heartbeat, lifetime = timing
    deadline = time.monotonic() + lifetime
    try:
        yield ": trellis certified headers\n\n"
        replayed = 0
        while replay and sent < service.app.height:
            if replayed >= MAX_REPLAY or time.monotonic() >= deadline:
                return  # the reader reconnects with the last id it got and replays on from there
            items = headers_from(service, sent + 1, min(_REPLAY_CHUNK, MAX_REPLAY - replayed))
            for item in items:
                yield _event(item)
            sent += len(items)
            replayed += len(items)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or subscriber.full():
                return  # lived its lifetime, or the service dropped this reader for falling behind
            try:
                header = subscriber.get(timeout=min(heartbeat, left))
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
        release()


@events_bp.get("/events")
def events() -> Response:
    """Certified headers as Server-Sent Events, replaying after ``Last-Event-ID``."""
    service = node_service()
    last = request.headers.get("Last-Event-ID", "").strip()
    if last and not _HEIGHT.fullmatch(last):
        raise ApiProblem(400, "malformed", "Last-Event-ID must be a block height")
    timing = (
        float(current_app.config["TRELLIS_SSE_HEARTBEAT"]),
        float(current_app.config["TRELLIS_SSE_LIFETIME"]),
    )
    release = held_threads("streams").hold()  # a 503 problem when the node serves all it may
    subscriber = service.subscribe(QUEUE_SIZE)  # before the replay, so no block falls in between

    def close() -> None:  # also when the body is never iterated (HEAD)
        service.unsubscribe(subscriber)
        release()

    with service.lock:
        head = service.app.height
    response = Response(
        _stream(service, subscriber, int(last) if last else head, bool(last), timing, release),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(close)
    return response

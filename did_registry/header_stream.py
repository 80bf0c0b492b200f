"""The header stream: each new certified header, from the nodes' event streams (``GET /events``).

A part of :class:`~did_registry.client.LedgerClient`. Every header is checked
(:mod:`did_registry.certified_headers`); a stream that goes quiet while other nodes' heads move on is
left for the next node's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from did_registry.bounded_http import BOUNDS, bounded_lines
from did_registry.ledger.block import BlockHeader
from did_registry.node_answers import ANSWER_ERRORS, LedgerUnavailable
from did_registry.proven_reads import ProvenReads

__all__ = [
    "MAX_EVENT_BYTES",
    "HeaderStream",
]

_STREAM_READ_TIMEOUT = 30.0  # a header stream silent this long (no heartbeat either) is given up
MAX_EVENT_BYTES = 1 << 20
"""The longest line of a node's header stream a reader takes (an event is a header and its
certificate: a few kilobytes)."""
_STALL_CHECK = 15.0  # a stream with no new header this long is compared with the other nodes' heads


class HeaderStream(ProvenReads):
    """The header stream of a :class:`~did_registry.client.LedgerClient` (:meth:`follow`)."""

    def follow(self, after: int | None = None, *, max_events: int | None = None) -> Iterator[BlockHeader]:
        """Yield each new certified header (checked), in height order, from nodes' event streams.

        A stream that ends after delivering headers is resumed from the same node with
        ``Last-Event-ID``; a node that fails or delivers nothing makes the client try the next one.
        """
        last, seen, idle, turn = after, 0, 0, 0
        while idle < len(self.nodes):
            node = self.nodes[turn % len(self.nodes)]
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            delivered = heard = stalled = False
            try:
                with self._http.stream(  # heartbeats come every few seconds: silence means a dead stream
                    "GET",
                    node.rstrip("/") + "/events",
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=_STREAM_READ_TIMEOUT),
                    extensions={BOUNDS: (None, None)},  # the stream lasts; each line is bounded
                ) as stream:
                    stream.raise_for_status()  # a 503 (the node serves enough streams) is no stream
                    quiet_since = time.monotonic()
                    for line in bounded_lines(stream, MAX_EVENT_BYTES):
                        heard = True
                        if not line.startswith("data:"):
                            if time.monotonic() - quiet_since > _STALL_CHECK:
                                if self._ahead_of(last, node):
                                    self.failures.append(f"{node}: its stream stopped while others went on")
                                    stalled = True
                                    break
                                quiet_since = time.monotonic()
                            continue
                        quiet_since = time.monotonic()
                        data = json.loads(line[5:])
                        header = self.certified_header(data["header"], data.get("certificate"))
                        if last is not None and header.height <= last:
                            continue
                        last, delivered = header.height, True
                        yield header
                        seen += 1
                        if max_events is not None and seen >= max_events:
                            return
            except ANSWER_ERRORS as exc:
                self.failures.append(f"{node}: {exc}")
                heard = False
            if delivered or (heard and not stalled):  # a live stream the node ended (its lifetime): resume
                idle = 0
            else:
                idle, turn = idle + 1, turn + 1
        raise LedgerUnavailable("no node's header stream delivers new headers")

    def _ahead_of(self, height: int | None, node: str) -> bool:
        """Whether a node other than ``node`` shows a certified head above ``height``."""
        if height is None:
            return False
        for other in self.nodes:
            if other != node:
                header, _ = self._head_from([other], [], 0)
                if header is not None and header.height > height:
                    return True
        return False

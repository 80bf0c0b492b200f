"""Asking a ledger network's nodes in turn: the first usable answer, and what went wrong with the rest.

The base of :class:`~did_registry.client.LedgerClient` (its other parts build on this one): the node
URLs, the HTTP client that reaches them (each exchange bounded, :mod:`did_registry.bounded_http`), the
failures kept, and what a node's answer may raise when read and checked (:data:`ANSWER_ERRORS`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx

from did_registry.errors import DidRegistryError, InvalidProof

__all__ = [
    "ANSWER_ERRORS",
    "FAILURES_KEPT",
    "LedgerUnavailable",
    "NodeAnswers",
]


class LedgerUnavailable(DidRegistryError):
    """No node gave a usable answer (all unreachable, failing, or caught lying)."""


FAILURES_KEPT = 1000
"""How many of the latest failures (node and what went wrong) a client keeps in ``failures``."""
ANSWER_ERRORS = (httpx.HTTPError, ValueError, KeyError, TypeError, RecursionError, InvalidProof)
"""What a node's answer may raise when read and checked: that node failed (JSON nested too deeply
raises RecursionError), the next one is asked."""


class NodeAnswers:
    """The nodes of a :class:`~did_registry.client.LedgerClient` and their answers (its constructor
    sets the attributes declared here)."""

    nodes: list[str]
    failures: deque[str]
    _http: httpx.Client

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[str, httpx.Response]:
        return self._request("GET", path, params=params)

    def _request(self, method: str, path: str, **options: Any) -> tuple[str, httpx.Response]:
        """The first answer below 500 from the nodes in turn; raise :class:`LedgerUnavailable`."""
        errors: list[str] = []
        for node in self.nodes:
            try:
                response = self._http.request(method, node.rstrip("/") + path, **options)
            except httpx.HTTPError as exc:
                errors.append(f"{node}: {exc}")
                continue
            if response.status_code >= 500:
                errors.append(f"{node}: HTTP {response.status_code}")
                continue
            return node, response
        self.failures.extend(errors)
        raise LedgerUnavailable("; ".join(errors) or "no node answered")

"""Transaction submission: send transactions to any node, then wait for their commitment, proven.

A part of :class:`~did_registry.client.LedgerClient`. A node's refusal is not taken on its word while
another node may admit the transactions, and a transaction reported committed is checked for
inclusion in a certified block (:mod:`did_registry.proven_reads`) before the client says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node_answers import LedgerUnavailable
from did_registry.proven_reads import ProvenReads

__all__ = [
    "RefusedByEveryNode",
    "TxnSubmission",
]


class RefusedByEveryNode(TxnRejected):
    """Every node asked refused the submission with a 4xx answer (none failed, timed out or was
    overloaded): no node said it took the transactions. ``code``, ``detail`` and ``txn_id`` are the
    first refusal's, ``codes`` every node's, in order. (A node's word proves nothing: a hostile node
    may still hold them, and one node's ``replay`` means it holds them already.)"""

    def __init__(
        self, code: str, detail: str, *, txn_id: str | None = None, codes: Sequence[str] = ()
    ) -> None:
        super().__init__(code, detail, txn_id=txn_id)
        self.codes = tuple(codes) or (code,)


_STATUS_CHUNK = 1000  # transaction ids per POST /txns/status


class TxnSubmission(ProvenReads):
    """The writes of a :class:`~did_registry.client.LedgerClient`: submission and commitment."""

    def submit(self, txns: Sequence[Transaction] | Transaction) -> list[str]:
        """Submit transactions (all or nothing); return their ids. Raises :class:`TxnRejected`.

        A node's refusal is not taken on its word while another node may admit them: the next node
        is asked, and the first refusal is raised only once every node has refused or failed (one
        lying node cannot keep a client's transactions out), as :class:`RefusedByEveryNode` when
        every node refused (4xx) and none failed. A 503 ``overloaded`` is the network asking for a
        pause, raised at once."""
        batch = [txns] if isinstance(txns, Transaction) else list(txns)
        body = [t.to_json() for t in batch]
        errors: list[str] = []
        refused: TxnRejected | None = None
        codes: list[str] = []  # the code of each node that answered with a 4xx refusal
        for node in self.nodes:
            try:
                response = self._http.post(
                    node.rstrip("/") + "/txns", json=body if len(body) != 1 else body[0]
                )
                if response.status_code == 202:
                    ids = [str(item["id"]) for item in response.json()["txns"]]
                    self.failures.extend(errors)  # nodes that failed or refused what another admitted
                    return ids
            except (httpx.HTTPError, ValueError, KeyError, TypeError, RecursionError) as exc:
                errors.append(f"{node}: {exc!r}"[:500])
                continue
            if response.status_code >= 500 and response.status_code != 503:
                errors.append(f"{node}: HTTP {response.status_code}")
                continue
            try:
                problem = response.json()
            except (ValueError, RecursionError):
                problem = None
            problem = problem if isinstance(problem, dict) else {}
            rejection = TxnRejected(
                str(problem.get("code", "malformed")),
                str(problem.get("detail", response.text[:200])),
                txn_id=problem.get("txn") if isinstance(problem.get("txn"), str) else None,
            )
            if response.status_code == 503:
                raise rejection
            errors.append(f"{node}: refused: {rejection.code}: {rejection.detail}"[:500])
            refused = refused or rejection
            if 400 <= response.status_code < 500:
                codes.append(rejection.code)
        self.failures.extend(errors)
        if refused is not None and len(codes) == len(self.nodes):
            raise RefusedByEveryNode(refused.code, refused.detail, txn_id=refused.txn_id, codes=codes)
        if refused is not None:
            raise refused
        raise LedgerUnavailable("; ".join(errors))

    def wait(self, txn_ids: Sequence[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until each transaction is committed or rejected (or ``timeout``); return their status."""
        deadline = time.monotonic() + timeout
        results: dict[str, dict[str, Any]] = {}
        waiting = list(dict.fromkeys(txn_ids))
        while waiting:
            left = deadline - time.monotonic()
            chunk = waiting[:_STATUS_CHUNK]
            statuses = self._statuses(chunk, max(0.0, min(left, 10.0)))
            said = {s["id"]: s for s in statuses if isinstance(s, dict) and isinstance(s.get("id"), str)}
            settled = 0
            for txn_id in chunk:
                status = said.get(txn_id)
                if status is not None and status.get("status") in ("committed", "rejected"):
                    results[txn_id] = status
                    settled += 1
            if left <= 0:  # out of time: what a node said last, else pending
                for txn_id in waiting:
                    results.setdefault(txn_id, said.get(txn_id) or {"id": txn_id, "status": "pending"})
                break
            waiting = [i for i in waiting if i not in results]
            if waiting and not settled:
                time.sleep(0.05)  # unknown to the node yet (forwarded elsewhere): do not spin
        return [results[i] for i in txn_ids]

    def statuses(self, txn_ids: Sequence[str]) -> list[dict[str, Any]]:
        """What the first node that answers says of each transaction now, without waiting: its
        ``status`` is ``pending``, ``committed``, ``rejected`` or ``unknown`` (also for one the node
        does not name). A node's word, not proven: :meth:`wait_committed` proves a commit."""
        ids, said = list(dict.fromkeys(txn_ids)), {}
        for start in range(0, len(ids), _STATUS_CHUNK):
            for status in self._statuses(ids[start : start + _STATUS_CHUNK], 0.0):
                if isinstance(status, dict) and isinstance(status.get("id"), str):
                    said[status["id"]] = status
        return [said.get(i) or {"id": i, "status": "unknown"} for i in txn_ids]

    def _statuses(self, txn_ids: Sequence[str], wait: float) -> list[dict[str, Any]]:
        """``POST /txns/status`` at the first node that answers."""
        node, response = self._request(
            "POST", "/txns/status", json={"ids": list(txn_ids), "wait": round(wait, 2)}, timeout=wait + 10.0
        )
        if response.status_code != 200:
            self.failures.append(f"{node}: HTTP {response.status_code}")
            raise LedgerUnavailable(f"{node}: HTTP {response.status_code} for POST /txns/status")
        answer: list[dict[str, Any]] = response.json()["txns"]
        return answer

    def submit_and_wait(
        self, txns: Sequence[Transaction] | Transaction, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Submit, then wait for every transaction; raise :class:`TxnRejected` for a rejected one."""
        return self.wait_committed(self.submit(txns), timeout)

    def wait_committed(self, txn_ids: Sequence[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait for every transaction of ``txn_ids`` to commit, each proven in a certified block;
        raise :class:`TxnRejected` for a rejected one and :class:`LedgerUnavailable` for one not
        committed within ``timeout``. For transactions submitted earlier (a node answered
        ``replay``: it holds them already)."""
        statuses = self.wait(txn_ids, timeout)
        for status in statuses:
            if status.get("status") == "rejected":
                raise TxnRejected(
                    status.get("code", "rejected"), status.get("detail", ""), txn_id=status["id"]
                )
            if status.get("status") != "committed":
                raise LedgerUnavailable(f"transaction {status['id']} not committed within {timeout} s")
            self.txn_proof(status["id"])  # a node's word is not enough: included in a certified block
        return statuses

"""Proven reads: state values, transactions and heads, each checked against a certified header.

A part of :class:`~did_registry.client.LedgerClient`. State values come with a sparse-Merkle proof,
transactions with an RFC 6962 audit path, and the header with its commit certificate
(:mod:`did_registry.certified_headers`). Reads never go back: an answer as of a block older than any
the client has seen is passed over for another node's, waiting up to ``behind_wait`` for one to
catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from did_registry.certified_headers import CertifiedHeaders
from did_registry.errors import InvalidProof
from did_registry.identity.jcs import canonicalize
from did_registry.ledger import merkle
from did_registry.ledger.block import BlockHeader
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.smt import MapProof
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node_answers import ANSWER_ERRORS, LedgerUnavailable

__all__ = [
    "ProvenReads",
]

_T = TypeVar("_T")


class ProvenReads(CertifiedHeaders):
    """The reads of a :class:`~did_registry.client.LedgerClient` whose every answer is proven."""

    behind_wait: float

    def _proven(self, attempt: Callable[[list[str], int], tuple[_T | None, bool]], min_height: int) -> _T:
        """Run ``attempt(errors, floor)`` (one round over the nodes: its answer or ``None``, and whether
        a node answered as of a block before ``floor``) until it answers; while only nodes behind
        answer, again for up to ``behind_wait`` seconds. ``floor`` is the highest of ``min_height``
        and every height this client has seen."""
        deadline = time.monotonic() + self.behind_wait
        pause = 0.01
        while True:
            errors: list[str] = []
            answer, behind = attempt(errors, max(min_height, self._seen))
            self.failures.extend(errors)
            if answer is not None:
                return answer
            if not behind or time.monotonic() + pause > deadline:
                raise LedgerUnavailable("; ".join(errors) or "no node answered")
            time.sleep(pause)
            pause = min(2 * pause, 0.2)

    # -- reads ------------------------------------------------------------------------------
    def prove(self, key: str) -> tuple[Any, BlockHeader]:
        """The value under ``key`` (``None`` if absent), checked against a certified header no older
        than any this client has seen."""
        return self._proven(lambda errors, floor: self._prove_once(key, floor, errors), 0)

    def _prove_once(
        self, key: str, floor: int, errors: list[str]
    ) -> tuple[tuple[Any, BlockHeader] | None, bool]:
        behind = False
        for node in self.nodes:
            try:
                response = self._http.get(node.rstrip("/") + "/proofs/state", params={"key": key})
                response.raise_for_status()
                answer = StateProof.from_json(response.json())
                if answer.key != key:
                    raise InvalidProof("state", f"asked for {key!r}, answered for {answer.key!r}")
                self.verify_header(answer.header, answer.certificate)
                if answer.header.height < floor:
                    errors.append(
                        f"{node}: answered as of block {answer.header.height}, behind block {floor}"
                    )
                    behind = True
                    continue
                return (answer.verify_path(), answer.header), False
            except ANSWER_ERRORS as exc:
                errors.append(f"{node}: {exc}")
        return None, behind

    def prove_many(
        self, keys: Sequence[str], *, min_height: int | None = None
    ) -> tuple[list[Any], BlockHeader]:
        """The values under ``keys`` (``None`` where absent), all checked against one certified header.

        One request for up to 1,000 keys: how a verifier warms its caches at fleet scale. With
        ``min_height``, a node answering as of an older block is passed over for the next one; when
        every node that answers is behind, they are asked again until one has caught up, for up to
        ``behind_wait`` seconds.
        """
        if not keys:
            return [], self.head()
        return self._proven(lambda errors, floor: self._prove_many_once(keys, floor, errors), min_height or 0)

    def _prove_many_once(
        self, keys: Sequence[str], floor: int, errors: list[str]
    ) -> tuple[tuple[list[Any], BlockHeader] | None, bool]:
        """One round of :meth:`prove_many` over the nodes: the answer (``None`` when no node gave one;
        why goes to ``errors``), and whether a node answered as of a block before ``floor``."""
        behind = False
        for node in self.nodes:
            try:
                response = self._http.post(node.rstrip("/") + "/proofs/state", json={"keys": list(keys)})
                response.raise_for_status()
                data = response.json()
                header = self.certified_header(data["header"], data["certificate"])
                if header.height < floor:
                    errors.append(f"{node}: answered as of block {header.height}, behind block {floor}")
                    behind = True
                    continue
                items = data["proofs"]
                if [item["key"] for item in items] != list(keys):
                    raise InvalidProof("state", "the answer does not prove the keys asked for, in order")
                values = [
                    StateProof(
                        item["key"], item["value"], header, None, MapProof.from_json(item["proof"])
                    ).verify_path()
                    for item in items
                ]
                return (values, header), False
            except ANSWER_ERRORS as exc:
                errors.append(f"{node}: {exc}")
        return None, behind

    def txn_proof(self, txn_id: str) -> tuple[Transaction, BlockHeader]:
        """A committed transaction, proven included in a certified block (RFC 6962 audit path)."""
        errors: list[str] = []
        for node in self.nodes:
            try:
                response = self._http.get(f"{node.rstrip('/')}/txns/{txn_id}/proof")
                response.raise_for_status()
                data = response.json()
                header = self.certified_header(data["header"], data["certificate"])
                txn = Transaction.from_json(data["txn"])
                if txn.id != txn_id:
                    raise InvalidProof("inclusion", f"asked for {txn_id}, answered with {txn.id}")
                merkle.verify_inclusion(
                    canonicalize(txn.to_json()),
                    data["index"],
                    header.txn_count,
                    [bytes.fromhex(h) for h in data["inclusion"]],
                    bytes.fromhex(header.txn_root),
                )
                self.failures.extend(errors)
                return txn, header
            except (*ANSWER_ERRORS, TxnRejected) as exc:
                errors.append(f"{node}: {exc}")
        self.failures.extend(errors)
        raise LedgerUnavailable("; ".join(errors))

    def head(self) -> BlockHeader:
        """A node's newest certified header (checked), no older than any this client has seen; a node
        whose answer does not check out is passed over for the next."""
        return self._proven(self._head_once, 0)

    def highest_head(self, deadline: float = 2.0) -> BlockHeader:
        """The highest certified header the nodes give, all asked at once: for a reader that must not
        take one lagging or lying node's head as the newest. It waits ``deadline`` seconds for all of
        them, then takes the best answer so far (or the first to come, when none has yet), so one node
        that does not answer costs a request no more than that."""
        errors: list[str] = []
        pool = ThreadPoolExecutor(max_workers=len(self.nodes), thread_name_prefix="trellis-head")
        try:
            asked = [pool.submit(self._head_from, [node], errors, 0) for node in self.nodes]
            done, pending = wait(asked, timeout=deadline)
            heads = [found for found, _ in (f.result() for f in done) if found is not None]
            while not heads and pending:  # nothing usable yet: the first good answer to come
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                heads = [found for found, _ in (f.result() for f in done) if found is not None]
        finally:  # a request still under way ends in its thread (the client's timeout); not waited for
            pool.shutdown(wait=False, cancel_futures=True)
        self.failures.extend(errors)
        if not heads:
            raise LedgerUnavailable("; ".join(errors) or "no node answered")
        return max(heads, key=lambda header: header.height)

    def _head_once(self, errors: list[str], floor: int) -> tuple[BlockHeader | None, bool]:
        return self._head_from(self.nodes, errors, floor)

    def _head_from(
        self, nodes: Sequence[str], errors: list[str], floor: int
    ) -> tuple[BlockHeader | None, bool]:
        behind = False
        for node in nodes:
            try:
                response = self._http.get(node.rstrip("/") + "/blocks/head")
                response.raise_for_status()
                data = response.json()
                header = self.certified_header(data["block"]["header"], data.get("certificate"))
                if header.height < floor:
                    errors.append(f"{node}: its head is block {header.height}, behind block {floor}")
                    behind = True
                    continue
                return header, False
            except ANSWER_ERRORS as exc:
                errors.append(f"{node}: {exc}")
        return None, behind

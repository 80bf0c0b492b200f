"""State transfer: fetching certified blocks from other nodes and installing them, each one verified.

A node that is behind (a validator back from a crash, one that fell behind, a new validator, an
observer) asks other nodes' HTTP APIs for ``GET /sync/blocks?from=H``: whole blocks with their
commit certificates. It trusts none of them: :func:`install` checks each block's certificate against
the validator set its own chain says certifies that height, re-executes the block on its own head,
and only then commits it, so a lying node can slow it down but never make it store a wrong block.

Two failures halt the node instead (:meth:`~did_registry.node.service.NodeService.halt`), since trying
again could never succeed: a block certified by the validator set in force whose transactions are the
ones its header commits to, but which does not execute on this node as its header says (this node's
state is not its peers': ``trellis node check``), and a store whose head was lost after a failed write
(:class:`~did_registry.ledger.application.StoreHeadLost`). A write whose answer was lost although the
store committed it is taken as committed (:meth:`~did_registry.ledger.application.LedgerApplication.commit`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import httpx

from did_registry.bounded_http import BoundedTransport
from did_registry.errors import DidRegistryError
from did_registry.ledger.application import CHECK_HINT, ExecutionMismatch, InvalidBlock, StoreHeadLost
from did_registry.ledger.block import Block, CommitCertificate
from did_registry.node.service import NodeService

__all__ = ["SYNC_PAGE_BYTES", "SyncError", "CertifiedBlock", "BlockSource", "Forwarded", "install"]

SYNC_PAGE_BYTES: Final = 8 << 20
"""A page of ``/sync/blocks`` stops once its blocks pass this many bytes of JSON (at least one block)."""

_log = logging.getLogger("did_registry.sync")
_TRY_AGAIN: Final = (408, 429)  # 4xx answers that refuse nothing for good
_DETAIL_KEPT: Final = 500  # characters of a node's refusal kept (it is another node's text)


class SyncError(DidRegistryError):
    """No node gave usable blocks, or a block offered failed its checks (the reason says which)."""


@dataclass(frozen=True, slots=True)
class CertifiedBlock:
    """A block and the certificate another node says commits it (unverified until installed)."""

    block: Block
    certificate: CommitCertificate

    @classmethod
    def from_json(cls, data: Any) -> CertifiedBlock:
        """Parse ``{"block", "certificate"}``; raise :class:`SyncError`."""
        try:
            if not isinstance(data, dict) or not isinstance(data.get("certificate"), dict):
                raise ValueError("a synced block is {block, certificate}")
            return cls(Block.from_json(data["block"]), CommitCertificate.from_json(data["certificate"]))
        except (ValueError, TypeError, DidRegistryError) as exc:
            raise SyncError(f"a synced block does not parse: {exc}") from None


def install(service: NodeService, blocks: Iterable[CertifiedBlock]) -> CommitCertificate | None:
    """Verify and commit ``blocks`` in order on ``service``'s head; stop at the first that does not
    extend it. Returns the certificate of the last block installed (``None`` when none was)."""
    last: CommitCertificate | None = None
    for item in blocks:
        header = item.block.header
        with service.lock:
            if service.halted is not None:
                raise SyncError(f"the node halted: {service.halted}")
            height = service.app.height
            if header.height <= height:
                continue  # installed meanwhile (by consensus or by another page)
            if header.height != height + 1:
                raise SyncError(f"block {header.height} does not follow the head {height}")
            if item.certificate.height != header.height or item.certificate.block_hash != header.hash.hex():
                raise SyncError(f"block {header.height}'s certificate is for another block")
            try:
                item.certificate.verify(header, service.app.validators())
                executed = service.app.validate(item.block)
                service.commit(executed, item.certificate, executed.block.txns)
            except ExecutionMismatch as exc:  # certified, and its transactions are the header's
                _halt(service, f"certified block {header.height} does not execute here: {exc}; {CHECK_HINT}")
            except StoreHeadLost as exc:
                _halt(service, f"state transfer of block {header.height}: {exc}")
            except (InvalidBlock, DidRegistryError) as exc:
                raise SyncError(f"block {header.height} is refused: {exc}") from None
        last = item.certificate
    return last


def _halt(service: NodeService, reason: str) -> NoReturn:
    service.halt(reason)
    raise SyncError(reason)


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What :meth:`BlockSource.forward` achieved."""

    admitted: bool
    """Every request was admitted by a node (or was known to one already)."""
    refused: dict[bytes, tuple[str, str]]
    """Requests every node refused (a 4xx problem answer from each, no failure), with the first
    refusal's ``code`` and ``detail``: no validator will order them."""


class BlockSource:
    """Other nodes' HTTP APIs, asked in turn for certified blocks (thread-safe; one client each)."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = timeout
        """Seconds a node has for its whole answer (beyond the ``wait`` a fetch grants it)."""
        # A peer's answer ends within its timeout and holds at most MAX_ANSWER_BYTES (bounded_http).
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=2.0), transport=BoundedTransport(), trust_env=False
        )
        self._next = 0
        self.heads: dict[str, int] = {}
        """The head height each node reported in its last answer."""

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def submit(self, requests: Sequence[bytes]) -> bool:
        """Hand signed transactions (their JSON bytes) to the first node that admits them (an
        observer forwards what its clients send); ``False`` when not every one was admitted."""
        return self.forward(requests).admitted

    def forward(self, requests: Sequence[bytes]) -> Forwarded:
        """:meth:`submit`, also saying which requests every node refused, and why."""
        body = b"[" + b",".join(requests) + b"]"
        first_refusal: tuple[str, str] | None = None
        definite = True  # every node answered with a refusal (not a failure, not a pause)
        for attempt in range(len(self.urls)):
            url = self.urls[(self._next + attempt) % len(self.urls)]
            try:
                answer = self._client.post(
                    f"{url}/txns", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                _log.warning("forwarding to %s failed: %s", url, exc)
                definite = False
                continue
            code, detail = _problem(answer)
            if answer.status_code == 202 or (
                answer.status_code == 409 and code == "replay" and len(requests) == 1
            ):
                return Forwarded(True, {})  # admitted, or known already (a batch's replay is one of them:
                # the node took none of it, so the others are handed in on their own below)
            if len(requests) > 1 and 400 <= answer.status_code < 500:
                # A batch is taken whole or not at all: one refused (a nonce another transaction
                # holds, say) must not keep the others out. Each is handed in on its own.
                each = [self.forward([request]) for request in requests]
                refused = {r: why for f in each for r, why in f.refused.items()}
                return Forwarded(all(f.admitted for f in each), refused)
            _log.warning("forwarding to %s refused: %s %s", url, answer.status_code, answer.text[:200])
            if 400 <= answer.status_code < 500 and answer.status_code not in _TRY_AGAIN and code:
                first_refusal = first_refusal or (code, detail)
            else:
                definite = False
        if definite and first_refusal is not None and len(requests) == 1 and self.urls:
            return Forwarded(False, {requests[0]: first_refusal})
        return Forwarded(False, {})

    def fetch(self, start: int, *, wait: float = 0.0, limit: int = 256) -> list[CertifiedBlock]:
        """Blocks from height ``start`` on, from the first node that has some (``[]`` when none has).

        ``wait`` lets each node hold the request open until it reaches ``start`` (following)."""
        if not self.urls:
            return []
        errors = []
        for attempt in range(len(self.urls)):
            url = self.urls[(self._next + attempt) % len(self.urls)]
            try:
                answer = self._client.get(
                    f"{url}/sync/blocks",
                    params={"from": start, "limit": limit, "wait": wait},
                    timeout=httpx.Timeout(wait + self.timeout, connect=2.0),
                )
                answer.raise_for_status()
                data = answer.json()
                head = data["head"]
                if type(head) is not int or head < 0:
                    raise SyncError(f"the head it claims is not a height: {head!r}"[:200])
                blocks = [CertifiedBlock.from_json(item) for item in data["blocks"]]
                self.heads[url] = head  # (a claim, from an answer that reads)
            except Exception as exc:
                errors.append(f"{url}: {exc!r}"[:500])  # (RecursionError, OverflowError: hostile JSON)
                continue
            if blocks:
                self._next = (self._next + attempt) % len(self.urls)
                return blocks
        if errors and len(errors) == len(self.urls):
            _log.warning("state transfer: no node answered: %s", "; ".join(errors))
        self._next = (self._next + 1) % len(self.urls)
        return []


def _problem(answer: httpx.Response) -> tuple[str | None, str]:
    """The ``code`` and ``detail`` of a problem answer (``None`` and ``""`` when it has none)."""
    try:
        problem = answer.json()
    except (ValueError, RecursionError):  # (JSON nested too deeply: a hostile node)
        return None, ""
    if not isinstance(problem, dict):
        return None, ""
    code, detail = problem.get("code"), problem.get("detail")
    return (
        code[:100] if isinstance(code, str) else None,
        detail[:_DETAIL_KEPT] if isinstance(detail, str) else "",
    )

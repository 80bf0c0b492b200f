"""What a certified block changes for a verifier, and the checked blocks a cache fetches from the nodes.

A part of :class:`~verifier.ledger_cache.LedgerCache`: :func:`changes_of` reads what a block's
transactions touch (:class:`Changes`: the DIDs, status list bits and issuers whose entries it drops),
and :func:`fetch_block` and :func:`fetch_blocks` fetch certified blocks, each checked against its
certificate and its header, from the first node of a client that has them. Their names are
importable from :mod:`verifier.ledger_cache` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from did_registry.client import ANSWER_ERRORS, LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.block import Block, CommitCertificate
from verifier._follower import sync_blocks

__all__ = [
    "Changes",
    "block_time",
    "changes_of",
    "fetch_block",
    "fetch_blocks",
]

_NODE_ERRORS: Final = (*ANSWER_ERRORS, DidRegistryError)  # a node's answer failing or lying: ask the next


@dataclass(frozen=True)
class Changes:
    """What one block changed for a verifier."""

    height: int
    dids: frozenset[str] = frozenset()
    """DIDs whose document changed, were deactivated, quarantined or cleared."""
    ended: frozenset[str] = frozenset()
    """DIDs that must lose their sessions (updated, deactivated or quarantined)."""
    status_set: dict[tuple[str, str], frozenset[int]] = field(default_factory=dict)
    """Bits set in ``(issuer, list)`` status lists."""
    issuers: frozenset[str] = frozenset()
    """Issuers whose accreditation or roles changed."""
    everything: bool = False
    """Too many blocks were skipped to tell: anything may have changed (every entry was dropped)."""
    time: float | None = None
    """The block's certified time (Unix seconds), when known."""


def changes_of(block: Block) -> Changes:
    """What the transactions of ``block`` touch."""
    dids: set[str] = set()
    ended: set[str] = set()
    issuers: set[str] = set()
    status_set: dict[tuple[str, str], set[int]] = {}
    for txn in block.txns:
        body, kind = txn.body, txn.type
        if kind.startswith("did."):
            dids.add(txn.submitter)
            if kind != "did.create":
                ended.add(txn.submitter)
        elif kind.startswith("quarantine.") and isinstance(body.get("did"), str):
            dids.add(body["did"])
            if kind == "quarantine.report":
                ended.add(body["did"])
        elif kind.startswith("role.") and isinstance(body.get("did"), str):
            issuers.add(body["did"])
        elif kind.startswith("trust.") and isinstance(body.get("issuer"), str):
            issuers.add(body["issuer"])
        elif kind.startswith("status_list.") and isinstance(body.get("list"), str):
            bits = status_set.setdefault((txn.submitter, body["list"]), set())
            bits.update(i for i in body.get("set", []) if isinstance(i, int))
    return Changes(
        block.header.height,
        frozenset(dids),
        frozenset(ended),
        {k: frozenset(v) for k, v in status_set.items()},
        frozenset(issuers),
        time=block_time(block),
    )


def block_time(block: Block) -> float:
    """The certified time of ``block`` (Unix seconds)."""
    return parse_timestamp(block.header.time).timestamp()


def _nodes_in_order(client: LedgerClient, first: str | None) -> list[str]:
    """The nodes of ``client``, ``first`` (when given) asked first."""
    return list(client.nodes) if first is None else [first, *(n for n in client.nodes if n != first)]


def fetch_blocks(client: LedgerClient, after: int, *, first: str | None = None) -> list[Block]:
    """The certified blocks after height ``after`` that a node has, a page of them (``GET /sync/blocks``),
    each checked against its certificate and its header, at consecutive heights: from the first node
    of ``client`` (``first`` asked first) that has at least one."""
    errors: list[str] = []
    nodes = _nodes_in_order(client, first)
    for node in nodes:
        try:
            _, blocks = sync_blocks(client, node, after)
        except _NODE_ERRORS as exc:
            errors.append(f"{node}: {exc}")
            continue
        if blocks:
            return blocks
        errors.append(f"{node}: no block after {after}")
    client.failures.extend(errors)
    raise LedgerUnavailable("; ".join(errors) or "no node")


def fetch_block(client: LedgerClient, height: int, *, first: str | None = None) -> Block:
    """Block ``height`` from any node (``first`` asked first): its certificate checked, its transactions
    checked against its header."""
    errors: list[str] = []
    nodes = _nodes_in_order(client, first)
    for node in nodes:
        try:
            response = client._http.get(f"{node.rstrip('/')}/blocks/{height}")
            response.raise_for_status()
            data = response.json()
            block = Block.from_json(data["block"])  # the transactions must hash to the header's txn_root
            certificate = data.get("certificate")
            client.verify_header(
                block.header, None if certificate is None else CommitCertificate.from_json(certificate)
            )
            if block.header.height != height:
                raise ValueError(f"asked for block {height}, got {block.header.height}")
            return block
        except _NODE_ERRORS as exc:
            errors.append(f"{node}: {exc}")
    client.failures.extend(errors)
    raise LedgerUnavailable("; ".join(errors) or "no node")

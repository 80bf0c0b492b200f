"""The ``ledger`` blueprint: what the ledger's nodes report, read-only, for every role.

``/ledger/blocks`` (recent blocks, newest first, paged with ``?before=<height>``; empty blocks, the
freshness blocks an idle network commits, left out and counted unless ``?empty=show``),
``/ledger/blocks/<h>`` (header, commit certificate, transactions), ``/ledger/validators`` (the set and
each node's ``/health``), ``/ledger/trust`` (the trust registry) and ``/ledger/quarantine``. Every
read goes to the configured node URLs (``PortalConfig.node_urls``) with :class:`NodeReader` and short
timeouts, trying each node in turn; when none is configured or none answers, the page says so.
These pages show what a node reports; the device pages read through the proving ledger client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue

from did_registry.errors import DidRegistryError
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from web.organisation import PortalError
from web.portal import portal
from web.security import role_required

__all__ = [
    "NODE_TIMEOUT",
    "BLOCK_PAGE",
    "SCAN_CHUNK",
    "SCAN_LIMIT",
    "MAX_HEIGHT",
    "EMPTY_CHOICES",
    "NodesUnavailable",
    "NodeReader",
    "node_reader",
    "BlockScan",
    "scan_blocks",
    "bp",
]

NODE_TIMEOUT: Final = 3.0
"""Seconds to wait for one node's answer (connect and read)."""
BLOCK_PAGE: Final = 20
"""Blocks per page of ``/ledger/blocks``."""
SCAN_CHUNK: Final = 100
"""Headers per node read while skipping empty blocks (at most the node's ``MAX_BLOCK_PAGE``)."""
SCAN_LIMIT: Final = 1000
"""Headers one request of ``/ledger/blocks`` reads at most while skipping empty blocks (about 2 h 45 min
of an idle network's freshness blocks); past it the page offers to continue from where it stopped."""
MAX_HEIGHT: Final = 2**53 - 1
"""The highest block height a node's answer may name (JSON's safe integers)."""
EMPTY_CHOICES: Final = ("hide", "show")
"""Values of ``/ledger/blocks?empty=``: leave out blocks without transactions (the default), or list them."""

bp = Blueprint("ledger", __name__, url_prefix="/ledger")
"""The ledger pages."""


class NodesUnavailable(PortalError):
    """No ledger node is configured, or none of them answered (the message says which)."""

    status = 503
    code = "ledger_unavailable"


class NodeReader:
    """Reads a node API's JSON from the first of ``nodes`` that answers."""

    def __init__(self, nodes: Sequence[str], *, timeout: float = NODE_TIMEOUT) -> None:
        self.nodes = [url.rstrip("/") for url in nodes]
        self.timeout = timeout

    @property
    def configured(self) -> bool:
        """Whether any node URL is configured."""
        return bool(self.nodes)

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """The JSON answer to ``GET path``; ``None`` for a 404; :class:`NodesUnavailable` if no node answers."""
        if not self.nodes:
            raise NodesUnavailable("no ledger nodes are configured (set TRELLIS_WEB_NODES)")
        errors = []
        with httpx.Client(timeout=self.timeout) as client:
            for node in self.nodes:
                try:
                    response = client.get(node + path, params=dict(params or {}))
                    if response.status_code == 404:
                        return None
                    response.raise_for_status()
                    return response.json()
                except (httpx.HTTPError, ValueError, RecursionError) as exc:  # JSON nested too deeply
                    errors.append(f"{node}: {exc or type(exc).__name__}")
        raise NodesUnavailable("no ledger node answered: " + "; ".join(errors))

    def health(self) -> list[dict[str, Any]]:
        """Each node's ``/health`` with its URL and ``reachable``; ``lag`` is blocks behind the highest."""
        answers: list[dict[str, Any]] = []
        with httpx.Client(timeout=self.timeout) as client:
            for node in self.nodes:
                try:
                    response = client.get(node + "/health")
                    response.raise_for_status()
                    data = response.json()
                    if not isinstance(data, dict):
                        raise ValueError("the answer is not a JSON object")
                    answers.append({"url": node, "reachable": True, **data})
                except (httpx.HTTPError, ValueError, RecursionError) as exc:
                    answers.append({"url": node, "reachable": False, "error": str(exc) or type(exc).__name__})
        heights = [a["height"] for a in answers if isinstance(a.get("height"), int)]
        for answer in answers:
            height = answer.get("height")
            answer["lag"] = max(heights) - height if isinstance(height, int) else None
        return answers


def node_reader() -> NodeReader:
    """A reader of the current portal's configured nodes."""
    return NodeReader(portal().config.node_urls)


def _unavailable(template: str, exc: NodesUnavailable, **context: Any) -> ResponseReturnValue:
    return render_template(template, unavailable=str(exc), **context), 503


def certificate_check(header: Any, certificate: Any, txns: Any = None) -> tuple[bool | None, str]:
    """Whether a block a node served is certified by the trusted validators (``None``: cannot check).

    The portal's ledger client holds the trust anchor (the genesis validators and the sets they
    handed over to); with ``txns`` the transactions must also hash to the header's ``txn_root``.
    """
    try:
        ledger = portal().services.ledger
    except PortalError as exc:
        return None, f"not checked: {exc}"
    try:
        parsed = (
            BlockHeader.from_json(header)
            if txns is None
            else Block.from_json({"header": header, "txns": txns}).header  # txns must match txn_root
        )
        ledger.verify_header(
            parsed, None if certificate is None else CommitCertificate.from_json(certificate)
        )
    except (DidRegistryError, ValueError, KeyError, TypeError) as exc:
        return False, f"NOT VERIFIED: {exc}"
    if parsed.height == 0:
        return True, "the trusted genesis block"
    signers = len(certificate["signatures"]) if isinstance(certificate, dict) else 0
    return True, f"verified: {signers} signatures of the trusted validators" + (
        ", transactions match the header" if txns is not None else ""
    )


def _height_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def _empty_arg() -> str:
    raw = request.args.get("empty", "")
    if raw and raw not in EMPTY_CHOICES:
        abort(
            400,
            "The query parameter 'empty' must be 'hide' (leave out blocks without transactions) or 'show'.",
        )
    return raw or EMPTY_CHOICES[0]


def _is_empty(item: Mapping[str, Any]) -> bool:
    """A block after genesis whose header says it carries no transactions (a freshness block)."""
    header = item.get("header")
    if not isinstance(header, dict):
        return False
    count = header.get("txn_count")
    return header.get("height") != 0 and isinstance(count, int) and not isinstance(count, bool) and count == 0


def _head_height(answer: Any) -> int:
    """The height of a node's ``/blocks/head`` answer; :class:`NodesUnavailable` saying why when the
    answer does not name one (a node always has a head: genesis at least)."""
    block = answer.get("block") if isinstance(answer, dict) else None
    header = block.get("header") if isinstance(block, dict) else None
    height = header.get("height") if isinstance(header, dict) else None
    if type(height) is not int or not 0 <= height <= MAX_HEIGHT:
        shown = "no answer (404)" if answer is None else f"block.header.height {height!r}"[:80]
        raise NodesUnavailable(
            f"the node's /blocks/head answer does not name the head block's height (a whole number from "
            f"0 to {MAX_HEIGHT}): {shown}"
        )
    return height


def _headers(reader: NodeReader, first: int, last: int) -> list[dict[str, Any]]:
    """Headers and certificates ``first`` to ``last`` from a node, ascending; every height or an error."""
    answer = reader.get("/blocks", {"from": first, "limit": last - first + 1})
    items = answer.get("blocks") if isinstance(answer, dict) else None
    heights = [
        item["header"].get("height")
        if isinstance(item, dict) and isinstance(item.get("header"), dict)
        else None
        for item in items or []
    ]
    if heights != list(range(first, last + 1)):
        # with empty blocks left out, a block missing from the answer would vanish without a trace
        raise NodesUnavailable(f"the node's answer for blocks {first} to {last} did not list each of them")
    return list(items or [])


@dataclass
class BlockScan:
    """What one request of ``/ledger/blocks`` read: heights ``low`` to ``last``, newest first."""

    last: int
    low: int
    items: list[dict[str, Any]] = field(default_factory=list)
    """The blocks to show, newest first (at most :data:`BLOCK_PAGE`)."""
    skipped: int = 0
    """Empty blocks in ``low`` to ``last`` that were left out (each checked first, see ``unchecked``)."""
    flagged: int = 0
    """Blocks whose header says they are empty but whose certificate the check refused: listed (with
    the reason) rather than left out, since their ``txn_count`` cannot be trusted."""
    unchecked: str | None = None
    """Why the left-out blocks could not be checked (no ledger client); ``None`` when each was."""
    read: int = 0
    """Headers read from the node."""

    @property
    def older(self) -> int | None:
        """The ``before`` of the next page: the lowest height read (``None`` once genesis was read)."""
        return self.low if self.low > 0 else None

    @property
    def stopped(self) -> bool:
        """Whether the read stopped at :data:`SCAN_LIMIT` before filling the page or reaching genesis."""
        return self.low > 0 and len(self.items) < BLOCK_PAGE


def scan_blocks(reader: NodeReader, last: int, *, hide_empty: bool) -> BlockScan:
    """Blocks from ``last`` down, newest first, until :data:`BLOCK_PAGE` are found or genesis is read;
    with ``hide_empty``, empty blocks are counted instead of listed, and at most :data:`SCAN_LIMIT`
    headers are read. ``low`` is the last height looked at, so the next page (``before=low``)
    neither repeats nor misses a block.

    Every block looked at has its certificate checked (``item["check"]``, :func:`certificate_check`)
    before it is left out or listed: ``txn_count`` is part of the certified header, so a node that
    rewrote it to hide a block fails the check, and such a block is listed with the reason
    (``flagged``) instead of vanishing. When no check can be made (no ledger client), empty blocks are
    left out as the node's headers say and ``unchecked`` says why."""
    scan = BlockScan(last=last, low=last + 1)
    while scan.low > 0 and len(scan.items) < BLOCK_PAGE:
        if hide_empty:
            if scan.read >= SCAN_LIMIT:
                break
            size = min(SCAN_CHUNK, SCAN_LIMIT - scan.read)
        else:
            size = BLOCK_PAGE - len(scan.items)
        first = max(0, scan.low - size)
        chunk = _headers(reader, first, scan.low - 1)
        scan.read += len(chunk)
        for item in reversed(chunk):
            if len(scan.items) == BLOCK_PAGE:
                break
            scan.low = int(item["header"]["height"])
            item["check"] = certificate_check(item.get("header"), item.get("certificate"))
            if hide_empty and _is_empty(item):
                verified, reason = item["check"]
                if verified is False:  # the header is not the certified one: its txn_count is no evidence
                    scan.flagged += 1
                    scan.items.append(item)
                    continue
                if verified is None and scan.unchecked is None:
                    scan.unchecked = reason
                scan.skipped += 1
            else:
                scan.items.append(item)
    return scan


@bp.get("/blocks")
@role_required()
def blocks() -> ResponseReturnValue:
    """Recent blocks, newest first: proposer, transaction count, certificate signers (``?before=<h>``);
    empty blocks left out and counted (``?empty=hide``, the default) or listed (``?empty=show``)."""
    reader = node_reader()
    before = _height_arg("before")
    empty = _empty_arg()
    context: dict[str, Any] = {"empty": empty, "before": before, "head": None, "scan": None}
    try:
        top = _head_height(reader.get("/blocks/head"))
        last = top if before is None else min(top, before - 1)
        scan = scan_blocks(reader, last, hide_empty=empty == "hide")
    except NodesUnavailable as exc:
        return _unavailable("ledger_blocks.html", exc, items=[], older=None, **context)
    context.update(head=top, scan=scan)
    return render_template(
        "ledger_blocks.html", items=scan.items, older=scan.older, unavailable=None, **context
    )


@bp.get(f"/blocks/<int(max={MAX_HEIGHT}):height>")
@role_required()
def block(height: int) -> ResponseReturnValue:
    """One block: its header, commit certificate and transactions."""
    try:
        found = node_reader().get(f"/blocks/{height}")
    except NodesUnavailable as exc:
        return _unavailable("ledger_block.html", exc, height=height, found=None)
    if found is None:
        abort(404, f"The ledger has no block {height} yet.")
    block = found.get("block") if isinstance(found, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("header"), dict):
        error = NodesUnavailable(f"the node's answer for block {height} holds no block header")
        return _unavailable("ledger_block.html", error, height=height, found=None)
    check = certificate_check(block.get("header"), found.get("certificate"), block.get("txns"))
    return render_template("ledger_block.html", height=height, found=found, check=check, unavailable=None)


@bp.get("/validators")
@role_required()
def validators() -> ResponseReturnValue:
    """The validator set in force, and each configured node's health."""
    reader = node_reader()
    nodes = reader.health()
    try:
        validator_set = reader.get("/validators")
    except NodesUnavailable as exc:
        return _unavailable("ledger_validators.html", exc, validator_set=None, nodes=nodes)
    return render_template(
        "ledger_validators.html", validator_set=validator_set, nodes=nodes, unavailable=None
    )


def _paged(path: str, key: str) -> tuple[list[Any], str | None]:
    after = request.args.get("after", "")
    answer = node_reader().get(path, {"after": after} if after else None)
    if answer is None:  # a 404: nothing there
        answer = {}
    items = answer.get(key, []) if isinstance(answer, dict) else None
    following = answer.get("next") if isinstance(answer, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise NodesUnavailable(f"the node's {path} answer does not hold a list of {key}")
    if following is not None and not isinstance(following, str):
        raise NodesUnavailable(f"the node's {path} answer names its next page with {following!r}"[:200])
    return items, following


@bp.get("/trust")
@role_required()
def trust() -> ResponseReturnValue:
    """The trust registry: accredited issuers and the credential types each may issue."""
    try:
        issuers, following = _paged("/trust-registry", "issuers")
    except NodesUnavailable as exc:
        return _unavailable("ledger_trust.html", exc, issuers=[], following=None)
    return render_template("ledger_trust.html", issuers=issuers, following=following, unavailable=None)


@bp.get("/quarantine")
@role_required()
def quarantine() -> ResponseReturnValue:
    """Quarantine reports in force: device, evidence, reporter, height."""
    try:
        entries, following = _paged("/quarantine", "entries")
    except NodesUnavailable as exc:
        return _unavailable("ledger_quarantine.html", exc, entries=[], following=None)
    return render_template("ledger_quarantine.html", entries=entries, following=following, unavailable=None)

"""The ``ledger`` blueprint: what the ledger's nodes report, read-only, for every role.

``/ledger/blocks`` (recent blocks, newest first, paged with ``?before=<height>``),
``/ledger/blocks/<h>`` (header, commit certificate, transactions), ``/ledger/validators`` (the set and
each node's ``/health``), ``/ledger/trust`` (the trust registry) and ``/ledger/quarantine``. Every
read goes to the configured node URLs (``PortalConfig.node_urls``) with :class:`NodeReader` and short
timeouts, trying each node in turn; when none is configured or none answers, the page says so.
These pages show what a node reports; the device pages read through the proving ledger client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue

from did_registry.errors import DidRegistryError
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from web.organisation import PortalError
from web.portal import portal
from web.security import role_required

__all__ = ["NODE_TIMEOUT", "BLOCK_PAGE", "NodesUnavailable", "NodeReader", "node_reader", "bp"]

NODE_TIMEOUT: Final = 3.0
"""Seconds to wait for one node's answer (connect and read)."""
BLOCK_PAGE: Final = 20
"""Blocks per page of ``/ledger/blocks``."""

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
                except (httpx.HTTPError, ValueError) as exc:
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
                except (httpx.HTTPError, ValueError) as exc:
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


@bp.get("/blocks")
@role_required()
def blocks() -> ResponseReturnValue:
    """Recent blocks, newest first: proposer, transaction count, certificate signers (``?before=<h>``)."""
    reader = node_reader()
    before = _height_arg("before")
    try:
        head = reader.get("/blocks/head")
        top = int(head["block"]["header"]["height"]) if head else 0
        last = top if before is None else min(top, before - 1)
        start = max(0, last - BLOCK_PAGE + 1)
        page = reader.get("/blocks", {"from": start, "limit": last - start + 1}) if last >= 0 else None
    except NodesUnavailable as exc:
        return _unavailable("ledger_blocks.html", exc, items=[], older=None, head=None)
    items = list(reversed(page["blocks"])) if page else []
    for item in items:
        item["check"] = certificate_check(item.get("header"), item.get("certificate"))
    return render_template(
        "ledger_blocks.html", items=items, older=start if start > 0 else None, head=top, unavailable=None
    )


@bp.get("/blocks/<int:height>")
@role_required()
def block(height: int) -> ResponseReturnValue:
    """One block: its header, commit certificate and transactions."""
    try:
        found = node_reader().get(f"/blocks/{height}")
    except NodesUnavailable as exc:
        return _unavailable("ledger_block.html", exc, height=height, found=None)
    if found is None:
        abort(404, f"The ledger has no block {height} yet.")
    block = found.get("block") or {}
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
    answer = node_reader().get(path, {"after": after} if after else None) or {}
    return list(answer.get(key, [])), answer.get("next")


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

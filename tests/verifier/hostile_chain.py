"""A hand-committed chain (real certificates, set changes) for the verifier's tests with hostile nodes
and forged headers: the ledger, a router of node hosts, and helpers to forge certified headers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import Node
from tests.did_registry.validator_chain import SetChangeChain
from tests.verifier.conftest_ledger import AUDIENCE, REVOCATION, SUSPENSION, Clock, Device, Ledger
from verifier import Verifier

__all__ = [
    "NESTED",
    "HandChain",
    "Router",
    "authenticate",
    "block_at",
    "forge",
    "forged_block",
    "genesis_keys",
    "hand_chain",
    "nested_answer",
    "replace_quorum",
]

NESTED = b"[" * 100_000 + b"]" * 100_000
"""JSON nested deeper than the parser goes (``RecursionError``)."""


@dataclass
class HandChain(Ledger):
    """The verifier tests' ledger on a four-validator chain whose blocks are committed by hand."""

    chain: SetChangeChain | None = None

    @property
    def hand(self) -> SetChangeChain:
        assert self.chain is not None
        return self.chain

    def commit(self, *txns: Any) -> None:
        self.hand.block(*txns)

    def freshness_block(self) -> None:
        self.hand.block()


def hand_chain() -> HandChain:
    """Genesis v1..v4, an accredited issuer with its two lists, blocks dated by the test clock."""
    clock = Clock()
    chain = SetChangeChain(clock=lambda: datetime.fromtimestamp(clock(), UTC))
    node = Node(
        chain.service, chain.wsgi, chain.wsgi.test_client(), chain.trustee, Ed25519PrivateKey.generate()
    )
    trustee, issuer = chain.trustee, new_actor()
    chain.block(issuer.txn("did.create", {"document": issuer.document()}, trustee))
    chain.block(trustee.txn("role.grant", {"did": issuer.did, "role": "issuer"}))
    chain.block(trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
    chain.block(
        issuer.txn("status_list.create", {"list": REVOCATION, "purpose": "revocation"}),
        issuer.txn("status_list.create", {"list": SUSPENSION, "purpose": "suspension"}),
    )
    return HandChain(node, chain.client(), issuer, clock, chain=chain)


def replace_quorum(chain: SetChangeChain) -> int:
    """v5, v6, v7 join and v1, v2, v3 leave, all at one height (returned): the genesis quorum is out."""
    effective = chain.height + 2
    chain.block(
        chain.add("v5", effective),
        chain.add("v6", effective),
        chain.add("v7", effective),
        chain.remove("v1", effective),
        chain.remove("v2", effective),
        chain.remove("v3", effective),
    )
    chain.empty_blocks(2)
    return effective


def genesis_keys(
    chain: SetChangeChain, ids: Iterable[str] = ("v1", "v2", "v3")
) -> dict[str, Ed25519PrivateKey]:
    """The keys of genesis validators ``ids``, by id."""
    by_id = {v["id"]: v["public_key"] for v in chain.genesis.validators}
    return {i: chain.keys[by_id[i]] for i in ids}


def forge(
    header_json: dict[str, Any], signers: dict[str, Ed25519PrivateKey], **changes: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A header like ``header_json`` with ``changes`` and a certificate of it by ``signers`` (JSON)."""
    header = BlockHeader.from_json({**header_json, **changes})
    certificate = CommitCertificate(
        header.height,
        header.hash.hex(),
        {i: CommitCertificate.sign(header.hash, key) for i, key in signers.items()},
    )
    return header.to_json(), certificate.to_json()


def block_at(chain: SetChangeChain, height: int) -> Block:
    """Committed block ``height``."""
    found = chain.app.store.block(height)
    assert found is not None
    block: Block = found[0]
    return block


def forged_block(block: Block, **changes: Any) -> Block:
    """``block`` with its header changed (its transactions still match: only the header moves)."""
    return Block(BlockHeader.from_json({**block.header.to_json(), **changes}), block.txns)


class Router(httpx.BaseTransport):
    """Node hosts to a handler (``request -> response``) or a transport."""

    def __init__(
        self, routes: dict[str, httpx.BaseTransport | Callable[[httpx.Request], httpx.Response]]
    ) -> None:
        self.routes = routes
        self.asked: list[tuple[str, str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route = self.routes[request.url.host]
        self.asked.append((request.url.host, request.method, request.url.path))
        if isinstance(route, httpx.BaseTransport):
            return route.handle_request(request)
        return route(request)


def nested_answer() -> httpx.Response:
    """A 200 answer whose JSON is nested too deeply to parse."""
    return httpx.Response(200, content=NESTED, headers={"content-type": "application/json"})


def authenticate(ledger: Ledger, verifier: Verifier, device: Device) -> str:
    """The DID ``verifier`` admits for ``device``'s presentation (or ``Refused``)."""
    answer = ledger.present(device, verifier.challenge(AUDIENCE))
    return verifier.authenticate_presentation(answer, AUDIENCE).did

"""LedgerClient: every answer checked; a lying node is caught; submissions wait for commitment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from did_registry.client import (
    FAILURES_KEPT,
    LedgerClient,
    LedgerUnavailable,
    RefusedByEveryNode,
    TrellisResolver,
    UntrustedValidatorSet,
)
from did_registry.errors import InvalidProof
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.txn import TxnRejected
from did_registry.node.api import create_app
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import Node, make_node

Mutate = Callable[[str, dict[str, Any]], dict[str, Any]]


class LyingTransport(httpx.BaseTransport):
    """Serves the real node, then rewrites the JSON of answers whose path matches."""

    def __init__(self, node: Node, path: str, mutate: Mutate) -> None:
        self._inner = httpx.WSGITransport(app=node.app)
        self._path, self._mutate = path, mutate

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != self._path or response.status_code != 200:
            return response
        body = self._mutate(request.method, json.loads(response.read()))
        return httpx.Response(200, json=body)


@pytest.fixture
def node() -> Iterator[Node]:
    """A node with its block producer running."""
    made = make_node(block_interval=0.005)
    made.service.start()
    yield made
    made.service.stop()


def client_for(
    node: Node, transport: httpx.BaseTransport | None = None, *, genesis: Any = None
) -> LedgerClient:
    """A client whose only node is ``node`` (through ``transport``)."""
    return LedgerClient(
        "http://node-1",
        genesis or node.service.app.genesis,
        transport=transport or httpx.WSGITransport(app=node.app),
    )


def test_submit_wait_and_resolve(node: Node) -> None:
    """A DID created through the client is committed and resolves with proofs checked."""
    client = client_for(node)
    device = new_actor()
    statuses = client.submit_and_wait(
        device.txn("did.create", {"document": device.document()}, node.trustee), 10
    )
    assert statuses[0]["status"] == "committed"
    result = client.resolve(device.did)
    assert result.error is None and result.did_document is not None
    assert str(result.did_document.id) == device.did
    assert result.did_document_metadata.version_id == "1"


def test_rejection_is_raised(node: Node) -> None:
    """A transaction the node refuses raises TxnRejected with the node's code."""
    device = new_actor()
    with pytest.raises(TxnRejected) as refused:
        client_for(node).submit(device.txn("did.create", {"document": device.document()}))
    assert refused.value.code == "forbidden"


def test_absent_did_is_not_found(node: Node) -> None:
    """A DID that is not on the ledger resolves to notFound (its absence proven)."""
    assert client_for(node).resolve(new_actor().did).error == "notFound"


def test_other_methods_and_networks(node: Node) -> None:
    """did:key is not this client's; another network's did:trellis is notFound; junk is invalidDid."""
    client = client_for(node)
    assert client.resolve("did:key:z6Mkabc").error == "methodNotSupported"
    assert client.resolve("did:trellis:othernet:4mJ1PRfKvTDzaWMTnMpTqq").error == "notFound"
    assert client.resolve("did:trellis:").error == "invalidDid"


def test_resolve_many_checks_one_header(node: Node) -> None:
    """A batch of DIDs resolves in one proven read, absent ones as notFound."""
    client = client_for(node)
    actors = [new_actor() for _ in range(5)]
    client.submit_and_wait(
        [a.txn("did.create", {"document": a.document()}, node.trustee) for a in actors], 10
    )
    results = client.resolve_many([a.did for a in actors] + [new_actor().did])
    assert [r.error for r in results] == [None] * 5 + ["notFound"]


def test_version_history(node: Node) -> None:
    """versionId 1 resolves the first document after an update."""
    client = client_for(node)
    device = node.onboard()
    assert client.resolve(device.did, version_id="1").did_document_metadata.version_id == "1"
    assert client.resolve(device.did, version_id="9").error == "notFound"


def _flip_value(method: str, body: dict[str, Any]) -> dict[str, Any]:
    if method == "GET":
        body["value"]["deactivated"] = True
    else:
        body["proofs"][0]["value"]["deactivated"] = True
    return body


def _hide_value(method: str, body: dict[str, Any]) -> dict[str, Any]:
    if method == "GET":
        body["value"] = None
    else:
        body["proofs"][0]["value"] = None
    return body


def _forge_root(method: str, body: dict[str, Any]) -> dict[str, Any]:
    body["header"]["state_root"] = "00" * 32
    return body


def _forge_certificate(method: str, body: dict[str, Any]) -> dict[str, Any]:
    forger = Ed25519PrivateKey.generate()
    from did_registry.ledger.block import BlockHeader

    header = BlockHeader.from_json(body["header"])
    body["certificate"] = CommitCertificate(
        header.height, header.hash.hex(), {"node-1": CommitCertificate.sign(header.hash, forger)}
    ).to_json()
    return body


def _drop_certificate(method: str, body: dict[str, Any]) -> dict[str, Any]:
    body["certificate"] = None
    return body


LIES = [_flip_value, _hide_value, _forge_root, _forge_certificate, _drop_certificate]


@pytest.mark.parametrize("lie", LIES, ids=lambda f: f.__name__.strip("_"))
def test_lying_node_is_caught(node: Node, lie: Mutate) -> None:
    """Whatever a node changes in a proof answer, the client refuses it (single and batched reads)."""
    device = node.onboard()
    liar = client_for(node, LyingTransport(node, "/proofs/state", lie))
    with pytest.raises(LedgerUnavailable) as caught:
        liar.resolve(device.did)
    assert "proof" in str(caught.value) or "certificate" in str(caught.value)
    with pytest.raises(LedgerUnavailable):
        liar.resolve_many([device.did])


def test_an_honest_node_is_used_after_a_liar(node: Node) -> None:
    """With a liar first and an honest node second, the client gets the right answer and notes the lie."""
    device = node.onboard()
    honest = httpx.WSGITransport(app=node.app)
    liar = LyingTransport(node, "/proofs/state", _flip_value)

    class Router(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return (liar if request.url.host == "liar" else honest).handle_request(request)

    client = LedgerClient(["http://liar", "http://honest"], node.service.app.genesis, transport=Router())
    result = client.resolve(device.did)
    assert result.did_document_metadata.deactivated is False
    assert any("liar" in failure for failure in client.failures)


def test_unknown_validator_set_is_refused(node: Node) -> None:
    """A client anchored in another genesis trusts none of this network's certificates."""
    other = make_node()
    device = node.onboard()
    client = client_for(node, genesis=other.service.app.genesis)
    with pytest.raises(LedgerUnavailable) as caught:
        client.prove(f"did:{device.did}")
    assert "validator set" in str(caught.value) or "genesis" in str(caught.value)
    assert issubclass(UntrustedValidatorSet, InvalidProof)


def test_follow_yields_certified_headers(node: Node) -> None:
    """The header stream yields each new committed header, checked, in order."""
    client = client_for(node, httpx.WSGITransport(app=node.app))
    node.onboard()
    node.onboard()  # two committed blocks, so the stream has both to replay
    heights = [h.height for h in client.follow(after=0, max_events=2)]
    assert heights == [1, 2]


def test_resolver_protocol(node: Node) -> None:
    """TrellisResolver plugs the client into anything that takes a Resolver."""
    device = node.onboard()
    assert TrellisResolver(client_for(node)).resolve(device.did).error is None


def test_transaction_inclusion_is_proven(node: Node) -> None:
    """A committed transaction comes with an RFC 6962 path to its certified block's txn_root."""
    client = client_for(node)
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    client.submit_and_wait(txn, 10)
    proven, header = client.txn_proof(txn.id)
    assert proven.id == txn.id and header.txn_count >= 1


def _swap_txn(method: str, body: dict[str, Any]) -> dict[str, Any]:
    body["txn"]["body"]["document"]["id"] = "did:trellis:x:y"
    return body


def test_forged_transaction_inclusion_is_caught(node: Node) -> None:
    """A node that alters a committed transaction cannot prove it included."""
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    client_for(node).submit_and_wait(txn, 10)
    liar = client_for(node, LyingTransport(node, f"/txns/{txn.id}/proof", _swap_txn))
    with pytest.raises(LedgerUnavailable):
        liar.txn_proof(txn.id)


class _Counting(httpx.BaseTransport):
    """Serves ``node``'s state proofs, counting them; calls ``after`` once a proof answer is served."""

    def __init__(self, node: Node, after: Callable[[], None] = lambda: None) -> None:
        self._inner = httpx.WSGITransport(app=node.app)
        self._after = after
        self.proofs = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path == "/proofs/state":
            self.proofs += 1
            response.read()
            self._after()
        return response


class _FakeTime:
    """``time.monotonic`` and ``time.sleep`` for the client module: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_read_waits_for_a_node_behind_to_reach_the_height_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When every node answers as of a block before ``min_height``, the read asks again until one has
    it (nodes commit a block moments apart) instead of failing at once."""
    clock = _FakeTime()
    monkeypatch.setattr("did_registry.proven_reads.time", clock)
    node = make_node()  # no block producer: blocks are made here
    try:
        device = node.onboard()
        pending = new_actor()
        submitted = node.submit(pending.txn("did.create", {"document": pending.document()}, node.trustee))
        assert submitted.status_code == 202
        head = node.service.app.head
        made: list[int] = []

        def commit_once() -> None:  # the node reaches the next block just after its first answer
            if not made:
                header = node.service.produce_block()
                assert header is not None
                made.append(header.height)

        transport = _Counting(node, commit_once)
        client = LedgerClient("http://node-1", node.service.app.genesis, transport=transport)
        values, header = client.prove_many([f"did:{device.did}"], min_height=head.height + 1)
        assert header.height == made[0] == head.height + 1
        assert values[0] is not None
        assert transport.proofs == 2 and len(clock.slept) == 1  # the first answer was behind
        assert any("behind block" in failure for failure in client.failures)
    finally:
        node.service.stop()


def test_a_read_fails_when_no_node_reaches_the_height_within_behind_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nodes that stay behind: ``LedgerUnavailable`` naming the heights, after asking again with a
    growing pause, never pausing past ``behind_wait``."""
    clock = _FakeTime()
    monkeypatch.setattr("did_registry.proven_reads.time", clock)
    node = make_node()
    try:
        device = node.onboard()
        head = node.service.app.head
        transport = _Counting(node)
        client = LedgerClient("http://node-1", node.service.app.genesis, transport=transport, behind_wait=1.0)
        with pytest.raises(LedgerUnavailable, match=f"behind block {head.height + 1}"):
            client.prove_many([f"did:{device.did}"], min_height=head.height + 1)
        assert transport.proofs == len(clock.slept) + 1 > 2
        assert clock.slept == sorted(clock.slept) and max(clock.slept) <= 0.2
        assert sum(clock.slept) <= 1.0
    finally:
        node.service.stop()


def test_a_read_from_unreachable_nodes_fails_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes that do not answer at all are not asked again: an offline verifier refuses at once."""
    clock = _FakeTime()
    monkeypatch.setattr("did_registry.proven_reads.time", clock)
    calls: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        raise httpx.ConnectError("connection refused", request=request)

    node = make_node()
    client = LedgerClient(
        ["http://a", "http://b"], node.service.app.genesis, transport=httpx.MockTransport(down)
    )
    with pytest.raises(LedgerUnavailable, match="connection refused"):
        client.prove_many(["did:x"], min_height=5)
    assert len(calls) == 2 and clock.slept == []


@pytest.mark.parametrize("wait", [-1.0, float("nan"), float("inf"), True, "2"])
def test_a_behind_wait_that_is_not_a_finite_number_of_seconds_is_refused(wait: Any) -> None:
    node = make_node()
    with pytest.raises(ValueError, match="behind_wait"):
        LedgerClient("http://a", node.service.app.genesis, behind_wait=wait)


def test_the_failures_a_client_keeps_are_bounded() -> None:
    """A long-lived client (a verifier's) keeps the latest FAILURES_KEPT failures, not every one."""

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    node = make_node()
    client = LedgerClient(
        ["http://a", "http://b"], node.service.app.genesis, transport=httpx.MockTransport(down)
    )
    for _ in range(FAILURES_KEPT // 2 + 10):
        with pytest.raises(LedgerUnavailable):
            client.prove_many(["did:x"])
    assert len(client.failures) == FAILURES_KEPT
    assert all("connection refused" in failure for failure in client.failures)


class _Replaying(httpx.BaseTransport):
    """``http://stale`` answers /proofs/state and /blocks/head with answers saved earlier (certified,
    but as of an older block); every other host is the real node."""

    def __init__(self, node: Node, saved: dict[str, Any]) -> None:
        self._inner = httpx.WSGITransport(app=node.app)
        self.saved = saved

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "stale" and request.url.path in self.saved:
            return httpx.Response(200, json=self.saved[request.url.path])
        return self._inner.handle_request(request)


def test_an_answer_older_than_a_block_already_seen_is_passed_over(node: Node) -> None:
    """A node replaying (or lagging behind) the block where a DID was still active cannot undo its
    deactivation for a client that has seen a newer block: the client reads from another node."""
    victim = node.onboard()
    saved = {
        "/proofs/state": node.client.get(
            "/proofs/state", query_string={"key": f"did:{victim.did}"}
        ).get_json(),
        "/blocks/head": node.client.get("/blocks/head").get_json(),
    }
    node.commit(victim.txn("did.deactivate", {}))
    transport = _Replaying(node, saved)
    client = LedgerClient(["http://node-1"], node.service.app.genesis, transport=transport)
    newest = client.head().height
    client.nodes = ["http://stale", "http://node-1"]
    assert client.resolve(victim.did).did_document_metadata.deactivated is True
    assert client.head().height == newest
    assert any("http://stale" in failure and "behind" in failure for failure in client.failures)


def test_only_older_answers_are_refused_after_waiting(node: Node) -> None:
    victim = node.onboard()
    saved = {
        "/proofs/state": node.client.get(
            "/proofs/state", query_string={"key": f"did:{victim.did}"}
        ).get_json()
    }
    node.commit(victim.txn("did.deactivate", {}))
    client = LedgerClient(
        ["http://node-1"], node.service.app.genesis, transport=_Replaying(node, saved), behind_wait=0
    )
    client.head()
    client.nodes = ["http://stale"]
    with pytest.raises(LedgerUnavailable, match="behind block"):
        client.resolve_record(victim.did)


def test_a_header_of_another_network_is_refused(node: Node) -> None:
    client = client_for(node)
    header = client.head()
    other = BlockHeader.from_json({**header.to_json(), "network": "othernet"})
    with pytest.raises(InvalidProof, match="network"):
        client.verify_header(other, None)


def test_head_asks_the_next_node_when_one_answers_nonsense(node: Node) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "broken":
            return httpx.Response(404, json={"type": "about:blank"})
        return httpx.WSGITransport(app=node.app).handle_request(request)

    client = LedgerClient(
        ["http://broken", "http://node-1"], node.service.app.genesis, transport=httpx.MockTransport(handler)
    )
    assert client.head().height >= 0
    assert any("http://broken" in failure for failure in client.failures)


def test_wait_returns_at_its_timeout_whatever_the_node_says(node: Node) -> None:
    """A node answering with nothing about the ids asked for cannot hold wait() past its timeout."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"txns": []})

    client = LedgerClient(["http://mute"], node.service.app.genesis, transport=httpx.MockTransport(handler))
    started = time.monotonic()
    assert client.wait(["ab" * 32], timeout=0.3) == [{"id": "ab" * 32, "status": "pending"}]
    assert time.monotonic() - started < 5


def test_submit_and_wait_does_not_take_a_node_s_word_for_a_commit(node: Node) -> None:
    """A node that reports 'committed' for a transaction no certified block holds is not believed."""
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/txns":
            return httpx.Response(202, json={"txns": [{"id": txn.id, "status": "pending"}]})
        if request.url.path == "/txns/status":
            return httpx.Response(200, json={"txns": [{"id": txn.id, "status": "committed", "height": 99}]})
        return httpx.WSGITransport(app=node.app).handle_request(request)

    client = LedgerClient(["http://liar"], node.service.app.genesis, transport=httpx.MockTransport(handler))
    with pytest.raises(LedgerUnavailable):
        client.submit_and_wait(txn, timeout=2)


def test_a_version_id_in_other_digits_is_invalid(node: Node) -> None:
    assert client_for(node).resolve(new_actor().did, version_id="\u00b2").error == "invalidOptions"


def test_follow_resumes_a_stream_the_node_ends_while_nothing_is_committed(node: Node) -> None:
    """A node ends each header stream after its lifetime; a quiet spell longer than that is no reason
    to give the node up: follow() reconnects and yields the next block when it comes."""
    app = create_app(node.service, heartbeat_s=0.05, stream_lifetime_s=0.2)
    client = LedgerClient("http://node-1", node.service.app.genesis, transport=httpx.WSGITransport(app=app))
    head = client.head().height
    committer = threading.Timer(1.0, node.onboard)  # after several lifetimes with nothing committed
    committer.start()
    try:
        heights = [h.height for h in client.follow(after=head, max_events=1)]
    finally:
        committer.join()
    assert heights == [head + 1]


def test_the_highest_head_does_not_wait_for_a_node_that_does_not_answer(node: Node) -> None:
    """All nodes are asked at once; past the deadline the best answer so far is taken, so a node that
    hangs does not hold the reader for the client's whole timeout."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hanging":
            time.sleep(3)
            return httpx.Response(504)
        return httpx.WSGITransport(app=node.app).handle_request(request)

    client = LedgerClient(
        ["http://hanging", "http://node-1"], node.service.app.genesis, transport=httpx.MockTransport(handler)
    )
    node.onboard()
    started = time.monotonic()
    assert client.highest_head(deadline=0.3).height == node.service.app.height
    assert time.monotonic() - started < 2


def _liar_then(node: Node, refusal: httpx.Response) -> httpx.MockTransport:
    """A transport on which node http://liar answers every submission with ``refusal`` and
    http://node-1 is ``node``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "liar" and request.url.path == "/txns":
            return refusal
        return httpx.WSGITransport(app=node.app).handle_request(request)

    return httpx.MockTransport(handler)


def test_a_refusal_by_one_node_is_not_the_last_word(node: Node) -> None:
    """A node refusing a good transaction (lying, or behind) does not keep it out: the next node is
    asked, admits it, and the refusal is kept among the client's failures."""
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    forged = httpx.Response(403, json={"code": "forbidden", "detail": "no such endorser", "txn": txn.id})
    client = LedgerClient(
        ["http://liar", "http://node-1"], node.service.app.genesis, transport=_liar_then(node, forged)
    )
    assert client.submit(txn) == [txn.id]
    assert any(f.startswith("http://liar: refused: forbidden") for f in client.failures)


def test_a_refusal_every_node_gives_is_raised(node: Node) -> None:
    """When every node refuses, the first refusal is raised with its code."""
    device = new_actor()
    unendorsed = device.txn("did.create", {"document": device.document()})
    forged = httpx.Response(400, json={"code": "malformed", "detail": "no", "txn": unendorsed.id})
    client = LedgerClient(
        ["http://liar", "http://node-1"], node.service.app.genesis, transport=_liar_then(node, forged)
    )
    with pytest.raises(TxnRejected) as refused:
        client.submit(unendorsed)
    assert (refused.value.code, refused.value.detail) == ("malformed", "no")
    assert any("forbidden" in f for f in client.failures)  # the honest node's own refusal, noted


def test_overloaded_is_raised_at_once(node: Node) -> None:
    """A 503 overloaded is the network asking for a pause: raised without asking the next node."""
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    busy = httpx.Response(503, json={"code": "overloaded", "detail": "try again"})
    client = LedgerClient(
        ["http://liar", "http://node-1"], node.service.app.genesis, transport=_liar_then(node, busy)
    )
    with pytest.raises(TxnRejected) as refused:
        client.submit(txn)
    assert refused.value.code == "overloaded"
    assert node.service.status(txn.id).status == "unknown"


@pytest.mark.parametrize("status", [202, 400])
def test_an_answer_nested_too_deeply_is_that_node_failing(node: Node, status: int) -> None:
    """A hostile node's submission answer nested too deeply passes to the next node (it raised
    RecursionError out of submit)."""
    device = new_actor()
    txn = device.txn("did.create", {"document": device.document()}, node.trustee)
    deep = httpx.Response(status, content=b"[" * 100_000, headers={"Content-Type": "application/json"})
    client = LedgerClient(
        ["http://liar", "http://node-1"], node.service.app.genesis, transport=_liar_then(node, deep)
    )
    assert client.submit(txn) == [txn.id]


def test_every_nodes_refusal_code_is_kept(node: Node) -> None:
    device = new_actor()
    unendorsed = device.txn("did.create", {"document": device.document()})
    forged = httpx.Response(400, json={"code": "malformed", "detail": "no"})
    client = LedgerClient(
        ["http://liar", "http://node-1"], node.service.app.genesis, transport=_liar_then(node, forged)
    )
    with pytest.raises(RefusedByEveryNode) as refused:
        client.submit(unendorsed)
    assert refused.value.codes == ("malformed", "forbidden")

"""The replica drives PBFT and round-robin over the real transport, in one process, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.txn import Transaction
from tests.did_registry.ledger.conftest import creates, new_actor
from tests.did_registry.node.cluster import Cluster


def submit(url: str, txns: list[Transaction]) -> None:
    answer = httpx.post(f"{url}/txns", json=[t.to_json() for t in txns], timeout=10)
    assert answer.status_code == 202, answer.text


def state_roots(cluster: Cluster) -> set[str]:
    roots = set()
    for node in cluster.running():
        assert node.service is not None
        roots.add(node.service.app.head.state_root)
    return roots


@pytest.fixture(params=["pbft", "round_robin"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    made = Cluster.create(request.param, 4)
    made.start()
    yield made
    made.close()


def test_transactions_sent_to_any_validator_are_committed_by_all(cluster: Cluster) -> None:
    txns = creates(cluster.trustee, 60)
    for k, node in enumerate(cluster.nodes.values()):
        submit(node.url, txns[k * 15 : (k + 1) * 15])
    cluster.wait_for(lambda: cluster.committed_everywhere(txns), what="all committed everywhere")
    cluster.wait_for(lambda: len(set(cluster.heights().values())) == 1, what="equal heights")
    assert len(state_roots(cluster)) == 1


@pytest.mark.parametrize("victim", ["node-1", "node-3"])
def test_a_stopped_validator_does_not_stop_the_others_and_catches_up(cluster: Cluster, victim: str) -> None:
    """node-1 is the first primary (PBFT view 0, round-robin height 1's leader); node-3 a backup."""
    first = creates(cluster.trustee, 20)
    submit(cluster.nodes["node-2"].url, first)
    cluster.wait_for(lambda: cluster.committed_everywhere(first), what="first batch")
    cluster.stop(victim)
    second = creates(cluster.trustee, 40)
    submit(cluster.nodes["node-2"].url, second[:20])
    submit(cluster.nodes["node-4"].url, second[20:])
    cluster.wait_for(lambda: cluster.committed_everywhere(second), what="committed without the victim")
    cluster.start(victim)
    third = creates(cluster.trustee, 10)
    submit(cluster.nodes["node-2"].url, third)
    cluster.wait_for(lambda: cluster.committed_everywhere(first + second + third), what="victim caught up")
    cluster.wait_for(lambda: len(set(cluster.heights().values())) == 1, what="equal heights")
    assert len(state_roots(cluster)) == 1


def test_an_observer_follows_and_serves_proven_reads(cluster: Cluster) -> None:
    txns = creates(cluster.trustee, 10)
    submit(cluster.nodes["node-1"].url, txns)
    cluster.wait_for(lambda: cluster.committed_everywhere(txns), what="committed")
    observer = cluster.add_observer("observer-1")
    cluster.wait_for(lambda: cluster.committed_everywhere(txns), what="observer caught up")
    more = creates(cluster.trustee, 5)
    submit(cluster.nodes["node-3"].url, more)
    cluster.wait_for(lambda: cluster.committed_everywhere(more), what="observer follows")
    forwarded = creates(cluster.trustee, 5)
    submit(observer.url, forwarded)  # an observer forwards what it is sent to a validator
    cluster.wait_for(lambda: cluster.committed_everywhere(forwarded), what="forwarded by the observer")
    assert observer.service is not None
    assert observer.service.wait_for([t.id for t in forwarded], 10)[0].status == "committed"
    assert observer.replica is not None
    status = observer.replica.status()
    assert status["role"] == "observer"
    assert observer.replica.max_request_bytes() is None  # the validators it forwards to bound requests
    validator = cluster.nodes["node-1"].replica
    assert validator is not None and 0 < (validator.max_request_bytes() or 0) <= 1 << 20
    node_1 = cluster.nodes["node-1"].service
    assert node_1 is not None
    cluster.wait_for(  # (an empty block may land between the two reads: docs/consensus.md § 9a)
        lambda: httpx.get(f"{observer.url}/health", timeout=5).json()["height"] == node_1.app.height,
        what="the observer's health at node-1's height",
    )


def test_a_validator_added_by_transaction_starts_voting_at_its_height(cluster: Cluster) -> None:
    """node-5 joins at the height its validator.add names and its votes count; a reader anchored in
    genesis follows the change and reads blocks node-5 certified."""
    joiner = cluster.add_observer("node-5")
    head = cluster.nodes["node-1"].service.app.height  # type: ignore[union-attr]
    effective = head + 4
    add = cluster.trustee.txn(
        "validator.add",
        {
            "validator": {
                "id": "node-5",
                "public_key": encode_ed25519_public_key(joiner.key.public_key),
                "address": f"127.0.0.1:{joiner.p2p_port}",
            },
            "effective_height": effective,
        },
    )
    submit(cluster.nodes["node-2"].url, [add])
    filler = creates(cluster.trustee, 30)
    for txn in filler:  # one block each, until the effective height has passed
        submit(cluster.nodes["node-2"].url, [txn])
        if cluster.nodes["node-2"].service.app.height > effective:  # type: ignore[union-attr]
            break
        cluster.wait_for(lambda t=txn: cluster.committed_everywhere([t]), what="filler")  # type: ignore[misc]
    cluster.wait_for(lambda: joiner.replica is not None and joiner.replica.status()["role"] == "validator",
                     what="node-5 votes")  # fmt: skip
    cluster.stop("node-4")  # 5 validators, f = 1: the four left include node-5, whose votes are needed
    more = creates(cluster.trustee, 10)
    submit(cluster.nodes["node-3"].url, more)
    cluster.wait_for(lambda: cluster.committed_everywhere(more), what="committed with node-5's votes")
    certificate = cluster.nodes["node-1"].service.head[1]  # type: ignore[union-attr]
    assert certificate is not None and "node-5" in certificate.signatures
    with LedgerClient([cluster.nodes["node-1"].url], cluster.genesis) as reader:  # anchored in genesis only
        value, header = reader.prove("validators")
    assert header.height > effective and "node-5" in [v["id"] for v in value["set"]]


def test_a_validator_restarted_with_its_rotated_key_follows_then_votes_from_the_rotation(
    cluster: Cluster,
) -> None:
    """node-2 is restarted with a new key as soon as its rotation is committed: until the rotation's
    height it follows (the set in force holds its old key), from it it votes: with node-4 stopped,
    blocks need node-2's new signature."""
    new_key = Ed25519PrivateKey.generate()
    head = cluster.nodes["node-1"].service.app.height  # type: ignore[union-attr]
    effective = head + 6
    public = encode_ed25519_public_key(new_key.public_key)
    rotate = cluster.trustee.txn(
        "validator.rotate_key", {"id": "node-2", "public_key": public, "effective_height": effective}
    )
    submit(cluster.nodes["node-1"].url, [rotate])
    cluster.wait_for(lambda: cluster.committed_everywhere([rotate]), what="the rotation")
    cluster.stop("node-2")
    cluster.nodes["node-2"].key = new_key
    cluster.start("node-2")
    assert cluster.nodes["node-2"].replica.status()["role"] == "observer"  # type: ignore[union-attr]
    for txn in creates(cluster.trustee, 30):  # one block each, until the effective height has passed
        submit(cluster.nodes["node-1"].url, [txn])
        cluster.wait_for(lambda t=txn: cluster.committed_everywhere([t]), what="filler")  # type: ignore[misc]
        if cluster.nodes["node-1"].service.app.height > effective:  # type: ignore[union-attr]
            break
    cluster.stop("node-4")  # f = 1: the three left include node-2, whose new signature is needed
    more = creates(cluster.trustee, 10)
    submit(cluster.nodes["node-3"].url, more)
    cluster.wait_for(lambda: cluster.committed_everywhere(more), what="committed with node-2's new key")
    certificate = cluster.nodes["node-1"].service.head[1]  # type: ignore[union-attr]
    assert certificate is not None and "node-2" in certificate.signatures


def test_a_validator_still_running_with_its_old_key_follows_past_its_rotation(cluster: Cluster) -> None:
    """node-2's key is rotated while it runs with the old one: from the rotation's height it stops
    voting and follows, and the others go on."""
    head = cluster.nodes["node-1"].service.app.height  # type: ignore[union-attr]
    effective = head + 3
    public = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    rotate = cluster.trustee.txn(
        "validator.rotate_key", {"id": "node-2", "public_key": public, "effective_height": effective}
    )
    submit(cluster.nodes["node-1"].url, [rotate])
    for txn in creates(cluster.trustee, 30):  # one block each, committed by all four, node-2 following
        submit(cluster.nodes["node-1"].url, [txn])
        cluster.wait_for(lambda t=txn: cluster.committed_everywhere([t]), what="filler")  # type: ignore[misc]
        if cluster.nodes["node-2"].service.app.height > effective + 1:  # type: ignore[union-attr]
            break
    assert cluster.nodes["node-2"].replica.status()["role"] == "observer"  # type: ignore[union-attr]


def test_the_first_proposer_s_key_rotated_while_it_runs_the_others_go_on(cluster: Cluster) -> None:
    """node-1, the first primary (proposer of round 0), keeps its old key past its rotation: the three
    others replace it (a view or round change whose messages carry the last block of the old set,
    certified by node-1's old key) and go on committing."""
    head = cluster.nodes["node-3"].service.app.height  # type: ignore[union-attr]
    public = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    rotate = cluster.trustee.txn(
        "validator.rotate_key", {"id": "node-1", "public_key": public, "effective_height": head + 3}
    )
    submit(cluster.nodes["node-3"].url, [rotate])
    cluster.wait_for(lambda: cluster.committed_everywhere([rotate]), what="the rotation")
    for txn in creates(cluster.trustee, 6):  # past the rotation, each committed by all four
        submit(cluster.nodes["node-3"].url, [txn])
        cluster.wait_for(lambda t=txn: cluster.committed_everywhere([t]), timeout=30, what="filler")  # type: ignore[misc]
    assert cluster.nodes["node-3"].service.app.height > head + 3  # type: ignore[union-attr]


def test_a_validator_left_behind_a_rotation_of_its_own_key_catches_up(cluster: Cluster) -> None:
    """node-1 is down while its key is rotated and restarted with the old key after the others passed
    the rotation: its peers refuse its handshakes, so it hears nothing; it asks the nodes' APIs, catches
    up and follows."""
    head = cluster.nodes["node-2"].service.app.height  # type: ignore[union-attr]
    public = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    effective = head + 3
    rotate = cluster.trustee.txn(
        "validator.rotate_key", {"id": "node-1", "public_key": public, "effective_height": effective}
    )
    submit(cluster.nodes["node-2"].url, [rotate])
    cluster.wait_for(lambda: cluster.committed_everywhere([rotate]), what="the rotation")
    cluster.stop("node-1")
    for txn in creates(cluster.trustee, 6):  # the three others pass the rotation
        submit(cluster.nodes["node-2"].url, [txn])
        cluster.wait_for(lambda t=txn: cluster.committed_everywhere([t]), timeout=30, what="filler")  # type: ignore[misc]
    assert cluster.nodes["node-2"].service.app.height > effective  # type: ignore[union-attr]
    cluster.start("node-1")  # still with the old key
    more = creates(cluster.trustee, 1)
    submit(cluster.nodes["node-2"].url, more)
    cluster.wait_for(lambda: cluster.committed_everywhere(more), timeout=30, what="node-1 caught up")
    assert cluster.nodes["node-1"].replica.status()["role"] == "observer"  # type: ignore[union-attr]


def test_a_validator_whose_store_fails_at_commit_halts_and_the_others_go_on() -> None:
    """A store that refuses a block consensus committed (a full disk) halts its node: it stops voting,
    /health says halted and why, instead of lagging silently with its engine ahead of its store; the
    other three (f = 1) keep committing."""
    cluster = Cluster.create("pbft", 4)
    cluster.start()
    try:
        broken = cluster.nodes["node-3"]
        assert broken.service is not None
        app = broken.service.app

        def full_disk(*args: object, **kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        app.commit = full_disk  # type: ignore[method-assign]
        txns = creates(cluster.trustee, 10)
        submit(cluster.nodes["node-1"].url, txns)
        cluster.wait_for(
            lambda: broken.service is not None and broken.service.halted is not None, what="halted"
        )
        others = [n for n in cluster.running() if n.id != "node-3"]
        cluster.wait_for(
            lambda: all(
                n.service is not None and all(n.service.app.store.locate(t.id) for t in txns) for n in others
            ),
            what="committed by the other three",
        )
        health = httpx.get(f"{broken.url}/health", timeout=10).json()
        assert health["status"] == "halted" and "No space left on device" in health["halted"]
        more = creates(cluster.trustee, 5)
        submit(cluster.nodes["node-2"].url, more)
        cluster.wait_for(
            lambda: all(
                n.service is not None and all(n.service.app.store.locate(t.id) for t in more) for n in others
            ),
            what="later transactions committed without node-3",
        )
    finally:
        cluster.close()


def test_an_observer_settles_what_every_validator_refuses_for_good() -> None:
    """A transaction larger than the validators' consensus takes is refused 413 at a validator's door;
    an observer (which sets no bound of its own) forwards it, every validator refuses it, and the
    observer reports it rejected with their reason rather than keeping it pending for ever."""
    cluster = Cluster.create("pbft", 4, consensus=replace(Cluster.fast_config(), max_request_bytes=3_000))
    cluster.start()
    try:
        observer = cluster.add_observer("observer-1")
        actor = new_actor()
        document = actor.document()
        document["service"] = [
            {"id": f"{actor.did}#s{n}", "type": "LinkedDomains", "serviceEndpoint": f"https://s{n}.example/"}
            for n in range(40)
        ]
        big = actor.txn("did.create", {"document": document}, cluster.trustee)
        assert len(big.leaf) > 3_000
        refused = httpx.post(f"{cluster.nodes['node-2'].url}/txns", json=[big.to_json()], timeout=10)
        assert refused.status_code == 413 and refused.json()["code"] == "payload_too_large"
        submit(observer.url, [big])
        assert observer.service is not None
        [status] = observer.service.wait_for([big.id], 15)
        assert (status.status, status.code) == ("rejected", "payload_too_large")
        assert "every validator refused it" in (status.detail or "")
        small = creates(cluster.trustee, 1)
        submit(observer.url, small)  # the observer still forwards what fits
        cluster.wait_for(lambda: cluster.committed_everywhere(small), what="a small one committed")
    finally:
        cluster.close()

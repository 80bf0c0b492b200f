"""The censorship rule (``docs/consensus.md`` § Censorship): a backup counts, for each pending request,
the requests it first saw more than the margin later that the primary's blocks included first; at K
it sends the request to the primary again (OVERTAKEN), and when that happens a second time it
suspects the primary. The primary keeps re-sent requests even when its pool is full."""

from __future__ import annotations

from dataclasses import replace

from did_registry.consensus import PBFT, ConsensusConfig, Output
from did_registry.consensus.base import Send
from did_registry.consensus.messages import Commit, Overtaken, Prepare, PrePrepare, Request, ViewChange
from did_registry.consensus.pool import Overtaking, RequestPool
from did_registry.identity.crypto import sha256
from tests.did_registry.consensus.conftest import TESTING, Net, committed, sent
from tests.did_registry.consensus.fake_app import make_block
from tests.did_registry.consensus.peers import certify, pre_prepare, vote

# K = 2 * 8 = 16 requests, margin 0.5 s; the progress timer is kept out of the way
PATIENT = replace(TESTING, view_change_timeout=30.0, view_change_timeout_max=30.0)
K = PATIENT.overtake_threshold
MARGIN = PATIENT.overtake_margin


# -- the count (pool.Overtaking) -------------------------------------------------------------------


def _pool(*arrivals: tuple[bytes, float]) -> RequestPool:
    pool = RequestPool(limit=100)
    for request, at in arrivals:
        pool.add(request, at)
    return pool


def test_requests_first_seen_after_the_margin_count() -> None:
    """Executed requests that arrived more than the margin after a pending one count against it."""
    watch = Overtaking(threshold=10, margin=0.5)
    pool = _pool((b"r", 0.0))
    assert watch.executed(pool, [0.6, 0.7, 1.0]) == [] and watch.count(b"r") == 3


def test_requests_first_seen_within_the_margin_do_not_count() -> None:
    """A request that arrived at most the margin later may have reached the primary first: no count."""
    watch = Overtaking(threshold=1, margin=0.5)
    pool = _pool((b"r", 0.0))
    assert watch.executed(pool, [0.1, 0.5]) == [] and watch.count(b"r") == 0


def test_a_request_is_reported_once_overtaken_threshold_times() -> None:
    """The counts of successive blocks add up; the request is reported when they reach the threshold."""
    watch = Overtaking(threshold=4, margin=0.5)
    pool = _pool((b"r", 0.0))
    assert watch.executed(pool, [1.0, 1.0]) == []
    assert watch.executed(pool, [2.0, 2.0]) == [b"r"]


def test_younger_pending_requests_are_not_overtaken() -> None:
    """Only pending requests older than the block's requests (by the margin) are counted against."""
    watch = Overtaking(threshold=1, margin=0.5)
    pool = _pool((b"old", 0.0), (b"young", 0.9))
    assert watch.executed(pool, [1.0]) == [b"old"] and watch.count(b"young") == 0


def test_a_resent_request_counts_afresh_from_the_resend() -> None:
    """After a re-send at t, only requests first seen after t + margin count, from zero."""
    watch = Overtaking(threshold=2, margin=0.5)
    pool = _pool((b"r", 0.0))
    assert watch.executed(pool, [1.0, 1.0]) == [b"r"]
    watch.resent(b"r", 2.0)
    assert watch.was_resent(b"r") and watch.count(b"r") == 0
    assert watch.executed(pool, [1.5, 2.4]) == [] and watch.count(b"r") == 0
    assert watch.executed(pool, [2.6, 2.7]) == [b"r"]


def test_reset_forgets_counts_and_resends() -> None:
    """A new primary is judged afresh."""
    watch = Overtaking(threshold=9, margin=0.5)
    pool = _pool((b"r", 0.0), (b"s", 0.0))
    watch.executed(pool, [1.0])
    watch.resent(b"s", 1.0)
    watch.reset()
    assert watch.count(b"r") == 0 and not watch.was_resent(b"s")


def test_pool_may_go_beyond_its_limit_only_when_asked() -> None:
    """A full pool refuses a request, unless it is added beyond the limit (the caller bounds those)."""
    pool = _pool()
    pool.limit = 1
    assert pool.add(b"a", 0.0) and pool.full() and not pool.add(b"b", 1.0)
    assert pool.add(b"b", 1.0, beyond_limit=True) and pool.batch(3) == [b"a", b"b"]


# -- a backup (v1 of four, view 0) -----------------------------------------------------------------


def _xs(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def _execute(net: Net, engine: PBFT, seq: int, requests: list[bytes], now: float) -> list[Output]:
    """v1 executes block ``seq`` of the primary v0 holding ``requests`` at ``now``; the driver applies
    it and ticks (the engine acts on overtaken requests once the block is applied)."""
    block = make_block(seq, requests)
    digest = sha256(block)
    engine.on_tick(now)
    engine.on_message("v0", pre_prepare(net, block, seq=seq))
    engine.on_message("v2", vote(net, Prepare, "v2", digest, seq=seq))
    engine.on_message("v2", vote(net, Commit, "v2", digest, seq=seq))
    engine.on_message("v3", vote(net, Commit, "v3", digest, seq=seq))
    engine.on_message("v2", certify(net, "v2", digest, seq))
    [done] = committed(engine.on_message("v3", certify(net, "v3", digest, seq)))
    net.apps[engine.validator_id].apply(seq, done.block)
    return engine.on_tick(now)


def _overtaken_twice(net: Net, config: ConsensusConfig = PATIENT) -> tuple[PBFT, list[Output]]:
    """v1 holds ``r`` (seen at 0) and K requests seen at 1.0; the primary commits those in two blocks."""
    engine = net.pbft("v1", config)
    engine.on_tick(0.0)
    engine.on_request(b"r")
    engine.on_tick(1.0)
    later = _xs("x", K)
    engine.on_requests(later)
    _execute(net, engine, 1, later[: K // 2], 1.1)
    return engine, _execute(net, engine, 2, later[K // 2 :], 1.2)


def _resends(outputs: list[Output]) -> list[tuple[str, tuple[bytes, ...]]]:
    return [
        (o.to, o.message.requests)
        for o in outputs
        if isinstance(o, Send) and isinstance(o.message, Overtaken)
    ]


def test_backup_sends_an_overtaken_request_to_the_primary_again(net4: Net) -> None:
    """K later requests committed before ``r``: v1 sends ``r`` to the primary in an OVERTAKEN."""
    engine, out = _overtaken_twice(net4)
    assert _resends(out) == [("v0", (b"r",))]
    assert sent(out, ViewChange) == [] and engine.view == 0 and engine.pending == 1


def test_one_block_short_of_k_sends_nothing(net4: Net) -> None:
    """Fewer than K overtaking requests: nothing is sent."""
    engine = net4.pbft("v1", PATIENT)
    engine.on_tick(0.0)
    engine.on_request(b"r")
    engine.on_tick(1.0)
    engine.on_requests(_xs("x", K - 1))
    out = _execute(net4, engine, 1, _xs("x", K - 1), 1.1)
    assert _resends(out) == [] and sent(out, ViewChange) == []


def test_requests_within_the_margin_never_overtake(net4: Net) -> None:
    """Requests first seen within the margin after ``r`` are committed first without consequence."""
    engine = net4.pbft("v1", PATIENT)
    engine.on_tick(0.0)
    engine.on_request(b"r")
    engine.on_tick(MARGIN)
    near = _xs("x", 2 * K)
    engine.on_requests(near)
    outputs = [_execute(net4, engine, i + 1, near[i * 8 : i * 8 + 8], MARGIN + 0.1) for i in range(4)]
    assert all(_resends(out) == [] and sent(out, ViewChange) == [] for out in outputs)


def test_backup_suspects_the_primary_when_a_resent_request_is_overtaken_again(net4: Net) -> None:
    """After the re-send, K more requests (first seen after it plus the margin) overtake ``r``: v1
    starts a view change, as on a progress timeout."""
    engine, _ = _overtaken_twice(net4)
    engine.on_tick(2.0)
    later = _xs("y", K)
    engine.on_requests(later)
    _execute(net4, engine, 3, later[: K // 2], 2.1)
    out = _execute(net4, engine, 4, later[K // 2 :], 2.2)
    assert [c.view for c in sent(out, ViewChange)] == [1] and not engine.active


def test_an_overtaken_request_the_app_now_refuses_is_dropped(net4: Net) -> None:
    """A request that no longer passes the application's check is dropped, not sent again."""
    engine = net4.pbft("v1", PATIENT)
    engine.on_tick(0.0)
    engine.on_request(b"r")
    engine.on_tick(1.0)
    later = _xs("x", K)
    engine.on_requests(later)
    _execute(net4, engine, 1, later[: K // 2], 1.1)
    net4.apps["v1"].committed.add(b"r")  # say another path made it invalid
    out = _execute(net4, engine, 2, later[K // 2 :], 1.2)
    assert _resends(out) == [] and engine.pending == 0


def test_idle_backup_resends_waiting_requests_at_half_the_progress_timeout(net4: Net) -> None:
    """Requests pending and no block in flight for half the progress timeout: the primary may have
    refused them with a full pool and nothing later comes to overtake them; v1 sends them again."""
    engine = net4.pbft("v1")
    engine.on_tick(0.0)
    engine.on_request(b"r")
    out = engine.on_tick(TESTING.view_change_timeout / 2)
    assert _resends(out) == [("v0", (b"r",))] and sent(out, ViewChange) == []


# -- the primary (v0) ------------------------------------------------------------------------------


def _full_primary(net: Net) -> PBFT:
    engine = net.pbft("v0", replace(PATIENT, max_pending=8))
    engine.on_tick(0.0)
    engine.on_requests(_xs("p", 8))
    assert engine.pending == 8
    return engine


def test_primary_keeps_overtaken_requests_beyond_a_full_pool(net4: Net) -> None:
    """A full pool refuses a forwarded request but keeps the same request sent again as OVERTAKEN."""
    engine = _full_primary(net4)
    engine.on_message("v2", net4.sign(Request(sender="v2", requests=(b"r",))))
    assert engine.pending == 8 and engine.dropped["pool-full"] == 1
    engine.on_message("v1", net4.sign(Overtaken(sender="v1", requests=(b"r",))))
    assert engine.pending == 9


def test_primary_keeps_at_most_max_pending_overtaken_requests_per_backup(net4: Net) -> None:
    """Each backup's re-sent requests beyond the limit are capped at max_pending (a byzantine backup
    cannot take the others' share)."""
    engine = _full_primary(net4)
    engine.on_message("v1", net4.sign(Overtaken(sender="v1", requests=tuple(_xs("a", 8)))))
    assert engine.pending == 16
    engine.on_message("v1", net4.sign(Overtaken(sender="v1", requests=(b"one-more",))))
    assert engine.pending == 16 and engine.dropped["pool-full"] == 1
    engine.on_message("v2", net4.sign(Overtaken(sender="v2", requests=(b"other",))))
    assert engine.pending == 17


def test_a_backup_takes_an_overtaken_message_like_a_request(net4: Net) -> None:
    """A validator that is not the primary admits OVERTAKEN requests within its limit only."""
    engine = net4.pbft("v2", replace(PATIENT, max_pending=8))
    engine.on_tick(0.0)
    engine.on_requests(_xs("p", 8))
    engine.on_message("v1", net4.sign(Overtaken(sender="v1", requests=(b"r",))))
    assert engine.pending == 8 and engine.dropped["pool-full"] == 1


def test_primary_proposes_in_order_of_arrival(net4: Net) -> None:
    """The primary's batch is its oldest requests, in the order they arrived (first in, first out),
    whoever sent them; a request sent again goes last in line."""
    engine = net4.pbft("v0", replace(PATIENT, batch_size=3, max_pending=3))
    engine.on_tick(0.0)
    engine.on_message("v3", net4.sign(Request(sender="v3", requests=(b"b", b"a"))))
    engine.on_tick(0.001)
    out = engine.on_message("v1", net4.sign(Overtaken(sender="v1", requests=(b"c",))))
    [proposal] = sent(out, PrePrepare)
    assert net4.apps["v0"].requests(proposal.block) == [b"b", b"a", b"c"]

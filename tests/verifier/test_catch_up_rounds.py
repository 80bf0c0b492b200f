"""Requests that find a verifier's cache stale together run one catch-up round between them, and
each takes its outcome: a burst after a quiet spell does not ask every node once per request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from tests.verifier.test_blocks_in_flight import AUDIENCE, World
from verifier import AuthenticatedDevice, Refused
from verifier.ledger_cache import LedgerCache
from verifier.testing import StaticLedger


@dataclass
class _Head:
    height: int


class _Nodes:
    """Stands in for the cache's client: every node is asked for its head, which takes a while."""

    def __init__(self, ledger: StaticLedger, *, down: bool = False) -> None:
        self.ledger, self.down, self.asked = ledger, down, 0
        self._lock = threading.Lock()

    def highest_head(self) -> _Head:
        with self._lock:
            self.asked += 1
        time.sleep(0.2)
        if self.down:
            from did_registry.client import LedgerUnavailable

            raise LedgerUnavailable("no node answers")
        return _Head(self.ledger.height)


def _burst(world: World, nodes: _Nodes, count: int = 6) -> list[AuthenticatedDevice | Refused]:
    """``count`` requests at once on a cache last confirmed 31 s ago (stale past 30 s)."""
    cache: LedgerCache = world.verifier.caches["testnet"]
    cache.client, cache.live = nodes, False  # type: ignore[assignment]
    cache.confirm(cache.height or 0, at=time.time() - 31)
    requests = [world.request() for _ in range(count)]
    barrier, outcomes = threading.Barrier(count), []

    def send(request: object) -> None:
        barrier.wait()
        try:
            outcomes.append(world.verifier.authenticate_request(request, AUDIENCE))  # type: ignore[arg-type]
        except Refused as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_one_round_catches_up_for_every_request_waiting() -> None:
    world = World()
    nodes = _Nodes(world.ledger)
    outcomes = _burst(world, nodes)
    assert nodes.asked == 1
    assert len(outcomes) == 6 and all(isinstance(o, AuthenticatedDevice) for o in outcomes)


def test_a_round_that_failed_is_the_outcome_of_those_that_waited_for_it() -> None:
    """No node answers: the requests waiting are refused on that round's failure, not each asking."""
    world = World()
    nodes = _Nodes(world.ledger, down=True)
    world.verifier.caches["testnet"].clock = lambda: time.time() + 600  # past the offline limit too
    outcomes = _burst(world, nodes)
    assert nodes.asked == 1
    assert len(outcomes) == 6 and all(isinstance(o, Refused) for o in outcomes)
    assert {o.reason.value for o in outcomes if isinstance(o, Refused)} == {"too_stale"}


def test_a_later_stale_spell_runs_a_round_of_its_own() -> None:
    """A round's outcome is taken only by the requests that waited for it."""
    world = World()
    nodes = _Nodes(world.ledger)
    _burst(world, nodes, count=3)
    _burst(world, nodes, count=3)
    assert nodes.asked == 2

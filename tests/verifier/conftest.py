"""Verifier test fixtures: the replay and session stores, each in memory and in a throwaway Redis.

Each store fixture is parametrized ``memory``/``redis`` so one behavioural test runs against both. The
memory store runs on a fake clock that ``advance`` moves; the Redis store runs on real time (Redis
expires keys by its own clock), so ``advance`` sleeps and tests keep their lifetimes short. Each Redis
store gets a prefix of its own, and its keys are deleted after the test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import pytest

from verifier.replay import MemoryNonceStore, RedisNonceStore
from verifier.sessions import MemorySessionStore, RedisSessionStore

T = TypeVar("T")
STORE_KINDS = ["memory", "redis"]
START = 1_800_000_000.0  # the fake clock's start, Unix seconds (2027-01-15)


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


@dataclass
class Clocked(Generic[T]):
    """A store with the clock it runs on: ``now()`` to read it, ``advance(s)`` to let ``s`` seconds pass."""

    store: T
    kind: str
    now: Callable[[], float]
    advance: Callable[[float], None]


def _real_clock() -> tuple[Callable[[], float], Callable[[float], None]]:
    return time.time, time.sleep


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(redis URL, a prefix unique to this test); the prefix's keys are deleted afterwards."""
    import redis

    url: str = request.getfixturevalue("redis_url")
    prefix = f"test:{uuid.uuid4().hex}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=STORE_KINDS)
def nonce_store(request: pytest.FixtureRequest) -> Clocked[MemoryNonceStore | RedisNonceStore]:
    """A nonce store of each kind, with its clock."""
    if request.param == "memory":
        clock = FakeClock()
        return Clocked(MemoryNonceStore(clock=clock), "memory", clock, clock.advance)
    url, prefix = request.getfixturevalue("redis_prefix")
    now, advance = _real_clock()
    return Clocked(RedisNonceStore(url, prefix=prefix), "redis", now, advance)


@pytest.fixture(params=STORE_KINDS)
def session_store(request: pytest.FixtureRequest) -> Clocked[MemorySessionStore | RedisSessionStore]:
    """A session store of each kind, with its clock."""
    if request.param == "memory":
        clock = FakeClock()
        return Clocked(MemorySessionStore(clock=clock), "memory", clock, clock.advance)
    url, prefix = request.getfixturevalue("redis_prefix")
    now, advance = _real_clock()
    return Clocked(RedisSessionStore(url, prefix=prefix), "redis", now, advance)

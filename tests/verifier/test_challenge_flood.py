"""Challenges, which anyone may ask for, are bounded apart in the nonce store: a flood of them is
refused (ChallengeLimitReached, a 503 with Retry-After) and never crowds out the signature nonces of
devices' signed requests, in memory and in Redis. Redeeming, expiry and audience work as before."""

from __future__ import annotations

import math
import random

import pytest
import redis

from tests.services import RedisServer
from tests.verifier.conftest import START, FakeClock
from tests.verifier.lifetime_world import World, make_world
from verifier import MemoryNonceStore, Policy, Reason, Refused, StoreUnavailable, Verifier
from verifier.challenge import issue_challenge, redeem_challenge
from verifier.errors import ConfigurationError
from verifier.replay import CHALLENGE_NAMESPACE, ChallengeLimitReached, NonceStore, RedisNonceStore

AUDIENCE = "https://service.example"
TTL, GRACE = 60.0, 120.0  # the policy's challenge TTL, and how much longer the store holds a challenge


def _flood(verifier: Verifier, at_most: int) -> tuple[int, StoreUnavailable | None]:
    """Ask for challenges until one is refused (at most ``at_most``): how many were issued, the refusal."""
    for issued in range(at_most):
        try:
            verifier.challenge(AUDIENCE)
        except StoreUnavailable as exc:
            return issued, exc
    return at_most, None


def _verifier(world: World, nonces: NonceStore) -> Verifier:
    return world.ledger.verifier(Policy(), clock=world.clock, nonces=nonces)


# --- the memory store ------------------------------------------------------------------------------------


def test_a_challenge_flood_leaves_signed_requests_admitted_in_memory() -> None:
    """Challenges asked for until the store refuses one: the device's signed requests still get in."""
    world = make_world()
    verifier = _verifier(world, MemoryNonceStore(max_entries=1000, clock=world.clock))
    _flood(verifier, 1001)
    for _ in range(50):
        assert verifier.authenticate_request(world.request()).did == world.device


def test_the_flood_is_refused_at_max_challenges_with_a_retry_time() -> None:
    """The default bound is a tenth of max_entries: the next challenge raises ChallengeLimitReached,
    whose retry_after is the time until the earliest held challenge expires."""
    world = make_world()
    verifier = _verifier(world, MemoryNonceStore(max_entries=1000, clock=world.clock))
    issued, refusal = _flood(verifier, 1001)
    assert issued == 100
    assert isinstance(refusal, ChallengeLimitReached)
    policy = verifier.policy  # a challenge is held its TTL, then a TTL and the clock skew longer
    assert refusal.retry_after == math.ceil(2 * policy.challenge_ttl + policy.clock_skew)


def test_challenges_never_take_the_room_left_for_nonces() -> None:
    """With max_challenges held, max_entries - max_challenges nonces are still recorded, then the store
    is full as before."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=10, clock=clock, max_challenges=3)
    for n in range(3):
        store.put(CHALLENGE_NAMESPACE, f"c-{n}", b"data", clock.now + 100)
    with pytest.raises(ChallengeLimitReached, match="max_challenges=3"):
        store.put(CHALLENGE_NAMESPACE, "c-3", b"data", clock.now + 100)
    for n in range(7):
        assert store.use("http-signature", f"n-{n}", clock.now + 100)
    with pytest.raises(StoreUnavailable, match="max_entries=10"):
        store.use("http-signature", "n-7", clock.now + 100)


def test_answered_and_expired_challenges_free_their_room() -> None:
    """A challenge taken frees its place at once; one that expires frees it once expired."""
    clock = FakeClock()
    store = MemoryNonceStore(clock=clock, max_challenges=2)
    store.put(CHALLENGE_NAMESPACE, "answered", b"data", clock.now + 100)
    store.put(CHALLENGE_NAMESPACE, "expiring", b"data", clock.now + 10)
    assert store.take(CHALLENGE_NAMESPACE, "answered") == b"data"
    store.put(CHALLENGE_NAMESPACE, "third", b"data", clock.now + 100)
    with pytest.raises(ChallengeLimitReached):
        store.put(CHALLENGE_NAMESPACE, "fourth", b"data", clock.now + 100)
    clock.advance(10.5)  # "expiring" has expired; its second is not over yet
    store.put(CHALLENGE_NAMESPACE, "fourth", b"data", clock.now + 100)
    assert store.challenges() == 2


def test_many_challenge_cycles_keep_the_put_order_bounded() -> None:
    """Challenges put and taken again and again leave the store's put order bounded by what it holds."""
    clock = FakeClock()
    store = MemoryNonceStore(clock=clock, max_challenges=5)
    store.put(CHALLENGE_NAMESPACE, "long-lived", b"data", clock.now + 10_000)  # keeps the front live
    for n in range(20_000):
        store.put(CHALLENGE_NAMESPACE, f"c-{n}", b"data", clock.now + 100)
        assert store.take(CHALLENGE_NAMESPACE, f"c-{n}") == b"data"
    assert store.challenges() == 1
    assert len(store._challenge_order) <= 2 * 1 + 1024 + 1


def test_a_challenge_is_refused_only_when_max_challenges_unexpired_are_held() -> None:
    """A seeded random run of uses, puts (challenges of mixed lifetimes, and other records), takes and
    clock steps: every ChallengeLimitReached comes with max_challenges unexpired challenges held, and
    the store's count is what it holds."""
    rng = random.Random(20261125)
    clock = FakeClock(5000.0)
    store = MemoryNonceStore(max_entries=200, clock=clock, max_challenges=8)
    model: dict[str, float] = {}  # the challenges held: expiry by value
    refusals = 0
    for step in range(20_000):
        op, value = rng.random(), f"v{rng.randrange(60)}"
        expires_at = clock.now + rng.choice([0.05, 0.4, 1.0, 2.5, 30.0]) * rng.random()
        if op < 0.3:
            store.use("http-signature", value, expires_at)
        elif op < 0.6:
            try:
                store.put(CHALLENGE_NAMESPACE, value, b"data", expires_at)
            except ChallengeLimitReached:
                refusals += 1
                held = [v for v, until in model.items() if until > clock.now and v != value]
                assert len(held) >= store.max_challenges, step
            else:
                if expires_at > clock.now:
                    model[value] = expires_at
        elif op < 0.85:
            store.take(CHALLENGE_NAMESPACE, value)
            model.pop(value, None)
        else:
            clock.advance(rng.choice([0.01, 0.3, 1.0, 4.0]))
        assert store.challenges() <= store.max_challenges
        assert store.challenges() >= sum(1 for until in model.values() if until > clock.now), step
    assert refusals > 0


@pytest.mark.parametrize("bound", [0, -1, True, 1.5, 11])
def test_max_challenges_must_fit_in_max_entries(bound: object) -> None:
    """max_challenges is a positive integer no larger than max_entries."""
    with pytest.raises(ConfigurationError, match="max_challenges"):
        MemoryNonceStore(max_entries=10, max_challenges=bound)  # type: ignore[arg-type]


# --- Redis ---------------------------------------------------------------------------------------------


def test_a_challenge_flood_leaves_signed_requests_admitted_in_a_full_sized_redis() -> None:
    """A Redis with little memory (noeviction): the flood stops at max_challenges, well before Redis is
    full, and the device's signed requests, recorded in the same Redis, still get in."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(used + 3 * 2**20))  # 3 MiB: about 7,500 challenges
        world = make_world()
        store = RedisNonceStore(client, clock=world.clock, max_challenges=2000)
        verifier = _verifier(world, store)
        issued, refusal = _flood(verifier, 20_000)
        assert (issued, type(refusal)) == (2000, ChallengeLimitReached)
        for _ in range(50):
            assert verifier.authenticate_request(world.request()).did == world.device
        client.close()


def test_the_redis_bound_holds_across_processes(redis_prefix: tuple[str, str]) -> None:
    """Two stores sharing a prefix (two processes of a service) share one bound."""
    url, prefix = redis_prefix
    clock = FakeClock()
    first = RedisNonceStore(url, prefix=prefix, clock=clock, max_challenges=2)
    second = RedisNonceStore(url, prefix=prefix, clock=clock, max_challenges=2)
    first.put(CHALLENGE_NAMESPACE, "c-1", b"data", clock.now + 100)
    second.put(CHALLENGE_NAMESPACE, "c-2", b"data", clock.now + 100)
    with pytest.raises(ChallengeLimitReached) as refused:
        first.put(CHALLENGE_NAMESPACE, "c-3", b"data", clock.now + 100)
    assert refused.value.retry_after == 100
    assert second.take(CHALLENGE_NAMESPACE, "c-1") == b"data"
    first.put(CHALLENGE_NAMESPACE, "c-3", b"data", clock.now + 100)
    assert (first.challenges(), second.challenges()) == (2, 2)


def _one_challenge_store(redis_prefix: tuple[str, str]) -> tuple[RedisNonceStore, FakeClock]:
    """A Redis store allowing one outstanding challenge, on a fake clock."""
    url, prefix = redis_prefix
    clock = FakeClock()
    return RedisNonceStore(url, prefix=prefix, clock=clock, max_challenges=1), clock


def test_expired_challenges_free_their_room_in_redis(redis_prefix: tuple[str, str]) -> None:
    """Listed challenges whose expiry has passed no longer count."""
    store, clock = _one_challenge_store(redis_prefix)
    store.put(CHALLENGE_NAMESPACE, "c-1", b"data", clock.now + 10)
    with pytest.raises(ChallengeLimitReached):
        store.put(CHALLENGE_NAMESPACE, "c-2", b"data", clock.now + 100)
    clock.advance(10)
    store.put(CHALLENGE_NAMESPACE, "c-2", b"data", clock.now + 100)
    assert store.take(CHALLENGE_NAMESPACE, "c-2") == b"data"


def test_replacing_a_held_challenge_in_redis_needs_no_room(redis_prefix: tuple[str, str]) -> None:
    """Putting again under a held challenge is allowed at the bound, and replaces its data."""
    store, clock = _one_challenge_store(redis_prefix)
    store.put(CHALLENGE_NAMESPACE, "c-1", b"first", clock.now + 100)
    store.put(CHALLENGE_NAMESPACE, "c-1", b"second", clock.now + 100)
    assert store.take(CHALLENGE_NAMESPACE, "c-1") == b"second"


def test_other_namespaces_are_not_bounded_by_max_challenges(redis_prefix: tuple[str, str]) -> None:
    """Session notes and other issued records never wait on the challenges' bound."""
    store, clock = _one_challenge_store(redis_prefix)
    store.put(CHALLENGE_NAMESPACE, "c-1", b"data", clock.now + 100)
    for n in range(5):
        store.put("session", f"s-{n}", b"note", clock.now + 100)
    assert store.use("http-signature", "n-1", clock.now + 100)


# --- redeeming, in both stores -------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def bounded_store(request: pytest.FixtureRequest) -> NonceStore:
    """A store of each kind on a fake clock, bounded at two challenges."""
    clock = FakeClock()
    if request.param == "memory":
        return MemoryNonceStore(clock=clock, max_challenges=2)
    url, prefix = request.getfixturevalue("redis_prefix")
    return RedisNonceStore(url, prefix=prefix, clock=clock, max_challenges=2)


def test_a_redeemed_challenge_cannot_be_redeemed_again(bounded_store: NonceStore) -> None:
    """The second answer to a challenge is refused challenge_unknown."""
    issued = issue_challenge(bounded_store, AUDIENCE, now=START, ttl=TTL, grace=GRACE)
    assert redeem_challenge(bounded_store, issued.nonce, AUDIENCE, now=START + 1) == issued
    with pytest.raises(Refused) as refused:
        redeem_challenge(bounded_store, issued.nonce, AUDIENCE, now=START + 1)
    assert refused.value.reason is Reason.CHALLENGE_UNKNOWN


def test_an_expired_challenge_is_refused_expired(bounded_store: NonceStore) -> None:
    """An answer after the challenge's expiry (but within the store's grace) is told challenge_expired."""
    issued = issue_challenge(bounded_store, AUDIENCE, now=START, ttl=TTL, grace=GRACE)
    with pytest.raises(Refused) as refused:
        redeem_challenge(bounded_store, issued.nonce, AUDIENCE, now=START + TTL + 1)
    assert refused.value.reason is Reason.CHALLENGE_EXPIRED


def test_a_challenge_for_another_audience_is_refused(bounded_store: NonceStore) -> None:
    """A challenge issued for one audience is refused wrong_audience for another."""
    issued = issue_challenge(bounded_store, AUDIENCE, now=START, ttl=TTL, grace=GRACE)
    with pytest.raises(Refused) as refused:
        redeem_challenge(bounded_store, issued.nonce, "https://other.example", now=START + 1)
    assert refused.value.reason is Reason.WRONG_AUDIENCE


def test_redeemed_challenges_make_room_for_new_ones(bounded_store: NonceStore) -> None:
    """Answering challenges frees their places: a service whose devices answer never hits the bound."""
    for _ in range(10):
        issued = issue_challenge(bounded_store, AUDIENCE, now=START, ttl=TTL, grace=GRACE)
        redeem_challenge(bounded_store, issued.nonce, AUDIENCE, now=START + 1)


# --- the example service -------------------------------------------------------------------------------


def test_the_fleet_service_answers_a_challenge_flood_with_503_and_retry_after() -> None:
    """GET /auth/challenge past the bound: a 503 problem (challenges_exhausted) with Retry-After."""
    from fleet.service import CHALLENGES_EXHAUSTED, ServiceState, create_service
    from verifier.wsgi import PROBLEM_JSON

    world = make_world()
    verifier = _verifier(world, MemoryNonceStore(clock=world.clock, max_challenges=3))
    client = create_service(ServiceState("svc", verifier, "testnet"), AUDIENCE).test_client()
    assert [client.get("/auth/challenge").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/auth/challenge")
    assert (response.status_code, response.content_type) == (503, PROBLEM_JSON)
    assert response.get_json()["reason"] == CHALLENGES_EXHAUSTED
    policy = verifier.policy
    assert response.headers["Retry-After"] == str(math.ceil(2 * policy.challenge_ttl + policy.clock_skew))

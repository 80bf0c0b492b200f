"""The :class:`RedisNonceStore`: single-use records shared through Redis by a service's processes.

A :class:`~verifier.replay.NonceStore` (see the :mod:`verifier.replay` docstring for the contract, and
why Redis must run with ``maxmemory-policy noeviction``); importable from :mod:`verifier.replay` too,
as are the helpers :mod:`verifier.sessions` shares (:func:`_redis_client`, :func:`_redis_errors`,
:func:`_to_milliseconds`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from verifier.errors import ConfigurationError, StoreUnavailable
from verifier.nonce_records import (
    _ISSUED,
    _USED,
    CHALLENGE_NAMESPACE,
    DEFAULT_MAX_CHALLENGES,
    ChallengeLimitReached,
    Clock,
    _challenge_bound,
    _check_namespace,
    _expired,
    _seconds_until,
)

if TYPE_CHECKING:
    import redis

__all__ = ["RedisNonceStore"]


class RedisNonceStore:
    """A :class:`NonceStore` in Redis, shared by every process that uses the same server and prefix.

    ``use`` is ``SET <key> 1 NX PXAT <ms>``, ``put`` is ``SET <key> <data> PXAT <ms>`` and ``take`` is
    ``GETDEL`` (Redis 6.2+), each one atomic command. Keys are ``<prefix>used:<namespace>:<value>`` and
    ``<prefix>issued:<namespace>:<value>``. Issued challenges are also listed, scored by expiry, in the
    sorted set ``<prefix>issued-index:challenge``: a challenge is put by one script that drops the
    expired members, counts the rest and refuses with :class:`ChallengeLimitReached` when
    ``max_challenges`` (100,000 by default) are outstanding, and taken with ``GETDEL`` and ``ZREM`` in
    one transaction. The bound holds across every process sharing the server and prefix; size Redis
    for it (about 400 bytes a challenge, 40 MB at the default) on top of the signature nonces. Run
    Redis with ``maxmemory-policy noeviction`` (see the module docstring). Any Redis error
    (unreachable, timeout, out of memory) raises :class:`StoreUnavailable`.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "trellis:",
        clock: Clock = time.time,
        max_challenges: int = DEFAULT_MAX_CHALLENGES,
    ) -> None:
        """Use the Redis at ``url_or_client`` (a ``redis://`` URL, or a client made with bytes replies).

        A URL gets a client with 2-second connect and socket timeouts (its query string may set
        others). ``clock`` decides that an ``expires_at`` is already past and which listed challenges
        have expired; Redis expires records. At most ``max_challenges`` issued challenges are held at
        once, by all the processes sharing the prefix. The optional dependency ``redis`` is imported
        here, not when this module loads.
        """
        self._client = _redis_client(url_or_client)
        self._prefix = prefix
        self._clock = clock
        self._max_challenges = _challenge_bound(max_challenges, None)
        self._challenge_index = f"{prefix}issued-index:{CHALLENGE_NAMESPACE}".encode()
        self._put_challenge = self._client.register_script(_PUT_CHALLENGE)

    @property
    def max_challenges(self) -> int:
        """The most issued challenges held at once (by every process sharing the prefix)."""
        return self._max_challenges

    def challenges(self) -> int:
        """How many issued challenges are held (unexpired, by every process sharing the prefix)."""
        now_ms = _to_milliseconds(self._clock())
        with _redis_errors("counting issued challenges"):
            count = self._client.zcount(self._challenge_index, f"({now_ms}", "+inf")
        if not isinstance(count, int):  # the client's types also cover its asyncio variant
            raise StoreUnavailable(f"Redis answered ZCOUNT with {type(count).__name__}, not an integer")
        return count

    def use(self, namespace: str, value: str, expires_at: float) -> bool:
        """Record ``value``: True the first time, False if already recorded (or ``expires_at`` is past)."""
        key = self._key(_USED, namespace, value)
        if _expired(expires_at, self._clock()):
            return False
        with _redis_errors(f"recording a {namespace} nonce"):
            return bool(self._client.set(key, b"1", nx=True, pxat=_to_milliseconds(expires_at)))

    def put(self, namespace: str, value: str, data: bytes, expires_at: float) -> None:
        """Hold ``data`` under ``value`` until taken or expired (replacing what was held under it).

        Raises :class:`ChallengeLimitReached` for a new challenge when ``max_challenges`` are held."""
        key = self._key(_ISSUED, namespace, value)
        data = bytes(data)
        now = self._clock()
        if _expired(expires_at, now):
            return
        if namespace != CHALLENGE_NAMESPACE:
            with _redis_errors(f"storing an issued {namespace}"):
                self._client.set(key, data, pxat=_to_milliseconds(expires_at))
            return
        member = value.encode("utf-8", "surrogatepass")
        args: list[bytes | int] = [
            _to_milliseconds(now),
            self._max_challenges,
            member,
            data,
            _to_milliseconds(expires_at),
        ]
        with _redis_errors(f"storing an issued {namespace}"):
            earliest = self._put_challenge(keys=[self._challenge_index, key], args=args)
        if earliest:
            raise ChallengeLimitReached(
                f"max_challenges={self._max_challenges} issued challenges are outstanding in Redis; no "
                "more are issued until some are answered or expire",
                _seconds_until(int(earliest) / 1000, now),
            )

    def take(self, namespace: str, value: str) -> bytes | None:
        """Return and delete the data held under ``value`` (``GETDEL``); None if none is held."""
        key = self._key(_ISSUED, namespace, value)
        with _redis_errors(f"taking an issued {namespace}"):
            if namespace != CHALLENGE_NAMESPACE:
                data = self._client.getdel(key)
            else:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.getdel(key)
                    pipe.zrem(self._challenge_index, value.encode("utf-8", "surrogatepass"))
                    data = pipe.execute()[0]
        if data is None or isinstance(data, bytes):
            return data
        raise StoreUnavailable(f"Redis answered GETDEL with {type(data).__name__}, not bytes")

    def peek(self, namespace: str, value: str) -> bytes | None:
        """The data held under ``value``, left held (``GET``); None if none is held."""
        key = self._key(_ISSUED, namespace, value)
        with _redis_errors(f"reading an issued {namespace}"):
            data = self._client.get(key)
        if data is None or isinstance(data, bytes):
            return data
        raise StoreUnavailable(f"Redis answered GET with {type(data).__name__}, not bytes")

    def _key(self, kind: str, namespace: str, value: str) -> bytes:
        # surrogatepass: a value decoded from hostile JSON may hold lone surrogates; each string still
        # maps to its own key
        head = f"{self._prefix}{kind}:{_check_namespace(namespace)}:".encode()
        return head + value.encode("utf-8", "surrogatepass")


_PUT_CHALLENGE: Final = """
-- KEYS: the index of issued challenges, the challenge's key.
-- ARGV: now (ms), max_challenges, the challenge's value, its data, its expiry (ms).
-- Returns 0 once stored; when max_challenges unexpired ones are listed, stores nothing and returns
-- the earliest listed expiry (ms).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return tonumber(first[2])
end
redis.call('SET', KEYS[2], ARGV[4], 'PXAT', ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[3])
-- the index expires with its last challenge (PTTL, not PEXPIREAT GT: Redis 6.2 has no GT)
local left = redis.call('PTTL', KEYS[1])
if left < 0 or left < tonumber(ARGV[5]) - tonumber(ARGV[1]) then
    redis.call('PEXPIREAT', KEYS[1], ARGV[5])
end
return 0
"""


def _to_milliseconds(moment: float) -> int:
    """Unix seconds as whole Unix milliseconds for ``PXAT``/``PEXPIREAT``, rounded up (never early)."""
    return math.ceil(moment * 1000)


def _redis_client(url_or_client: str | redis.Redis) -> redis.Redis:
    """A Redis client from a URL (2-second timeouts), or the given client after checking it returns bytes."""
    import redis  # the optional dependency, loaded only when a Redis store is made

    if isinstance(url_or_client, str):
        try:
            return redis.Redis.from_url(url_or_client, socket_connect_timeout=2.0, socket_timeout=2.0)
        except ValueError as exc:
            raise ConfigurationError(f"Redis URL {url_or_client!r} is not valid: {exc}") from None
    if not isinstance(url_or_client, redis.Redis):
        raise ConfigurationError(
            f"expected a redis:// URL or a redis.Redis client, not {type(url_or_client).__name__}"
        )
    if url_or_client.get_connection_kwargs().get("decode_responses"):
        raise ConfigurationError("the Redis client must return bytes: make it with decode_responses=False")
    return url_or_client


@contextmanager
def _redis_errors(action: str) -> Iterator[None]:
    """Turn any Redis error raised in the block into :class:`StoreUnavailable` naming ``action``."""
    import redis

    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis failed while {action}: {type(exc).__name__}: {exc}") from exc

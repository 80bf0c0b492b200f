"""Single-use values: challenge nonces and RFC 9421 signature nonces, each accepted once.

A :class:`NonceStore` answers two questions atomically, even across the processes of one service:

* :meth:`~NonceStore.use` records a value and says whether this is its first use (RFC 9421 §7.2.2: a
  ``nonce`` signature parameter seen again before it expires is a replay);
* :meth:`~NonceStore.put` and :meth:`~NonceStore.take` hold an issued challenge with its data until it is
  answered, and hand it out exactly once (get-and-delete). Both stores here also have ``peek``, which
  reads what is held without taking it (a gone session's note, read by many requests at once); a
  store of one's own may leave it out, at the cost of a concurrent request being told
  ``session_unknown`` rather than why the session ended.

Times are wall-clock Unix seconds. A record may be forgotten once its ``expires_at`` has passed, so the
caller must also refuse anything whose own expiry has passed (``created``/``expires`` of a signature, a
challenge's expiry); a value whose ``expires_at`` is already past is never recorded, and ``use``
answers False for it, because the store could not remember it to stop a replay.

:class:`MemoryNonceStore` serves one process; :class:`RedisNonceStore` shares the records between the
processes and hosts of a service through Redis (``SET NX PXAT``, ``GETDEL``; Redis 6.2 or later).
Neither ever forgets an unexpired record to make room: a full memory store raises
:class:`~verifier.errors.StoreUnavailable`, and Redis must run with ``maxmemory-policy noeviction``
(an evicting policy could drop an unexpired nonce and let a replay through; with ``noeviction`` a full
Redis refuses writes, which this module reports as ``StoreUnavailable``).

Issued challenges (``put`` in the :data:`CHALLENGE_NAMESPACE`) are handed out to anyone who asks, before
anything is proven, so both stores bound them on their own: at most ``max_challenges`` are held at once
(100,000 by default). When that many are outstanding (issued, neither taken nor expired), ``put`` of one
more raises :class:`ChallengeLimitReached` and changes nothing; used signature nonces and the other
records never wait on challenges. In the memory store challenges also count towards ``max_entries``,
so ``max_entries - max_challenges`` records always remain for the rest; in Redis the bound keeps what
challenges can take of its ``maxmemory`` to ``max_challenges`` records (about 400 bytes each: 100,000
take some 40 MB).
"""

from __future__ import annotations

import heapq
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

from verifier.errors import ConfigurationError, StoreUnavailable

if TYPE_CHECKING:
    import redis

__all__ = [
    "CHALLENGE_NAMESPACE",
    "DEFAULT_MAX_CHALLENGES",
    "ChallengeLimitReached",
    "Clock",
    "NonceStore",
    "MemoryNonceStore",
    "RedisNonceStore",
]

CHALLENGE_NAMESPACE: Final = "challenge"
"""The namespace of issued challenges: records ``put`` in it are bounded apart (``max_challenges``)."""
DEFAULT_MAX_CHALLENGES: Final = 100_000
"""The most challenges a store holds at once unless told otherwise (the memory store: at most a tenth
of its ``max_entries``)."""

Clock: TypeAlias = Callable[[], float]
"""A wall clock: Unix seconds, like :func:`time.time` (tests inject a fake one)."""

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CHECKED: set[str] = set()  # namespaces found good (a program uses a handful)
_Key: TypeAlias = tuple[str, str, str]  # (kind, namespace, value)
_USED = "used"
_ISSUED = "issued"
_INF, _NO_TIME = math.inf, -math.inf


class ChallengeLimitReached(StoreUnavailable):
    """As many challenges as the store allows are outstanding (issued, neither answered nor expired):
    no more are issued until some are answered or expire. Nothing else is refused for it: signature
    nonces and session notes have their own room. A service answers 503 with ``Retry-After:``
    :attr:`retry_after` (a :class:`~verifier.errors.StoreUnavailable`, which it answers 503 anyway).
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Whole seconds (at least 1) until the earliest outstanding challenge expires and frees its
        room at the latest (answers free room sooner)."""


def _seconds_until(moment: float, now: float) -> int:
    """Whole seconds from ``now`` to ``moment``, at least 1 (a ``Retry-After``)."""
    return max(1, math.ceil(moment - now)) if math.isfinite(moment) else 1


def _challenge_bound(max_challenges: int | None, max_entries: int | None) -> int:
    """``max_challenges`` checked, or the default for a store of ``max_entries`` records (None: no bound)."""
    if max_challenges is None:
        if max_entries is None:
            return DEFAULT_MAX_CHALLENGES
        return min(DEFAULT_MAX_CHALLENGES, max(1, max_entries // 10))
    if isinstance(max_challenges, bool) or not isinstance(max_challenges, int) or max_challenges < 1:
        raise ConfigurationError(f"max_challenges must be a positive integer, not {max_challenges!r}")
    if max_entries is not None and max_challenges > max_entries:
        raise ConfigurationError(
            f"max_challenges={max_challenges} exceeds max_entries={max_entries}: challenges could take "
            "all the room signature nonces need"
        )
    return max_challenges


def _check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is 1-64 characters of ``A-Z a-z 0-9 _ . -``; else ConfigurationError.

    Namespaces are chosen by the program (``challenge``, ``http-signature``), never by a device, and
    keeping ``:`` out of them keeps the Redis keys ``<prefix><kind>:<namespace>:<value>`` unambiguous.
    """
    if type(namespace) is str and namespace in _CHECKED:
        return namespace
    if not isinstance(namespace, str) or _NAMESPACE.fullmatch(namespace) is None:
        raise ConfigurationError(
            f"nonce namespace {namespace!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
        )
    if len(_CHECKED) < 256:
        _CHECKED.add(namespace)
    return namespace


def _expired(expires_at: float, now: float) -> bool:
    """Whether ``expires_at`` has passed; a time that is not a finite number is refused outright."""
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not math.isfinite(expires_at)
    ):
        raise ConfigurationError(f"expires_at must be a finite Unix time in seconds, not {expires_at!r}")
    return expires_at <= now


class NonceStore(Protocol):
    """Where single-use values are recorded (see the module docstring for the contract)."""

    def use(self, namespace: str, value: str, expires_at: float) -> bool:
        """Record ``value``: True the first time, False if it is already recorded and not expired."""
        ...

    def put(self, namespace: str, value: str, data: bytes, expires_at: float) -> None:
        """Hold ``data`` under ``value`` (an issued challenge) until :meth:`take` or ``expires_at``.

        Challenges (:data:`CHALLENGE_NAMESPACE`) are issued to anyone: a store should bound them apart
        from the used nonces, raising :class:`ChallengeLimitReached` at its bound, as both stores here do.
        """
        ...

    def take(self, namespace: str, value: str) -> bytes | None:
        """Return and delete the data held under ``value``; None if none is held (or it expired)."""
        ...


class MemoryNonceStore:
    """A thread-safe, bounded :class:`NonceStore` in this process's memory.

    Records are kept by the whole second they expire in; once a second has wholly passed, its records
    are dropped together (a check on the next write, at most once a second), so a record costs O(1)
    to keep and to forget. A record whose second is not over yet is still held, but an expired one
    no longer counts as a use. When ``max_entries`` unexpired records are held, ``use`` and ``put``
    raise :class:`StoreUnavailable` instead of forgetting one, which would allow a replay: size the
    bound for the peak rate times the longest expiry (e.g. 1,000 nonces a second for 5 minutes is
    300,000).

    Issued challenges (``put`` in :data:`CHALLENGE_NAMESPACE`) count towards ``max_entries`` and, apart,
    towards ``max_challenges`` (a tenth of ``max_entries`` by default, at most 100,000): once that many
    are held, ``put`` of another raises :class:`ChallengeLimitReached`, so that challenges, which anyone
    may ask for, never take the last ``max_entries - max_challenges`` places from signature nonces.

    Memory: about 270 bytes per record of the verifier's (a key id and a 22-character nonce, about 70
    characters; at most about 330, since longer ones are recorded as a digest) on CPython 3.11
    (measured with :mod:`tracemalloc`: 147 bytes for the key tuple, the float expiry, a dict slot and
    a place in its second's list, plus the record string itself; ``put`` adds its data), so a full
    store of a million records takes roughly 270 to 330 MB.
    """

    def __init__(
        self, max_entries: int = 1_000_000, clock: Clock = time.time, *, max_challenges: int | None = None
    ) -> None:
        """Hold at most ``max_entries`` unexpired records, of which at most ``max_challenges`` issued
        challenges (default: see the class docstring); ``clock`` gives wall-clock Unix seconds."""
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be a positive integer, not {max_entries!r}")
        self._max_entries = max_entries
        self._max_challenges = _challenge_bound(max_challenges, max_entries)
        self._challenges = 0  # challenge records in _expiry
        self._challenge_order: list[tuple[float, _Key]] = []  # challenges as put, a heap by expiry
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[_Key, float] = {}
        self._data: dict[_Key, bytes] = {}
        self._seconds: dict[int, list[_Key]] = {}  # a whole second -> the keys recorded to expire in it
        self._order: list[int] = []  # those seconds, as a heap
        self._listed = 0  # keys in those lists (some taken or recorded again since: stale)
        self._room: tuple[int, list[tuple[float, _Key]]] | None = None  # the second under way, by expiry

    @property
    def max_entries(self) -> int:
        """The most unexpired records held at once."""
        return self._max_entries

    @property
    def max_challenges(self) -> int:
        """The most issued challenges held at once (within ``max_entries``)."""
        return self._max_challenges

    def challenges(self) -> int:
        """How many issued challenges are held (expired ones may linger until the next write)."""
        with self._lock:
            return self._challenges

    def __len__(self) -> int:
        """How many records are held (expired ones may linger until the next write)."""
        with self._lock:
            return len(self._expiry)

    def use(self, namespace: str, value: str, expires_at: float) -> bool:
        """Record ``value``: True the first time, False if already recorded (or ``expires_at`` is past)."""
        if type(namespace) is not str or namespace not in _CHECKED:
            _check_namespace(namespace)
        key = (_USED, namespace, value)
        lock = self._lock
        lock.acquire()  # by hand: a with statement's lookups would cost more than the lock itself
        try:
            now = self._clock()
            if type(expires_at) is not float or not _NO_TIME < expires_at < _INF:
                if _expired(expires_at, now):  # the general check: ints, and refusing what is no time
                    return False
            elif expires_at <= now:
                return False
            order = self._order
            if order and order[0] + 1 <= now:  # the earliest listed second is over
                self._purge(now)
            expiry = self._expiry
            held = expiry.get(key)
            if held is not None:
                if held > now:
                    return False
            elif len(expiry) >= self._max_entries:
                self._make_room(now)
            expiry[key] = expires_at
            keys = self._seconds.get(math.floor(expires_at))
            if keys is None or self._room is not None or self._listed >= 2 * len(expiry) + 1024:
                self._list(key, expires_at, now)  # a second not listed yet, making room, or relisting due
            else:  # what _list would do: add the key to its second's list
                keys.append(key)
                self._listed += 1
            return True
        finally:
            lock.release()

    def put(self, namespace: str, value: str, data: bytes, expires_at: float) -> None:
        """Hold ``data`` under ``value`` until taken or expired (replacing what was held under it).

        Raises :class:`StoreUnavailable` when the store is full, and :class:`ChallengeLimitReached`
        for a new challenge when ``max_challenges`` are held."""
        key = (_ISSUED, _check_namespace(namespace), value)
        data = bytes(data)  # before anything changes: data that is not bytes leaves the store as it was
        challenge = namespace == CHALLENGE_NAMESPACE
        with self._lock:
            now = self._clock()
            if _expired(expires_at, now):
                return
            order = self._order
            if order and order[0] + 1 <= now:
                self._purge(now)
            if key not in self._expiry:
                if len(self._expiry) >= self._max_entries:
                    self._make_room(now)
                if challenge:
                    if self._challenges >= self._max_challenges:
                        self._make_challenge_room(now)
                    self._challenges += 1
            self._expiry[key] = expires_at  # a replaced record's listing goes stale and is skipped
            self._list(key, expires_at, now)
            self._data[key] = data
            if challenge:
                self._order_challenge(key, expires_at)

    def take(self, namespace: str, value: str) -> bytes | None:
        """Return and delete the data held under ``value``; None if none is held or it expired."""
        key = (_ISSUED, _check_namespace(namespace), value)
        with self._lock:
            expires_at = self._expiry.pop(key, None)
            data = self._data.pop(key, None)
            if expires_at is None:
                return None
            if namespace == CHALLENGE_NAMESPACE:
                self._challenges -= 1
            if expires_at <= self._clock():
                return None
            return data

    def peek(self, namespace: str, value: str) -> bytes | None:
        """The data held under ``value``, left held; None if none is held or it expired."""
        key = (_ISSUED, _check_namespace(namespace), value)
        with self._lock:
            expires_at = self._expiry.get(key)
            if expires_at is None or expires_at <= self._clock():
                return None
            return self._data.get(key)

    def _list(self, key: _Key, expires_at: float, now: float) -> None:
        """List ``key`` under the second it expires in (the record itself is already in ``_expiry``)."""
        second = math.floor(expires_at)
        keys = self._seconds.get(second)
        if keys is None:
            self._seconds[second] = [key]
            heapq.heappush(self._order, second)
        else:
            keys.append(key)
        self._listed += 1
        room = self._room
        if room is not None and room[0] == second:
            heapq.heappush(room[1], (expires_at, key))
        if self._listed > 2 * len(self._expiry) + 1024:  # listings left stale by take/put
            self._relist(now)

    def _forget_issued(self, key: _Key) -> None:
        """Drop the data of ``key``, an issued record just dropped from ``_expiry``, and count it out."""
        self._data.pop(key, None)
        if key[1] == CHALLENGE_NAMESPACE:
            self._challenges -= 1

    def _order_challenge(self, key: _Key, expires_at: float) -> None:
        """List a challenge just put by its expiry (every held challenge is listed with its own);
        entries left stale by take, replacement or expiry go when they make up most of the list."""
        heap = self._challenge_order
        heapq.heappush(heap, (expires_at, key))
        if len(heap) > 2 * self._challenges + 1024:
            expiry = self._expiry
            heap = [item for item in heap if expiry.get(item[1]) == item[0]]
            heapq.heapify(heap)
            self._challenge_order = heap

    def _make_challenge_room(self, now: float) -> None:
        """Drop the expired challenges; raise ChallengeLimitReached if ``max_challenges`` are still held
        (then every one held is unexpired: the earliest listed expiry is still ahead)."""
        heap, expiry = self._challenge_order, self._expiry
        while heap:
            when, key = heap[0]
            if expiry.get(key) != when:  # taken, put again, or dropped since
                heapq.heappop(heap)
            elif when <= now:
                heapq.heappop(heap)
                del expiry[key]
                self._forget_issued(key)
            else:
                break
        if self._challenges >= self._max_challenges:
            raise ChallengeLimitReached(
                f"max_challenges={self._max_challenges} issued challenges are outstanding in the in-memory "
                "nonce store (of max_entries="
                f"{self._max_entries}); no more are issued until some are answered or expire",
                _seconds_until(heap[0][0] if heap else math.inf, now),
            )

    def _purge(self, now: float) -> None:
        """Drop the records of every second that is over."""
        seconds, order, expiry = self._seconds, self._order, self._expiry
        while order and order[0] + 1 <= now:
            keys = seconds.pop(heapq.heappop(order))
            self._listed -= len(keys)
            for key in keys:
                when = expiry.get(key)
                if when is not None and when <= now:  # not taken, nor recorded again to expire later
                    del expiry[key]
                    if key[0] == _ISSUED:
                        self._forget_issued(key)
        if self._room is not None and self._room[0] + 1 <= now:
            self._room = None

    def _make_room(self, now: float) -> None:
        """Drop the expired records of the second under way; raise if the store is still full.

        The second's records are put in order of expiry once, the first time it needs room, so that
        each call at the bound pops only what has expired since (a full store must not cost every
        refused call a walk through a second's worth of records)."""
        second = math.floor(now)
        expiry = self._expiry
        if self._room is None or self._room[0] != second:
            pending = []
            for key in self._seconds.get(second, ()):
                when = expiry.get(key)
                if when is not None and math.floor(when) == second:
                    pending.append((when, key))
            heapq.heapify(pending)
            self._room = (second, pending)
        pending = self._room[1]
        while pending and pending[0][0] <= now:
            when, key = heapq.heappop(pending)
            if expiry.get(key) == when:  # not taken, nor recorded again since
                del expiry[key]
                if key[0] == _ISSUED:
                    self._forget_issued(key)
        if len(expiry) >= self._max_entries:
            raise StoreUnavailable(
                f"the in-memory nonce store is full: max_entries={self._max_entries} unexpired records are "
                "held, and forgetting one could let a replay through (raise max_entries or use Redis)"
            )

    def _relist(self, now: float) -> None:
        """List every unexpired record afresh (dropping expired ones and stale listings)."""
        self._seconds, self._order, self._listed, self._room = {}, [], 0, None
        expiry = self._expiry
        for key, when in list(expiry.items()):
            if when <= now:
                del expiry[key]
                if key[0] == _ISSUED:
                    self._forget_issued(key)
            else:
                self._list(key, when, now)


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

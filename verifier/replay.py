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
"""

from __future__ import annotations

import heapq
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeAlias

from verifier.errors import ConfigurationError, StoreUnavailable

if TYPE_CHECKING:
    import redis

__all__ = [
    "Clock",
    "NonceStore",
    "MemoryNonceStore",
    "RedisNonceStore",
]

Clock: TypeAlias = Callable[[], float]
"""A wall clock: Unix seconds, like :func:`time.time` (tests inject a fake one)."""

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CHECKED: set[str] = set()  # namespaces found good (a program uses a handful)
_Key: TypeAlias = tuple[str, str, str]  # (kind, namespace, value)
_USED = "used"
_ISSUED = "issued"
_INF, _NO_TIME = math.inf, -math.inf


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
        """Hold ``data`` under ``value`` (an issued challenge) until :meth:`take` or ``expires_at``."""
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

    Memory: about 220 bytes per record for a 22-character nonce on CPython 3.11 (measured with
    :mod:`tracemalloc`: 147 bytes for the key tuple, the float expiry, a dict slot and a place in its
    second's list, plus the nonce string itself; ``put`` adds its data), so a full store of a million
    records takes roughly 220 MB.
    """

    def __init__(self, max_entries: int = 1_000_000, clock: Clock = time.time) -> None:
        """Hold at most ``max_entries`` unexpired records; ``clock`` gives wall-clock Unix seconds."""
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be a positive integer, not {max_entries!r}")
        self._max_entries = max_entries
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
        """Hold ``data`` under ``value`` until taken or expired (replacing what was held under it)."""
        key = (_ISSUED, _check_namespace(namespace), value)
        data = bytes(data)  # before anything changes: data that is not bytes leaves the store as it was
        with self._lock:
            now = self._clock()
            if _expired(expires_at, now):
                return
            order = self._order
            if order and order[0] + 1 <= now:
                self._purge(now)
            if key not in self._expiry and len(self._expiry) >= self._max_entries:
                self._make_room(now)
            self._expiry[key] = expires_at  # a replaced record's listing goes stale and is skipped
            self._list(key, expires_at, now)
            self._data[key] = data

    def take(self, namespace: str, value: str) -> bytes | None:
        """Return and delete the data held under ``value``; None if none is held or it expired."""
        key = (_ISSUED, _check_namespace(namespace), value)
        with self._lock:
            expires_at = self._expiry.pop(key, None)
            data = self._data.pop(key, None)
            if expires_at is None or expires_at <= self._clock():
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

    def _purge(self, now: float) -> None:
        """Drop the records of every second that is over."""
        seconds, order, expiry, data = self._seconds, self._order, self._expiry, self._data
        while order and order[0] + 1 <= now:
            keys = seconds.pop(heapq.heappop(order))
            self._listed -= len(keys)
            for key in keys:
                when = expiry.get(key)
                if when is not None and when <= now:  # not taken, nor recorded again to expire later
                    del expiry[key]
                    data.pop(key, None)
        if self._room is not None and self._room[0] + 1 <= now:
            self._room = None

    def _make_room(self, now: float) -> None:
        """Drop the expired records of the second under way; raise if the store is still full.

        The second's records are put in order of expiry once, the first time it needs room, so that
        each call at the bound pops only what has expired since (a full store must not cost every
        refused call a walk through a second's worth of records)."""
        second = math.floor(now)
        expiry, data = self._expiry, self._data
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
                data.pop(key, None)
        if len(expiry) >= self._max_entries:
            raise StoreUnavailable(
                f"the in-memory nonce store is full: max_entries={self._max_entries} unexpired records are "
                "held, and forgetting one could let a replay through (raise max_entries or use Redis)"
            )

    def _relist(self, now: float) -> None:
        """List every unexpired record afresh (dropping expired ones and stale listings)."""
        self._seconds, self._order, self._listed, self._room = {}, [], 0, None
        expiry, data = self._expiry, self._data
        for key, when in list(expiry.items()):
            if when <= now:
                del expiry[key]
                data.pop(key, None)
            else:
                self._list(key, when, now)


class RedisNonceStore:
    """A :class:`NonceStore` in Redis, shared by every process that uses the same server and prefix.

    ``use`` is ``SET <key> 1 NX PXAT <ms>``, ``put`` is ``SET <key> <data> PXAT <ms>`` and ``take`` is
    ``GETDEL`` (Redis 6.2+), each one atomic command. Keys are ``<prefix>used:<namespace>:<value>`` and
    ``<prefix>issued:<namespace>:<value>``. Run Redis with ``maxmemory-policy noeviction`` (see the
    module docstring). Any Redis error (unreachable, timeout, out of memory) raises
    :class:`StoreUnavailable`.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "trellis:",
        clock: Clock = time.time,
    ) -> None:
        """Use the Redis at ``url_or_client`` (a ``redis://`` URL, or a client made with bytes replies).

        A URL gets a client with 2-second connect and socket timeouts (its query string may set
        others). ``clock`` only decides that an ``expires_at`` is already past; Redis expires records.
        The optional dependency ``redis`` is imported here, not when this module loads.
        """
        self._client = _redis_client(url_or_client)
        self._prefix = prefix
        self._clock = clock

    def use(self, namespace: str, value: str, expires_at: float) -> bool:
        """Record ``value``: True the first time, False if already recorded (or ``expires_at`` is past)."""
        key = self._key(_USED, namespace, value)
        if _expired(expires_at, self._clock()):
            return False
        with _redis_errors(f"recording a {namespace} nonce"):
            return bool(self._client.set(key, b"1", nx=True, pxat=_to_milliseconds(expires_at)))

    def put(self, namespace: str, value: str, data: bytes, expires_at: float) -> None:
        """Hold ``data`` under ``value`` until taken or expired (replacing what was held under it)."""
        key = self._key(_ISSUED, namespace, value)
        if _expired(expires_at, self._clock()):
            return
        with _redis_errors(f"storing an issued {namespace}"):
            self._client.set(key, bytes(data), pxat=_to_milliseconds(expires_at))

    def take(self, namespace: str, value: str) -> bytes | None:
        """Return and delete the data held under ``value`` (``GETDEL``); None if none is held."""
        key = self._key(_ISSUED, namespace, value)
        with _redis_errors(f"taking an issued {namespace}"):
            data = self._client.getdel(key)
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

"""The :class:`MemoryNonceStore`: single-use records in one process's memory, bounded.

A :class:`~verifier.replay.NonceStore` (see the :mod:`verifier.replay` docstring for the contract);
importable from :mod:`verifier.replay` too.
"""

from __future__ import annotations

import heapq
import math
import threading
import time

from verifier.errors import ConfigurationError, StoreUnavailable
from verifier.nonce_records import (
    _CHECKED,
    _ISSUED,
    _USED,
    CHALLENGE_NAMESPACE,
    ChallengeLimitReached,
    Clock,
    _challenge_bound,
    _check_namespace,
    _expired,
    _Key,
    _seconds_until,
)

__all__ = ["MemoryNonceStore"]

_INF, _NO_TIME = math.inf, -math.inf


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

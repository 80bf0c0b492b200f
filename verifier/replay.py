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

This module holds the contract (:class:`NonceStore`); the stores are in
:mod:`verifier.memory_nonce_store` and :mod:`verifier.redis_nonce_store`, what they share (and the
challenge bound) in :mod:`verifier.nonce_records`. Their public names are importable from here.
"""

from __future__ import annotations

from typing import Protocol

from verifier.memory_nonce_store import MemoryNonceStore
from verifier.nonce_records import CHALLENGE_NAMESPACE, DEFAULT_MAX_CHALLENGES, ChallengeLimitReached, Clock
from verifier.redis_nonce_store import RedisNonceStore
from verifier.redis_nonce_store import _redis_client as _redis_client
from verifier.redis_nonce_store import _redis_errors as _redis_errors
from verifier.redis_nonce_store import _to_milliseconds as _to_milliseconds

__all__ = [
    "CHALLENGE_NAMESPACE",
    "DEFAULT_MAX_CHALLENGES",
    "ChallengeLimitReached",
    "Clock",
    "NonceStore",
    "MemoryNonceStore",
    "RedisNonceStore",
]


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

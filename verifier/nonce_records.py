"""What both nonce stores share: the records' kinds and namespaces, their expiry, and the bound on
issued challenges (:class:`ChallengeLimitReached`).

The contract the stores keep is in the :mod:`verifier.replay` docstring; the names public here are
importable from there too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Final, TypeAlias

from verifier.errors import ConfigurationError, StoreUnavailable

__all__ = [
    "CHALLENGE_NAMESPACE",
    "DEFAULT_MAX_CHALLENGES",
    "ChallengeLimitReached",
    "Clock",
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

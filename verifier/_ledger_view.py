"""What a verifier reads: DID entries, issuers' accreditations and status lists, fresh enough or refused.

``did:trellis`` DIDs are read from the cache of their network (caught up with the ledger when it is
older than the policy's ``max_staleness``; refused as ``too_stale`` when no node answers past
``offline_max_staleness``); other methods through the resolvers (``did:key`` built in).

A key id missing from a cached ``did:trellis`` document makes the view read that DID again from the
ledger before the key is refused (the device may have rotated its key in a block the cache has not
applied yet), at most once per DID per ``key_reread_interval``, and at most
:data:`REREADS_PER_SECOND` times a second in all (a token bucket holding as many), so that forged key
ids, whichever DIDs they name, cost no more re-reads than that (a DID not cached yet is read once, as
for any request naming it, and not again for its key). Beyond either limit the key is
refused as ``key_not_authorized`` from the cached entry, which is proven at the cache's height and
kept fresh by the header stream: a device whose rotation is that recent gets in once the cache applies
the block (within about a second while the network is followed). A re-read that finds what the cache
holds leaves the cached entry, and every decision remembered with it, standing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Final

from did_registry.bounded_cache import BoundedCache, remember
from did_registry.client import ANSWER_ERRORS, LedgerUnavailable
from did_registry.errors import DidRegistryError, InvalidDID
from did_registry.identity.crypto import Ed25519PublicKey
from did_registry.identity.did import parse_did
from did_registry.identity.did_trellis import parse_trellis_did
from did_registry.identity.resolution import DIDKeyResolver, MultiResolver, Resolver
from verifier._records import AUTHENTICATION, DIDEntry, IssuerEntry, StatusEntry, did_entry_from_document
from verifier.errors import ConfigurationError, Reason, Refused
from verifier.ledger_cache import LedgerCache
from verifier.policy import Policy

__all__ = ["CATCH_UP_INTERVAL", "KEYS_KEPT", "REREADS_KEPT", "REREADS_PER_SECOND", "LedgerView"]

CATCH_UP_INTERVAL: Final = 1.0
"""Seconds (verifier clock) after nodes answered a catch-up before a still-stale cache asks them again."""

_LEDGER_ERRORS: Final = (DidRegistryError, *ANSWER_ERRORS)
"""What reading the ledger may raise (a node failing or lying, nested too deep, a record unusable): a
ledger failure, refused as ``ledger_unavailable``, never as the device's ``malformed``."""

REREADS_KEPT: Final = 16_384
"""DIDs whose last re-read time (and whose network) is remembered (the oldest forgotten first)."""
REREADS_PER_SECOND: Final = 20.0
"""Re-reads for unknown key ids a view makes per second at most, across all DIDs (a token bucket of
that many, refilled continuously): key rotations are rare, and their blocks are applied within about
a second; forged key ids come as fast as they are sent."""
KEYS_KEPT: Final = 2048
"""Authentication keys remembered by key id (the devices seen most recently). Up to 2,730 entries, the
memo's dict is at its steady size (8,192 slots) by the time it is full; a 4,096-entry one doubles its
table once more after a few thousand replacements (about 170 KB more, bounded but late)."""


_DID_ERRORS: Final = frozenset(
    {"invalidDid", "invalidDidUrl", "invalidPublicKey", "invalidPublicKeyLength", "invalidPublicKeyType",
     "unsupportedPublicKeyType"}
)  # fmt: skip
"""DID Resolution errors that say the DID itself is wrong (the device's mistake, not the resolver's)."""


class LedgerView:
    """Reads for the checks, over the trusted networks' caches and the other methods' resolvers."""

    def __init__(
        self, caches: Mapping[str, LedgerCache], policy: Policy, resolvers: Mapping[str, Resolver] | None
    ) -> None:
        self.caches = caches
        self.policy = policy
        methods = {"key": DIDKeyResolver(), **dict(resolvers or {})}
        if "trellis" in methods:
            raise ConfigurationError("resolvers: did:trellis is resolved through the trusted networks")
        self._resolver = MultiResolver(methods)
        self._cache_of: OrderedDict[str, LedgerCache] = OrderedDict()  # DID -> its network's cache
        self._rereads: BoundedCache[str, float] = BoundedCache(REREADS_KEPT)  # DID -> when last re-read
        self._rereads_lock = threading.Lock()
        self._keys: OrderedDict[str, tuple[LedgerCache, DIDEntry, Ed25519PublicKey, str]] = OrderedDict()
        self.rereads = 0
        """How many DIDs were read again for a key id their cached document lacked."""
        self.reread_rate = REREADS_PER_SECOND
        """Re-reads per second at most, across all DIDs (also the bucket's size)."""
        self._budget = 0.0  # re-reads the bucket holds now (full at the first)
        self._budget_at: float | None = None  # when it was last refilled (verifier clock)
        self.rereads_refused = 0
        """How many re-reads the budget refused (the key refused from the cached entry instead)."""

    def staleness(self) -> float:
        """Seconds since the stalest trusted network's head was last confirmed."""
        return max((c.staleness() for c in self.caches.values()), default=0.0)

    def generation(self) -> int:
        """A number that moves on whenever an entry of any trusted network's cache is dropped or replaced."""
        total = 0
        for cache in self.caches.values():
            total += cache.generation
        return total

    def cache(self, did: str) -> LedgerCache:
        """The cache of ``did``'s network, fresh enough for the policy (or refused)."""
        known = self._cache_of.get(did)
        if known is not None:
            if not known.live:
                self.ensure_fresh(known, did)
            return known
        try:
            network = parse_trellis_did(did).network
        except InvalidDID as exc:
            raise Refused(Reason.MALFORMED, f"{did!r} is not a did:trellis: {exc}", did=did) from None
        cache = self.caches.get(network)
        if cache is None:
            raise Refused(Reason.UNSUPPORTED_DID_METHOD, f"network {network!r} is not trusted", did=did)
        remember(self._cache_of, did, cache, REREADS_KEPT)
        self.ensure_fresh(cache, did)
        return cache

    def ensure_fresh(self, cache: LedgerCache, did: str | None) -> None:
        """Catch ``cache`` up when it is older than ``max_staleness``; refuse past ``offline_max_staleness``.

        When the nodes answered a catch-up less than :data:`CATCH_UP_INTERVAL` ago and the cache is
        stale because their newest block is too old (its age less ``max_block_age`` is past
        ``max_staleness``), they are not asked again yet: a stalled or hiding network must not have
        every request fan out to every node. Stale for any other reason, the cache catches up at once."""
        if cache.staleness() <= self.policy.max_staleness:
            return
        why = None
        answered, age, allowed = cache.caught_up_at, cache.block_age(), self.policy.max_block_age
        if (
            answered is None
            or age is None
            or allowed is None
            or age - allowed <= self.policy.max_staleness  # stale for another reason: ask at once
            or not 0 <= cache.clock() - answered < CATCH_UP_INTERVAL
        ):
            try:
                cache.catch_up()
            except _LEDGER_ERRORS as exc:
                why = f"no node answers ({exc})"
        stale = cache.staleness()
        if stale > self.policy.offline_max_staleness:
            if why is None:  # the nodes answered, but their newest block is old: behind, or hiding newer ones
                age = cache.block_age()
                why = (
                    f"the newest block the nodes that answer show is {age or 0:.0f} s old, though a live "
                    "network commits one every freshness interval"
                )
            raise Refused(
                Reason.TOO_STALE, f"network {cache.network}: {why}; the view is {stale:.0f} s stale", did=did
            )

    def entry(self, did: str) -> DIDEntry:
        """The compact DID entry of ``did`` (any supported method); raise :class:`Refused`."""
        if not isinstance(did, str) or not did.startswith("did:"):
            raise Refused(Reason.MALFORMED, f"{did!r} is not a DID")
        if did.startswith("did:trellis:"):
            return self._trellis_entry(did)[0]
        return self._resolve_other(did)

    def _trellis_entry(self, did: str) -> tuple[DIDEntry, bool]:
        """The entry of ``did:trellis`` ``did``, and whether it was read from the ledger just now."""
        cache = self.cache(did)
        cached = cache.cached_did(did)
        if cached is not None:
            return cached, False
        try:
            (found,) = cache.dids([did])  # (a DID proven absent before is not read again)
        except LedgerUnavailable as exc:
            raise Refused(Reason.LEDGER_UNAVAILABLE, str(exc), did=did) from None
        except _LEDGER_ERRORS as exc:
            raise Refused(Reason.LEDGER_UNAVAILABLE, f"unusable ledger record: {exc}", did=did) from None
        if found is None:
            raise Refused(Reason.DID_NOT_FOUND, f"{did} is not on the ledger", did=did)
        return found, True

    def _resolve_other(self, did: str) -> DIDEntry:
        try:
            method = parse_did(did).method
        except InvalidDID as exc:
            raise Refused(Reason.MALFORMED, f"{did!r}: {exc}", did=did) from None
        if method not in self._resolver.methods:
            raise Refused(Reason.UNSUPPORTED_DID_METHOD, f"no resolver for did:{method}", did=did)
        result = self._resolver.resolve(did)
        if result.error == "notFound":
            raise Refused(Reason.DID_NOT_FOUND, result.error_message or f"{did} not found", did=did)
        if result.error is not None or result.did_document is None:
            # the DID itself is wrong: malformed; else the resolver failed (invalidOptions included)
            reason = Reason.MALFORMED if result.error in _DID_ERRORS else Reason.LEDGER_UNAVAILABLE
            raise Refused(reason, f"resolving {did}: {result.error}: {result.error_message}", did=did)
        return did_entry_from_document(
            result.did_document,
            deactivated=result.did_document_metadata.deactivated,
            quarantined=False,
            height=0,
        )

    def issuer(self, did: str) -> IssuerEntry:
        """The trust-registry entry of issuer ``did``."""
        cache = self.cache(did)
        try:
            return cache.issuer(did)
        except LedgerUnavailable as exc:
            raise Refused(Reason.LEDGER_UNAVAILABLE, str(exc), did=did) from None
        except _LEDGER_ERRORS as exc:
            raise Refused(
                Reason.LEDGER_UNAVAILABLE, f"unusable trust registry record: {exc}", did=did
            ) from None

    def status_list(self, issuer: str, name: str) -> tuple[StatusEntry | None, int]:
        """Status list ``name`` of ``issuer`` and the height it is valid at."""
        cache = self.cache(issuer)
        try:
            entry = cache.status_list(issuer, name)
        except LedgerUnavailable as exc:
            raise Refused(Reason.LEDGER_UNAVAILABLE, str(exc), did=issuer) from None
        except _LEDGER_ERRORS as exc:
            raise Refused(Reason.LEDGER_UNAVAILABLE, f"unusable status list: {exc}", did=issuer) from None
        return entry, 0 if entry is None else entry.height

    def device_entry(self, did: str, key_id: str | None = None) -> DIDEntry:
        """The entry of a device that may authenticate: on the ledger, not deactivated, not quarantined.

        With ``key_id`` (a DID URL of ``did``) missing from the cached document's ``authentication``
        keys, the DID is read again from the ledger first (rate-limited per DID and in all), unless
        it was just read.
        """
        if isinstance(did, str) and did.startswith("did:trellis:"):
            entry, read = self._trellis_entry(did)
            if key_id is not None and not read:
                owner, _, fragment = key_id.partition("#")
                if owner == did and not entry.serves(fragment, AUTHENTICATION):
                    entry = self._reread(did, entry)
        else:
            entry = self.entry(did)
        if entry.deactivated:
            raise Refused(Reason.DID_DEACTIVATED, f"{did} is deactivated", did=did)
        if entry.quarantined:
            raise Refused(Reason.QUARANTINED, f"{did} is on the quarantine list", did=did)
        return entry

    def entry_stands(self, did: str, entry: DIDEntry) -> bool:
        """Whether ``entry`` is still the cached entry of ``did``: no block touched the DID (its
        document, deactivation or quarantine) since it was read. A DID of another method never changes."""
        if not did.startswith("did:trellis:"):
            return True
        cache = self._cache_of.get(did)
        if cache is None:
            try:
                cache = self.caches.get(parse_trellis_did(did).network)
            except InvalidDID:
                return False
        return cache is not None and cache.cached_did(did) is entry

    def remembered_key(self, key_id: str) -> tuple[str, DIDEntry, Ed25519PublicKey] | None:
        """``(did, entry, key)`` as :meth:`authentication_key` last gave them for ``key_id``, if the
        cache (made fresh enough first) still holds that very entry; else ``None``."""
        known = self._keys.get(key_id)
        if known is None:
            return None
        cache, entry, key, did = known
        if not cache.live:
            self.ensure_fresh(cache, did)
        if cache._dids.young.get(did) is entry or cache.cached_did(did) is entry:  # the first, inline
            return did, entry, key
        return None

    def authentication_key(self, did: str, key_id: str) -> tuple[DIDEntry, Ed25519PublicKey]:
        """:meth:`device_entry` of ``did`` for ``key_id`` (a DID URL of ``did``) and the key it names in
        the ``authentication`` relationship (refused as ``key_not_authorized`` without one).

        For ``did:trellis`` the answer is remembered by key id while the network's cache still holds
        the very entry it came from (any block touching the DID, a re-read or a snapshot replaces it);
        the cache is made fresh enough first, as for every read.
        """
        known = self.remembered_key(key_id)
        if known is not None and known[0] == did:
            return known[1], known[2]
        entry = self.device_entry(did, key_id)
        found = entry.key(key_id.partition("#")[2], AUTHENTICATION)
        if found is None:
            raise Refused(
                Reason.KEY_NOT_AUTHORIZED, f"{key_id} is not in the authentication relationship", did=did
            )
        network = self._cache_of.get(did) if did.startswith("did:trellis:") else None
        if network is not None and network.cached_did(did) is entry:
            remember(self._keys, key_id, (network, entry, found, did), KEYS_KEPT)
        return entry, found

    def _reread(self, did: str, entry: DIDEntry) -> DIDEntry:
        """``did``'s entry read again past the cache, or ``entry`` when re-read too recently, beyond
        the budget of re-reads, or unreadable."""
        cache = self.cache(did)
        now = cache.clock()
        with self._rereads_lock:
            last = self._rereads.get(did)
            if last is not None and now - last < self.policy.key_reread_interval:
                return entry
            if not self._spend(now):
                self.rereads_refused += 1
                return entry
            self._rereads.put(did, now)
            self.rereads += 1
        try:
            fresh = cache.reread(did)
        except _LEDGER_ERRORS:
            return entry  # the key is refused as not authorized, as the cached document says
        return entry if fresh is None else fresh

    def _spend(self, now: float) -> bool:
        """Take one re-read from the bucket, which holds :attr:`reread_rate` at most (one at least,
        none when the rate is 0) and refills at that rate a second (under the re-reads lock); False
        when it is empty."""
        rate = self.reread_rate
        size = max(1.0, rate) if rate > 0 else 0.0
        if self._budget_at is None:
            self._budget, self._budget_at = size, now
        elif now > self._budget_at:  # (a clock set back refills nothing until it passes this again)
            self._budget += (now - self._budget_at) * rate
            self._budget_at = now
        self._budget = min(self._budget, size)
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    def prefetch(self, dids: Sequence[str]) -> None:
        """Read the entries of ``dids`` not yet cached, one proven round trip per network."""
        by_network: dict[str, list[str]] = {}
        for did in dids:
            try:
                by_network.setdefault(parse_trellis_did(did).network, []).append(did)
            except InvalidDID:
                continue
        for network, group in by_network.items():
            cache = self.caches.get(network)
            if cache is None:
                continue
            try:
                self.ensure_fresh(cache, None)
                cache.dids(group)
            except (Refused, *_LEDGER_ERRORS):
                continue  # each item is then refused on its own, with its own reason

"""Test doubles for services that embed the verifier: a ledger in memory, no node, no network.

:class:`StaticLedger` holds the same records a Trellis ledger does (DID records, status lists, the
trust registry, the quarantine list) in a dictionary, and :meth:`StaticLedger.verifier` builds a
:class:`~verifier.Verifier` that reads them. Changes (revoking, quarantining, rotating a key) take
effect at once, as a new block would, and end the sessions they concern::

    ledger = StaticLedger()
    issuer = ledger.add_issuer(issuer_key)                  # accredited for DeviceCredential
    status_url = ledger.create_status_list(issuer, "devices")
    device = ledger.add_device(device_key)
    verifier = ledger.verifier()
    ...                                                     # issue a credential, answer a challenge
    ledger.set_status(issuer, "devices", index)             # revoked from now on
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from did_registry.client import LedgerUnavailable
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import initial_document, trellis_did
from verifier.ledger_cache import Changes, LedgerCache
from verifier.policy import Policy
from verifier.verifier import Verifier

__all__ = ["STATUS_BASE_URL", "StaticLedger"]

STATUS_BASE_URL: Final = "https://ledger.test"
"""Where a :class:`StaticLedger`'s status lists claim to be served (the verifier reads only the path)."""
_TIME: Final = "2026-01-01T00:00:00Z"


class StaticLedger:
    """An in-memory ledger of one network: a :class:`~verifier.ledger_cache.LedgerSource` for tests."""

    def __init__(self, network: str = "testnet") -> None:
        self.network = network
        self.height = 1
        self.state: dict[str, Any] = {}
        self.unreachable = False
        self._caches: list[LedgerCache] = []

    # -- the source -------------------------------------------------------------------------
    def fetch(self, keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
        """The values under ``keys`` (``None`` when absent) and the current height (never behind)."""
        if self.unreachable:
            raise LedgerUnavailable(f"the static ledger {self.network} is offline")
        return [self.state.get(k) for k in keys], self.height

    def go_offline(self) -> None:
        """From now on no record can be read: cached ones age, and the verifiers go stale (``too_stale``)."""
        self.unreachable = True
        for cache in self._caches:
            cache.live = False
            cache.confirm(self.height)

    def go_online(self) -> None:
        """Records can be read again and the verifiers are fresh."""
        self.unreachable = False
        for cache in self._caches:
            cache.live = True

    def verifier(
        self, policy: Policy | None = None, *, clock: Callable[[], float] = time.time, **options: Any
    ) -> Verifier:
        """A :class:`~verifier.Verifier` that trusts this ledger (and resolves did:key locally)."""
        verifier = Verifier([], policy, clock=clock, follow=False, **options)
        self.attach(verifier)
        return verifier

    def attach(self, verifier: Verifier) -> None:
        """Make ``verifier`` trust this ledger's network too (several networks, each by its DIDs' segment)."""
        cache = LedgerCache(self.network, self, clock=verifier.clock, live=not self.unreachable)
        cache.confirm(self.height)
        verifier._attach(cache)
        self._caches.append(cache)

    def _changed(self, **changes: Any) -> None:
        self.height += 1
        for cache in self._caches:
            cache.invalidate(Changes(self.height, **changes))

    # -- DIDs -------------------------------------------------------------------------------
    def did_for(self, key: Ed25519PrivateKey) -> str:
        """The did:trellis of ``key`` on this network."""
        return str(trellis_did(self.network, key.public_key))

    def add_did(self, document: DIDDocument | Mapping[str, Any]) -> str:
        """Put a DID document on the ledger; return its DID."""
        parsed = document if isinstance(document, DIDDocument) else DIDDocument.from_json(document)
        did = str(parsed.id)
        version = int(self.state.get(f"did:{did}", {}).get("version", 0)) + 1
        self.state[f"did:{did}"] = {
            "document": parsed.to_json(),
            "version": version,
            "created": _TIME,
            "updated": _TIME,
            "deactivated": False,
            "endorser": did,
            "txn": "static",
            "height": self.height,
        }
        self._changed(dids=frozenset({did}), ended=frozenset({did}) if version > 1 else frozenset())
        return did

    def add_device(self, key: Ed25519PrivateKey) -> str:
        """Put the initial did:trellis document of ``key`` on the ledger; return the DID."""
        did = self.did_for(key)
        return self.add_did(initial_document(did, key.public_key))

    def update(self, did: str, document: DIDDocument | Mapping[str, Any]) -> None:
        """Replace the document of ``did`` (a key rotation, for instance)."""
        parsed = document if isinstance(document, DIDDocument) else DIDDocument.from_json(document)
        if str(parsed.id) != did:
            raise ValueError(f"the document is for {parsed.id}, not {did}")
        self.add_did(parsed)

    def deactivate(self, did: str) -> None:
        """Deactivate ``did`` (final)."""
        self.state[f"did:{did}"] = dict(self.state[f"did:{did}"], deactivated=True)
        self._changed(dids=frozenset({did}), ended=frozenset({did}))

    # -- issuers ----------------------------------------------------------------------------
    def add_issuer(self, key: Ed25519PrivateKey, types: Iterable[str] = ("DeviceCredential",)) -> str:
        """Put an issuer's DID on the ledger with the issuer role, accredited for ``types``."""
        did = self.add_device(key)
        self.state[f"role:{did}"] = ["issuer"]
        self.accredit(did, types)
        return did

    def accredit(self, issuer: str, types: Iterable[str]) -> None:
        """Accredit ``issuer`` for ``types`` in the trust registry."""
        current = set(self.state.get(f"trust:{issuer}", []))
        self.state[f"trust:{issuer}"] = sorted(current | set(types))
        self._changed(issuers=frozenset({issuer}))

    def withdraw(self, issuer: str) -> None:
        """Withdraw every accreditation of ``issuer``."""
        self.state.pop(f"trust:{issuer}", None)
        self._changed(issuers=frozenset({issuer}))

    # -- status lists -----------------------------------------------------------------------
    def create_status_list(
        self, issuer: str, name: str, purpose: str = "revocation", length: int = 131_072
    ) -> str:
        """Create an all-clear status list; return the ``statusListCredential`` URL to put in credentials."""
        self.state[f"status:{issuer}:{name}"] = {
            "issuer": issuer,
            "list": name,
            "purpose": purpose,
            "length": length,
            "bits": base64.urlsafe_b64encode(bytes(length // 8)).decode(),
            "version": 1,
            "updated": _TIME,
            "height": self.height,
        }
        self._changed(status_set={(issuer, name): frozenset()})
        return f"{STATUS_BASE_URL}/status-lists/{issuer}/{name}/credential"

    def set_status(self, issuer: str, name: str, index: int, value: bool = True) -> None:
        """Set (or clear) bit ``index`` of a status list: revoke, suspend or reinstate."""
        record = self.state[f"status:{issuer}:{name}"]
        bits = bytearray(base64.urlsafe_b64decode(record["bits"]))
        mask = 0x80 >> (index & 7)
        bits[index >> 3] = bits[index >> 3] | mask if value else bits[index >> 3] & ~mask
        self.state[f"status:{issuer}:{name}"] = dict(
            record, bits=base64.urlsafe_b64encode(bytes(bits)).decode(), version=record["version"] + 1
        )
        self._changed(status_set={(issuer, name): frozenset({index} if value else ())})

    # -- quarantine -------------------------------------------------------------------------
    def quarantine(self, did: str, description: str = "reported in a test") -> None:
        """Put ``did`` on the quarantine list."""
        self.state[f"quarantine:{did}"] = {
            "did": did,
            "reporter": "static",
            "evidence": {"hash": "00" * 32, "description": description},
            "height": self.height,
            "time": _TIME,
            "txn": "static",
        }
        self._changed(dids=frozenset({did}), ended=frozenset({did}))

    def clear_quarantine(self, did: str) -> None:
        """Take ``did`` off the quarantine list."""
        self.state.pop(f"quarantine:{did}", None)
        self._changed(dids=frozenset({did}))

"""DID Resolution of ``did:trellis`` from proven ledger records (W3C DID Resolution results).

A part of :class:`~did_registry.client.LedgerClient`: a DID's record is read with a proven read
(:mod:`did_registry.proven_reads`), one at a time or in batches for a whole fleet.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from did_registry.errors import InvalidDID
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import parse_trellis_did
from did_registry.identity.resolution import (
    INVALID_DID,
    INVALID_OPTIONS,
    METHOD_NOT_SUPPORTED,
    NOT_FOUND,
    DocumentMetadata,
    ResolutionResult,
)
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.block import BlockHeader
from did_registry.proven_reads import ProvenReads

__all__ = [
    "DidResolution",
]

_VERSION_ID = re.compile(r"[1-9][0-9]{0,17}")  # a versionId option: a DID's version, as the nodes take it


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of answers is decoded.

    Decoding a thousand proven DID records allocates hundreds of thousands of acyclic objects, which
    makes CPython run full collections over the whole heap again and again (measured: 3x the cost of
    the decoding itself). Reference counting still frees everything; only cycle detection waits.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class DidResolution(ProvenReads):
    """The DID resolution of a :class:`~did_registry.client.LedgerClient`, from proven records."""

    def resolve_record(
        self, did: str, version: int | None = None
    ) -> tuple[dict[str, Any] | None, BlockHeader]:
        """The proven ledger record of ``did`` (current, or one version), or ``None`` if absent."""
        key = f"did:{did}" if version is None else f"didv:{did}:{version}"
        value, header = self.prove(key)
        return value, header

    def resolve_many(self, dids: Sequence[str], *, chunk: int = 500) -> list[ResolutionResult]:
        """Resolve many DIDs of this network with batched, proven reads of ``chunk`` DIDs each.

        The next chunk is fetched while the current one is checked, so the node's work and the
        client's overlap (how a verifier warms its cache for a whole fleet).
        """
        if not 1 <= chunk <= 1000:
            raise ValueError("chunk is 1 to 1,000 DIDs")
        results: dict[int, ResolutionResult] = {}
        wanted: list[tuple[int, str]] = []
        for index, did in enumerate(dids):
            refused = self._refuse(did)
            if refused is not None:
                results[index] = refused
            else:
                wanted.append((index, did))
        batches = [wanted[i : i + chunk] for i in range(0, len(wanted), chunk)]
        with _cyclic_gc_paused(), ThreadPoolExecutor(max_workers=1) as fetcher:
            pending = (
                fetcher.submit(self.prove_many, [f"did:{d}" for _, d in batches[0]]) if batches else None
            )
            for number, batch in enumerate(batches):
                assert pending is not None
                records, _ = pending.result()
                if number + 1 < len(batches):
                    pending = fetcher.submit(self.prove_many, [f"did:{d}" for _, d in batches[number + 1]])
                for (index, did), record in zip(batch, records, strict=True):
                    results[index] = self._result(did, record)
        return [results[i] for i in range(len(dids))]

    def _refuse(self, did: str) -> ResolutionResult | None:
        try:
            network = parse_trellis_did(did).network
        except InvalidDID as exc:
            method = did.split(":")[1] if did.count(":") >= 2 else ""
            if did.startswith("did:") and method and method != "trellis":
                return ResolutionResult.failure(
                    METHOD_NOT_SUPPORTED, f"this client resolves did:trellis, not did:{method}"
                )
            return ResolutionResult.failure(INVALID_DID, exc.reason)
        if network != self.genesis.network:
            return ResolutionResult.failure(
                NOT_FOUND, f"{did} belongs to network {network!r}, not {self.genesis.network!r}"
            )
        return None

    @staticmethod
    def _result(did: str, record: dict[str, Any] | None) -> ResolutionResult:
        if record is None:
            return ResolutionResult.failure(NOT_FOUND, f"{did} is not on the ledger")
        metadata = DocumentMetadata(
            created=parse_timestamp(record["created"]),
            updated=parse_timestamp(record["updated"]),
            deactivated=bool(record["deactivated"]),
            version_id=str(record["version"]),
        )
        return ResolutionResult.success(DIDDocument.from_json(record["document"]), metadata)

    def resolve(self, did: str, *, version_id: str | None = None) -> ResolutionResult:
        """A W3C DID Resolution result built from a proven record."""
        refused = self._refuse(did)
        if refused is not None:
            return refused
        version = None
        if version_id is not None:
            if not _VERSION_ID.fullmatch(version_id):  # a bad resolution option, not a bad DID
                return ResolutionResult.failure(
                    INVALID_OPTIONS, "versionId is a decimal version number from 1"
                )
            version = int(version_id)
        record, _ = self.resolve_record(did, version)
        return self._result(did, record)

"""Ledger state: string keys to canonical JSON values, read through overlays, committed by a map root.

State is a pure function of the blocks. Every value is stored as its RFC 8785 bytes; the state
root is the root of the sparse Merkle map (:mod:`did_registry.ledger.smt`) from SHA-256(key) to
SHA-256(value). The keys (documented in ``docs/ledger.md``)::

    network                         the genesis parameters (network name, consensus, quorums)
    did:<did>                       current DID record: document, version, created/updated, deactivated, endorser
    didv:<did>:<version>            every earlier version of the record (versionId queries, proven)
    nonce:<did>                     the submitter's last nonce
    role:<did>                      the roles a DID holds
    status:<issuer>:<list>          a status list: issuer, purpose, length, bits (base64url), version
    trust:<issuer>                  the credential types an issuer is accredited for
    quarantine:<did>                a quarantine report with evidence
    validators                      the validator set and pending changes
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from did_registry.identity.crypto import sha256
from did_registry.identity.jcs import canonicalize

__all__ = ["StateReader", "StateView", "decode_value", "encode_value", "value_hash"]


class StateReader(Protocol):
    """Anything that reads committed state: a store, or a view over one."""

    def get(self, key: str) -> bytes | None:
        """The canonical bytes stored under ``key``, or ``None``."""
        ...


def encode_value(value: Any) -> bytes:
    """The canonical (JCS) bytes of a state value."""
    return canonicalize(value)


def decode_value(raw: bytes) -> Any:
    """Parse a state value."""
    return json.loads(raw)


def value_hash(raw: bytes) -> bytes:
    """What the state map commits to for a value: its SHA-256."""
    return sha256(raw)


class StateView:
    """Reads through to ``base``; writes stay in this view until merged or thrown away.

    Views nest: a block executes in one view over the committed state, each transaction in a child
    view that is merged into the block's view only when the transaction is accepted.
    """

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self._changes: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key`` as this view sees them."""
        if key in self._changes:
            return self._changes[key]
        return self._base.get(key)

    def get_json(self, key: str) -> Any:
        """The value under ``key``, parsed, or ``None``."""
        raw = self.get(key)
        return None if raw is None else decode_value(raw)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (any JSON value, or its canonical bytes from :func:`encode_value`) under ``key``."""
        self._changes[key] = value if isinstance(value, bytes) else encode_value(value)

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        self._changes[key] = None

    def child(self) -> StateView:
        """A view whose writes can be merged into this one or dropped."""
        return StateView(self)

    def merge(self, child: StateView) -> None:
        """Take ``child``'s writes into this view."""
        self._changes.update(child._changes)

    @property
    def changes(self) -> Mapping[str, bytes | None]:
        """Every key this view wrote (``None`` for a deletion), in write order."""
        return self._changes

    def changed_keys(self) -> Iterator[str]:
        """The keys written, sorted (a deterministic order for commitments)."""
        return iter(sorted(self._changes))

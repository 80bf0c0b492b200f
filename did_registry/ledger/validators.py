"""The validator set: who certifies blocks, and changes to it that take effect at a named height.

State key ``validators`` holds ``{"set": [validator…], "pending": [{"height", "action", "change"}…],
"since": height}`` (``since``: the height from which the set has been in force, 0 for genesis; a
reader learning the changes one by one checks with it that none was left out) where a validator is ``{"id", "public_key" (Multikey), "address" ("host:port")}``. Changes are made by
``validator.add`` / ``validator.remove`` / ``validator.rotate_key`` transactions (m-of-n trustees) and
applied at the start of the block at their ``height``. A block is final with signatures of a quorum
``n - f`` of the set in force at its height, where ``f = (n - 1) // 3`` (so ``2f + 1`` when ``n = 3f + 1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from did_registry.identity.crypto import Ed25519PublicKey, sha256
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multikey import decode_ed25519_public_key
from did_registry.ledger.state import StateView

__all__ = [
    "Validator",
    "ValidatorSet",
    "ValidatorSetError",
    "activate",
    "current",
    "record_at",
    "schedule",
    "scheduled",
    "set_at",
    "valid_address",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ADDRESS = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,253}:([0-9]{1,5})")


def valid_address(address: object) -> bool:
    """Whether ``address`` is ``host:port`` (or ``[v6]:port``) with a port a peer can dial: 1 to 65535."""
    match = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    return match is not None and 1 <= int(match.group(1)) <= 65535


class ValidatorSetError(ValueError):
    """A validator set change is malformed or conflicts with the set."""


@dataclass(frozen=True, slots=True)
class Validator:
    """One validator: its id, its Ed25519 key (Multikey) and where its peers reach it."""

    id: str
    public_key: str
    address: str

    @property
    def key(self) -> Ed25519PublicKey:
        """The decoded public key."""
        return decode_ed25519_public_key(self.public_key)

    def to_json(self) -> dict[str, str]:
        """The JSON form."""
        return {"id": self.id, "public_key": self.public_key, "address": self.address}

    @classmethod
    def from_json(cls, data: Any) -> Validator:
        """Parse and check a validator entry."""
        if not isinstance(data, Mapping) or set(data) != {"id", "public_key", "address"}:
            raise ValidatorSetError("a validator is {id, public_key, address}")
        validator = cls(data["id"], data["public_key"], data["address"])
        if not isinstance(validator.id, str) or not _ID.fullmatch(validator.id):
            raise ValidatorSetError(f"bad validator id {validator.id!r}")
        if not valid_address(validator.address):
            raise ValidatorSetError(
                f"bad validator address {validator.address!r}: host:port with a port from 1 to 65535"
            )
        decode_ed25519_public_key(validator.public_key)
        return validator


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The validators in force at a height, with the quorum that certifies a block."""

    validators: tuple[Validator, ...]

    @property
    def n(self) -> int:
        """How many validators."""
        return len(self.validators)

    @property
    def f(self) -> int:
        """How many byzantine validators the set tolerates."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Signatures a commit certificate needs: ``n - f``."""
        return self.n - self.f

    def by_id(self, validator_id: str) -> Validator | None:
        """The validator with this id, or ``None``."""
        return next((v for v in self.validators if v.id == validator_id), None)

    def hash(self) -> str:
        """Hex SHA-256 of the set's canonical JSON (block headers carry it)."""
        return sha256(canonicalize([v.to_json() for v in self.validators])).hex()

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> ValidatorSet:
        """Parse a list of validators; ids and keys must be unique and the set non-empty."""
        validators = tuple(Validator.from_json(v) for v in data)
        if not validators:
            raise ValidatorSetError("a validator set cannot be empty")
        if len({v.id for v in validators}) != len(validators) or len(
            {v.public_key for v in validators}
        ) != len(validators):
            raise ValidatorSetError("validator ids and keys must be unique")
        return cls(validators)


def current(view: StateView) -> ValidatorSet:
    """The validator set in force in ``view``."""
    return ValidatorSet.from_json(view.get_json("validators")["set"])


def _apply(members: list[dict[str, Any]], action: str, change: Mapping[str, Any]) -> list[dict[str, Any]]:
    ids = [m["id"] for m in members]
    if action == "add":
        validator = Validator.from_json(change.get("validator")).to_json()
        if validator["id"] in ids or any(m["public_key"] == validator["public_key"] for m in members):
            raise ValidatorSetError(f"validator {validator['id']} (or its key) is already in the set")
        return [*members, validator]
    target = change.get("id")
    if target not in ids:
        raise ValidatorSetError(f"no validator {target!r} in the set")
    if action == "remove":
        if len(members) == 1:
            raise ValidatorSetError("refusing to remove the last validator")
        return [m for m in members if m["id"] != target]
    if action == "rotate_key":
        key = change.get("public_key")
        if any(m["public_key"] == key for m in members):
            raise ValidatorSetError("that key is already in the set")
        return [dict(m, public_key=key) if m["id"] == target else m for m in members]
    raise ValidatorSetError(f"unknown validator action {action!r}")


def schedule(view: StateView, action: str, change: Mapping[str, Any], height: int) -> None:
    """Record a change to take effect at ``height``; refuse one that conflicts with the set by then."""
    record = view.get_json("validators")
    expected = {"add": {"validator"}, "remove": {"id"}, "rotate_key": {"id", "public_key"}}[action]
    if set(change) != expected:
        raise ValidatorSetError(f"validator.{action} takes {sorted(expected)} and effective_height")
    members = record["set"]
    for pending in sorted(record["pending"], key=lambda p: p["height"]):
        if pending["height"] <= height:
            members = _apply(members, pending["action"], pending["change"])
    _apply(members, action, change)
    record["pending"].append({"height": height, "action": action, "change": dict(change)})
    view.put("validators", record)


def _due(record: Mapping[str, Any], height: int) -> list[dict[str, Any]] | None:
    """The members of ``record``'s set once the changes due at or before ``height`` are applied, or
    ``None`` when none is due."""
    due = sorted((p for p in record["pending"] if p["height"] <= height), key=lambda p: p["height"])
    if not due:
        return None
    members = record["set"]
    for pending in due:
        try:
            members = _apply(members, pending["action"], pending["change"])
        except ValidatorSetError:
            continue  # a change made moot by an earlier one is dropped, the same way on every node
    return list(members)


def activate(view: StateView, height: int) -> bool:
    """Apply the changes due at or before ``height``; return whether the set changed."""
    record = view.get_json("validators")
    members = _due(record, height)
    if members is None:
        return False
    since = height if members != record["set"] else record["since"]  # a moot change changes nothing
    record = {
        "set": members,
        "pending": [p for p in record["pending"] if p["height"] > height],
        "since": since,
    }
    view.put("validators", record)
    return True


def set_at(record: Any, height: int) -> ValidatorSet:
    """The set in force at ``height`` by the ``validators`` state record of a block before it: its set
    with the pending changes due by then applied, as :func:`activate` applies them. A reader holding
    that record proven against a certified header learns the set that certifies later blocks (until
    a change scheduled after that header falls due)."""
    if not isinstance(record, Mapping) or not isinstance(record.get("set"), list):
        raise ValidatorSetError("a validators record is {set: [...], pending: [...]}")
    pending = record.get("pending")
    if not isinstance(pending, list) or not all(
        isinstance(p, Mapping) and type(p.get("height")) is int and isinstance(p.get("change"), Mapping)
        for p in pending
    ):
        raise ValidatorSetError("a validators record's pending changes are {height, action, change}")
    members = _due(record, height)
    return ValidatorSet.from_json(record["set"] if members is None else members)


class _NoState:
    def get(self, key: str) -> bytes | None:
        return None


def _record_view(record: Mapping[str, Any]) -> StateView:
    """A state view holding only ``record`` under ``validators``, to run the rules' functions on."""
    view = StateView(_NoState())
    view.put("validators", dict(record))
    return view


def scheduled(record: Mapping[str, Any], action: str, change: Mapping[str, Any], height: int) -> Any:
    """``record`` with ``change`` scheduled at ``height`` as :func:`schedule` does (``record`` itself is
    left as it is); raise :class:`ValidatorSetError` when the ledger would refuse the change."""
    view = _record_view(record)
    schedule(view, action, change, height)
    return view.get_json("validators")


def record_at(
    genesis_record: Mapping[str, Any],
    events: Iterable[tuple[int, str, Mapping[str, Any], int]],
    height: int,
) -> Any:
    """The ``validators`` state record as of block ``height`` (once that block is executed), replayed
    from block 0's record and the validator changes committed since.

    ``events`` are the committed ``validator.*`` transactions in block order, each as ``(block height,
    action, change, effective_height)`` where ``change`` is the transaction body without
    ``effective_height``; those of blocks after ``height`` are ignored. Each block with events first
    applies the changes due by its start, each at its own height (:func:`activate`), then schedules
    its events in order (:func:`schedule`), as the rules do; the changes due by block ``height`` are
    applied last. Raises :class:`ValidatorSetError` when an event does not replay (it was never committed so).
    """
    view = _record_view(genesis_record)
    for block, action, change, effective_height in events:
        if block > height:
            break
        if action not in {"add", "remove", "rotate_key"}:
            raise ValidatorSetError(f"unknown validator action {action!r}")
        _activate_through(view, block)
        schedule(view, action, change, effective_height)
    _activate_through(view, height)
    return view.get_json("validators")


def _activate_through(view: StateView, height: int) -> None:
    """:func:`activate` at each height up to ``height`` where a change falls due, as the blocks did
    (each change at its own height, which the record's ``since`` keeps)."""
    while True:
        due = [p["height"] for p in view.get_json("validators")["pending"] if p["height"] <= height]
        if not due:
            return
        activate(view, min(due))

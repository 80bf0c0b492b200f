"""``ValidatorTrust``: the validator sets a reader trusts, height by height, learned through the chain.

A reader starts from its trust anchor, the genesis validator set, in force from block 0. Each
``validator.add`` / ``validator.remove`` / ``validator.rotate_key`` takes effect at the start of the
block its ``effective_height`` names, and every change due at a height ``x`` was scheduled in a block
before it, so the ``validators`` state record as of block ``x - 1`` (its set and its pending changes)
says which set certifies block ``x``. A node proves that record against header ``x - 1``
(``GET /validators/changes``: one :class:`~did_registry.ledger.proofs.StateProof` per change, oldest
first), and the reader accepts it only when header ``x - 1`` is certified by the set the reader
already trusts at ``x - 1`` and the record's ``since`` (the height that set took effect) is the
reader's newest known change, so no change was left out between (a set that went A, B, A would
otherwise let a node skip B). Each change so learned rests on the one before it, down to genesis: a
node can withhold a change (the reader then refuses the newer headers and asks another node), never
make the reader trust a set at a height where the chain put another in force.

Each set is trusted for the heights from its change up to the next change the reader knows of. Past
the newest change it knows, a reader trusts the newest set: like every light client of a
permissioned chain, it must follow the chain often enough that validators removed long ago, whose
keys may since have leaked, cannot show it a forged continuation of their old set (the verifier
follows the header stream, so it learns each change from the block that brings it in).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final

from did_registry.errors import InvalidProof
from did_registry.ledger.genesis import Genesis, genesis_state
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.smt import MemoryNodeStore, SparseMerkleMap
from did_registry.ledger.state import value_hash
from did_registry.ledger.validators import ValidatorSet, ValidatorSetError, set_at

__all__ = ["CHANGES_KEY", "LearningRounds", "ValidatorTrust", "genesis_root"]

CHANGES_KEY: Final = "validators"
"""The state key whose proven record says which set certifies the next blocks."""


def genesis_root(genesis: Genesis) -> str:
    """The state root of block 0 of ``genesis``'s chain (hex), computed from the genesis document: block
    0 carries no certificate, a reader trusts it by this root."""
    view = genesis_state(genesis)
    changes = {k: v for k, v in view.changes.items() if v is not None}
    root = SparseMerkleMap(MemoryNodeStore()).update({k.encode(): value_hash(v) for k, v in changes.items()})
    return root.hex()


class LearningRounds:
    """The state of the rounds of questions about set changes that the readers sharing one
    :class:`ValidatorTrust` ask the nodes (``LedgerClient``): one round at a time, whichever reader
    runs it, so that several clients of one verifier do not each ask every node."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Held by the reader running a round."""
        self.count = 0
        """Rounds run so far."""
        self.fruitless = -math.inf
        """When the last round that learned nothing ended (``time.monotonic``)."""


class ValidatorTrust:
    """The sets a reader of one network trusts, each from the height its change took effect. Several
    readers of one network may share one (a verifier's clients do): what one learns, all trust."""

    def __init__(self, genesis: Genesis, root: str | None = None) -> None:
        """``root``: :func:`genesis_root` of ``genesis``, when the caller has it already."""
        first = ValidatorSet.from_json(genesis.validators)
        self.network = genesis.network
        self._genesis_root = genesis_root(genesis) if root is None else root
        # (heights each set is in force from, the sets with their hashes, the proofs): replaced whole,
        # never changed, so a reader without the lock sees one consistent state
        self._state: tuple[tuple[int, ...], tuple[tuple[ValidatorSet, str], ...], tuple[StateProof, ...]] = (
            (0,),
            ((first, first.hash()),),
            (),
        )
        self._lock = threading.Lock()
        self._out_of_band: dict[str, ValidatorSet] = {}
        self.rounds = LearningRounds()
        """The rounds of questions the readers sharing this trust ask."""

    @property
    def genesis_root(self) -> str:
        """The state root of block 0 of the chain this trust starts from (it names the genesis)."""
        return self._genesis_root

    def trust_out_of_band(self, validators: ValidatorSet) -> None:
        """Trust ``validators`` at every height (learned out of band, the operator's decision)."""
        self._out_of_band = {**self._out_of_band, validators.hash(): validators}

    def out_of_band(self, validators_hash: str) -> ValidatorSet | None:
        """The set trusted out of band whose hash is ``validators_hash``, if any."""
        return self._out_of_band.get(validators_hash)

    def at(self, height: int) -> tuple[ValidatorSet, str]:
        """The set (and its hash) this reader trusts to certify block ``height``."""
        heights, sets, _ = self._state
        return sets[bisect.bisect_right(heights, height) - 1]

    @property
    def newest_change(self) -> int:
        """The height from which the newest set this reader knows of is in force (0: genesis)."""
        return self._state[0][-1]

    def changes(self) -> list[dict[str, Any]]:
        """The proofs of every change learned so far, oldest first, as a node serves them: another
        reader of the same genesis can :meth:`learn` them without asking a node (a snapshot)."""
        return [change.to_json() for change in self._state[2]]

    def learn(self, changes: Iterable[StateProof]) -> int:
        """Check and trust each change in turn (oldest first); return how many were new.

        A change the reader already knows (at or below its newest) is passed over. The first that does
        not check out raises :class:`~did_registry.errors.InvalidProof` naming why; the ones before it
        stay learned, since each was proven on its own.
        """
        learned = 0
        with self._lock:
            for change in changes:
                heights, sets, proofs = self._state
                if change.header.height + 1 <= heights[-1]:
                    continue
                validators = self._check(change)
                self._state = (
                    (*heights, change.header.height + 1),
                    (*sets, (validators, validators.hash())),
                    (*proofs, change),
                )
                learned += 1
        return learned

    def _check(self, change: StateProof) -> ValidatorSet:
        header = change.header
        where = f"validator set change after block {header.height}"
        if change.key != CHANGES_KEY:
            raise InvalidProof("validators", f"{where}: proves {change.key!r}, not {CHANGES_KEY!r}")
        if header.network != self.network:
            raise InvalidProof("validators", f"{where}: a block of network {header.network!r}")
        heights, sets, _ = self._state
        newest = heights[-1]
        trusted, trusted_hash = sets[-1]  # header.height >= newest: the newest set is the one trusted there
        if header.validators_hash != trusted_hash:
            raise InvalidProof(
                "validators",
                f"{where}: block {header.height} names validator set {header.validators_hash[:16]}…, "
                f"not the one trusted there ({trusted_hash[:16]}…): an earlier change is missing",
            )
        record = change.verify(trusted, genesis_root=self._genesis_root)
        since = record.get("since") if isinstance(record, dict) else None
        if type(since) is not int or since != newest:
            # the set came back to one it was before (A, B, A): the header names the trusted set, but
            # the changes between are missing, and the sets of their heights would be trusted wrongly
            raise InvalidProof(
                "validators",
                f"{where}: the set in force at block {header.height} took effect at block {since}, not at "
                f"block {newest} where this reader's newest known change put it: a change between is missing",
            )
        try:
            validators = set_at(record, header.height + 1)
        except (ValidatorSetError, KeyError, TypeError, ValueError) as exc:
            raise InvalidProof("validators", f"{where}: the proven record holds no set: {exc}") from None
        if validators.hash() == trusted_hash:
            raise InvalidProof("validators", f"{where}: the set does not change at block {header.height + 1}")
        return validators

    @staticmethod
    def parse(items: Any) -> Sequence[StateProof]:
        """The changes of a node's answer or a snapshot (a list of state proofs, as JSON)."""
        if not isinstance(items, list):
            raise InvalidProof("validators", "validator set changes come as a list")
        return [StateProof.from_json(item) for item in items]

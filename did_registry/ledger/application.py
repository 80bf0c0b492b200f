"""The ledger application: what consensus drives, through propose / validate / commit.

Consensus orders opaque blocks; this class gives them meaning. ``propose`` executes candidate
transactions on top of the head state and builds a block of those the rules accept (the others are
returned with their rejection); ``validate`` re-executes a proposed block and checks every header
field, so a lying proposer is caught; ``commit`` checks the commit certificate against the validator
set in force and writes the block with its state changes in one store transaction. Execution is a
pure function of (head state, block): same blocks, same state root, on every node and backend.

A write the store reports failed may have happened all the same (PostgreSQL's answer to ``COMMIT``
lost with its connection): ``commit`` then reads the store's head again, and takes the block as
committed when the store holds exactly it; when the store holds anything but that block or the old
head, or cannot say, it raises :class:`StoreHeadLost`, and this application refuses to go on (a node
halts on it, and resumes from its store when restarted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from did_registry.errors import DidRegistryError, MissingMerkleNode
from did_registry.identity.timestamps import InvalidTimestamp, format_timestamp, parse_timestamp
from did_registry.ledger import validators as validator_set
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from did_registry.ledger.genesis import Genesis, genesis_state
from did_registry.ledger.rules import BlockContext, committed, did_of, execute, forget, preverify
from did_registry.ledger.smt import EMPTY_ROOT, NodeStore, SparseMerkleMap
from did_registry.ledger.state import StateView, value_hash
from did_registry.ledger.storage.base import Commit, LedgerStore
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.ledger.validators import ValidatorSet

__all__ = [
    "CHECK_HINT",
    "ExecutionMismatch",
    "Executed",
    "InvalidBlock",
    "LedgerApplication",
    "StoreHeadLost",
]

_log = logging.getLogger("did_registry.ledger")

CHECK_HINT = (
    "this node's stored state may differ from the certified chain: stop it and run"
    " `trellis node check --config <its file>`; if that finds the store corrupt, restore it, or move it"
    " aside and start the node on an empty database (it catches up from its peers)"
)
"""What to do when a certified block does not execute on this node as its header says."""


class InvalidBlock(DidRegistryError):
    """A proposed block does not follow from the head: wrong height, parent, roots or a bad transaction."""


class ExecutionMismatch(InvalidBlock):
    """A block's transactions match its header's ``txn_root``, but this node refuses one of them or
    executing them gives another state root or validator set. For a proposal, the proposer lies; for
    a certified block, this node's state is not its peers' (a store edited or damaged)."""


class StoreHeadLost(DidRegistryError):
    """After a write that failed, the store's head is neither this application's head nor the block
    it was writing (another process writes the database, or it was edited), or cannot be read: the
    application cannot tell what it holds and refuses to go on (a node halts, and resumes from its
    store when restarted)."""


class _BufferedNodes:
    """Map nodes written while executing a block, kept apart until the block commits."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store
        self.new: dict[bytes, bytes] = {}

    def get(self, node_hash: bytes, version: int) -> bytes | None:
        return self.new.get(node_hash) or self._store.node(node_hash, version)

    def get_many(self, nodes: list[tuple[bytes, int]]) -> dict[bytes, bytes]:
        new = self.new
        if not new:
            return self._store.nodes(nodes)
        found = {h: new[h] for h, _ in nodes if h in new}
        found.update(self._store.nodes([(h, v) for h, v in nodes if h not in found]))
        return found

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        self.new.update(nodes)


class _StoreNodes:
    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def get(self, node_hash: bytes, version: int) -> bytes | None:
        return self._store.node(node_hash, version)

    def get_many(self, nodes: list[tuple[bytes, int]]) -> dict[bytes, bytes]:
        return self._store.nodes(nodes)

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        raise RuntimeError("committed map nodes are written only through LedgerStore.append")


@dataclass(frozen=True, slots=True)
class Executed:
    """A block executed on the head state, ready to be certified and committed."""

    block: Block
    changes: Mapping[str, bytes | None]
    nodes: Mapping[bytes, bytes]
    rejected: tuple[tuple[Transaction, TxnRejected], ...] = ()


def _reads_of(txns: Sequence[Transaction]) -> Iterator[str]:
    """State keys executing ``txns`` reads first: each submitter's DID record and nonce, each
    signer's DID record and roles (a hint for the store; a key left out is read when needed)."""
    for txn in txns:
        yield f"did:{txn.submitter}"
        yield f"nonce:{txn.submitter}"
        for signature in txn.signatures:
            signer = did_of(signature.verification_method)
            yield f"did:{signer}"
            yield f"role:{signer}"


def _block_time(proposed: str, head: str) -> str:
    """A new block's time: the proposer's clock, never before the head's time, written in UTC whole
    seconds (compared as instants: the head's text may name a zone or sub-seconds)."""
    after = parse_timestamp(head)
    later = max(parse_timestamp(proposed), after)
    text = format_timestamp(later)
    if parse_timestamp(text) < after:  # the head's sub-seconds were cut: the next whole second
        text = format_timestamp(later + timedelta(seconds=1))
    return text


class LedgerApplication:
    """The deterministic state machine over a :class:`LedgerStore`."""

    def __init__(self, store: LedgerStore, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        stored = store.genesis()
        if store.height() is None:
            self._commit_genesis()
        elif stored is None or Genesis.from_json(stored).hash != genesis.hash:
            raise InvalidBlock("this store holds another network's chain (genesis differs)")
        height = store.height() or 0
        head = store.block(height)
        if head is None:
            raise InvalidBlock(f"the store's head is block {height}, which it does not hold")
        self._head: BlockHeader = head[0].header
        self._lost: str | None = None  # why the store's head is unknown (StoreHeadLost), once it is
        self._check_head(head[0], head[1])

    def _check_head(self, block: Block, certificate: CommitCertificate | None) -> None:
        """Re-check the stored head on start: its transactions, its parent link, its certificate, its state."""
        header = block.header
        if Block.txn_root_of(block.txns) != header.txn_root or len(block.txns) != header.txn_count:
            raise InvalidBlock(f"stored head {header.height}: transactions do not match the header")
        if header.height > 0:
            parent = self.store.block(header.height - 1)
            if parent is None or parent[0].header.hash.hex() != header.previous_hash:
                raise InvalidBlock(f"stored head {header.height} does not extend block {header.height - 1}")
            if certificate is None:
                raise InvalidBlock(f"stored head {header.height} has no commit certificate")
            try:  # the stored set is the one in force at the head: the set that certified it
                certificate.verify(header, validator_set.current(StateView(self.store)))
            except DidRegistryError as exc:
                raise InvalidBlock(f"stored head {header.height}: {exc}") from None
        elif header.previous_hash != self.genesis.hash.hex():
            raise InvalidBlock("stored block 0 does not hang from this genesis")
        try:
            self.state_map(bytes.fromhex(header.state_root))
        except DidRegistryError as exc:
            raise InvalidBlock(
                f"stored head {header.height}: its state root is not in the store: {exc}"
            ) from None

    # -- reading ----------------------------------------------------------------------------
    @property
    def head(self) -> BlockHeader:
        """The last committed header."""
        return self._head

    @property
    def height(self) -> int:
        """The last committed height."""
        return self._head.height

    def validators(self) -> ValidatorSet:
        """The validator set that certifies the next block (pending changes due then applied)."""
        view = StateView(self.store)
        validator_set.activate(view, self.height + 1)
        return validator_set.current(view)

    def state_map(self, root: bytes | None = None) -> SparseMerkleMap:
        """The state map at ``root`` (the head's by default; a committed block's), for proofs."""
        return self._map(_StoreNodes(self.store), root or bytes.fromhex(self._head.state_root))

    def _map(self, nodes: NodeStore, root: bytes) -> SparseMerkleMap:
        """The map at ``root`` over ``nodes``, at the version the store keeps the root's node at."""
        version = 0 if root == EMPTY_ROOT else self.store.root_version(root)
        if version is None:
            raise MissingMerkleNode(root)
        return SparseMerkleMap(nodes, root, version)

    # -- the consensus interface --------------------------------------------------------------
    def check(self, txn: Transaction) -> None:
        """Admission: would ``txn`` be accepted on top of the head? Raises :class:`TxnRejected`."""
        execute(StateView(self.store), txn, self._context(self.height + 1, self._head.time))

    def preverify(self, txns: Sequence[Transaction]) -> bool:
        """Warm what executing ``txns`` will need (documents parsed, signatures checked) without
        deciding anything: safe from any thread, without the node's lock (see :func:`rules.preverify`).
        ``False`` when a signature or document checked failed: executing will refuse one of them."""
        self.store.prefetch(_reads_of(txns), [txn.id for txn in txns])
        view = StateView(self.store)
        sound = True
        for txn in txns:
            sound = preverify(view, txn) and sound
        return sound

    def forget(self, txns: Sequence[Transaction]) -> None:
        """``txns`` will not be executed (refused at the door): drop what :meth:`preverify` kept of them."""
        forget(txns)

    def propose(self, txns: Sequence[Transaction], *, time: str, proposer: str) -> Executed:
        """Build the next block from ``txns``: accepted ones in order, rejected ones set apart."""
        self._require_head()
        height = self.height + 1
        time = _block_time(time, self._head.time)
        view, accepted, rejected = self._run(height, time, txns, strict=False)
        return self._seal(height, time, proposer, view, tuple(accepted), tuple(rejected))

    def validate(self, block: Block) -> Executed:
        """Re-execute a proposed block and check its header; raise :class:`InvalidBlock`
        (:class:`ExecutionMismatch` when its transactions match the header but do not execute here as
        it says)."""
        self._require_head()
        header = block.header
        if header.height != self.height + 1 or header.previous_hash != self._head.hash.hex():
            raise InvalidBlock(f"block {header.height} does not extend head {self.height}")
        if header.network != self.genesis.network:
            raise InvalidBlock(f"block of network {header.network!r}")
        try:
            time = parse_timestamp(header.time)
            if format_timestamp(time) != header.time:
                raise InvalidBlock(f"block time {header.time[:40]!r} is not in UTC whole seconds (…Z)")
            if time < parse_timestamp(self._head.time):
                raise InvalidBlock("block time goes backwards")
        except InvalidTimestamp as exc:
            raise InvalidBlock(str(exc)) from None
        if Block.txn_root_of(block.txns) != header.txn_root or len(block.txns) != header.txn_count:
            raise InvalidBlock(f"block {header.height}'s transactions do not match its header")
        view, accepted, _ = self._run(header.height, header.time, block.txns, strict=True)
        if (
            self.validators().by_id(header.proposer) is None
            and validator_set.current(view).by_id(header.proposer) is None
        ):
            raise InvalidBlock(f"block {header.height}'s proposer {header.proposer[:80]!r} is no validator")
        executed = self._seal(header.height, header.time, header.proposer, view, tuple(accepted), ())
        if executed.block.header != header:
            raise ExecutionMismatch(f"block {header.height}'s header does not match its execution")
        return executed

    def commit(self, executed: Executed, certificate: CommitCertificate) -> None:
        """Check the certificate and write the block, its state changes and map nodes atomically.

        When the store's write raises, its head is read again: the block is taken as committed if
        the store holds exactly it (the write happened, its answer was lost); the error is raised
        again if the store still holds the old head; :class:`StoreHeadLost` otherwise."""
        self._require_head()
        header = executed.block.header
        certificate.verify(header, self.validators())
        try:
            self.store.append(Commit(executed.block, certificate, executed.changes, executed.nodes))
        except Exception as exc:
            if not self._written_after_all(header, exc):
                raise
            _log.warning("block %d is stored although writing it raised %r: committed", header.height, exc)
        self._head = header
        committed(executed.block.txns)
        forget(txn for txn, _ in executed.rejected)

    # -- internals --------------------------------------------------------------------------
    def _require_head(self) -> None:
        if self._lost is not None:
            raise StoreHeadLost(self._lost)

    def _written_after_all(self, header: BlockHeader, error: Exception) -> bool:
        """After writing block ``header`` raised ``error``: whether the store holds it all the same
        (``False``: it holds the old head, the write did not happen). Raise :class:`StoreHeadLost`
        when it holds anything else or cannot be read (this application then refuses to go on)."""
        try:
            height = self.store.height()
            if height == self.height:
                return False
            stored = self.store.block(header.height) if height == header.height else None
        except Exception as exc:
            reason = (
                f"writing block {header.height} failed ({error!r:.300}) and the store's head cannot be"
                f" read ({exc!r:.300}): whether it holds the block is unknown"
            )
        else:
            if stored is not None and stored[0].header == header:
                return True
            reason = (
                f"writing block {header.height} failed ({error!r:.300}), and the store's head is now"
                f" block {height}: neither block {self.height} nor the block written (an earlier write of"
                " this node, reported failed, that went through later; another process writing this"
                " database; or a change behind the node's back)"
            )
        self._lost = reason + "; the node must restart and resume from what its store holds"
        raise StoreHeadLost(self._lost) from error

    def _context(self, height: int, time: str) -> BlockContext:
        return BlockContext(self.genesis.network, height, time)

    def _run(
        self, height: int, time: str, txns: Sequence[Transaction], *, strict: bool
    ) -> tuple[StateView, list[Transaction], list[tuple[Transaction, TxnRejected]]]:
        view = StateView(self.store)
        validator_set.activate(view, height)
        context = self._context(height, time)
        accepted: list[Transaction] = []
        rejected: list[tuple[Transaction, TxnRejected]] = []
        seen: set[str] = set()
        self.store.prefetch(_reads_of(txns), [txn.id for txn in txns])
        for txn in txns:
            child = view.child()
            try:
                if txn.id in seen or self.store.locate(txn.id) is not None:
                    raise TxnRejected("replay", f"transaction {txn.id} is already on the ledger")
                execute(child, txn, context)
            except TxnRejected as exc:
                if strict:
                    raise ExecutionMismatch(
                        f"block {height} holds a rejected transaction {txn.id}: {exc}"
                    ) from None
                exc.txn_id = txn.id
                rejected.append((txn, exc))
                continue
            seen.add(txn.id)
            view.merge(child)
            accepted.append(txn)
        return view, accepted, rejected

    def _seal(
        self,
        height: int,
        time: str,
        proposer: str,
        view: StateView,
        txns: tuple[Transaction, ...],
        rejected: tuple[tuple[Transaction, TxnRejected], ...],
    ) -> Executed:
        nodes = _BufferedNodes(self.store)
        state = self._map(nodes, bytes.fromhex(self._head.state_root))
        changes = {key: view.changes[key] for key in view.changed_keys()}
        root = state.update(
            {k.encode(): None if v is None else value_hash(v) for k, v in changes.items()}, version=height
        )
        header = BlockHeader(
            network=self.genesis.network,
            height=height,
            previous_hash=self._head.hash.hex(),
            time=time,
            proposer=proposer,
            txn_count=len(txns),
            txn_root=Block.txn_root_of(txns),
            state_root=root.hex(),
            validators_hash=validator_set.current(view).hash(),
        )
        return Executed(Block(header, txns), changes, nodes.new, rejected)

    def _commit_genesis(self) -> None:
        view = genesis_state(self.genesis)
        nodes = _BufferedNodes(self.store)
        changes = {key: view.changes[key] for key in view.changed_keys()}
        root = SparseMerkleMap(nodes).update(
            {k.encode(): value_hash(v) for k, v in changes.items() if v is not None}
        )
        header = BlockHeader(
            network=self.genesis.network,
            height=0,
            previous_hash=self.genesis.hash.hex(),
            time=self.genesis.time,
            proposer="genesis",
            txn_count=0,
            txn_root=Block.txn_root_of(()),
            state_root=root.hex(),
            validators_hash=validator_set.current(view).hash(),
        )
        genesis_json: dict[str, Any] = self.genesis.to_json()
        self.store.append(Commit(Block(header, ()), None, changes, nodes.new, genesis_json))

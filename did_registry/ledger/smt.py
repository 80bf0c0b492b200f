"""The authenticated map over the ledger state: a compressed binary sparse Merkle tree.

A Merkle binary radix trie keyed by ``key_hash = SHA-256(key)``, most significant bit first (the
"Jellyfish" compression of a 256-level sparse Merkle tree), with the 0x00/0x01 leaf/node domain
separation of RFC 6962 §2.1. Every subtree has one canonical form: empty is :data:`EMPTY_ROOT` (32 zero
bytes, never stored); one key is that key's leaf ``SHA-256(0x00 || key_hash || value_hash)``, at the
highest level where it is alone; two keys or more make an internal node ``SHA-256(0x01 || left ||
right)`` that splits on the bit of its depth (one side may be empty when all its keys share that bit).
So the root depends on the set of (key_hash, value_hash) pairs only, not on the order or batches of the
writes, and deleting a key restores the earlier root exactly. The map holds value *hashes*; the values
live in the ledger's state tables.

A node is stored under its hash as a *record*: a leaf's is its 65-byte hash preimage; an internal
node's is its 65-byte preimage followed by the *versions* of its two children, 8 bytes each, big-endian.
A version is the height of the block that stored a node (the ``version`` of an update); a store may
keep nodes under ``(version, hash)``, so that one block's nodes are written side by side rather than at
random places in a hash-ordered index, and a walk from a root with its version always knows where the
next node lies. Versions are not hashed: roots and proofs depend on the hashes alone. Nodes are never
changed, so every historical root stays provable while its nodes are kept. A batch of ``k`` writes
hashes O(k log n) nodes and stores the new ones with one ``put_many``; a changed root is always among
them, so a root's version is the height of the first block whose root it is. A :class:`MapProof` is the
siblings on a key's path and the terminal met there: the key's leaf (inclusion), another key's leaf or
an empty subtree (non-inclusion); :func:`verify_map_proof` checks it with no store.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Final, Protocol

from did_registry.errors import InvalidMerkleInput, InvalidProof, MissingMerkleNode

__all__ = [
    "EMPTY_ROOT",
    "KEY_BITS",
    "key_hash",
    "NodeStore",
    "BulkNodeStore",
    "MemoryNodeStore",
    "SparseMerkleMap",
    "MapProof",
    "children",
    "is_record_of",
    "verify_map_proof",
]

EMPTY_ROOT: Final = bytes(32)
"""The hash of an empty subtree, and the root of the empty map: 32 zero bytes."""

KEY_BITS: Final = 256
"""Bits in a key hash, so the greatest depth a node can have."""

_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"
_NODE_SIZE: Final = 65  # a hash preimage: a leaf's record
_RECORD_SIZE: Final = 81  # an internal node's record: its preimage and its children's versions
_TOP_BIT: Final = KEY_BITS - 1


def key_hash(key: bytes) -> bytes:
    """``SHA-256(key)``: where a key lives in the map."""
    return sha256(key).digest()


class NodeStore(Protocol):
    """Content-addressed node storage: a node's record under its SHA-256 hash and version."""

    def get(self, node_hash: bytes, version: int) -> bytes | None:
        """The record of the node ``node_hash`` stored at ``version``, or None (a store that keeps
        nodes by hash alone may ignore ``version``)."""
        ...

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        """Store every ``hash -> record`` pair of one update, at its version (never changed once stored)."""
        ...


class BulkNodeStore(NodeStore, Protocol):
    """A :class:`NodeStore` that reads many nodes at once (a database: one query, not one each)."""

    def get_many(self, nodes: list[tuple[bytes, int]]) -> Mapping[bytes, bytes]:
        """The stored records among ``(hash, version)`` pairs, by hash (absent ones left out)."""
        ...


class MemoryNodeStore:
    """A :class:`NodeStore` in a dict: for tests, tools and caches."""

    def __init__(self) -> None:
        self._nodes: dict[bytes, bytes] = {}

    def get(self, node_hash: bytes, version: int = 0) -> bytes | None:
        """The record stored under ``node_hash`` (at any version), or None."""
        return self._nodes.get(node_hash)

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        """Store every ``hash -> record`` pair."""
        self._nodes.update(nodes)

    def __len__(self) -> int:
        return len(self._nodes)


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidMerkleInput(f"{name} must be 32 bytes, not {value!r}")
    return value


def _load(get: Callable[[bytes, int], bytes | None], node: bytes, version: int) -> bytes:
    data = get(node, version)
    if data is None or not _is_record(data):
        raise MissingMerkleNode(node)  # pruned, or not a node at all
    return data


def _is_record(data: bytes) -> bool:
    return bool(data) and data[0] <= 1 and len(data) == (_NODE_SIZE if data[0] == 0 else _RECORD_SIZE)


def _versions(record: bytes) -> tuple[int, int]:
    """The versions of an internal node's left and right children."""
    return int.from_bytes(record[65:73], "big"), int.from_bytes(record[73:81], "big")


def is_record_of(node_hash: bytes, record: bytes) -> bool:
    """Whether ``record`` is a well-formed stored record of the node ``node_hash``."""
    return _is_record(record) and sha256(record[:_NODE_SIZE]).digest() == node_hash


def children(record: bytes) -> list[tuple[bytes, int]]:
    """The non-empty children of a node's ``record``, each with its version (none for a leaf)."""
    if record[0] == 0:
        return []
    left_version, right_version = _versions(record)
    pairs = ((record[1:33], left_version), (record[33:65], right_version))
    return [(child, version) for child, version in pairs if child != EMPTY_ROOT]


class _Batch:
    """One :meth:`SparseMerkleMap.update`: the sorted changes and the nodes it creates."""

    __slots__ = ("get", "ints", "leaves", "new", "version")

    def __init__(
        self,
        get: Callable[[bytes, int], bytes | None],
        ints: list[int],
        leaves: list[bytes | None],
        version: int,
    ) -> None:
        self.get = get  # the store's bound ``get``
        self.ints = ints  # key hashes as integers, ascending
        self.leaves = leaves  # the leaf node to write for each, or None to delete
        self.new: dict[bytes, bytes] = {}  # hash -> record, all at ``version``
        self.version = version

    def internal(self, left: bytes, left_version: int, right: bytes, right_version: int) -> bytes:
        """Store the internal node over ``left`` and ``right`` at this update's version; its hash."""
        preimage = _NODE + left + right
        node = sha256(preimage).digest()
        self.new[node] = preimage + left_version.to_bytes(8, "big") + right_version.to_bytes(8, "big")
        return node

    def at(self, node: bytes) -> int:
        """The version of a node this update made (0 for the empty subtree, which is never stored)."""
        return 0 if node == EMPTY_ROOT else self.version

    def preload(
        self, root: bytes, version: int, get_many: Callable[[list[tuple[bytes, int]]], Mapping[bytes, bytes]]
    ) -> None:
        """Read the stored nodes :meth:`apply` will walk from ``root`` (at ``version``) a level at a
        time, one ``get_many`` per level, and serve :meth:`apply`'s reads from them (the store for any
        other). A node missing or malformed is left for :meth:`apply` to meet and refuse."""
        loaded: dict[bytes, bytes] = {}
        ints = self.ints
        frontier = [(root, version, 0, len(ints), 0, 0)] if root != EMPTY_ROOT else []
        while frontier:
            found = get_many([(item[0], item[1]) for item in frontier])
            loaded.update(found)
            below = []
            for node, _, lo, hi, depth, base in frontier:
                data = found.get(node)
                if data is None or len(data) != _RECORD_SIZE or data[0] != 1 or depth > _TOP_BIT:
                    continue  # a leaf ends the path; apply() judges what is missing or malformed
                left_version, right_version = _versions(data)
                bit = 1 << (_TOP_BIT - depth)
                mid = bisect_left(ints, base | bit, lo, hi)
                if mid > lo and data[1:33] != EMPTY_ROOT:
                    below.append((data[1:33], left_version, lo, mid, depth + 1, base))
                if hi > mid and data[33:65] != EMPTY_ROOT:
                    below.append((data[33:65], right_version, mid, hi, depth + 1, base | bit))
            frontier = below
        store_get = self.get

        def get(node_hash: bytes, version: int) -> bytes | None:
            return loaded.get(node_hash) or store_get(node_hash, version)

        self.get = get

    def build(self, ints: list[int], leaves: list[bytes], lo: int, hi: int, depth: int, base: int) -> bytes:
        """The canonical subtree of ``leaves[lo:hi]`` (at least one) at ``depth`` under prefix ``base``."""
        if hi - lo == 1:
            data = leaves[lo]
            node = sha256(data).digest()
            self.new[node] = data
            return node
        bit = 1 << (_TOP_BIT - depth)
        mid = bisect_left(ints, base | bit, lo, hi)
        left = self.build(ints, leaves, lo, mid, depth + 1, base) if mid > lo else EMPTY_ROOT
        right = self.build(ints, leaves, mid, hi, depth + 1, base | bit) if hi > mid else EMPTY_ROOT
        return self.internal(left, self.at(left), right, self.at(right))

    def rebuild(self, lo: int, hi: int, depth: int, base: int, leaf: bytes | None) -> tuple[bytes, bool]:
        """Replace an empty subtree, or the single ``leaf``, by the changes ``lo:hi`` merged into it."""
        ints = self.ints[lo:hi]
        leaves = self.leaves[lo:hi]
        if leaf is not None:
            old = int.from_bytes(leaf[1:33], "big")
            at = bisect_left(ints, old)
            if at == len(ints) or ints[at] != old:  # the old key is not rewritten: keep it
                ints.insert(at, old)
                leaves.insert(at, leaf)
        kept_ints = [k for k, v in zip(ints, leaves, strict=True) if v is not None]
        kept = [v for v in leaves if v is not None]
        if not kept:
            return EMPTY_ROOT, False
        return self.build(kept_ints, kept, 0, len(kept), depth, base), len(kept) == 1

    def apply(
        self, node: bytes, version: int, lo: int, hi: int, depth: int, base: int
    ) -> tuple[bytes, int, bool | None]:
        """Write the changes ``lo:hi`` (all under prefix ``base``) into ``node`` (stored at ``version``):
        the new node, its version and whether it is a leaf."""
        if node == EMPTY_ROOT:
            new, leaf = self.rebuild(lo, hi, depth, base, None)
            return new, self.at(new), leaf
        data = _load(self.get, node, version)
        if data[0] == 0:
            new, leaf = self.rebuild(lo, hi, depth, base, data)
            return new, self.at(new), leaf
        if depth > _TOP_BIT:
            raise MissingMerkleNode(node)  # corrupt: an internal node below the last key bit
        left, right = data[1:33], data[33:65]
        left_version, right_version = _versions(data)
        bit = 1 << (_TOP_BIT - depth)
        mid = bisect_left(self.ints, base | bit, lo, hi)
        new_left, new_lv, left_leaf = (
            self.apply(left, left_version, lo, mid, depth + 1, base)
            if mid > lo
            else (left, left_version, None)
        )
        new_right, new_rv, right_leaf = (
            self.apply(right, right_version, mid, hi, depth + 1, base | bit)
            if hi > mid
            else (right, right_version, None)
        )
        if new_left == left and new_right == right:
            return node, version, False
        if new_left == EMPTY_ROOT:  # hoist a lone leaf; a lone internal node stays where it is
            if new_right == EMPTY_ROOT:
                return EMPTY_ROOT, 0, False
            if right_leaf or (right_leaf is None and _load(self.get, new_right, new_rv)[0] == 0):
                return new_right, new_rv, True
        elif new_right == EMPTY_ROOT and (
            left_leaf or (left_leaf is None and _load(self.get, new_left, new_lv)[0] == 0)
        ):
            return new_left, new_lv, True
        return self.internal(new_left, new_lv, new_right, new_rv), self.version, False


class SparseMerkleMap:
    """The map from keys to value hashes at one root, reading and writing nodes in a :class:`NodeStore`."""

    def __init__(self, store: NodeStore, root: bytes = EMPTY_ROOT, version: int = 0) -> None:
        """The map at ``root``, whose node ``store`` keeps at ``version`` (see the module docstring)."""
        _check_hash("a map root", root)
        if root != EMPTY_ROOT and store.get(root, version) is None:
            raise MissingMerkleNode(root)
        self._store = store
        self._root = root
        self._version = version if root != EMPTY_ROOT else 0

    @property
    def root(self) -> bytes:
        """The current root hash (:data:`EMPTY_ROOT` for the empty map)."""
        return self._root

    @property
    def version(self) -> int:
        """The version the root node is stored at (0 for the empty map)."""
        return self._version

    @property
    def store(self) -> NodeStore:
        """The node store this map reads and writes."""
        return self._store

    def _walk(self, key: bytes, siblings: list[bytes] | None) -> bytes | None:
        # Follow the key's path; return the terminal leaf node (any key's) or None for an empty subtree.
        path = int.from_bytes(sha256(key).digest(), "big")
        get = self._store.get
        node, version, shift = self._root, self._version, _TOP_BIT
        while node != EMPTY_ROOT:
            data = _load(get, node, version)
            if data[0] == 0:
                return data
            if shift < 0:
                raise MissingMerkleNode(node)  # corrupt: an internal node below the last key bit
            if (path >> shift) & 1:
                node, version = data[33:65], int.from_bytes(data[73:81], "big")
                if siblings is not None:
                    siblings.append(data[1:33])
            else:
                node, version = data[1:33], int.from_bytes(data[65:73], "big")
                if siblings is not None:
                    siblings.append(data[33:65])
            shift -= 1
        return None

    def get_value_hash(self, key: bytes) -> bytes | None:
        """The value hash stored for ``key``, or None if the key is absent."""
        leaf = self._walk(key, None)
        if leaf is None or leaf[1:33] != sha256(key).digest():
            return None
        return leaf[33:]

    def update(self, changes: Mapping[bytes, bytes | None], *, version: int = 0) -> bytes:
        """Apply a batch of ``key -> value hash`` (None deletes), store the new nodes at ``version``
        (the block's height; a version no earlier update of this store used), return the new root."""
        rows: list[tuple[int, bytes | None]] = []
        for key, value_hash in changes.items():
            if not isinstance(key, bytes):
                raise InvalidMerkleInput(f"a map key must be bytes, not {key!r}")
            hashed = sha256(key).digest()
            if value_hash is None:
                rows.append((int.from_bytes(hashed, "big"), None))
            else:
                _check_hash(f"the value hash of {key!r}", value_hash)
                rows.append((int.from_bytes(hashed, "big"), _LEAF + hashed + value_hash))
        if not rows:
            return self._root
        rows.sort(key=lambda row: row[0])
        batch = _Batch(self._store.get, [k for k, _ in rows], [leaf for _, leaf in rows], version)
        get_many = getattr(self._store, "get_many", None)
        if get_many is not None:  # a BulkNodeStore
            batch.preload(self._root, self._version, get_many)
        root, root_version, _ = batch.apply(self._root, self._version, 0, len(rows), 0, 0)
        if root != self._root:  # an unchanged root means every node is stored already
            if root != EMPTY_ROOT and root_version != version:  # an older node hoisted to the root:
                batch.new[root] = _load(batch.get, root, root_version)  # stored again, at this version
                root_version = version
            self._store.put_many(batch.new)
            self._root, self._version = root, root_version
        return root

    def prove(self, key: bytes) -> MapProof:
        """A proof of ``key``'s value hash, or of its absence, against :attr:`root`."""
        siblings: list[bytes] = []
        leaf = self._walk(key, siblings)
        return MapProof(tuple(siblings), None if leaf is None else (leaf[1:33], leaf[33:]))


def _refuse(reason: str) -> InvalidProof:
    return InvalidProof("map", reason)


def _hex(value: object, what: str) -> bytes:
    # bytes.fromhex accepts upper case and spaces; round-tripping through .hex() (both in C) keeps
    # only canonical lowercase hexadecimal, several times faster than a regular expression.
    try:
        raw = bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raw = None
    if raw is None or raw.hex() != value:
        raise _refuse(f"{what} must be lowercase hexadecimal, not {value!r}")
    return raw


@dataclass(frozen=True, slots=True)
class MapProof:
    """The path to a key: sibling hashes from the root down, and the terminal leaf (or None if empty)."""

    siblings: tuple[bytes, ...]
    """One hash per level, the root's other child first; :data:`EMPTY_ROOT` for an empty sibling."""
    leaf: tuple[bytes, bytes] | None
    """The ``(key_hash, value_hash)`` of the leaf the path ends at, or None if it ends in an empty subtree."""

    def __post_init__(self) -> None:
        if len(self.siblings) > KEY_BITS:
            raise _refuse(f"{len(self.siblings)} siblings is deeper than {KEY_BITS} levels")
        if not all(isinstance(s, bytes) and len(s) == 32 for s in self.siblings):
            raise _refuse("every sibling must be a 32-byte hash")
        if self.leaf is not None and (
            len(self.leaf) != 2 or not all(isinstance(h, bytes) and len(h) == 32 for h in self.leaf)
        ):
            raise _refuse("the leaf must be a pair of 32-byte hashes")

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``depth``, a ``bitmap`` of non-empty siblings, those siblings and the ``leaf``."""
        depth = len(self.siblings)
        width = (depth + 7) // 8
        bitmap = 0
        present = []
        for level, sibling in enumerate(self.siblings):
            if sibling != EMPTY_ROOT:
                bitmap |= 1 << (8 * width - 1 - level)  # level 0 is the first byte's top bit
                present.append(sibling.hex())
        mask = bitmap.to_bytes(width, "big").hex()
        leaf = None if self.leaf is None else {"keyHash": self.leaf[0].hex(), "valueHash": self.leaf[1].hex()}
        return {"depth": depth, "bitmap": mask, "siblings": present, "leaf": leaf}

    @classmethod
    def from_json(cls, value: object) -> MapProof:
        """Parse the form :meth:`to_json` writes, refusing anything else with :class:`InvalidProof`."""
        if not isinstance(value, dict) or set(value) != {"depth", "bitmap", "siblings", "leaf"}:
            raise _refuse("a map proof is an object with exactly depth, bitmap, siblings and leaf")
        depth, present = value["depth"], value["siblings"]
        if type(depth) is not int or not 0 <= depth <= KEY_BITS:
            raise _refuse(f"depth must be an integer in 0..{KEY_BITS}, not {depth!r}")
        width = (depth + 7) // 8
        raw = _hex(value["bitmap"], "bitmap")
        if len(raw) != width:
            raise _refuse(f"a bitmap for depth {depth} has {width} bytes, not {len(raw)}")
        bitmap = int.from_bytes(raw, "big")
        if bitmap & ((1 << (8 * width - depth)) - 1):
            raise _refuse("the bitmap has bits set beyond the depth")
        if not isinstance(present, list) or len(present) != bitmap.bit_count():
            raise _refuse("siblings must be a list with one hash per bit set in the bitmap")
        hashes = iter([_hex(item, "a sibling") for item in present])
        siblings = tuple(
            next(hashes) if (bitmap >> (8 * width - 1 - level)) & 1 else EMPTY_ROOT for level in range(depth)
        )
        leaf = value["leaf"]
        if leaf is None:
            return cls(siblings, None)
        if not isinstance(leaf, dict) or set(leaf) != {"keyHash", "valueHash"}:
            raise _refuse("leaf must be null or an object with exactly keyHash and valueHash")
        return cls(siblings, (_hex(leaf["keyHash"], "keyHash"), _hex(leaf["valueHash"], "valueHash")))


def verify_map_proof(root: bytes, key: bytes, value_hash: bytes | None, proof: MapProof) -> None:
    """Check that under ``root`` the map holds ``value_hash`` for ``key`` (None: that ``key`` is absent)."""
    hashed = sha256(key).digest()
    path = int.from_bytes(hashed, "big")
    siblings = proof.siblings
    depth = len(siblings)
    if proof.leaf is None:
        if value_hash is not None:
            raise _refuse("the path ends in an empty subtree, so the key is absent")
        node = EMPTY_ROOT
    else:
        leaf_key, leaf_value = proof.leaf
        if value_hash is not None:
            if leaf_key != hashed:
                raise _refuse("the path ends at the leaf of another key")
            if leaf_value != value_hash:
                raise _refuse("the key holds another value hash")
        elif leaf_key == hashed:
            raise _refuse("the path ends at this key's own leaf, so the key is present")
        elif depth and (int.from_bytes(leaf_key, "big") ^ path) >> (KEY_BITS - depth):
            raise _refuse("the leaf the path ends at is not on this key's path")
        node = sha256(_LEAF + leaf_key + leaf_value).digest()
    if depth and siblings[-1] == EMPTY_ROOT:
        raise _refuse("the deepest sibling is empty: the terminal would have moved up")
    shift = _TOP_BIT - depth + 1
    for sibling in reversed(siblings):
        node = sha256(_NODE + sibling + node if (path >> shift) & 1 else _NODE + node + sibling).digest()
        shift += 1
    if node != root:
        raise _refuse(f"the path leads to {node.hex()}, not to the root given")

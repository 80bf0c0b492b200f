"""The Merkle Tree Hash of RFC 6962 §2.1 (= RFC 9162 §2.1) with its audit paths and consistency proofs.

The tree over a list of byte strings ``D[n]`` (RFC 6962 §2.1):

- ``MTH({}) = SHA-256()``, the hash of the empty string;
- ``MTH({d0}) = SHA-256(0x00 || d0)`` (:func:`leaf_hash`);
- ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` for ``k`` the largest power of two below
  ``n`` (:func:`node_hash`).

That split builds the same tree as pairing hashes level by level and carrying an odd last hash up
unchanged, which is how :func:`root` and :func:`inclusion_proof` compute it (O(n) hashes, no recursion).
:func:`inclusion_proof` is the audit path ``PATH(m, D[n])`` of RFC 6962 §2.1.1 (leaf to root);
:func:`consistency_proof` is ``PROOF(m, D[n])`` of §2.1.2. Verification follows the iterative
algorithms of RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), so a proof is checked with
O(log n) hashes and no tree. A proof that does not verify raises :class:`~did_registry.errors.InvalidProof`;
asking for a proof of an index or size outside the tree raises
:class:`~did_registry.errors.InvalidMerkleInput`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256
from typing import Final

from did_registry.errors import InvalidMerkleInput, InvalidProof

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "root",
    "inclusion_proof",
    "root_from_inclusion_proof",
    "verify_inclusion",
    "consistency_proof",
    "verify_consistency",
]

HASH_SIZE: Final = 32
"""Bytes in a SHA-256 hash, the size of every node and of every proof element."""

EMPTY_ROOT: Final = sha256(b"").digest()
"""``MTH({})``: the root of the tree with no leaves (RFC 6962 §2.1)."""

_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf (RFC 6962 §2.1)."""
    return sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node (RFC 6962 §2.1)."""
    return sha256(_NODE + left + right).digest()


def _parent_level(level: list[bytes]) -> list[bytes]:
    # Pair neighbours; an odd last hash moves up unchanged (this is the largest-power-of-two split).
    parents = [
        sha256(_NODE + left + right).digest() for left, right in zip(level[0::2], level[1::2], strict=False)
    ]
    if len(level) & 1:
        parents.append(level[-1])
    return parents


def _root_of_hashes(level: list[bytes]) -> bytes:
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def root(leaves: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash ``MTH(D[n])`` of the leaves, in order."""
    return _root_of_hashes([sha256(_LEAF + data).digest() for data in leaves])


def _check_size(name: str, value: int, upper: int) -> None:
    if type(value) is not int or not 0 <= value <= upper:
        raise InvalidMerkleInput(f"{name} {value!r} is outside 0..{upper}")


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path ``PATH(index, D[n])`` of RFC 6962 §2.1.1, sibling hashes from the leaf up."""
    if not leaves:
        raise InvalidMerkleInput(f"leaf index {index!r} is outside an empty tree")
    _check_size("leaf index", index, len(leaves) - 1)
    level = [sha256(_LEAF + data).digest() for data in leaves]
    path: list[bytes] = []
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):  # else this node is the odd last one and moves up unchanged
            path.append(level[sibling])
        position >>= 1
        level = _parent_level(level)
    return path


def _check_hashes(kind: str, proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        if not isinstance(element, bytes) or len(element) != HASH_SIZE:
            raise InvalidProof(kind, f"element {position} is not a {HASH_SIZE}-byte hash")


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def root_from_inclusion_proof(
    hashed_leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from the leaf hash at ``index`` (RFC 9162 §2.1.3.2, steps 1 to 4)."""
    if type(index) is not int or type(tree_size) is not int or not 0 <= index < tree_size:
        raise InvalidProof("inclusion", f"leaf index {index!r} is not inside a tree of size {tree_size!r}")
    if not isinstance(hashed_leaf, bytes) or len(hashed_leaf) != HASH_SIZE:
        raise InvalidProof("inclusion", f"the leaf hash is not {HASH_SIZE} bytes")
    _check_hashes("inclusion", proof)
    fn, sn, r = index, tree_size - 1, hashed_leaf
    for p in proof:
        if sn == 0:
            raise InvalidProof("inclusion", f"the path is longer than a tree of size {tree_size} allows")
        if fn & 1 or fn == sn:
            r = sha256(_NODE + p + r).digest()
            if not fn & 1:  # fn == sn and even (never 0, since sn > 0): skip the levels it moves up alone
                shift = _trailing_zeros(fn)
                fn >>= shift
                sn >>= shift
        else:
            r = sha256(_NODE + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("inclusion", f"the path is shorter than a tree of size {tree_size} needs")
    return r


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (the leaf's data) is at ``index`` of the tree of ``tree_size`` with ``root``."""
    computed = root_from_inclusion_proof(sha256(_LEAF + leaf).digest(), index, tree_size, proof)
    if computed != root:
        raise InvalidProof("inclusion", f"the path leads to {computed.hex()}, not to the root given")


def _subproof(hashes: list[bytes], m: int, lo: int, hi: int, complete: bool, out: list[bytes]) -> None:
    # SUBPROOF(m, D[lo:hi], b) of RFC 6962 §2.1.2, with 0 < m <= hi - lo; elements in the RFC's order.
    n = hi - lo
    if m == n:
        if not complete:
            out.append(_root_of_hashes(hashes[lo:hi]))
        return
    k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two below n
    if m <= k:
        _subproof(hashes, m, lo, lo + k, complete, out)
        out.append(_root_of_hashes(hashes[lo + k : hi]))
    else:
        _subproof(hashes, m - k, lo + k, hi, False, out)
        out.append(_root_of_hashes(hashes[lo : lo + k]))


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """``PROOF(old_size, D[n])`` of RFC 6962 §2.1.2: the first ``old_size`` leaves are a prefix of these."""
    _check_size("old tree size", old_size, len(leaves))
    if old_size in (0, len(leaves)):
        return []
    out: list[bytes] = []
    _subproof([sha256(_LEAF + data).digest() for data in leaves], old_size, 0, len(leaves), True, out)
    return out


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of ``new_root`` (RFC 9162 §2.1.4.2)."""
    if type(old_size) is not int or type(new_size) is not int or not 0 <= old_size <= new_size:
        raise InvalidProof("consistency", f"sizes {old_size!r} → {new_size!r} do not grow")
    _check_hashes("consistency", proof)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise InvalidProof("consistency", f"a proof from size {old_size} to {new_size} must be empty")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise InvalidProof("consistency", "the old root is not the root of the empty tree")
        if old_size == new_size and old_root != new_root:
            raise InvalidProof("consistency", f"two trees of size {old_size} with different roots")
        return
    if not proof:
        raise InvalidProof("consistency", "the proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    shift = _trailing_zeros(fn + 1)  # drop the trailing one bits of fn
    fn >>= shift
    sn >>= shift
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency", f"the proof is longer than sizes {old_size} → {new_size} allow")
        if fn & 1 or fn == sn:
            fr = sha256(_NODE + c + fr).digest()
            sr = sha256(_NODE + c + sr).digest()
            if not fn & 1:
                shift = _trailing_zeros(fn)
                fn >>= shift
                sn >>= shift
        else:
            sr = sha256(_NODE + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("consistency", f"the proof is shorter than sizes {old_size} → {new_size} need")
    if fr != old_root:
        raise InvalidProof("consistency", "the proof does not lead to the old root")
    if sr != new_root:
        raise InvalidProof("consistency", "the proof does not lead to the new root")

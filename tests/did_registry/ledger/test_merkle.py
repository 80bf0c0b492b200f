"""RFC 6962 Merkle Tree Hash, audit paths and consistency proofs (did_registry.ledger.merkle)."""

from __future__ import annotations

from collections.abc import Callable
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from did_registry.errors import InvalidMerkleInput, InvalidProof
from did_registry.ledger import merkle

# The RFC 6962 test tree of the Certificate Transparency test suites: transparency-dev/merkle
# testonly/constants.go (LeafInputs, RootHashes) and proof/verify_test.go (inclusionProofs,
# consistencyProofs), the same tree as google/certificate-transparency's merkle tree tests.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [  # by tree size 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
_H = {
    "leaf1": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "leaf4": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "leaf6": "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "n01": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "n23": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "n45": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "n67": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "n0123": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "n4567": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    "leaf0": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
}
INCLUSION = [  # (0-based index, tree size, path); the Go table counts leaves from 1
    (0, 8, ["leaf1", "n23", "n4567"]),
    (5, 8, ["leaf4", "n67", "n0123"]),
    (2, 3, ["n01"]),
    (1, 5, ["leaf0", "n23", "leaf4"]),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 8, ["leaf1", "n23", "n4567"]),
    (6, 8, ["n45", "n67", "n0123"]),
    (2, 5, ["n23", "leaf4"]),
    (6, 7, ["n45", "leaf6", "n0123"]),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _path(names: list[str]) -> list[bytes]:
    return [bytes.fromhex(_H[name]) for name in names]


def _reference_mth(leaves: list[bytes]) -> bytes:
    # MTH written straight from RFC 6962 §2.1, recursion and all: the oracle for root().
    if not leaves:
        return sha256(b"").digest()
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + _reference_mth(leaves[:k]) + _reference_mth(leaves[k:])).digest()


def _flip(proof: list[bytes], at: int) -> list[bytes]:
    tampered = list(proof)
    tampered[at] = bytes([tampered[at][0] ^ 8]) + tampered[at][1:]
    return tampered


@pytest.mark.parametrize("size", range(9))
def test_root_matches_published_root(size: int) -> None:
    """The root of the first ``size`` test leaves is the published RFC 6962 root."""
    assert merkle.root(LEAVES[:size]).hex() == ROOTS[size]


def test_empty_root_is_hash_of_empty_string() -> None:
    """If there are no leaves, the root is SHA-256 of the empty string."""
    assert merkle.EMPTY_ROOT == sha256(b"").digest() == merkle.root([])


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """A leaf hash is SHA-256(0x00 || data) and a node hash SHA-256(0x01 || left || right)."""
    assert merkle.leaf_hash(b"ab") == sha256(b"\x00ab").digest()
    assert merkle.node_hash(b"a", b"b") == sha256(b"\x01ab").digest()


@pytest.mark.parametrize(("index", "size", "names"), INCLUSION)
def test_inclusion_proof_matches_published_path(index: int, size: int, names: list[str]) -> None:
    """The audit path of the test tree is the published one, and it verifies."""
    proof = merkle.inclusion_proof(LEAVES[:size], index)
    assert proof == _path(names)
    merkle.verify_inclusion(LEAVES[index], index, size, proof, bytes.fromhex(ROOTS[size]))


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[str, tuple[Any, ...]]]:
    leaf = LEAVES[index]
    probes = [
        ("index - 1", (leaf, index - 1, size, proof, root)),
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("size // 2", (leaf, index, size // 2, proof, root)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, root)),
        ("empty root", (leaf, index, size, proof, merkle.EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], root)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
        ("removed component", (leaf, index, size, proof[:-1], root)),
    ]
    probes += [(f"flipped bit in {i}", (leaf, index, size, _flip(proof, i), root)) for i in range(len(proof))]
    if len(proof) > 1:
        probes.append(("inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)))
    return probes


@pytest.mark.parametrize(
    ("desc", "args"),
    [
        probe
        for index, size, names in INCLUSION
        for probe in _inclusion_probes(index, size, _path(names), bytes.fromhex(ROOTS[size]))
    ],
)
def test_corrupted_inclusion_is_refused(desc: str, args: tuple[Any, ...]) -> None:
    """If the index, size, leaf, root or path of a published proof is altered, verification fails."""
    with pytest.raises(InvalidProof):
        merkle.verify_inclusion(*args)


def test_single_leaf_tree_has_empty_path() -> None:
    """In a tree of one leaf the root is the leaf hash and the path is empty."""
    assert merkle.inclusion_proof([b"data"], 0) == []
    merkle.verify_inclusion(b"data", 0, 1, [], merkle.leaf_hash(b"data"))
    with pytest.raises(InvalidProof):
        merkle.verify_inclusion(b"data", 0, 1, [], merkle.EMPTY_ROOT)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (-1, 1), (True, 2), (0, 1.0)])
def test_inclusion_outside_tree_is_refused(index: int, size: int) -> None:
    """If the index is not inside the tree size, verification fails."""
    with pytest.raises(InvalidProof):
        merkle.verify_inclusion(b"x", index, size, [], merkle.leaf_hash(b"x"))


@pytest.mark.parametrize(("leaves", "index"), [([], 0), ([b"a"], 1), ([b"a", b"b"], -1), ([b"a"], True)])
def test_inclusion_proof_of_missing_index_is_an_input_error(leaves: list[bytes], index: int) -> None:
    """If the index is not a leaf of the tree, no proof is made."""
    with pytest.raises(InvalidMerkleInput):
        merkle.inclusion_proof(leaves, index)


@pytest.mark.parametrize(("old", "new", "names"), CONSISTENCY)
def test_consistency_proof_matches_published_proof(old: int, new: int, names: list[str]) -> None:
    """The consistency proof between two test trees is the published one, and it verifies."""
    proof = merkle.consistency_proof(LEAVES[:new], old)
    assert proof == _path(names)
    merkle.verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), proof)


def _consistency_probes(old: int, new: int, proof: list[bytes]) -> list[tuple[str, tuple[Any, ...]]]:
    r1, r2 = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    probes = [
        ("old - 1", (old - 1, new, r1, r2, proof)),
        ("old + 1", (old + 1, new, r1, r2, proof)),
        ("old ^ 2", (old ^ 2, new, r1, r2, proof)),
        ("new * 2", (old, new * 2, r1, r2, proof)),
        ("new // 2", (old, new // 2, r1, r2, proof)),
        ("wrong old root", (old, new, SOME_HASH, r2, proof)),
        ("wrong new root", (old, new, r1, SOME_HASH, proof)),
        ("swapped roots", (old, new, r2, r1, proof)),
        ("empty proof", (old, new, r1, r2, [])),
        ("trailing garbage", (old, new, r1, r2, [*proof, b""])),
        ("trailing old root", (old, new, r1, r2, [*proof, r1])),
        ("trailing new root", (old, new, r1, r2, [*proof, r2])),
        ("preceding garbage", (old, new, r1, r2, [b"", *proof])),
        ("preceding old root", (old, new, r1, r2, [r1, *proof])),
        ("preceding new root", (old, new, r1, r2, [r2, *proof])),
        ("preceding proof[0]", (old, new, r1, r2, [proof[0], *proof])),
        ("truncated", (old, new, r1, r2, proof[:-1])),
    ]
    return probes + [(f"flipped bit in {i}", (old, new, r1, r2, _flip(proof, i))) for i in range(len(proof))]


@pytest.mark.parametrize(
    ("desc", "args"),
    [probe for old, new, names in CONSISTENCY for probe in _consistency_probes(old, new, _path(names))],
)
def test_corrupted_consistency_is_refused(desc: str, args: tuple[Any, ...]) -> None:
    """If the sizes, roots or path of a published consistency proof are altered, verification fails."""
    with pytest.raises(InvalidProof):
        merkle.verify_consistency(*args)


_R1, _R2, _E = SOME_HASH, bytes.fromhex(ROOTS[1]), merkle.EMPTY_ROOT


@pytest.mark.parametrize(
    ("old", "new", "r1", "r2", "proof", "ok"),
    [
        (0, 0, _E, _E, [], True),
        (0, 1, _E, _R2, [], True),
        (1, 1, _R2, _R2, [], True),
        (0, 0, _R1, _R1, [], False),  # the empty tree has one root
        (0, 1, _R1, _R2, [], False),
        (1, 1, _R1, _R2, [], False),  # same size, different roots
        (1, 0, _R2, _E, [], False),  # time travel
        (2, 1, _R1, _R2, [], False),
        (1, 2, _R1, _R2, [], False),  # a real step needs a proof
        (0, 0, _E, _E, [_E], False),  # trivial steps need none
        (0, 1, _E, _R2, [_E], False),
        (1, 1, _R2, _R2, [_E], False),
    ],
)
def test_trivial_consistency_cases(
    old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes], ok: bool
) -> None:
    """Steps from the empty tree or to the same size verify only with an empty proof and matching roots."""
    if ok:
        merkle.verify_consistency(old, new, r1, r2, proof)
    else:
        with pytest.raises(InvalidProof):
            merkle.verify_consistency(old, new, r1, r2, proof)


@pytest.mark.parametrize("old", [-1, 3, True])
def test_consistency_proof_outside_tree_is_an_input_error(old: int) -> None:
    """If the old size is not between 0 and the tree size, no proof is made."""
    with pytest.raises(InvalidMerkleInput):
        merkle.consistency_proof([b"a", b"b"], old)


_leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True)


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_root_matches_rfc_recursion(leaves: list[bytes]) -> None:
    """For any leaves, root() equals MTH computed by the RFC 6962 recursive definition."""
    assert merkle.root(leaves) == _reference_mth(leaves)


@given(_leaf_lists, st.data())
def test_every_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    """For any tree and index, the inclusion proof verifies against the root."""
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle.inclusion_proof(leaves, index)
    merkle.verify_inclusion(leaves[index], index, len(leaves), proof, merkle.root(leaves))


_InclusionTamper = Callable[[list[bytes], int, int, list[bytes], bytes], tuple[Any, ...]]
_INCLUSION_TAMPERS: dict[str, _InclusionTamper] = {
    "other index": lambda ls, i, n, p, r: (ls[i], (i + 1) % n, n, p, r),
    "other leaf": lambda ls, i, n, p, r: (ls[(i + 1) % n], i, n, p, r),
    "size * 2": lambda ls, i, n, p, r: (ls[i], i, n * 2, p, r),
    "other root": lambda ls, i, n, p, r: (ls[i], i, n, p, merkle.root(ls[:-1])),
    "extra element": lambda ls, i, n, p, r: (ls[i], i, n, [*p, r], r),
    "missing element": lambda ls, i, n, p, r: (ls[i], i, n, p[:-1], r),
    "flipped bit": lambda ls, i, n, p, r: (ls[i], i, n, _flip(p, i % len(p)), r),
}


@given(_leaf_lists, st.data(), st.sampled_from(sorted(_INCLUSION_TAMPERS)))
def test_tampered_inclusion_is_refused(leaves: list[bytes], data: st.DataObject, tamper: str) -> None:
    """For any tree of distinct leaves, a wrong index, leaf, size or root, or an altered path, is refused."""
    assume(len(leaves) > 1)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle.inclusion_proof(leaves, index)
    args = _INCLUSION_TAMPERS[tamper](leaves, index, len(leaves), proof, merkle.root(leaves))
    with pytest.raises(InvalidProof):
        merkle.verify_inclusion(*args)


@given(_leaf_lists, st.data())
def test_every_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    """For any tree and any earlier size, the consistency proof verifies between the two roots."""
    old = data.draw(st.integers(0, len(leaves)))
    proof = merkle.consistency_proof(leaves, old)
    merkle.verify_consistency(old, len(leaves), merkle.root(leaves[:old]), merkle.root(leaves), proof)


@given(_leaf_lists, st.data(), st.integers(0, 5))
def test_tampered_consistency_is_refused(leaves: list[bytes], data: st.DataObject, tamper: int) -> None:
    """For any real step between trees of distinct leaves, altered sizes, roots or path are refused."""
    assume(len(leaves) > 1)
    old = data.draw(st.integers(1, len(leaves) - 1))
    new = len(leaves)
    proof = merkle.consistency_proof(leaves, old)
    r1, r2 = merkle.root(leaves[:old]), merkle.root(leaves)
    args = [
        (old, new * 2, r1, r2, proof),
        (old, new, merkle.root(leaves[: old - 1]), r2, proof),
        (old, new, r1, merkle.root([*leaves, b"extra"]), proof),
        (old, new, r1, r2, proof[:-1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, _flip(proof, data.draw(st.integers(0, len(proof) - 1)))),
    ][tamper]
    with pytest.raises(InvalidProof):
        merkle.verify_consistency(*args)

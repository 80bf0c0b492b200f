"""The sparse Merkle map over the ledger state (did_registry.ledger.smt)."""

from __future__ import annotations

import math
import random
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from did_registry.errors import InvalidMerkleInput, InvalidProof, MissingMerkleNode
from did_registry.ledger.smt import (
    EMPTY_ROOT,
    MapProof,
    MemoryNodeStore,
    SparseMerkleMap,
    key_hash,
    verify_map_proof,
)


def _reference_root(pairs: dict[bytes, bytes]) -> bytes:
    # The root straight from the definition (empty / lone leaf / split on the depth's bit): the oracle.
    def subtree(items: list[tuple[int, bytes, bytes]], depth: int) -> bytes:
        if not items:
            return bytes(32)
        if len(items) == 1:
            return sha256(b"\x00" + items[0][1] + items[0][2]).digest()
        left = [item for item in items if not (item[0] >> (255 - depth)) & 1]
        right = [item for item in items if (item[0] >> (255 - depth)) & 1]
        return sha256(b"\x01" + subtree(left, depth + 1) + subtree(right, depth + 1)).digest()

    hashed = [(sha256(k).digest(), v) for k, v in pairs.items()]
    return subtree([(int.from_bytes(kh, "big"), kh, v) for kh, v in hashed], 0)


def _value(tag: object) -> bytes:
    return sha256(repr(tag).encode()).digest()


def _filled(pairs: dict[bytes, bytes]) -> SparseMerkleMap:
    smt = SparseMerkleMap(MemoryNodeStore())
    smt.update(pairs)
    return smt


class _CountingStore(MemoryNodeStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        self.writes.append(len(nodes))
        super().put_many(nodes)


_keys = st.binary(max_size=10)
_value_hashes = st.binary(min_size=32, max_size=32)
_maps = st.dictionaries(_keys, _value_hashes, max_size=40)


def test_empty_map_root_is_zero_hash() -> None:
    """The empty map's root is 32 zero bytes and every key is absent."""
    smt = SparseMerkleMap(MemoryNodeStore())
    assert smt.root == EMPTY_ROOT == bytes(32)
    assert smt.get_value_hash(b"k") is None


def test_single_key_root_is_its_leaf() -> None:
    """A map of one key has that key's leaf hash, SHA-256(0x00 || SHA-256(key) || value hash), as root."""
    smt = _filled({b"k": _value(1)})
    assert smt.root == sha256(b"\x00" + sha256(b"k").digest() + _value(1)).digest()
    assert key_hash(b"k") == sha256(b"k").digest()


def test_two_keys_root_is_node_of_their_leaves() -> None:
    """Two keys that differ in the first bit sit under one node, the 0-bit key on the left."""
    zero = next(bytes([i]) for i in range(256) if sha256(bytes([i])).digest()[0] < 0x80)
    one = next(bytes([i]) for i in range(256) if sha256(bytes([i])).digest()[0] >= 0x80)
    left = sha256(b"\x00" + sha256(zero).digest() + _value(0)).digest()
    right = sha256(b"\x00" + sha256(one).digest() + _value(1)).digest()
    assert _filled({one: _value(1), zero: _value(0)}).root == sha256(b"\x01" + left + right).digest()


@given(_maps)
def test_root_matches_definition(pairs: dict[bytes, bytes]) -> None:
    """For any key set, the root equals the one computed from the tree's definition."""
    assert _filled(pairs).root == _reference_root(pairs)


@given(_maps, st.randoms(use_true_random=False), st.integers(1, 8))
def test_root_ignores_order_and_batching(pairs: dict[bytes, bytes], rng: random.Random, batch: int) -> None:
    """For any key set, writing it in any order and any batches gives the same root."""
    keys = list(pairs)
    rng.shuffle(keys)
    smt = SparseMerkleMap(MemoryNodeStore())
    for start in range(0, len(keys), batch):
        smt.update({k: pairs[k] for k in keys[start : start + batch]})
    assert smt.root == _filled(pairs).root


@given(_maps, _maps)
def test_delete_restores_previous_root(before: dict[bytes, bytes], extra: dict[bytes, bytes]) -> None:
    """For any map, inserting new keys then deleting them gives back the root exactly."""
    smt = _filled(before)
    root = smt.root
    added = {k: v for k, v in extra.items() if k not in before}
    smt.update(added)
    smt.update(dict.fromkeys(added))
    assert smt.root == root


@given(_maps, _value_hashes)
def test_rewrite_then_restore_gives_previous_root(pairs: dict[bytes, bytes], other: bytes) -> None:
    """For any map, changing every value then writing the old values back gives back the root."""
    smt = _filled(pairs)
    root = smt.root
    smt.update(dict.fromkeys(pairs, other))
    smt.update(pairs)
    assert smt.root == root


@given(_maps, _keys)
def test_get_value_hash_returns_what_was_written(pairs: dict[bytes, bytes], absent: bytes) -> None:
    """For any map, a present key gives its value hash and an absent one None."""
    assume(absent not in pairs)
    smt = _filled(pairs)
    assert all(smt.get_value_hash(k) == v for k, v in pairs.items())
    assert smt.get_value_hash(absent) is None


def test_deleting_absent_keys_writes_nothing() -> None:
    """If a batch only deletes absent keys or rewrites equal values, the root stays and nothing is written."""
    store = _CountingStore()
    smt = SparseMerkleMap(store)
    pairs = {bytes([i]): _value(i) for i in range(64)}
    root = smt.update(pairs)
    assert store.writes == [len(store)]  # the whole tree in one put_many
    assert smt.update({b"absent:%d" % i: None for i in range(50)}) == root
    assert smt.update(dict(list(pairs.items())[:10])) == root
    assert smt.update({}) == root
    assert len(store.writes) == 1


@given(_maps, _keys)
def test_proofs_verify_for_present_and_absent_keys(pairs: dict[bytes, bytes], absent: bytes) -> None:
    """For any map, each present key proves its value hash and an absent key proves its absence."""
    assume(absent not in pairs)
    smt = _filled(pairs)
    for k, v in pairs.items():
        verify_map_proof(smt.root, k, v, smt.prove(k))
    verify_map_proof(smt.root, absent, None, smt.prove(absent))


@given(_maps, _keys)
def test_proof_json_round_trip(pairs: dict[bytes, bytes], key: bytes) -> None:
    """For any proof, from_json(to_json) gives the same proof, and to_json is plain JSON data."""
    proof = _filled(pairs).prove(key)
    data = proof.to_json()
    assert MapProof.from_json(data) == proof
    assert all(isinstance(s, str) for s in data["siblings"])
    assert len(data["siblings"]) == sum(s != EMPTY_ROOT for s in proof.siblings)


def _tampered(proof: MapProof, how: str, rng: random.Random) -> MapProof:
    siblings = list(proof.siblings)
    if how == "truncated":
        return MapProof(tuple(siblings[:-1]), proof.leaf)
    if how == "extended":
        return MapProof((*siblings, _value("x")), proof.leaf)
    if how == "dropped first":
        return MapProof(tuple(siblings[1:]), proof.leaf)
    at = rng.randrange(len(siblings))
    siblings[at] = bytes([siblings[at][0] ^ 1]) + siblings[at][1:]
    return MapProof(tuple(siblings), proof.leaf)


_present_maps = st.dictionaries(_keys, _value_hashes, min_size=2, max_size=40)


@given(_present_maps, st.data())
def test_wrong_claims_are_refused(pairs: dict[bytes, bytes], data: st.DataObject) -> None:
    """For any present key, its proof is refused for another value, another key or another root."""
    smt = _filled(pairs)
    key, other = data.draw(st.permutations(sorted(pairs)))[:2]
    proof = smt.prove(key)
    with pytest.raises(InvalidProof):
        verify_map_proof(smt.root, key, _value(pairs[key]), proof)
    with pytest.raises(InvalidProof):
        verify_map_proof(smt.root, other, pairs[key], proof)
    with pytest.raises(InvalidProof):
        verify_map_proof(_filled({k: v for k, v in pairs.items() if k != other}).root, key, pairs[key], proof)


@given(_present_maps, st.data(), st.sampled_from(["truncated", "extended", "dropped first", "flipped"]))
def test_tampered_siblings_are_refused(pairs: dict[bytes, bytes], data: st.DataObject, how: str) -> None:
    """For any key with a non-empty path, a truncated, extended or altered path is refused."""
    smt = _filled(pairs)
    key = data.draw(st.sampled_from(sorted(pairs)) | _keys)
    proof = smt.prove(key)
    assume(proof.siblings)
    tampered = _tampered(proof, how, data.draw(st.randoms(use_true_random=False)))
    with pytest.raises(InvalidProof):
        verify_map_proof(smt.root, key, pairs.get(key), tampered)


@given(_present_maps, st.data())
def test_forged_absence_of_present_key_is_refused(pairs: dict[bytes, bytes], data: st.DataObject) -> None:
    """For any present key, no proof the map can make (for this or any other key) shows it absent."""
    smt = _filled(pairs)
    key = data.draw(st.sampled_from(sorted(pairs)))
    for source in [key, *pairs, *data.draw(st.lists(_keys, max_size=5))]:
        with pytest.raises(InvalidProof):
            verify_map_proof(smt.root, key, None, smt.prove(source))


@given(_maps, _keys, _value_hashes)
def test_absence_proof_does_not_prove_a_value(pairs: dict[bytes, bytes], absent: bytes, value: bytes) -> None:
    """For any absent key, its non-inclusion proof is refused as proof of a value."""
    assume(absent not in pairs)
    smt = _filled(pairs)
    with pytest.raises(InvalidProof):
        verify_map_proof(smt.root, absent, value, smt.prove(absent))


def test_absence_leaf_off_the_path_is_refused() -> None:
    """If a non-inclusion proof ends at a leaf whose key is not on the asked key's path, it is refused."""
    pairs = {bytes([i]): _value(i) for i in range(64)}
    smt = _filled(pairs)
    proof = smt.prove(b"absent")
    assert proof.siblings
    far = next(k for k in pairs if (key_hash(k)[0] ^ key_hash(b"absent")[0]) & 0x80)
    forged = MapProof(proof.siblings, (key_hash(far), pairs[far]))
    with pytest.raises(InvalidProof, match="not on this key's path"):
        verify_map_proof(smt.root, b"absent", None, forged)


def test_old_roots_stay_provable() -> None:
    """After more writes, a map opened at an earlier root still reads and proves the earlier values."""
    store = MemoryNodeStore()
    smt = SparseMerkleMap(store)
    old_root = smt.update({b"did:1": _value(1), b"did:2": _value(2)})
    smt.update({b"did:1": _value(10), b"did:2": None, b"did:3": _value(3)})
    old = SparseMerkleMap(store, old_root)
    assert old.get_value_hash(b"did:2") == _value(2)
    verify_map_proof(old_root, b"did:1", _value(1), old.prove(b"did:1"))
    verify_map_proof(smt.root, b"did:2", None, smt.prove(b"did:2"))


def test_proofs_are_logarithmic() -> None:
    """In a map of 4096 keys, paths average about log2(n) siblings."""
    pairs = {b"key:%d" % i: _value(i) for i in range(4096)}
    smt = _filled(pairs)
    depths = [len(smt.prove(k).siblings) for k in list(pairs)[:512]]
    assert sum(depths) / len(depths) <= math.log2(len(pairs)) + 2
    assert max(depths) <= 3 * math.log2(len(pairs))


def test_one_write_stores_one_path() -> None:
    """A write into a map of 4096 keys stores one batch of about log2(n) nodes, not O(n)."""
    store = _CountingStore()
    smt = SparseMerkleMap(store)
    smt.update({b"key:%d" % i: _value(i) for i in range(4096)})
    depth = len(smt.prove(b"key:7").siblings)
    smt.update({b"key:7": _value("new")})
    assert len(store.writes) == 2
    assert store.writes[1] == depth + 1


def test_unknown_root_is_missing_node() -> None:
    """If the store lacks the root's node, opening the map fails with MissingMerkleNode."""
    with pytest.raises(MissingMerkleNode):
        SparseMerkleMap(MemoryNodeStore(), _value("nowhere"))


def test_pruned_node_is_missing_node() -> None:
    """If a node below the root was removed from the store, reading through it fails with MissingMerkleNode."""
    store = MemoryNodeStore()
    smt = SparseMerkleMap(store)
    smt.update({bytes([i]): _value(i) for i in range(16)})
    leaf = sha256(b"\x00" + key_hash(b"\x03") + _value(3)).digest()
    store.put_many({leaf: b"\x07" * 65})  # overwrite with something that is not a node
    with pytest.raises(MissingMerkleNode):
        smt.get_value_hash(b"\x03")
    with pytest.raises(MissingMerkleNode):
        smt.update({b"\x03": None})


@pytest.mark.parametrize(
    "changes",
    [{b"k": b"short"}, {b"k": bytes(33)}, {b"k": "00" * 32}, {"k": _value(1)}],
    ids=["short", "long", "str value", "str key"],
)
def test_bad_update_is_input_error(changes: Any) -> None:
    """If a key is not bytes or a value hash not 32 bytes, the update is refused and nothing changes."""
    smt = _filled({b"a": _value(1)})
    root = smt.root
    with pytest.raises(InvalidMerkleInput):
        smt.update(changes)
    assert smt.root == root


@pytest.mark.parametrize("root", [b"", bytes(31), "00" * 32])
def test_bad_root_is_input_error(root: Any) -> None:
    """If a root is not 32 bytes, the map is not opened."""
    with pytest.raises(InvalidMerkleInput):
        SparseMerkleMap(MemoryNodeStore(), root)


_GOOD = {"depth": 2, "bitmap": "40", "siblings": ["11" * 32], "leaf": None}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([], "object"),
        ({**_GOOD, "extra": 1}, "object"),
        ({k: v for k, v in _GOOD.items() if k != "leaf"}, "object"),
        ({**_GOOD, "depth": -1}, "depth"),
        ({**_GOOD, "depth": 257}, "depth"),
        ({**_GOOD, "depth": True}, "depth"),
        ({**_GOOD, "depth": "2"}, "depth"),
        ({**_GOOD, "bitmap": "4000"}, "bitmap"),
        ({**_GOOD, "bitmap": "4"}, "hexadecimal"),
        ({**_GOOD, "bitmap": "c0"}, "siblings"),
        ({**_GOOD, "bitmap": "60"}, "beyond the depth"),
        ({**_GOOD, "siblings": ["AA" * 32]}, "hexadecimal"),
        ({**_GOOD, "siblings": ["11" * 31]}, "32-byte"),
        ({**_GOOD, "siblings": "11" * 32}, "siblings"),
        ({**_GOOD, "leaf": {"keyHash": "11" * 32}}, "leaf"),
        ({**_GOOD, "leaf": {"keyHash": "11" * 32, "valueHash": "22" * 33}}, "32-byte"),
        ({**_GOOD, "leaf": "11" * 64}, "leaf"),
    ],
)
def test_malformed_proof_json_is_refused(value: object, reason: str) -> None:
    """If a proof's JSON is not exactly the form to_json writes, parsing fails and says what is wrong."""
    MapProof.from_json(_GOOD)
    with pytest.raises(InvalidProof, match=reason):
        MapProof.from_json(value)


def test_proof_deeper_than_key_is_refused() -> None:
    """If a proof has more siblings than a key hash has bits, it is refused."""
    with pytest.raises(InvalidProof):
        MapProof((_value(0),) * 257, None)


class _BulkStore(MemoryNodeStore):
    """A store that reads many nodes at once, counting each kind of read."""

    def __init__(self) -> None:
        super().__init__()
        self.single_reads = 0
        self.bulk_reads: list[int] = []

    def get(self, node_hash: bytes, version: int = 0) -> bytes | None:
        self.single_reads += 1
        return super().get(node_hash, version)

    def get_many(self, nodes: list[tuple[bytes, int]]) -> dict[bytes, bytes]:
        self.bulk_reads.append(len(nodes))
        return {h: d for h, v in nodes if (d := MemoryNodeStore.get(self, h, v)) is not None}


@given(_maps, _maps, st.sets(_keys, max_size=10))
def test_bulk_reads_give_the_same_root_and_nodes(
    before: dict[bytes, bytes], changes: dict[bytes, bytes], deleted: set[bytes]
) -> None:
    """A store that reads in bulk gets the same roots and stores the same nodes as one that does not,
    writes and deletions alike."""
    plain, bulk = _CountingStore(), _BulkStore()
    maps = [SparseMerkleMap(plain), SparseMerkleMap(bulk)]
    for batch in (before, {**changes, **dict.fromkeys(deleted)}):
        roots = {m.update(batch) for m in maps}  # type: ignore[arg-type]
        assert len(roots) == 1
    assert bulk._nodes == plain._nodes
    after = {k: v for k, v in {**before, **changes}.items() if k not in deleted}
    assert maps[0].root == _reference_root(after)


def test_bulk_reads_take_one_query_per_level() -> None:
    """Writing 200 new keys into a map of 4,096 reads the stored nodes on their paths with one bulk
    read per level of the tree, and none one by one."""
    store = _BulkStore()
    smt = SparseMerkleMap(store)
    smt.update({b"key:%d" % i: _value(i) for i in range(4096)})
    store.single_reads, store.bulk_reads = 0, []
    smt.update({b"new:%d" % i: _value(i) for i in range(200)})
    single, bulk = store.single_reads, store.bulk_reads
    depth = max(len(smt.prove(b"new:%d" % i).siblings) for i in range(200))
    assert single == 0
    assert 0 < len(bulk) <= depth + 1
    assert sum(bulk) >= 200  # the paths' nodes, fetched together level by level


def test_bulk_reads_meet_a_pruned_node() -> None:
    """A node missing below the root is still refused as MissingMerkleNode when reads are in bulk."""
    store = _BulkStore()
    smt = SparseMerkleMap(store)
    smt.update({bytes([i]): _value(i) for i in range(16)})
    leaf = sha256(b"\x00" + key_hash(b"\x03") + _value(3)).digest()
    del store._nodes[leaf]
    with pytest.raises(MissingMerkleNode):
        smt.update({b"\x03": _value("new")})


class _VersionedStore:
    """Nodes kept under (version, hash) as a database keeps them: a read at the wrong version finds
    nothing. ``at`` is the version the next ``put_many`` stores at."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, bytes], bytes] = {}
        self.at = 0

    def get(self, node_hash: bytes, version: int) -> bytes | None:
        return self.rows.get((version, node_hash))

    def get_many(self, nodes: list[tuple[bytes, int]]) -> dict[bytes, bytes]:
        return {h: d for h, v in nodes if (d := self.rows.get((v, h))) is not None}

    def put_many(self, nodes: dict[bytes, bytes]) -> None:
        self.rows.update({(self.at, h): d for h, d in nodes.items()})


@given(st.lists(st.tuples(_maps, st.sets(_keys, max_size=6)), min_size=1, max_size=6))
def test_versioned_store_serves_every_root_it_made(
    batches: list[tuple[dict[bytes, bytes], set[bytes]]],
) -> None:
    """Updates stored at versions 1, 2, ... (writes and deletions, lone leaves hoisted to the root
    too) leave every root readable at the version the map reports: each key's value hash and a
    proof that verifies, read only through (version, hash)."""
    store = _VersionedStore()
    smt = SparseMerkleMap(store)
    expected: dict[bytes, bytes] = {}
    history = []
    for version, (writes, deleted) in enumerate(batches, start=1):
        store.at = version
        smt.update({**writes, **dict.fromkeys(deleted)}, version=version)
        expected = {k: v for k, v in {**expected, **writes}.items() if k not in deleted}
        assert smt.root == _reference_root(expected)
        assert smt.version <= version and (smt.root == EMPTY_ROOT or (smt.version, smt.root) in store.rows)
        history.append((smt.root, smt.version, dict(expected)))
    for root, version, values in history:
        old = SparseMerkleMap(store, root, version)
        for key in {*values, *(k for _, d in batches for k in d)}:
            assert old.get_value_hash(key) == values.get(key)
            verify_map_proof(root, key, values.get(key), old.prove(key))  # raises if it does not verify


def test_a_changed_root_is_stored_at_the_new_version() -> None:
    """Deleting one of two keys hoists the other's (older) leaf to the root: the root is stored
    again at the update's version, so a root's version is the first height it is the root of."""
    store = _VersionedStore()
    smt = SparseMerkleMap(store)
    store.at = 1
    smt.update({b"a": _value("a"), b"b": _value("b")}, version=1)
    store.at = 2
    smt.update({b"a": None}, version=2)
    assert smt.version == 2 and store.get(smt.root, 2) == store.get(smt.root, 1)
    assert SparseMerkleMap(store, smt.root, 2).get_value_hash(b"b") == _value("b")


@pytest.mark.parametrize(
    "record",
    [b"", b"\x00" * 64, b"\x00" * 81, b"\x01" * 65, b"\x01" * 80, b"\x02" * 81],
    ids=["empty", "short leaf", "leaf with versions", "node without versions", "short node", "bad tag"],
)
def test_malformed_record_is_missing_node(record: bytes) -> None:
    """A stored record of the wrong length for its tag, or of no known tag, is refused as
    MissingMerkleNode, never read past or crashed on."""
    store = MemoryNodeStore()
    smt = SparseMerkleMap(store)
    smt.update({bytes([i]): _value(i) for i in range(16)})
    store.put_many({smt.root: record})
    with pytest.raises(MissingMerkleNode):
        smt.get_value_hash(b"\x03")
    with pytest.raises(MissingMerkleNode):
        smt.update({b"\x03": None})

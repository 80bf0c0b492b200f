"""Cost of writing into the state map (:mod:`did_registry.ledger.smt`), for the ledger benchmark.

``python -m bench._smt [--quick]`` prints the per-write cost at 10k, 100k and 1M keys (or 1k and 10k with
``--quick``) and the ratio the ledger benchmark targets: ``cost_1m <= 3 * cost_10k``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from did_registry.ledger.smt import MemoryNodeStore, SparseMerkleMap

__all__ = ["measure_update_cost", "main"]


def _key(i: int) -> bytes:
    return b"did:trellis:bench:%d" % i


def _value_hash(i: int, version: int) -> bytes:
    return hashlib.sha256(b"%d/%d" % (i, version)).digest()


def measure_update_cost(n_keys: int, batch: int, rounds: int) -> float:
    """Median µs per write of ``rounds`` batches of ``batch`` writes (half new keys, half rewrites) into a
    map first filled with ``n_keys`` keys in one bulk update (not timed)."""
    smt = SparseMerkleMap(MemoryNodeStore())
    smt.update({_key(i): _value_hash(i, 0) for i in range(n_keys)})
    fresh = n_keys
    stride = max(1, n_keys // batch)
    samples = []
    for version in range(1, rounds + 1):
        changes: dict[bytes, bytes | None] = {}
        for j in range(batch // 2):  # rewrite keys spread over the whole map
            i = (j * stride + version * 7919) % n_keys
            changes[_key(i)] = _value_hash(i, version)
        for _ in range(batch - len(changes)):  # and insert new ones
            changes[_key(fresh)] = _value_hash(fresh, version)
            fresh += 1
        start = time.perf_counter()
        smt.update(changes)
        samples.append((time.perf_counter() - start) * 1e6 / len(changes))
    return statistics.median(samples)


def main() -> None:
    """Print the per-write cost at each map size and the 1M/10k ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k keys only")
    quick = parser.parse_args().quick
    sizes = [1_000, 10_000] if quick else [10_000, 100_000, 1_000_000]
    costs = {n: measure_update_cost(n, batch=100, rounds=30) for n in sizes}
    for n, cost in costs.items():
        print(f"{n:>9} keys: {cost:6.1f} µs/write")
    print(f"ratio largest/smallest: {costs[sizes[-1]] / costs[sizes[0]]:.2f}")


if __name__ == "__main__":
    main()

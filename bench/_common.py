"""What every benchmark shares: one-core pinning, timing loops, the raw Ed25519 yardstick, output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction

__all__ = ["did_creations", "parse_args", "pin_one_core", "rate", "raw_verify_per_s", "report"]


def did_creations(
    network: str, count: int, endorser_key: Ed25519PrivateKey, endorser: str
) -> list[Transaction]:
    """``count`` new devices' ``did.create`` on ``network``, each signed by the device and by
    ``endorser`` (a DID whose ``#key-1`` is ``endorser_key``)."""
    txns = []
    for _ in range(count):
        key = Ed25519PrivateKey.generate()
        did = str(trellis_did(network, key.public_key))
        body = {"document": initial_document(did, key.public_key).to_json()}
        txn = Transaction.build("did.create", network=network, submitter=did, nonce=1, body=body)
        txns.append(txn.signed(key, f"{did}#key-1").signed(endorser_key, f"{endorser}#key-1"))
    return txns


def parse_args(description: str) -> argparse.Namespace:
    """``--quick`` for a short run (CI smoke), else the full measurement."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="short run: smaller sizes, shorter loops")
    return parser.parse_args()


def pin_one_core() -> int | None:
    """Pin this process to one CPU so figures mean 'per core'; return the CPU or None."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def rate(operation: Callable[[], Any], seconds: float, *, batch: int = 50) -> float:
    """Operations per second of ``operation`` over about ``seconds`` (best of three slices)."""
    operation()  # warm up caches and lazy imports
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(batch):
                operation()
            count += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def raw_verify_per_s(seconds: float) -> float:
    """The yardstick: PyNaCl Ed25519 verifications per second on this core, this run."""
    key = Ed25519PrivateKey.generate()
    message = b"trellis yardstick " * 4
    signature = key.sign(message)
    public = key.public_key
    return rate(lambda: public.verify(message, signature), seconds)


def report(name: str, figures: dict[str, Any], targets: dict[str, bool], quick: bool) -> None:
    """Print one JSON object: the figures, whether each target is met, and the machine."""
    out = {
        "benchmark": name,
        "quick": quick,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()},
        "targets": targets,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")

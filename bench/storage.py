"""``python -m bench.storage [--quick]``: what a block of DID creations costs a validator as its ledger grows.

In one process, on SQLite files (the embedded default, ``synchronous=FULL``), a one-validator chain is
filled with ``n`` DIDs; a copy of it is then opened afresh, as a validator restarted on its store
would be. Blocks of 400 signed ``did.create`` follow: the first store proposes and commits each, the
restarted one validates and commits it (signatures are checked ahead, as validators do, so what is
measured is execution and storage, not Ed25519). The garbage collector runs as a serving node runs it
(:func:`did_registry.node.server.serving_collector`). For each ledger size ``n`` (full run: 5,000 and
20,000 DIDs; ``--quick``: 2,000 and 5,000) it reports:

* ``exec_us_per_txn_<n>``: CPU time of this process (both stores, their WAL checkpoints included) per
  transaction, for proposing, validating and both commits together;
* ``written_kb_per_txn_<n>``: bytes this process wrote to storage per transaction (``/proc/self/io``),
  both stores together.

No target is set: these figures show whether a transaction's cost grows with the ledger.
``raw_verify_per_s`` is the yardstick measured in the same run.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import did_creations, parse_args, raw_verify_per_s, report
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.application import Executed, LedgerApplication
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage import SQLLedgerStore
from did_registry.ledger.txn import Transaction
from did_registry.node.server import serving_collector

__all__ = ["main", "measure"]

_NETWORK = "benchnet"
_BLOCK = 400


class _Chain:
    """A one-validator network's keys and genesis, and signed DID creations for it."""

    def __init__(self) -> None:
        self.trustee_key = Ed25519PrivateKey.generate()
        self.trustee = str(trellis_did(_NETWORK, self.trustee_key.public_key))
        self.validator_key = Ed25519PrivateKey.generate()
        self.genesis = Genesis.from_json(
            {
                "network": _NETWORK,
                "time": "2026-01-01T00:00:00Z",
                "consensus": {"engine": "solo"},
                "trustees": [initial_document(self.trustee, self.trustee_key.public_key).to_json()],
                "validators": [
                    {
                        "id": "node-1",
                        "public_key": encode_ed25519_public_key(self.validator_key.public_key),
                        "address": "127.0.0.1:1",
                    }
                ],
            }
        )

    def creations(self, count: int) -> list[Transaction]:
        """``count`` new devices' ``did.create``, each signed by the device and the trustee."""
        return did_creations(_NETWORK, count, self.trustee_key, self.trustee)

    def certify(self, executed: Executed) -> CommitCertificate:
        """The block's commit certificate, signed by the one validator."""
        header = executed.block.header
        signature = CommitCertificate.sign(header.hash, self.validator_key)
        return CommitCertificate(header.height, header.hash.hex(), {"node-1": signature})


def _written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def measure(n_dids: int, blocks: int) -> tuple[float, float]:
    """(CPU µs, KB written) per transaction over ``blocks`` blocks on a ledger of ``n_dids`` DIDs."""
    with serving_collector():
        return _measure(n_dids, blocks)


def _measure(n_dids: int, blocks: int) -> tuple[float, float]:
    chain = _Chain()
    with tempfile.TemporaryDirectory(prefix="trellis-bench-storage-") as directory:
        first, second = Path(directory) / "a.db", Path(directory) / "b.db"
        stores = [SQLLedgerStore(f"sqlite:///{first}")]
        proposer = LedgerApplication(stores[0], chain.genesis)
        for start in range(0, n_dids, 1000):
            executed = proposer.propose(
                chain.creations(min(1000, n_dids - start)), time="2026-01-01T00:00:01Z", proposer="node-1"
            )
            proposer.commit(executed, chain.certify(executed))
        source, copy = sqlite3.connect(first), sqlite3.connect(second)
        source.backup(copy)  # the database with its WAL's pages: a validator's store, copied whole
        copy.close()
        source.close()
        stores.append(SQLLedgerStore(f"sqlite:///{second}"))
        restarted = LedgerApplication(stores[1], chain.genesis)
        pending = [chain.creations(_BLOCK) for _ in range(blocks)]
        cpu = 0.0
        written = 0
        for txns in pending:
            proposer.preverify(txns)  # the signatures, checked ahead as validators do
            cpu_start, written_start = time.process_time(), _written_bytes()
            executed = proposer.propose(txns, time="2026-01-01T00:00:02Z", proposer="node-1")
            certificate = chain.certify(executed)
            proposer.commit(executed, certificate)
            restarted.commit(restarted.validate(executed.block), certificate)
            cpu += time.process_time() - cpu_start
            written += _written_bytes() - written_start
        for store in stores:
            store.close()
    count = blocks * _BLOCK
    return cpu / count * 1e6, written / count / 1024


def main() -> None:
    """Run the benchmark and print the report."""
    args = parse_args(__doc__ or "")
    sizes, blocks = ((2_000, 5_000), 4) if args.quick else ((5_000, 20_000), 6)
    figures: dict[str, Any] = {"raw_verify_per_s": raw_verify_per_s(1.0 if args.quick else 3.0)}
    for size in sizes:
        cpu_us, written_kb = measure(size, blocks)
        figures[f"exec_us_per_txn_{size}"] = cpu_us
        figures[f"written_kb_per_txn_{size}"] = written_kb
    figures["block_txns"] = _BLOCK
    report("storage", figures, {}, bool(args.quick))


if __name__ == "__main__":
    main()

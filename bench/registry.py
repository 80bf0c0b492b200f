"""Benchmark of one ledger node: DID resolution over HTTP, verified resolution, state-update cost.

``python -m bench.registry [--quick]`` prints one JSON object with ``raw_verify_per_s`` (the
yardstick, this run), ``resolve_api_per_s`` (HTTP DID resolutions per second from one node, served by
its production WSGI server in another process on loopback), ``resolve_verified_per_s`` (LedgerClient
resolutions with every proof and certificate checked, one core, as a verifier warms its cache:
``resolve_many`` of 2,000 DIDs, fetched in proven chunks of 500 while the previous chunk is checked; ``resolve_verified_single_per_s`` one DID per request) and ``state_update_us_10k`` /
``_100k`` / ``_1m`` (µs per write into the state map at that many keys). Targets:
``resolve_verified_per_s >= 2000``; ``state_update_us_1m <= 3 x state_update_us_10k``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench._common import did_creations, parse_args, pin_one_core, raw_verify_per_s, report
from bench._smt import measure_update_cost
from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage.sql import SQLLedgerStore

NETWORK = "bench"
_SERVE = """
import sys
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage.sql import SQLLedgerStore
from did_registry.node.server import NodeServer
from did_registry.node.service import NodeService
import json
genesis = Genesis.from_json(json.load(open(sys.argv[2])))
app = LedgerApplication(SQLLedgerStore(sys.argv[1]), genesis)
service = NodeService(app, validator_id="node-1", validator_key=Ed25519PrivateKey(bytes.fromhex(sys.argv[3])))
server = NodeServer(service)
print(server.url, flush=True)
server.serve_forever()
"""


def _identity(network: str) -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, str(trellis_did(network, key.public_key))


def build_chain(directory: Path, n_dids: int) -> tuple[str, Path, Ed25519PrivateKey, list[str]]:
    """A one-validator chain on SQLite holding ``n_dids`` DIDs; return its URL, genesis, key, DIDs."""
    trustee_key, trustee = _identity(NETWORK)
    validator_key = Ed25519PrivateKey.generate()
    genesis = Genesis.from_json(
        {
            "network": NETWORK,
            "time": "2026-01-01T00:00:00Z",
            "consensus": {"engine": "solo"},
            "trustees": [initial_document(trustee, trustee_key.public_key).to_json()],
            "validators": [
                {
                    "id": "node-1",
                    "public_key": encode_ed25519_public_key(validator_key.public_key),
                    "address": "127.0.0.1:1",
                }
            ],
        }
    )
    genesis_file = directory / "genesis.json"
    genesis_file.write_text(json.dumps(genesis.to_json()))
    url = f"sqlite:///{directory / 'node.db'}"
    app = LedgerApplication(SQLLedgerStore(url), genesis)
    dids = []
    for start in range(0, n_dids, 1000):
        txns = did_creations(NETWORK, min(1000, n_dids - start), trustee_key, trustee)
        dids.extend(txn.submitter for txn in txns)
        executed = app.propose(txns, time="2026-01-01T00:00:01Z", proposer="node-1")
        header = executed.block.header
        app.commit(
            executed,
            CommitCertificate(
                header.height,
                header.hash.hex(),
                {"node-1": CommitCertificate.sign(header.hash, validator_key)},
            ),
        )
    return url, genesis_file, validator_key, dids


def _rate(run: callable, seconds: float) -> float:  # type: ignore[valid-type]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print its JSON."""
    args = parse_args(__doc__ or "")
    seconds = 1.0 if args.quick else 5.0
    n_dids = 2_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as folder:
        url, genesis_file, validator_key, dids = build_chain(Path(folder), n_dids)
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVE, url, str(genesis_file), validator_key.seed.hex()],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            node = server.stdout.readline().strip()
            pin_one_core()  # the client side runs on one core; the node has the other
            raw = raw_verify_per_s(seconds)
            rng = random.Random(1)
            http = httpx.Client()
            http.get(f"{node}/health").raise_for_status()

            def resolve_http() -> None:
                http.get(f"{node}/1.0/identifiers/{rng.choice(dids)}").raise_for_status()

            api_single = _rate(resolve_http, seconds)
            counts = [0] * 4
            stop = time.perf_counter() + seconds

            def worker(slot: int) -> None:
                client = httpx.Client()
                local = random.Random(slot)
                while time.perf_counter() < stop:
                    client.get(f"{node}/1.0/identifiers/{local.choice(dids)}").raise_for_status()
                    counts[slot] += 1

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
            begin = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            api_parallel = sum(counts) / (time.perf_counter() - begin)

            client = LedgerClient(node, json.loads(genesis_file.read_text()))

            def resolve_verified() -> None:
                result = client.resolve(rng.choice(dids))
                assert result.error is None

            verified_single = _rate(resolve_verified, seconds)

            batch = min(2_000, len(dids))

            def resolve_verified_batch() -> None:
                results = client.resolve_many(rng.sample(dids, batch))
                assert all(r.error is None for r in results)

            verified = batch * _rate(resolve_verified_batch, seconds)
        finally:
            server.terminate()
            server.wait(10)

    sizes = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
    rounds = 10 if args.quick else 30
    update = {name: measure_update_cost(n, 100, rounds) for name, n in sizes.items()}
    report(
        "registry",
        {
            "raw_verify_per_s": raw,
            "resolve_api_per_s": max(api_single, api_parallel),
            "resolve_api_one_connection_per_s": api_single,
            "resolve_api_4_connections_per_s": api_parallel,
            "resolve_verified_per_s": verified,
            "resolve_verified_single_per_s": verified_single,
            "dids_on_ledger": n_dids,
            "state_update_us_10k": update["10k"],
            "state_update_us_100k": update["100k"],
            "state_update_us_1m": update["1m"],
        },
        {
            "resolve_verified_per_s >= 2000": verified >= 2000,
            "state_update_us_1m <= 3 x state_update_us_10k": update["1m"] <= 3 * update["10k"],
        },
        args.quick,
    )


if __name__ == "__main__":
    main()

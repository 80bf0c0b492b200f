"""A node killed (SIGKILL) at a random moment restarts on a consistent SQLite store and goes on."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from itertools import count
from pathlib import Path

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import trellis_did
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.state import decode_value
from did_registry.ledger.storage.sql import SQLLedgerStore
from tests.did_registry.ledger.conftest import NETWORK, Actor, Network, make_genesis, new_actor

REPO = Path(__file__).resolve().parents[3]
RUNS = 3
WORKER = """
import sys, time
from itertools import count
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.state import decode_value
from did_registry.ledger.storage.sql import SQLLedgerStore
from tests.did_registry.ledger.conftest import new_actor, network_on
from tests.did_registry.ledger.test_storage_crash import actor_from_seed

store = SQLLedgerStore(sys.argv[1])
trustee = actor_from_seed(bytes.fromhex(sys.argv[2]))
net = network_on(store, trustee, Ed25519PrivateKey(bytes.fromhex(sys.argv[3])))
trustee.nonces = count(decode_value(store.get(f"nonce:{trustee.did}") or b"0") + 1)
deadline = time.monotonic() + 20  # the parent kills it long before; never outlive a lost parent
while time.monotonic() < deadline:
    devices = [new_actor() for _ in range(40)]
    net.accept(*[d.txn("did.create", {"document": d.document()}, trustee) for d in devices])
    print(net.app.height, flush=True)  # acknowledged: append returned
"""


def actor_from_seed(seed: bytes) -> Actor:
    """The same did:trellis identity in every process that knows ``seed``."""
    key = Ed25519PrivateKey(seed)
    return Actor(key, str(trellis_did(NETWORK, key.public_key)))


def _run_and_kill(script: Path, url: str, seeds: tuple[bytes, bytes], rng: random.Random) -> int:
    """Run the committing loop, SIGKILL it at a random moment after its first commit; the last height it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, str(script), url, seeds[0].hex(), seeds[1].hex()]
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # EOF (b"") if the worker died instead
        if not first:
            raise AssertionError(f"the worker failed: {process.communicate(timeout=10)[1].decode()}")
        time.sleep(rng.uniform(0.0, 0.8))
        process.send_signal(signal.SIGKILL)
        rest, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    return max(int(line) for line in (first + rest).split())


def test_killed_node_restarts_on_a_consistent_store(tmp_path: Path) -> None:
    """After each SIGKILL the store checks out, holds every acknowledged block, and the chain goes on."""
    rng = random.Random()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    seeds = (os.urandom(32), os.urandom(32))
    trustee, validator_key = actor_from_seed(seeds[0]), Ed25519PrivateKey(seeds[1])
    genesis = make_genesis(trustee, validator_key)
    for _ in range(RUNS):
        acknowledged = _run_and_kill(script, url, seeds, rng)
        store = SQLLedgerStore(url)
        head = store.verify_integrity()
        assert head is not None and acknowledged <= head <= acknowledged + 1  # at most one unreported
        app = LedgerApplication(store, genesis)
        assert app.height == head
        trustee.nonces = count(decode_value(store.get(f"nonce:{trustee.did}") or b"0") + 1)
        device = new_actor()
        Network(app, validator_key, trustee).accept(
            device.txn("did.create", {"document": device.document()}, trustee)
        )
        assert store.verify_integrity() == head + 1 and store.get(f"did:{device.did}") is not None
        store.close()

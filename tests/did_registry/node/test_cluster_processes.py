"""Four validators as separate processes on loopback: kill -9 any one under load, nothing acknowledged
is lost, the killed one restarts and catches up, and all end with equal state roots."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction
from wallet.keystore import Keystore
from wallet.localnet import LocalNetwork

pytestmark = pytest.mark.slow


class Load:
    """A bounded client load: batches of did.create sent to random running nodes, each waited for.

    A transaction is *acknowledged* once a node reports it committed. One sent to a node that is
    killed before forwarding it may never be committed: the client sends it again to another node
    (the same transaction, so it cannot be committed twice)."""

    def __init__(self, net: LocalNetwork, trustee: Keystore, *, batches: int, size: int) -> None:
        self.net, self.trustee = net, trustee
        self.batches, self.size = batches, size
        self.acknowledged: dict[str, int] = {}
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._http = httpx.Client(timeout=10)

    def _txn(self) -> Transaction:
        key = Ed25519PrivateKey.generate()
        did = str(trellis_did(self.net.network, key.public_key))
        body = {"document": initial_document(did, key.public_key).to_json()}
        txn = Transaction.build("did.create", network=self.net.network, submitter=did, nonce=1, body=body)
        assert self.trustee.did is not None
        return txn.signed(key, f"{did}#key-1").signed(self.trustee.current_key, f"{self.trustee.did}#key-1")

    def _run(self) -> None:
        for _ in range(self.batches):
            if self._stop.is_set():
                return
            batch = [self._txn() for _ in range(self.size)]
            self.sent += len(batch)
            self._settle(batch, time.monotonic() + 60)
            time.sleep(0.05)

    def _settle(self, batch: list[Transaction], deadline: float) -> None:
        """Send ``batch`` to a running node until each transaction is reported committed."""
        waiting = {t.id: t for t in batch}
        while waiting and time.monotonic() < deadline:
            node = random.choice(self.net.running())
            url = self.net.nodes[node].url
            try:
                self._http.post(f"{url}/txns", json=[t.to_json() for t in waiting.values()])
                for txn_id in list(waiting):
                    answer = self._http.get(f"{url}/txns/{txn_id}", params={"wait": 3}).json()
                    if answer.get("status") == "committed":
                        self.acknowledged[txn_id] = answer["height"]
                        del waiting[txn_id]
            except httpx.HTTPError:
                time.sleep(0.1)  # the node died under us: try another
        if waiting:
            self.errors.append(f"{len(waiting)} transactions not committed within 60 s")

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish in time"
        self._http.close()


@pytest.fixture(params=["pbft", "round_robin"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalNetwork]:
    network = LocalNetwork(tmp_path / "net", 4, engine=request.param, network="clusternet")
    network.start()
    yield network
    network.stop()


def _heads(net: LocalNetwork) -> dict[str, tuple[int, str]]:
    heads = {}
    for node_id in net.running():
        health = net.health(node_id)
        heads[node_id] = (health["height"], health["state_root"])
    return heads


def _wait_equal(net: LocalNetwork, timeout: float = 60) -> dict[str, tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        heads = _heads(net)
        if len(set(heads.values())) == 1 or time.monotonic() > deadline:
            return heads
        time.sleep(0.2)


@pytest.mark.parametrize("victim", ["node-1", "node-3"])
def test_kill_9_one_validator_under_load(net: LocalNetwork, victim: str) -> None:
    """node-1 is the first primary (PBFT) and the first proposer (round-robin)."""
    trustee = Keystore.open(net.directory / "trustee.key", net.passphrase)
    load = Load(net, trustee, batches=30, size=10)
    load.start()
    deadline = time.monotonic() + 60
    while len(load.acknowledged) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(load.acknowledged) >= 50, net.log("node-1")[-3000:]
    net.kill(victim)
    killed_at = len(load.acknowledged)
    while len(load.acknowledged) < killed_at + 80 and time.monotonic() < deadline + 60:
        time.sleep(0.05)
    assert len(load.acknowledged) >= killed_at + 80, "the three left did not keep committing"
    net.start([victim])
    load.join(timeout=180)
    assert not load.errors, load.errors
    heads = _wait_equal(net)
    assert len(set(heads.values())) == 1, heads
    assert len(load.acknowledged) == load.sent
    with httpx.Client(timeout=10) as http:
        for node_id in net.nodes:  # no acknowledged transaction lost, on any node, the restarted one too
            url = net.nodes[node_id].url
            sample = list(itertools.islice(load.acknowledged.items(), 0, None, 7))
            for txn_id, height in sample:
                answer = http.get(f"{url}/txns/{txn_id}").json()
                assert (answer["status"], answer["height"]) == ("committed", height), (node_id, answer)
    deadline = time.monotonic() + 30
    while True:  # beacons come once a second, once the peer has redialled (back-off up to 10 s)
        health = net.health(victim)
        lags = {peer: info["lag"] for peer, info in health["consensus"]["peers"].items()}
        if set(lags.values()) == {0} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert health["consensus"]["role"] == "validator"
    assert lags == {peer: 0 for peer in net.nodes if peer != victim}, health

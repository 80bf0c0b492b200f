"""`trellis validator list|add|remove|rotate-key`: the validator set of a live 4-validator PBFT cluster."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.txn import Transaction
from tests.did_registry.ledger.conftest import creates, new_actor
from tests.did_registry.node.cluster import Cluster
from wallet import validator_cli
from wallet.keystore import KDF_TESTING, Keystore
from web.cli import main

PASSPHRASE = "correct horse battery staple"
ENV = {"TRELLIS_PASSPHRASE": PASSPHRASE}


@dataclass
class Network:
    """A running cluster, with its genesis.json and the trustee's keystore in ``folder``."""

    cluster: Cluster
    folder: Path

    @property
    def url(self) -> str:
        return self.cluster.nodes["node-1"].url

    def common(self) -> list[str]:
        """--node and --genesis."""
        return ["--node", self.url, "--genesis", str(self.folder / "genesis.json")]

    def signer(self) -> list[str]:
        """--node, --genesis and the trustee's --keystore."""
        return [*self.common(), "--keystore", str(self.folder / "trustee.key")]

    def head(self) -> int:
        service = self.cluster.nodes["node-1"].service
        assert service is not None
        return service.app.height

    def state(self) -> tuple[Any, Any]:
        """The proven validators record and the trustee's last nonce."""
        with LedgerClient([self.url], self.cluster.genesis) as client:
            values, _ = client.prove_many(["validators", f"nonce:{self.cluster.trustee.did}"])
        return values[0], values[1]


def _network(cluster: Cluster, folder: Path) -> Network:
    cluster.start()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "genesis.json").write_text(json.dumps(cluster.genesis.to_json()), encoding="utf-8")
    trustee = cluster.trustee
    keystore = Keystore.new(trustee.key, metadata={"did": trustee.did}, params=KDF_TESTING)
    keystore.save(folder / "trustee.key", PASSPHRASE)
    network = Network(cluster, folder)
    commit(network, creates(trustee, 1))  # the head is above block 0
    return network


def commit(network: Network, txns: list[Transaction], node: str = "node-1") -> None:
    url = network.cluster.nodes[node].url
    answer = httpx.post(f"{url}/txns", json=[t.to_json() for t in txns], timeout=10)
    assert answer.status_code == 202, answer.text
    network.cluster.wait_for(lambda: network.cluster.committed_everywhere(txns), what="committed")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """One cluster for the tests that change nothing in force (a far-off rotation at most)."""
    cluster = Cluster.create("pbft", 4)
    try:
        yield _network(cluster, tmp_path_factory.mktemp("validators"))
    finally:
        cluster.close()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Network]:
    """A cluster of the test's own, for one whose change takes effect."""
    cluster = Cluster.create("pbft", 4)
    try:
        yield _network(cluster, tmp_path)
    finally:
        cluster.close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validator", *args], env=ENV)
    return result.exit_code, result.output


def test_list_shows_the_genesis_set_and_the_head(shared: Network) -> None:
    """The set in force is genesis's (id, key, address), with the head's height."""
    code, out = run("list", *shared.common())
    assert code == 0, out
    assert re.search(r"^head: block \d+$", out, re.M)
    assert "4 validator(s), quorum 3" in out
    for validator in shared.cluster.genesis.validators:
        assert f"{validator['id']}  {validator['public_key']}  {validator['address']}" in out
    code, out = run("list", *shared.common(), "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert listed["set"] == [dict(v) for v in shared.cluster.genesis.validators]
    assert listed["head"] >= 1


def test_add_is_pending_then_the_node_votes_from_its_height(own: Network) -> None:
    """An observer's key file added --in 4: listed as pending at that height; from it, the node votes
    (node-4 stopped, its signature is needed in the certificate)."""
    cluster = own.cluster
    joiner = cluster.add_observer("node-5")
    key_file = own.folder / "node-5.key"
    Keystore.new(joiner.key, metadata={"validator": "node-5"}, params=KDF_TESTING).save(key_file, PASSPHRASE)
    multikey = encode_ed25519_public_key(joiner.key.public_key)
    address = f"127.0.0.1:{joiner.p2p_port}"
    code, out = run("add", *own.signer(), "--id", "node-5", "--key", str(key_file), "--address", address,
                    "--in", "4")  # fmt: skip
    assert code == 0, out
    assert f"key: {multikey}" in out
    found = re.search(r"joins the set at block (\d+)", out)
    assert found is not None, out
    effective = int(found.group(1))
    assert "follows the chain until block" in out

    code, out = run("list", *own.common(), "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert listed["head"] < effective  # blocks come with transactions, or one every 10 s when idle
    added = {"id": "node-5", "public_key": multikey, "address": address}
    assert {"height": effective, "action": "add", "change": {"validator": added}} in listed["pending"]
    assert "node-5" not in [v["id"] for v in listed["set"]]

    for txn in creates(cluster.trustee, 20):  # one block each, until the effective height has passed
        commit(own, [txn])
        if own.head() > effective:
            break
    cluster.wait_for(lambda: joiner.replica is not None and joiner.replica.status()["role"] == "validator",
                     timeout=10, what="node-5 votes")  # fmt: skip
    cluster.stop("node-4")  # 5 validators, quorum 4: node-5's votes are needed
    commit(own, creates(cluster.trustee, 3), node="node-3")
    service = cluster.nodes["node-1"].service
    assert service is not None
    certificate = service.head[1]
    assert certificate is not None and "node-5" in certificate.signatures


def test_rotate_key_records_the_pending_change_and_says_to_restart(shared: Network) -> None:
    """A rotation to a Multikey given as text is committed as pending at head + --in, and the
    command tells the operator to restart the node with the new key."""
    new = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    code, out = run("rotate-key", *shared.signer(), "--id", "node-3", "--key", new, "--in", "1000")
    assert code == 0, out
    assert f"key: {new} (given)" in out
    assert re.search(r"committed transaction [0-9a-f]{64} in block \d+", out)
    found = re.search(r"signs with \S+ from block (\d+)", out)
    assert found is not None, out
    effective = int(found.group(1))
    assert f"restart node-3 with the key file holding {new}" in out
    record, _ = shared.state()
    change = {"id": "node-3", "public_key": new}
    assert {"height": effective, "action": "rotate_key", "change": change} in record["pending"]


def test_a_change_the_ledger_refuses_prints_its_code_and_detail(
    shared: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the command's own check of the change skipped, the ledger's refusal is printed."""
    monkeypatch.setattr(validator_cli, "scheduled", lambda record, *_: record)
    before = shared.state()
    key = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    code, out = run("add", *shared.signer(), "--id", "node-1", "--key", key, "--address", "127.0.0.1:7000")
    assert code == 1
    assert (
        "error: the ledger refused the transaction: conflict: validator node-1 (or its key) is already" in out
    )
    assert shared.state() == before


def test_a_quorum_of_two_trustees_needs_a_cosigner(tmp_path: Path) -> None:
    """With rules.validator_quorum 2, one trustee's keystore is refused before anything is submitted;
    with a second trustee's --cosign the change commits, signed by both."""
    cluster = Cluster.create("pbft", 4)
    second = new_actor()
    data = cluster.genesis.to_json()
    data["trustees"] = [*data["trustees"], second.document()]
    data["rules"] = {**data["rules"], "validator_quorum": 2}
    cluster.genesis = Genesis.from_json(data)
    try:
        network = _network(cluster, tmp_path)
        cosigner = tmp_path / "second.key"
        Keystore.new(second.key, metadata={"did": second.did}, params=KDF_TESTING).save(cosigner, PASSPHRASE)
        code, out = run("remove", *network.signer(), "--id", "node-4", "--in", "1000")
        assert code == 1
        assert "needs 2 trustee signature(s) (rules.validator_quorum), these keystores give 1" in out
        code, out = run(
            "remove", *network.signer(), "--cosign", str(cosigner), "--id", "node-4", "--in", "1000"
        )
        assert code == 0, out
        found = re.search(r"committed transaction ([0-9a-f]{64})", out)
        assert found is not None
        with LedgerClient([network.url], cluster.genesis) as client:
            txn, _ = client.txn_proof(found.group(1))
        assert {s.verification_method.partition("#")[0] for s in txn.signatures} == {
            cluster.trustee.did,
            second.did,
        }
    finally:
        cluster.close()


def test_remove_of_an_unknown_id_fails_and_submits_nothing(shared: Network) -> None:
    before = shared.state()
    code, out = run("remove", *shared.signer(), "--id", "node-9")
    assert code == 1
    assert "no validator 'node-9' in the set" in out and "nothing submitted" in out
    assert shared.state() == before


def test_at_not_above_the_head_fails(shared: Network) -> None:
    before = shared.state()
    head = shared.head()
    code, out = run("remove", *shared.signer(), "--id", "node-4", "--at", str(head))
    assert code == 1
    assert f"--at {head} is not above the head" in out
    assert shared.state() == before


def test_at_and_in_together_fail(shared: Network) -> None:
    code, out = run("remove", *shared.signer(), "--id", "node-4", "--at", "100", "--in", "5")
    assert code == 1
    assert "give --at or --in, not both" in out


@pytest.mark.parametrize("key", ["z6MkNotAKey", "did:key:z6Mk", "no-such-file.key"])
def test_a_malformed_key_fails(shared: Network, key: str) -> None:
    before = shared.state()
    code, out = run("rotate-key", *shared.signer(), "--id", "node-2", "--key", key)
    assert code == 1
    assert "is neither a key file nor an Ed25519 public Multikey" in out
    assert shared.state() == before


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "host:99999", "a b:80"])
def test_a_bad_address_fails(shared: Network, address: str) -> None:
    key = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    code, out = run("add", *shared.signer(), "--id", "node-6", "--key", key, "--address", address)
    assert code == 1
    assert f"bad --address {address!r}" in out


def test_a_signer_who_is_not_a_trustee_fails(shared: Network) -> None:
    """The quorum of trustee signatures is checked before anything is submitted."""
    stranger = new_actor()
    path = shared.folder / "stranger.key"
    Keystore.new(stranger.key, metadata={"did": stranger.did}, params=KDF_TESTING).save(path, PASSPHRASE)
    common = [*shared.common(), "--keystore", str(path)]
    code, out = run("remove", *common, "--id", "node-4")
    assert code == 1
    assert (
        f"needs 1 trustee signature(s) (rules.validator_quorum), these keystores give 0 ({stranger.did}"
        in out
    )


def test_an_unreachable_node_is_a_clear_error(shared: Network) -> None:
    genesis = ["--genesis", str(shared.folder / "genesis.json")]
    code, out = run("list", "--node", "http://127.0.0.1:9", *genesis)
    assert code == 1
    assert "error: cannot read the validator set" in out and "Traceback" not in out
    code, out = run("remove", "--node", "http://127.0.0.1:9", *genesis, "--keystore",
                    str(shared.folder / "trustee.key"), "--id", "node-4")  # fmt: skip
    assert code == 1
    assert "error: cannot read the ledger" in out


# -- a node's word on a rejection is checked ---------------------------------------------------
def _rejecting(real: Any) -> Any:
    """``LedgerClient._statuses`` of a node that says ``rejected`` where the real answer is settled."""

    def statuses(self: LedgerClient, ids: list[str], wait: float) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = real(self, ids, wait)
        return [
            {"id": s["id"], "status": "rejected", "code": "conflict", "detail": "made up by the node"}
            if s.get("status") in ("committed", "rejected")
            else s
            for s in answer
        ]

    return statuses


def test_a_rejection_a_node_made_up_for_a_committed_change_is_not_believed(
    shared: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node saying ``rejected`` for a transaction that committed: the command proves it on the
    ledger and reports the commit (exit 0), not a refusal."""
    monkeypatch.setattr(LedgerClient, "_statuses", _rejecting(LedgerClient._statuses))
    new = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    code, out = run("rotate-key", *shared.signer(), "--id", "node-2", "--key", new, "--in", "1000")
    assert code == 0, out
    assert "refused" not in out
    assert re.search(r"committed transaction [0-9a-f]{64} in block \d+", out)
    record, _ = shared.state()
    assert any(p["change"] == {"id": "node-2", "public_key": new} for p in record["pending"])


def test_a_rejection_is_unknown_while_the_nonce_is_unused(
    shared: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node saying ``rejected`` for a transaction that is not on the ledger while the trustee's
    nonce is unused (here it never reached a node): not said to be refused, since it may still commit."""
    submitted: list[Transaction] = []

    def swallow(self: LedgerClient, txns: Any) -> list[str]:
        submitted.append(txns)
        return [txns.id]

    def rejected(self: LedgerClient, ids: list[str], wait: float) -> list[dict[str, Any]]:
        return [{"id": i, "status": "rejected", "code": "conflict", "detail": "made up"} for i in ids]

    monkeypatch.setattr(LedgerClient, "submit", swallow)
    monkeypatch.setattr(LedgerClient, "_statuses", rejected)
    before = shared.state()
    new = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    code, out = run("rotate-key", *shared.signer(), "--id", "node-4", "--key", new, "--in", "1000")
    assert code == 1
    [txn] = submitted
    height = txn.body["effective_height"]
    assert "error: the ledger refused the transaction" not in out
    assert f"transaction {txn.id} was submitted, but its commit is not proven" in out
    assert "a node says the ledger refused it (conflict: made up), but that is not proven" in out
    assert f"nonce {txn.nonce} of {shared.cluster.trustee.did} is not used as of block" in out
    assert f"It may still commit (at most until block {height - 1}): see `trellis validator list`" in out
    assert shared.state() == before


def test_a_rejection_is_confirmed_when_the_nonce_went_to_another_transaction(
    shared: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the trustee's nonce is proven used by another transaction (here one built with the same
    nonce, committed instead), the transaction can never commit: the command says it was refused."""
    real_submit = LedgerClient.submit
    trustee = shared.cluster.trustee
    used: list[Transaction] = []

    def race(self: LedgerClient, txns: Any) -> list[str]:
        other = Transaction.build(
            txns.type,
            network=txns.network,
            submitter=txns.submitter,
            nonce=txns.nonce,
            body={**txns.body, "effective_height": txns.body["effective_height"] + 1},
        ).signed(trustee.key, trustee.method)
        real_submit(self, other)
        shared.cluster.wait_for(lambda: shared.cluster.committed_everywhere([other]), what="the other")
        used.append(txns)
        return [txns.id]

    def rejected(self: LedgerClient, ids: list[str], wait: float) -> list[dict[str, Any]]:
        return [{"id": i, "status": "rejected", "code": "replay", "detail": "nonce used"} for i in ids]

    monkeypatch.setattr(LedgerClient, "submit", race)
    monkeypatch.setattr(LedgerClient, "_statuses", rejected)
    new = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    code, out = run("rotate-key", *shared.signer(), "--id", "node-1", "--key", new, "--in", "1000")
    assert code == 1
    [txn] = used
    assert "error: the ledger refused the transaction: replay: nonce used (proven as of block" in out
    assert f"nonce {txn.nonce} of {trustee.did} went to another transaction" in out
    assert "may still commit" not in out


@pytest.mark.parametrize(
    ("option", "value"),
    [("--at", str(2**60)), ("--at", str(2**53)), ("--in", str(2**53)), ("--in", str(10**30))],
)
def test_heights_past_json_safe_integers_are_a_usage_error(shared: Network, option: str, value: str) -> None:
    """``--at``/``--in`` beyond 2**53-1 cannot go into a transaction: click refuses them (exit 2)
    before anything is read or submitted, with no traceback."""
    before = shared.state()
    key = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    result = CliRunner().invoke(
        main, ["validator", "rotate-key", *shared.signer(), "--id", "node-3", "--key", key, option, value],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output and f"{2**53 - 1}" in result.output
    assert shared.state() == before


def test_in_reaching_past_the_highest_height_fails(shared: Network) -> None:
    """``--in 2**53-1`` is in range, but added to the head it is not: a clear error, nothing submitted."""
    before = shared.state()
    key = encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key)
    result = CliRunner().invoke(
        main, ["validator", "rotate-key", *shared.signer(), "--id", "node-3", "--key", key,
               "--in", str(2**53 - 1)],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"is past the highest height, {2**53 - 1}" in result.output
    assert shared.state() == before

"""The portal's organisation: setup status read from the ledger, and setup by real transactions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient
from did_registry.identity.did_trellis import initial_document
from did_registry.ledger.txn import Transaction
from tests.did_registry.node.conftest import Node, make_node
from wallet.errors import WrongPassphrase
from wallet.keystore import KDF_TESTING, Keystore
from wallet.ledger_cli import next_nonce
from web.organisation import (
    KEYSTORE_FILE,
    LedgerRefused,
    Organisation,
    SetupStep,
    Signer,
    TrusteeRequired,
    list_name,
)

PASSPHRASE = "portal pass phrase"


@dataclass
class LedgerNode:
    """A running one-validator node and a client that checks every answer against its genesis."""

    node: Node
    client: LedgerClient

    @property
    def trustee(self) -> Signer:
        """The network's trustee as a signer."""
        actor = self.node.trustee
        return Signer(actor.did, actor.key, actor.method)

    def trustee_keystore(self) -> Keystore:
        """The trustee's key in a keystore (as the admin hands it to the setup page)."""
        return Keystore.new(
            self.node.trustee.key, metadata={"did": self.node.trustee.did}, params=KDF_TESTING
        )

    def height(self) -> int:
        """The ledger's height."""
        return self.client.head().height


@pytest.fixture
def ledger_node() -> Iterator[LedgerNode]:
    """A running in-process ledger node (solo engine, memory store) and a client for it."""
    node = make_node(block_interval=0.005)
    node.service.start()
    client = LedgerClient(
        "http://node-1", node.service.app.genesis, transport=httpx.WSGITransport(app=node.app)
    )
    try:
        yield LedgerNode(node, client)
    finally:
        client.close()
        node.service.stop()


def new_organisation(folder: Path) -> Organisation:
    """An organisation whose keystore would live in ``folder`` (cheap Argon2id for tests)."""
    return Organisation.in_instance(folder, PASSPHRASE, params=KDF_TESTING)


def test_status_of_nothing_lists_every_step(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """With no keystore, every step is missing and no DID is known."""
    status = new_organisation(tmp_path).status(ledger_node.client)
    assert status.did is None
    assert status.missing == tuple(SetupStep)
    assert not status.complete and status.needs_trustee


def test_setup_from_nothing_completes(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """Setup with the trustee's keystore does every step; the status then lists nothing missing."""
    organisation = new_organisation(tmp_path)
    status = organisation.setup(ledger_node.client, ledger_node.trustee_keystore())
    assert status.complete and status.missing == ()
    did = organisation.did
    assert did is not None and did == status.did
    record, _ = ledger_node.client.resolve_record(did)
    assert record is not None and record["endorser"] == ledger_node.trustee.did
    (roles, trust, revocation, suspension), _ = ledger_node.client.prove_many(
        [f"role:{did}", f"trust:{did}", f"status:{did}:1-revocation", f"status:{did}:1-suspension"]
    )
    assert "issuer" in roles
    assert "DeviceCredential" in trust
    assert (revocation["purpose"], suspension["purpose"]) == ("revocation", "suspension")


def by_trustee(ledger_node: LedgerNode, txn_type: str, body: dict[str, Any]) -> None:
    """Commit a transaction submitted and signed by the trustee."""
    client, trustee = ledger_node.client, ledger_node.trustee
    txn = Transaction.build(
        txn_type,
        network=client.genesis.network,
        submitter=trustee.did,
        nonce=next_nonce(client, trustee.did),
        body=body,
    )
    client.submit_and_wait(txn.signed(trustee.key, trustee.method))


def anchor_by_hand(ledger_node: LedgerNode, organisation: Organisation) -> None:
    """Create the organisation's DID on the ledger, endorsed by the trustee, without ``setup``."""
    client, trustee, me = ledger_node.client, ledger_node.trustee, organisation.signer
    txn = Transaction.build(
        "did.create",
        network=client.genesis.network,
        submitter=me.did,
        nonce=1,
        body={"document": initial_document(me.did, me.key.public_key).to_json()},
    )
    client.submit_and_wait(txn.signed(me.key, me.method).signed(trustee.key, trustee.method))


def test_status_shows_each_missing_step_as_setup_proceeds(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """Each fact, once written, leaves the missing list; the others stay."""
    organisation, client = new_organisation(tmp_path), ledger_node.client
    organisation._create_keystore(client.genesis.network)
    assert organisation.status(client).missing == tuple(SetupStep)[1:]
    anchor_by_hand(ledger_node, organisation)
    assert organisation.status(client).missing == tuple(SetupStep)[2:]
    by_trustee(ledger_node, "role.grant", {"did": organisation.did, "role": "issuer"})
    assert organisation.status(client).missing == tuple(SetupStep)[3:]
    by_trustee(ledger_node, "trust.accredit", {"issuer": organisation.did, "types": ["DeviceCredential"]})
    assert organisation.status(client).missing == tuple(SetupStep)[4:]
    organisation.create_status_lists(client, [list_name("revocation")])
    assert organisation.status(client).missing == (SetupStep.SUSPENSION_LIST,)
    organisation.create_status_lists(client, [list_name("suspension")])
    assert organisation.status(client).complete


def test_accreditation_for_another_type_does_not_count(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """An issuer accredited for other credential types still misses the DeviceCredential accreditation."""
    organisation, client = new_organisation(tmp_path), ledger_node.client
    organisation._create_keystore(client.genesis.network)
    anchor_by_hand(ledger_node, organisation)
    by_trustee(ledger_node, "role.grant", {"did": organisation.did, "role": "issuer"})
    by_trustee(ledger_node, "trust.accredit", {"issuer": organisation.did, "types": ["ParkingPermit"]})
    assert SetupStep.ACCREDITATION in organisation.status(client).missing


def test_setup_without_trustee_is_refused_when_a_trustee_step_is_missing(
    ledger_node: LedgerNode, tmp_path: Path
) -> None:
    """A missing DID, role or accreditation needs a trustee: refused before anything is written."""
    organisation = new_organisation(tmp_path)
    height = ledger_node.height()
    with pytest.raises(TrusteeRequired):
        organisation.setup(ledger_node.client)
    assert not (tmp_path / KEYSTORE_FILE).exists()
    assert ledger_node.height() == height


def test_missing_status_lists_need_no_trustee(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """Only the organisation signs status list creations, so setup needs no trustee for them."""
    organisation, client = new_organisation(tmp_path), ledger_node.client
    organisation._create_keystore(client.genesis.network)
    anchor_by_hand(ledger_node, organisation)
    by_trustee(ledger_node, "role.grant", {"did": organisation.did, "role": "issuer"})
    by_trustee(ledger_node, "trust.accredit", {"issuer": organisation.did, "types": ["DeviceCredential"]})
    assert not organisation.status(client).needs_trustee
    assert organisation.setup(client).complete


def test_ensure_status_lists_creates_only_the_absent_ones(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """The issuer's next pair of lists is created when asked for; existing ones are left alone."""
    organisation, client = new_organisation(tmp_path), ledger_node.client
    organisation.setup(client, ledger_node.trustee)
    fresh = new_organisation(tmp_path)  # same keystore, knows nothing of what is on the ledger
    fresh.ensure_status_lists(client, ["1-revocation", "2-revocation", "2-suspension"])
    did = fresh.did
    values, _ = client.prove_many([f"status:{did}:2-revocation", f"status:{did}:2-suspension"])
    assert [v["purpose"] for v in values] == ["revocation", "suspension"]
    height = ledger_node.height()
    fresh.ensure_status_lists(client, ["2-revocation"])
    assert ledger_node.height() == height


def test_setup_twice_writes_nothing_more(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """A complete organisation's setup submits no transaction."""
    organisation = new_organisation(tmp_path)
    organisation.setup(ledger_node.client, ledger_node.trustee)
    height = ledger_node.height()
    assert organisation.setup(ledger_node.client).complete
    assert ledger_node.height() == height


def test_keys_are_kept_encrypted(ledger_node: LedgerNode, tmp_path: Path) -> None:
    """The keystore file holds no key material in clear and opens only with the passphrase."""
    organisation = new_organisation(tmp_path)
    organisation.setup(ledger_node.client, ledger_node.trustee)
    data = (tmp_path / KEYSTORE_FILE).read_bytes()
    seed = organisation.signer.key.seed
    assert seed not in data and seed.hex().encode() not in data
    with pytest.raises(WrongPassphrase):
        Keystore.open(tmp_path / KEYSTORE_FILE, "not the passphrase")
    assert Keystore.open(tmp_path / KEYSTORE_FILE, PASSPHRASE).did == organisation.did


def test_a_key_that_is_not_a_trustee_is_refused_by_the_ledger(
    ledger_node: LedgerNode, tmp_path: Path
) -> None:
    """A non-trustee's signature does not endorse: the ledger's refusal surfaces as LedgerRefused."""
    organisation = new_organisation(tmp_path)
    impostor = new_organisation(tmp_path / "other")
    impostor._create_keystore(ledger_node.client.genesis.network)
    with pytest.raises(LedgerRefused) as refused:
        organisation.setup(ledger_node.client, impostor.signer)
    assert refused.value.rejection.code in ("bad_signature", "forbidden")
    assert organisation.status(ledger_node.client).missing[0] == SetupStep.DID


def test_a_lagging_node_does_not_make_the_organisation_reuse_a_nonce(
    ledger_node: LedgerNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that answers as of an older block (a restarted one catching up) reports a nonce already
    used; the organisation's next transaction still takes a fresh one and commits."""
    organisation, client = new_organisation(tmp_path), ledger_node.client
    organisation.setup(client, ledger_node.trustee)
    did = organisation.did
    assert did is not None
    stale = next_nonce(client, did)  # what the ledger says now …
    organisation.transact(client, [("status_list.update", {"list": list_name("suspension"), "set": [3]})])
    monkeypatch.setattr("web.organisation.next_nonce", lambda _ledger, _did: stale)  # … and still says later
    organisation.transact(client, [("status_list.update", {"list": list_name("suspension"), "set": [4]})])
    assert next_nonce(client, did) == stale + 2

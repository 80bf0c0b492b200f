"""State proofs: a reader trusts the validator set, never the node."""

from __future__ import annotations

import copy

import pytest

from did_registry.errors import InvalidProof
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate, InvalidCertificate
from did_registry.ledger.proofs import StateProof
from did_registry.node.service import NodeService
from tests.did_registry.ledger.conftest import Network, new_actor


@pytest.fixture
def service(net: Network) -> NodeService:
    """A node service over the test network."""
    return NodeService(net.app, validator_id="node-1", validator_key=net.validator_key)


def test_present_value_verifies(net: Network, service: NodeService) -> None:
    """A DID record proven by the node verifies against the trusted validator set."""
    device = net.onboard()
    answer = StateProof.from_json(service.prove(f"did:{device.did}").to_json())
    value = answer.verify(net.app.validators())
    assert value["document"]["id"] == device.did


def test_absence_verifies(net: Network, service: NodeService) -> None:
    """The absence of a DID is proven too."""
    net.onboard()
    answer = service.prove(f"did:{new_actor().did}")
    assert answer.value is None
    assert answer.verify(net.app.validators()) is None


def test_lying_about_the_value_is_caught(net: Network, service: NodeService) -> None:
    """A node that changes the value it proves is caught."""
    device = net.onboard()
    data = service.prove(f"did:{device.did}").to_json()
    data["value"]["deactivated"] = True
    with pytest.raises(InvalidProof):
        StateProof.from_json(data).verify(net.app.validators())


def test_hiding_a_value_is_caught(net: Network, service: NodeService) -> None:
    """A node that claims an existing key is absent is caught."""
    reporter, device = net.onboard("reporter"), net.onboard()
    net.accept(
        reporter.txn(
            "quarantine.report", {"did": device.did, "evidence": {"hash": "ab" * 32, "description": "x"}}
        )
    )
    data = service.prove(f"quarantine:{device.did}").to_json()
    data["value"] = None
    with pytest.raises(InvalidProof):
        StateProof.from_json(data).verify(net.app.validators())


def test_forged_certificate_is_caught(net: Network, service: NodeService) -> None:
    """A header signed by a key outside the validator set is refused."""
    device = net.onboard()
    proof = service.prove(f"did:{device.did}")
    forger = Ed25519PrivateKey.generate()
    forged = CommitCertificate(
        proof.header.height,
        proof.header.hash.hex(),
        {"node-1": CommitCertificate.sign(proof.header.hash, forger)},
    )
    with pytest.raises(InvalidProof):
        StateProof(proof.key, proof.value, proof.header, forged, proof.proof).verify(net.app.validators())


def test_an_overlong_certificate_signature_is_refused_unread(net: Network, service: NodeService) -> None:
    """A certificate signature longer than any Ed25519 signature's base58btc form is refused before it
    is decoded (decoding base58 takes time quadratic in its length: a node could make a reader spin)."""
    device = net.onboard()
    proof = service.prove(f"did:{device.did}")
    overlong = CommitCertificate(
        proof.header.height, proof.header.hash.hex(), {"node-1": "z" + "2" * 200_000}
    )
    with pytest.raises(InvalidCertificate, match="encode more than 64 bytes"):
        overlong.verify(proof.header, net.app.validators())


def test_forged_header_is_caught(net: Network, service: NodeService) -> None:
    """A header with another state root no longer matches its certificate."""
    device = net.onboard()
    data = service.prove(f"did:{device.did}").to_json()
    data["header"]["state_root"] = "00" * 32
    with pytest.raises(InvalidProof):
        StateProof.from_json(data).verify(net.app.validators())


def test_tampered_path_is_caught(net: Network, service: NodeService) -> None:
    """Changing a sibling hash of the path is caught."""
    for _ in range(5):
        net.onboard()
    data = service.prove("validators").to_json()
    tampered = copy.deepcopy(data)
    assert tampered["proof"]["siblings"]
    tampered["proof"]["siblings"][0] = "11" * 32
    with pytest.raises(InvalidProof):
        StateProof.from_json(tampered).verify(net.app.validators())

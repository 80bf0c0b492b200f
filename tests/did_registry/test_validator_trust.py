"""ValidatorTrust: a reader learns each validator set change from a proof certified by the set before it."""

from __future__ import annotations

import dataclasses
import sys
import threading

import pytest

from did_registry.errors import InvalidProof
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.block import CommitCertificate
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.validators import ValidatorSet
from did_registry.validator_trust import ValidatorTrust
from tests.did_registry.validator_chain import SetChangeChain


def ids(validators: ValidatorSet) -> list[str]:
    return [v.id for v in validators.validators]


@pytest.fixture
def chain() -> SetChangeChain:
    """Genesis v1..v4; v5 added from block 3."""
    made = SetChangeChain()
    made.block(made.add("v5", 3))
    made.block()  # block 2: its record says v5 joins at 3
    return made


def test_a_change_proven_against_a_certified_header_is_trusted_from_its_height(chain: SetChangeChain) -> None:
    trust = ValidatorTrust(chain.genesis)
    assert trust.learn([chain.proof()]) == 1
    assert ids(trust.at(3)[0]) == ["v1", "v2", "v3", "v4", "v5"]
    assert ids(trust.at(2)[0]) == ["v1", "v2", "v3", "v4"]
    assert trust.newest_change == 3
    chain.block()
    assert trust.at(3)[1] == chain.header(3).validators_hash


def test_changes_learned_in_a_row_each_rest_on_the_one_before(chain: SetChangeChain) -> None:
    trust = ValidatorTrust(chain.genesis)
    first = chain.proof()
    chain.block(chain.rotate("v2", 5))  # block 3, the first certified by v1..v5
    chain.block()  # block 4
    assert trust.learn([first, chain.proof()]) == 2
    assert trust.at(5)[1] == chain.block().validators_hash


def test_a_change_whose_header_the_trusted_set_did_not_certify_is_refused(chain: SetChangeChain) -> None:
    proof = chain.proof()
    strangers = {f"v{i}": Ed25519PrivateKey.generate() for i in (1, 2, 3)}
    forged = CommitCertificate(
        proof.header.height,
        proof.header.hash.hex(),
        {name: CommitCertificate.sign(proof.header.hash, key) for name, key in strangers.items()},
    )
    trust = ValidatorTrust(chain.genesis)
    with pytest.raises(InvalidProof, match="commit certificate"):
        trust.learn([dataclasses.replace(proof, certificate=forged)])
    assert trust.newest_change == 0


def test_a_change_that_skips_an_earlier_one_is_refused(chain: SetChangeChain) -> None:
    chain.block(chain.rotate("v2", 5))
    chain.block()
    trust = ValidatorTrust(chain.genesis)
    with pytest.raises(InvalidProof, match="an earlier change is missing"):
        trust.learn([chain.proof()])  # block 4 is certified by v1..v5, which this reader never learned
    assert trust.newest_change == 0


def test_a_record_other_than_the_proven_one_is_refused(chain: SetChangeChain) -> None:
    proof = chain.proof()
    record = dict(proof.value, set=proof.value["set"][:1], pending=[])  # "v1 alone from now on"
    with pytest.raises(InvalidProof):
        ValidatorTrust(chain.genesis).learn([dataclasses.replace(proof, value=record)])


def test_a_proof_of_a_record_that_changes_nothing_next_is_refused() -> None:
    chain = SetChangeChain()
    chain.block()
    with pytest.raises(InvalidProof, match="does not change"):
        ValidatorTrust(chain.genesis).learn([chain.proof()])


def test_a_proof_of_another_key_is_refused(chain: SetChangeChain) -> None:
    proof = chain.proof()
    other = StateProof(
        "network", None, proof.header, proof.certificate, chain.app.state_map().prove(b"network")
    )
    with pytest.raises(InvalidProof, match="not 'validators'"):
        ValidatorTrust(chain.genesis).learn([other])


def test_changes_already_known_are_passed_over(chain: SetChangeChain) -> None:
    trust = ValidatorTrust(chain.genesis)
    proof = chain.proof()
    trust.learn([proof])
    assert trust.learn([proof]) == 0
    assert len(trust.changes()) == 1


def test_changes_round_trip_through_json_to_another_reader(chain: SetChangeChain) -> None:
    trust = ValidatorTrust(chain.genesis)
    trust.learn([chain.proof()])
    other = ValidatorTrust(chain.genesis)
    assert other.learn(ValidatorTrust.parse(trust.changes())) == 1
    assert other.at(3) == trust.at(3)


def test_changes_that_are_not_a_list_are_refused() -> None:
    with pytest.raises(InvalidProof, match="list"):
        ValidatorTrust.parse({"changes": []})


def test_a_change_that_skips_a_set_the_chain_left_and_came_back_to_is_refused() -> None:
    """v5 joins at 3 and leaves at 6 (the set is genesis's again), v6 joins at 9: block 8 names the
    genesis set, but a reader given only the change at 9 would trust genesis's set for blocks 3 to 5."""
    chain = SetChangeChain()
    chain.block(chain.add("v5", 3))
    chain.block()
    to_b = chain.proof()
    chain.block(chain.remove("v5", 6))
    chain.empty_blocks(2)
    back_to_a = chain.proof()
    chain.block(chain.add("v6", 9))
    chain.empty_blocks(2)
    to_c = chain.proof()
    trust = ValidatorTrust(chain.genesis)
    with pytest.raises(InvalidProof, match="a change between is missing"):
        trust.learn([to_c])
    assert trust.learn([to_b, back_to_a, to_c]) == 3
    assert trust.at(4)[1] == chain.header(4).validators_hash != chain.header(8).validators_hash


def test_a_reader_never_sees_a_half_learned_change() -> None:
    """at() from another thread while a change is learned gives the set before it or after it."""
    chain = SetChangeChain()
    chain.block(chain.add("v5", 3))
    chain.block()
    proof = chain.proof()
    errors: list[BaseException] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # thread switches as often as a busy server may make them
    try:
        for _ in range(200):
            trust, done = ValidatorTrust(chain.genesis), threading.Event()

            def read(trust: ValidatorTrust = trust, done: threading.Event = done) -> None:
                while not done.is_set():
                    try:
                        trust.at(5)
                    except Exception as exc:  # an IndexError, before
                        errors.append(exc)
                        return

            reader = threading.Thread(target=read)
            reader.start()
            trust.learn([proof])
            done.set()
            reader.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []

"""Transactions: the signed form (Merkle leaf, consensus request) is the JCS of the whole transaction."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.txn import MAX_TXN_DEPTH, Transaction, TxnRejected

_KEY = Ed25519PrivateKey.generate()

_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12
)  # escapes, non-ASCII, outside the BMP
# (not U+0000, which transactions refuse)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | _TEXT  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _txn(body: dict[str, Any], submitter: str, signers: int) -> Transaction:
    txn = Transaction.build("did.create", network="net", submitter=submitter, nonce=7, body=body)
    for index in range(signers):
        txn = txn.signed(_KEY, f"{submitter}#key-{index}")
    return txn


@settings(max_examples=150, deadline=None)
@given(
    body=st.dictionaries(_TEXT, _JSON, max_size=5),
    submitter=_TEXT.map(lambda t: "did:" + t),
    signers=st.integers(0, 3),
)
def test_leaf_is_the_jcs_of_the_signed_transaction(
    body: dict[str, Any], submitter: str, signers: int
) -> None:
    """For any body, submitter and number of signatures, the leaf equals JCS of the full JSON form."""
    txn = _txn(body, submitter, signers)
    assert txn.leaf == canonicalize(txn.to_json())


def test_leaf_round_trips_through_from_bytes() -> None:
    """Parsing a transaction's leaf gives a transaction with the same id and the same leaf."""
    txn = _txn({"document": {"id": "did:x", "n": [1, 2, {"z": "é"}]}}, "did:x", 2)
    again = Transaction.from_bytes(txn.leaf)
    assert again.id == txn.id and again.leaf == txn.leaf


def test_leaf_of_a_hand_built_transaction_is_still_its_jcs() -> None:
    """A transaction built field by field with a canonical form that is not its own still gets the
    JCS of its JSON form as its leaf (the splice applies only where the canonical form fits)."""
    txn = _txn({"a": 1}, "did:x", 1)
    odd = Transaction(txn.type, txn.network, txn.submitter, txn.nonce, txn.body, txn.signatures,
                      b'{"other":true}', txn.id_bytes)  # fmt: skip
    assert odd.leaf == canonicalize(odd.to_json())


def _nested(depth: int) -> object:
    """An object nested ``depth`` deep (``{"a": {"a": … "x"}}``)."""
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def _with_body_depth(total: int) -> dict[str, Any]:
    """A transaction object whose arrays and objects nest ``total`` deep (itself 1, its body 2)."""
    return {"type": "did.update", "network": "t", "submitter": "did:trellis:t:x", "nonce": 1,
            "body": _nested(total - 1)}  # fmt: skip


def test_a_transaction_nested_up_to_the_limit_is_taken() -> None:
    assert Transaction.from_json(_with_body_depth(MAX_TXN_DEPTH)).body


@pytest.mark.parametrize("depth", [MAX_TXN_DEPTH + 1, 600, 5000])
def test_a_transaction_nested_deeper_is_malformed_at_any_stack_depth(depth: int) -> None:
    """Refused by a fixed limit, the same on every node, before anything recursive reads it."""
    with pytest.raises(TxnRejected, match="nested more than"):
        Transaction.from_json(_with_body_depth(depth))


def test_a_wire_request_nested_too_deeply_is_malformed() -> None:
    """What a byzantine primary could put in a block: the request parses (JSON goes deeper than the
    limit) and is refused as malformed, which decode_block turns into an invalid block."""
    body = {"document": {"service": [{"serviceEndpoint": _nested(600)}]}}
    unsigned = {
        "type": "did.create",
        "network": "t",
        "submitter": "did:trellis:t:x",
        "nonce": 1,
        "body": body,
    }
    signature = {"verificationMethod": "did:trellis:t:x#key-1", "signature": "z" + "1" * 80}
    with pytest.raises(TxnRejected, match="nested more than"):
        Transaction.from_bytes(canonicalize({**unsigned, "signatures": [signature]}))


def test_an_oversized_signature_is_malformed_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 250 KB 'signature' (base58 decoding is quadratic: seconds of CPU) is refused by its length."""

    def never(text: str) -> bytes:
        raise AssertionError("decoded")

    monkeypatch.setattr("did_registry.identity.multibase.decode_base58btc", never)
    data = {**_with_body_depth(2), "signatures": [{"verificationMethod": "did:trellis:t:x#key-1",
                                                    "signature": "z" + "2" * 250_000}]}  # fmt: skip
    with pytest.raises(TxnRejected, match="at most 100 characters"):
        Transaction.from_json(data)


@pytest.mark.parametrize(
    "body",
    [{"did": "did:trellis:t:x\x00"}, {"document": {"service": [{"type": "a\x00b"}]}}, {"x\x00": 1}],
    ids=["value", "nested value", "member name"],
)
def test_a_transaction_holding_nul_is_malformed(body: dict[str, Any]) -> None:
    """U+0000 is refused everywhere in a transaction, the same on every node: PostgreSQL cannot store
    it while SQLite and memory can, so a block holding one would halt the PostgreSQL validators."""
    data = {"type": "did.update", "network": "t", "submitter": "did:trellis:t:x", "nonce": 1, "body": body}
    with pytest.raises(TxnRejected, match="U\\+0000"):
        Transaction.from_json(data)


@pytest.mark.parametrize(
    "signature",
    [
        {"verificationMethod": "did:trellis:t:\ud800#key-1", "signature": "z" + "2" * 80},
        {"verificationMethod": "did:trellis:t:é#key-1", "signature": "z" + "2" * 80},
        {"verificationMethod": "did:trellis:t:x#key-1", "signature": "z" + "2" * 79 + "\u00e9"},
    ],
    ids=["lone surrogate", "accented method", "accented signature"],
)
def test_a_signature_member_that_is_not_ascii_is_malformed(signature: dict[str, str]) -> None:
    """A signature's members are a DID URL and base58btc, both ASCII. A lone surrogate in one made
    the SQL stores fail to encode the signer's key (a 500 at admission) where memory refused it."""
    data = {**_with_body_depth(2), "signatures": [signature]}
    with pytest.raises(TxnRejected, match="ASCII"):
        Transaction.from_json(data)

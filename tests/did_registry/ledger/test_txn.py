"""Transactions: the signed form (Merkle leaf, consensus request) is the JCS of the whole transaction."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.txn import Transaction

_KEY = Ed25519PrivateKey.generate()

_TEXT = st.text(max_size=12)  # any code points: escapes, non-ASCII, outside the BMP
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

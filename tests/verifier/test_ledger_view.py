"""The ledger view's re-read of a DID whose signing key id the cached document lacks (a key rotation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.verifier.conftest_ledger import AUDIENCE, Device, Ledger, ledger  # noqa: F401
from tests.verifier.test_verifier_signed import refusal, signed
from verifier import Policy, Reason, Refused, Verifier
from verifier.ledger_cache import LedgerSource
from wallet.rotation import rotated_document


class CountingSource:
    """A ledger source that counts the proven reads of ``did:`` records."""

    def __init__(self, inner: LedgerSource) -> None:
        self.inner = inner
        self.did_reads = 0

    def fetch(self, keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
        """Count, then read through."""
        self.did_reads += sum(1 for k in keys if k.startswith("did:"))
        return self.inner.fetch(keys, min_height)


def rotate(ledger: Ledger, device: Device) -> tuple[Ed25519PrivateKey, str]:  # noqa: F811
    """Commit a did.update replacing the device's key-1 by a new key-2; the new key and its DID URL."""
    new = Ed25519PrivateKey.generate()
    document = rotated_document(device.actor.document(), "key-1", new.public_key, "key-2")
    ledger.commit(device.actor.txn("did.update", {"document": document}))
    return new, f"{device.did}#key-2"


def warm(ledger: Ledger, verifier: Verifier, device: Device) -> int:  # noqa: F811
    """Let ``device`` in once (its document cached); the cache's height."""
    verifier.authenticate_request(signed(ledger, device), AUDIENCE)
    height = verifier.caches["testnet"].height
    assert height is not None
    return height


def test_a_rotated_key_is_let_in_before_the_cache_applies_the_block(ledger: Ledger) -> None:  # noqa: F811
    """A request signed with the key a committed did.update just introduced is admitted at once."""
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        height = warm(ledger, verifier, device)
        new_key, new_method = rotate(ledger, device)
        assert ledger.client.head().height > height
        result = verifier.authenticate_request(
            signed(ledger, device, key=new_key, keyid=new_method), AUDIENCE
        )
        assert result.key_id == new_method
        assert result.height > height  # decided on the re-read document
        assert verifier.caches["testnet"].height == height  # the block itself is not applied yet


def test_a_rotated_key_answers_a_challenge_before_the_cache_applies_the_block(ledger: Ledger) -> None:  # noqa: F811
    """A presentation signed with the new key is admitted while the cache still holds the old document."""
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        height = warm(ledger, verifier, device)
        new_key, new_method = rotate(ledger, device)
        answer = ledger.present(device, verifier.challenge(AUDIENCE), key=new_key, method=new_method)
        assert verifier.authenticate_presentation(answer, AUDIENCE).key_id == new_method
        assert verifier.caches["testnet"].height == height


def test_the_old_key_is_refused_once_the_new_document_is_read(ledger: Ledger) -> None:  # noqa: F811
    """After the rotation is seen, a request signed with the replaced key is refused key_not_authorized."""
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        warm(ledger, verifier, device)
        new_key, new_method = rotate(ledger, device)
        verifier.authenticate_request(signed(ledger, device, key=new_key, keyid=new_method), AUDIENCE)
        assert refusal(verifier, signed(ledger, device)) is Reason.KEY_NOT_AUTHORIZED
        verifier.caches["testnet"].catch_up()  # and so it stays once the block is applied
        assert refusal(verifier, signed(ledger, device)) is Reason.KEY_NOT_AUTHORIZED


def test_unknown_key_ids_cause_at_most_one_reread_per_interval(ledger: Ledger) -> None:  # noqa: F811
    """Requests naming key ids the document lacks re-read the DID once per key_reread_interval, no more."""
    device = ledger.enrol()
    with ledger.verifier(Policy(key_reread_interval=1.0)) as verifier:
        warm(ledger, verifier, device)
        cache = verifier.caches["testnet"]
        assert cache.source is not None
        counting = CountingSource(cache.source)
        cache.source = counting
        for number in range(20):
            forged = signed(
                ledger, device, key=Ed25519PrivateKey.generate(), keyid=f"{device.did}#key-{number + 5}"
            )
            assert refusal(verifier, forged) is Reason.KEY_NOT_AUTHORIZED
        assert counting.did_reads == 1 and verifier.ledger.rereads == 1
        ledger.clock.advance(1.0)
        forged = signed(ledger, device, key=Ed25519PrivateKey.generate(), keyid=f"{device.did}#key-99")
        assert refusal(verifier, forged) is Reason.KEY_NOT_AUTHORIZED
        assert counting.did_reads == 2
        verifier.authenticate_request(signed(ledger, device), AUDIENCE)  # a known key reads nothing
        assert counting.did_reads == 2


def test_a_key_of_another_did_is_refused_without_a_reread(ledger: Ledger) -> None:  # noqa: F811
    """A key id naming another DID than the presentation's holder is refused and reads nothing."""
    device, other = ledger.enrol(), ledger.enrol()
    with ledger.verifier() as verifier:
        warm(ledger, verifier, device)
        answer = ledger.present(
            device, verifier.challenge(AUDIENCE), key=other.actor.key, method=other.actor.method
        )
        answer["holder"] = device.did
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(answer, AUDIENCE)
        assert refused.value.reason is Reason.KEY_NOT_AUTHORIZED
        assert verifier.ledger.rereads == 0

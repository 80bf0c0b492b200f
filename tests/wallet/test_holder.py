"""Holder and device wallets: identity, stored credentials, challenge answers, rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.timestamps import parse_timestamp
from wallet.credential import build_credential, issue_credential
from wallet.device import Challenge, DeviceWallet
from wallet.errors import MalformedDocument, WalletError, WrongPassphrase
from wallet.holder import MAX_PRESENTATION_LIFETIME, HolderWallet, did_key_identity
from wallet.keystore import KDF_TESTING
from wallet.presentation import verify_presentation
from wallet.resolver import did_key_lookup

PASS = "s3cret passphrase"


def _credential_for(did: str) -> dict[str, object]:
    issuer_key = Ed25519PrivateKey.generate()
    issuer, method = did_key_identity(issuer_key)
    return issue_credential(
        build_credential(
            issuer=issuer, subject={"id": did}, types=["DeviceCredential"], credential_id="urn:x:1"
        ),
        issuer_key,
        method,
    )


def test_device_answers_a_challenge(tmp_path: Path) -> None:
    """A device wallet answers a challenge with a presentation the verifier accepts."""
    device = DeviceWallet.create(tmp_path / "d", PASS, params=KDF_TESTING)
    device.store(_credential_for(device.did))
    challenge = Challenge("n-1", "https://svc.example", datetime.now(UTC) + timedelta(minutes=1))
    answer = device.answer(challenge)
    result = verify_presentation(answer, did_key_lookup(), challenge="n-1", domain="https://svc.example")
    assert result.holder == device.did


def test_present_refuses_an_empty_domain(tmp_path: Path) -> None:
    """A presentation is never signed for an empty domain."""
    device = DeviceWallet.create(tmp_path / "d", PASS, params=KDF_TESTING)
    device.store(_credential_for(device.did))
    with pytest.raises(WalletError, match="empty domain"):
        device.present(challenge="n-1", domain="")


def test_present_caps_a_far_expiry(tmp_path: Path) -> None:
    """A verifier asking for a proof valid until 2999 gets one valid at most MAX_PRESENTATION_LIFETIME."""
    device = DeviceWallet.create(tmp_path / "d", PASS, params=KDF_TESTING)
    device.store(_credential_for(device.did))
    before = datetime.now(UTC)
    answer = device.answer(Challenge("n-1", "https://svc.example", datetime(2999, 1, 1, tzinfo=UTC)))
    expires = parse_timestamp(answer["proof"]["expires"])
    assert expires <= before + MAX_PRESENTATION_LIFETIME + timedelta(seconds=5)


def test_present_without_expiry_gets_the_cap(tmp_path: Path) -> None:
    """A presentation asked for with no expiry still expires, MAX_PRESENTATION_LIFETIME after signing."""
    device = DeviceWallet.create(tmp_path / "d", PASS, params=KDF_TESTING)
    device.store(_credential_for(device.did))
    before = datetime.now(UTC)
    answer = device.present(challenge="n-1", domain="https://svc.example")
    expires = parse_timestamp(answer["proof"]["expires"])
    assert before < expires <= before + MAX_PRESENTATION_LIFETIME + timedelta(seconds=5)


def test_present_refuses_an_expiry_already_past(tmp_path: Path) -> None:
    """A challenge that has already expired is not answered."""
    device = DeviceWallet.create(tmp_path / "d", PASS, params=KDF_TESTING)
    device.store(_credential_for(device.did))
    past = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(WalletError, match="expired"):
        device.answer(Challenge("n-1", "https://svc.example", past))


def test_wallet_reopens_with_its_credentials(tmp_path: Path) -> None:
    """A wallet reopened from its folder has the same DID and credentials."""
    wallet = HolderWallet.create(tmp_path / "w", PASS, params=KDF_TESTING)
    wallet.store(_credential_for(wallet.did))
    again = HolderWallet.open(tmp_path / "w", PASS)
    assert again.did == wallet.did
    assert [c["id"] for c in again.credentials("DeviceCredential")] == ["urn:x:1"]


def test_wrong_passphrase_does_not_open(tmp_path: Path) -> None:
    """Opening a wallet with the wrong passphrase raises WrongPassphrase."""
    HolderWallet.create(tmp_path / "w", PASS, params=KDF_TESTING)
    with pytest.raises(WrongPassphrase):
        HolderWallet.open(tmp_path / "w", "nope")


def test_refuses_credential_about_someone_else(tmp_path: Path) -> None:
    """A wallet will not keep a credential whose subject is another DID."""
    wallet = HolderWallet.create(tmp_path / "w", PASS, params=KDF_TESTING)
    with pytest.raises(MalformedDocument):
        wallet.store(_credential_for("did:example:someone-else"))
    assert wallet.credentials() == []


def test_device_without_credential_cannot_answer(tmp_path: Path) -> None:
    """A device that holds no device credential says so instead of presenting nothing."""
    device = DeviceWallet.create(tmp_path / "d", PASS, params=KDF_TESTING)
    with pytest.raises(WalletError):
        device.answer(Challenge("n", "https://a", datetime.now(UTC)))


def test_rotation_keeps_history(tmp_path: Path) -> None:
    """Rotating a did:trellis wallet's key makes key-2 current and keeps key-1, across reopening."""
    wallet = HolderWallet.create(
        tmp_path / "w", PASS, did="did:trellis:testnet:4mJ1PRfKvTDzaWMTnMpTqq", params=KDF_TESTING
    )
    old = wallet.key.public_key
    method = wallet.rotate_key()
    assert method.endswith("#key-2")
    again = HolderWallet.open(tmp_path / "w", PASS)
    assert again.verification_method.endswith("#key-2")
    assert [k.id for k in again.keystore.keys] == ["key-1", "key-2"]
    assert again.keystore.keys[0].public_key == old


def test_did_key_cannot_rotate(tmp_path: Path) -> None:
    """A did:key wallet refuses to rotate (the DID is the key)."""
    wallet = HolderWallet.create(tmp_path / "w", PASS, params=KDF_TESTING)
    with pytest.raises(WalletError):
        wallet.rotate_key()


@pytest.mark.parametrize("value", [{}, {"nonce": "n", "audience": "a", "expires": "tomorrow"}])
def test_malformed_challenge_is_refused(value: dict[str, str]) -> None:
    """A challenge missing fields or with a bad expiry raises WalletError."""
    with pytest.raises(WalletError):
        Challenge.from_json(value)

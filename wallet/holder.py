"""Holder wallets: a DID whose keys live in an encrypted keystore, and the credentials it holds.

A wallet is a folder: ``keystore.json`` (the encrypted keys, :mod:`wallet.keystore`) and
``wallet.db`` (held credentials, SQLite through SQLModel). It answers verifiers with presentations
bound to their challenge and domain. Key rotation keeps every earlier key in the keystore.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from wallet.credential import check_credential, did_of
from wallet.errors import MalformedDocument, WalletError
from wallet.keystore import KDF_MODERATE, KdfParams, Keystore, KeystoreKey
from wallet.presentation import build_presentation, sign_presentation
from wallet.storage import HeldCredentialRow, open_engine

__all__ = [
    "KEYSTORE_FILE",
    "DATABASE_FILE",
    "MAX_PRESENTATION_LIFETIME",
    "HolderWallet",
    "did_key_identity",
]

KEYSTORE_FILE = "keystore.json"
DATABASE_FILE = "wallet.db"
MAX_PRESENTATION_LIFETIME: Final = timedelta(minutes=10)
"""The longest a presentation's proof is valid: its ``expires`` is at most this long after signing,
whatever a verifier asks for (a presentation answers one challenge, now)."""


def did_key_identity(key: Ed25519PrivateKey) -> tuple[str, str]:
    """The ``did:key`` of ``key`` and its verification method id (``did#<multikey>``)."""
    multikey = encode_ed25519_public_key(key.public_key)
    return f"did:key:{multikey}", f"did:key:{multikey}#{multikey}"


class HolderWallet:
    """A DID, its keys and its credentials; presents them to verifiers."""

    def __init__(self, directory: Path, keystore: Keystore, passphrase: str, engine: Engine) -> None:
        self.directory = directory
        self.keystore = keystore
        self._passphrase = passphrase
        self.engine = engine
        if keystore.did is None:
            raise WalletError(f"keystore in {directory} does not name its DID")

    @classmethod
    def create(
        cls,
        directory: str | Path,
        passphrase: str,
        *,
        key: Ed25519PrivateKey | None = None,
        did: str | None = None,
        params: KdfParams = KDF_MODERATE,
    ) -> HolderWallet:
        """Create a wallet folder with a new key; its DID is the key's ``did:key`` unless ``did`` is given."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = key or Ed25519PrivateKey.generate()
        keystore = Keystore.new(key, metadata={"did": did or did_key_identity(key)[0]}, params=params)
        keystore.save(directory / KEYSTORE_FILE, passphrase)
        return cls(directory, keystore, passphrase, open_engine(f"sqlite:///{directory / DATABASE_FILE}"))

    @classmethod
    def open(cls, directory: str | Path, passphrase: str) -> HolderWallet:
        """Open an existing wallet folder."""
        directory = Path(directory)
        keystore = Keystore.open(directory / KEYSTORE_FILE, passphrase)
        return cls(directory, keystore, passphrase, open_engine(f"sqlite:///{directory / DATABASE_FILE}"))

    @property
    def did(self) -> str:
        """The wallet's DID."""
        assert self.keystore.did is not None
        return self.keystore.did

    def _method_for(self, record: KeystoreKey) -> str:
        if self.did.startswith("did:key:"):
            return did_key_identity(record.private_key)[1]
        return f"{self.did}#{record.id}"

    @property
    def verification_method(self) -> str:
        """The DID URL of the key in use."""
        return self._method_for(self.keystore.current)

    @property
    def key(self) -> Ed25519PrivateKey:
        """The private key in use."""
        return self.keystore.current_key

    def rotate_key(self, new_key: Ed25519PrivateKey | None = None) -> str:
        """Make a new key current, keep the old one, save atomically; return the new method id.

        A ``did:key`` is its key and cannot rotate: that raises :class:`WalletError`. For
        ``did:trellis`` the DID document update goes to the ledger with the new method id.
        """
        if self.did.startswith("did:key:"):
            raise WalletError("a did:key cannot rotate its key; create a new identity instead")
        record = self.keystore.rotate(new_key)
        self.keystore.save(self.directory / KEYSTORE_FILE, self._passphrase, overwrite=True)
        return self._method_for(record)

    # -- credentials ------------------------------------------------------------------------
    def store(self, credential: Mapping[str, Any]) -> str:
        """Keep a credential issued to this wallet's DID; return its id."""
        check_credential(credential)
        subject = credential["credentialSubject"]
        subjects = subject if isinstance(subject, list) else [subject]
        if not any(s.get("id") == self.did for s in subjects):
            raise MalformedDocument(f"credential is not about this wallet's DID {self.did}")
        if "proof" not in credential:
            raise MalformedDocument("refusing to keep an unsecured credential")
        credential_id = credential.get("id") or f"urn:trellis:held:{len(self.credentials())}"
        issuer = credential["issuer"]
        row = HeldCredentialRow(
            id=credential_id,
            holder=self.did,
            issuer=did_of(issuer["id"] if isinstance(issuer, Mapping) else issuer),
            types=json.dumps(credential["type"]),
            document=json.dumps(credential),
            received_at=datetime.now(UTC),
        )
        with Session(self.engine) as session:
            session.merge(row)
            session.commit()
        return credential_id

    def credentials(self, credential_type: str | None = None) -> list[dict[str, Any]]:
        """Held credentials, oldest first, optionally only those of ``credential_type``."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(HeldCredentialRow)
                .where(HeldCredentialRow.holder == self.did)
                .order_by(HeldCredentialRow.received_at)  # type: ignore[arg-type]
            ).all()
        documents = [json.loads(row.document) for row in rows]
        return [d for d in documents if credential_type is None or credential_type in d["type"]]

    def present(
        self,
        *,
        challenge: str,
        domain: str,
        credential_type: str | None = None,
        credentials: Sequence[Mapping[str, Any]] | None = None,
        expires: datetime | None = None,
    ) -> dict[str, Any]:
        """A presentation of held credentials for ``challenge`` and ``domain``, signed by this DID.

        ``domain`` (the verifier the presentation is for) must not be empty. The proof's ``expires`` is
        ``expires`` capped at :data:`MAX_PRESENTATION_LIFETIME` from now (that cap when ``expires`` is
        not given); an ``expires`` already past raises :class:`WalletError`.
        """
        if not isinstance(domain, str) or not domain.strip():
            raise WalletError("refusing to sign a presentation for an empty domain (audience)")
        now = datetime.now(UTC)
        if expires is not None and expires.tzinfo is None:
            raise WalletError("a presentation's expires must carry a time zone")
        if expires is not None and expires <= now:
            raise WalletError(f"refusing to sign a presentation that expired at {expires.isoformat()}")
        latest = now + MAX_PRESENTATION_LIFETIME
        chosen = list(credentials) if credentials is not None else self.credentials(credential_type)
        presentation = build_presentation(holder=self.did, credentials=chosen)
        return sign_presentation(
            presentation,
            self.key,
            self.verification_method,
            challenge=challenge,
            domain=domain,
            created=now,
            expires=latest if expires is None else min(expires, latest),
        )

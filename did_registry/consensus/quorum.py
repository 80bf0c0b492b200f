"""The validator set as the engines see it: order, keys, leaders and quorums (``docs/consensus.md`` § Quorums).

A set of ``n`` validators tolerates ``f = (n - 1) // 3`` faulty ones; every quorum here has
``q = n - f`` members (``2f + 1`` when ``n = 3f + 1``), so any two quorums share at least ``f + 1``
validators, one of them correct. Leaders take turns in set order: the primary of PBFT view ``v`` is
validator ``v mod n``, the round-robin proposer of height ``h`` in round ``r`` is ``(h + r) mod n``.

Commit signatures are the ledger's (:func:`~did_registry.ledger.block.commit_message`): a certificate
built here is accepted by :meth:`CommitCertificate.verify <did_registry.ledger.block.CommitCertificate.verify>`.
"""

from __future__ import annotations

from collections.abc import Mapping

from did_registry.consensus.envelope import signature_bytes
from did_registry.consensus.errors import InvalidMessage
from did_registry.consensus.messages import Message
from did_registry.errors import BadSignature
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.ledger.block import CommitCertificate, InvalidCertificate, commit_message
from did_registry.ledger.validators import ValidatorSet

__all__ = ["Quorum"]

_CACHE_LIMIT = 4096


class Quorum:
    """Validator ids in set order, their decoded keys, ``f`` and the quorum size ``q = n - f``."""

    def __init__(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self.ids: tuple[str, ...] = tuple(v.id for v in validators.validators)
        self._keys: dict[str, Ed25519PublicKey] = {v.id: v.key for v in validators.validators}
        self.n = validators.n
        self.f = validators.f
        self.size = validators.quorum
        self._good: set[tuple[str, bytes, str]] = set()

    def __contains__(self, validator_id: object) -> bool:
        return validator_id in self._keys

    def key(self, validator_id: str) -> Ed25519PublicKey | None:
        """The validator's public key, or ``None`` for a non-validator."""
        return self._keys.get(validator_id)

    def leader(self, turn: int) -> str:
        """The validator whose turn ``turn`` is (``turn mod n`` in set order)."""
        return self.ids[turn % self.n]

    def authenticate(self, message: Message) -> None:
        """Check that a validator wrote ``message``; raise :class:`InvalidMessage` otherwise."""
        key = self._keys.get(message.sender)
        if key is None:
            raise InvalidMessage("unknown-sender", f"{message.sender!r} is not a validator")
        message.verify(key)

    @staticmethod
    def sign_commit(digest: bytes, key: Ed25519PrivateKey) -> str:
        """This validator's ledger commit signature over ``digest`` (multibase)."""
        return CommitCertificate.sign(digest, key)

    def commit_signature_ok(self, validator_id: str, digest: bytes, signature: str) -> bool:
        """Whether ``signature`` is ``validator_id``'s commit signature over ``digest``."""
        entry = (validator_id, digest, signature)
        if entry in self._good:
            return True
        key = self._keys.get(validator_id)
        if key is None:
            return False
        try:
            key.verify(commit_message(digest), signature_bytes(signature))
        except (BadSignature, ValueError, TypeError):
            return False
        if len(self._good) >= _CACHE_LIMIT:
            self._good.clear()
        self._good.add(entry)
        return True

    def certificate(self, height: int, digest: bytes, signatures: Mapping[str, str]) -> CommitCertificate:
        """The ledger certificate for the block ``digest`` at ``height``, signatures sorted by validator."""
        return CommitCertificate(height, digest.hex(), {v: signatures[v] for v in sorted(signatures)})

    def check_certificate(self, certificate: CommitCertificate) -> bytes:
        """Check that a quorum of this set signed the certificate; return the block digest.

        Every signature must be a validator's and must verify, as the ledger requires; raise
        :class:`~did_registry.ledger.block.InvalidCertificate` otherwise.
        """
        try:
            digest = bytes.fromhex(certificate.block_hash)
        except (ValueError, TypeError):
            raise InvalidCertificate("the certificate's block hash is not hex") from None
        if len(digest) != 32 or type(certificate.height) is not int or certificate.height < 1:
            raise InvalidCertificate("the certificate names no block")
        for validator_id, signature in certificate.signatures.items():
            if not self.commit_signature_ok(validator_id, digest, signature):
                raise InvalidCertificate(
                    f"bad commit signature by {validator_id!r} at height {certificate.height}"
                )
        if len(certificate.signatures) < self.size:
            raise InvalidCertificate(
                f"{len(certificate.signatures)} signature(s); height {certificate.height} needs {self.size}"
            )
        return digest

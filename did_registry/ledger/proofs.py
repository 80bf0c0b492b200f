"""Answers a reader can check without trusting the node that gave them.

A :class:`StateProof` carries a state value (or its absence), the sparse-Merkle path to it, and the
certified header whose ``state_root`` the path leads to. :meth:`StateProof.verify` checks the commit
certificate against a validator set the reader already trusts, then the path against the header's
state root, then that the value hashes to the proven leaf. A node that lies about the value, the
path, the header or the signatures is caught by one of the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from did_registry.errors import DidRegistryError, InvalidProof
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.block import BlockHeader, CommitCertificate
from did_registry.ledger.smt import MapProof, verify_map_proof
from did_registry.ledger.state import value_hash
from did_registry.ledger.validators import ValidatorSet

__all__ = ["StateProof"]


@dataclass(frozen=True, slots=True)
class StateProof:
    """A state value (``None``: absent) proven against a certified block header."""

    key: str
    value: Any
    header: BlockHeader
    certificate: CommitCertificate | None
    proof: MapProof

    def to_json(self) -> dict[str, Any]:
        """The JSON answer a node gives (``GET /proofs/state?key=…``)."""
        return {
            "key": self.key,
            "value": self.value,
            "height": self.header.height,
            "header": self.header.to_json(),
            "certificate": None if self.certificate is None else self.certificate.to_json(),
            "proof": self.proof.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> StateProof:
        """Parse an answer; raise :class:`InvalidProof` when it is malformed."""
        try:
            certificate = data["certificate"]
            return cls(
                key=data["key"],
                value=data["value"],
                header=BlockHeader.from_json(data["header"]),
                certificate=None if certificate is None else CommitCertificate.from_json(certificate),
                proof=MapProof.from_json(data["proof"]),
            )
        except (KeyError, TypeError, ValueError, DidRegistryError) as exc:
            raise InvalidProof("state", f"malformed: {exc}") from None

    def verify(self, validators: ValidatorSet, *, genesis_root: str | None = None) -> Any:
        """Check everything and return the proven value (``None`` for a proven absence).

        ``validators`` is the set the reader trusts for this header's height. Block 0 has no
        certificate: it is accepted only when its state root equals ``genesis_root``.
        """
        if self.header.height == 0:
            if genesis_root is None or self.header.state_root != genesis_root:
                raise InvalidProof("state", "block 0 is trusted only against the genesis state root")
        else:
            if self.certificate is None:
                raise InvalidProof("state", f"block {self.header.height} comes without a commit certificate")
            try:
                self.certificate.verify(self.header, validators)
            except DidRegistryError as exc:
                raise InvalidProof("state", f"commit certificate: {exc}") from None
        return self.verify_path()

    def verify_path(self) -> Any:
        """Check only the value and its path against the header's state root (the header's
        certificate already checked by the caller); return the proven value."""
        try:
            canonical = None if self.value is None else canonicalize(self.value)
        except DidRegistryError as exc:
            raise InvalidProof("state", f"value is not canonical JSON: {exc}") from None
        expected = None if canonical is None else value_hash(canonical)
        verify_map_proof(bytes.fromhex(self.header.state_root), self.key.encode(), expected, self.proof)
        return None if canonical is None else self.value

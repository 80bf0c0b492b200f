"""Data Integrity proofs; one module per cryptosuite."""

from __future__ import annotations

from wallet.proofs.eddsa_jcs_2022 import (
    CRYPTOSUITE,
    PROOF_TYPE,
    KeyLookup,
    ProofOptions,
    VerifiedProof,
    add_proof,
    create_proof,
    verify_proof,
)

__all__ = [
    "CRYPTOSUITE",
    "PROOF_TYPE",
    "KeyLookup",
    "ProofOptions",
    "VerifiedProof",
    "add_proof",
    "create_proof",
    "verify_proof",
]

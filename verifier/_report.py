"""Reporting a misbehaving device: a ``quarantine.report`` transaction signed by the service's reporter key.

The body is ``{did, evidence: {hash, description}}`` (``docs/ledger.md``): raw evidence bytes are
hashed with SHA-256 and the description is given separately; a mapping is taken as is when it
already is ``{hash, description}``, and otherwise hashed as RFC 8785 canonical JSON with its
``description`` member (or the ``description`` argument) as the description. The evidence itself
stays with the service; the ledger keeps its hash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from did_registry.client import LedgerUnavailable
from did_registry.errors import DidRegistryError, InvalidDID
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from did_registry.identity.did_trellis import parse_trellis_did
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.txn import Transaction, TxnRejected
from verifier.errors import ConfigurationError, VerifierError

if TYPE_CHECKING:
    from verifier.verifier import Verifier

__all__ = ["evidence_body", "report"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def evidence_body(evidence: bytes | Mapping[str, Any], description: str | None) -> dict[str, str]:
    """The ``evidence`` member of a quarantine report (see the module docstring)."""
    if isinstance(evidence, bytes | bytearray):
        digest, text = sha256(bytes(evidence)).hex(), description
    elif isinstance(evidence, Mapping):
        if set(evidence) == {"hash", "description"} and _HEX64.fullmatch(str(evidence["hash"])):
            digest, text = str(evidence["hash"]), str(evidence["description"])
        else:
            try:
                digest = sha256(canonicalize(dict(evidence))).hex()
            except DidRegistryError as exc:
                raise ConfigurationError(f"evidence is not canonical JSON: {exc}") from None
            found = evidence.get("description")
            text = found if isinstance(found, str) else description
    else:
        raise ConfigurationError("evidence is bytes or a JSON object")
    if not text or len(text) > 2000:
        raise ConfigurationError("evidence needs a description of 1 to 2,000 characters")
    return {"hash": digest, "description": text}


def report(
    verifier: Verifier,
    did: str,
    evidence: bytes | Mapping[str, Any],
    reporter_key: Ed25519PrivateKey,
    reporter_did: str,
    description: str | None,
    verification_method: str | None,
    timeout: float,
) -> str:
    """File the report on the DID's network and wait for it to be committed; return the txn id."""
    try:
        network = parse_trellis_did(did).network
    except InvalidDID as exc:
        raise ConfigurationError(f"only ledger DIDs can be quarantined: {exc}") from None
    client = verifier.client(network)
    body = {"did": did, "evidence": evidence_body(evidence, description)}
    try:
        last, _ = client.prove(f"nonce:{reporter_did}")
        txn = Transaction.build(
            "quarantine.report",
            network=network,
            submitter=reporter_did,
            nonce=(last if isinstance(last, int) else 0) + 1,
            body=body,
        ).signed(reporter_key, verification_method or f"{reporter_did}#key-1")
        client.submit_and_wait(txn, timeout)
    except TxnRejected as exc:
        raise VerifierError(f"the ledger refused the quarantine report: {exc}") from exc
    except LedgerUnavailable as exc:
        raise VerifierError(f"no ledger node took the quarantine report: {exc}") from exc
    return txn.id

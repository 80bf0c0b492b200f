"""Reporting a misbehaving device: a ``quarantine.report`` transaction signed by the service's reporter key.

The body is ``{did, evidence: {hash, description}}`` (``docs/ledger.md``): raw evidence bytes are
hashed with SHA-256 and the description is given separately; a mapping is taken as is when it
already is ``{hash, description}``, and otherwise hashed as RFC 8785 canonical JSON with its
``description`` member (or the ``description`` argument) as the description. The evidence itself
stays with the service; the ledger keeps its hash.

The transaction's nonce must be above the reporter's last committed one. Reports filed at once by
the same reporter (request threads, or one while an earlier one is still pending) must not share one:
:class:`ReportNonces` hands them out per reporter and network, under a lock, as the higher of the
proven last nonce and the last this process handed out, plus one. A report the ledger still refuses
as a ``replay`` (another process of the service used that nonce, or a later nonce was committed
first) is built again with a fresh nonce, up to :data:`REPORT_ATTEMPTS` times in all.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from did_registry.client import LedgerUnavailable
from did_registry.errors import DidRegistryError, InvalidDID
from did_registry.identity.crypto import Ed25519PrivateKey, sha256
from did_registry.identity.did_trellis import parse_trellis_did
from did_registry.identity.jcs import canonicalize
from did_registry.ledger.txn import Transaction, TxnRejected
from verifier.errors import ConfigurationError, VerifierError

if TYPE_CHECKING:
    from verifier.verifier import Verifier

__all__ = ["REPORT_ATTEMPTS", "ReportNonces", "evidence_body", "report"]

REPORT_ATTEMPTS: Final = 3
"""How many times a report is built and submitted while the ledger refuses its nonce as a replay."""


class ReportNonces:
    """The transaction nonces one verifier hands to its reporters (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], int] = {}

    def next(self, network: str, reporter_did: str, proven: int) -> int:
        """A nonce for ``reporter_did`` on ``network`` above ``proven`` (its last committed one) and
        above every nonce handed out before."""
        with self._lock:
            nonce = max(proven, self._last.get((network, reporter_did), 0)) + 1
            self._last[(network, reporter_did)] = nonce
            return nonce


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
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        try:
            last, _ = client.prove(f"nonce:{reporter_did}")
            nonce = verifier._report_nonces.next(network, reporter_did, last if isinstance(last, int) else 0)
            txn = Transaction.build(
                "quarantine.report", network=network, submitter=reporter_did, nonce=nonce, body=body
            ).signed(reporter_key, verification_method or f"{reporter_did}#key-1")
            client.submit_and_wait(txn, timeout)
        except TxnRejected as exc:
            if exc.code == "replay" and attempt < REPORT_ATTEMPTS:
                continue  # the nonce was used meanwhile: build the report again with a fresh one
            raise VerifierError(f"the ledger refused the quarantine report: {exc}") from exc
        except LedgerUnavailable as exc:
            raise VerifierError(f"no ledger node took the quarantine report: {exc}") from exc
        return txn.id
    raise AssertionError("unreachable: the last attempt returns or raises")

"""A device's creation (its self-signed ``did.create``) on the ledger: endorsed by the organisation,
and found there already (a retry whose answer was lost, or one racing it).

A part of :class:`~web.enrolment.Enrolment`, for its single and its batch paths.
"""

from __future__ import annotations

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.ledger.txn import Transaction
from web.organisation import LedgerRefused, LedgerUnreachable, Organisation

__all__ = ["DeviceCreations"]


def _may_be_anchored(outcome: object) -> bool:
    """Whether a device's creation may be on the ledger after ``outcome``: anything but a refusal
    that says it is not (a conflict or replay may be the same creation, still pending or committed)."""
    return not (isinstance(outcome, LedgerRefused) and outcome.rejection.code not in ("conflict", "replay"))


class DeviceCreations:
    """The devices' creations of :class:`~web.enrolment.Enrolment` on the ledger (its constructor sets
    the attributes declared here)."""

    organisation: Organisation
    ledger: LedgerClient

    def _endorsed(self, txn: Transaction) -> Transaction:
        me = self.organisation.signer
        return txn.signed(me.key, me.method)

    def _anchored_before(self, txn: Transaction) -> bool:
        """Whether ``txn`` itself is already committed (a retried enrolment whose answer was lost)."""
        record, _ = self.ledger.resolve_record(txn.submitter)
        return record is not None and record.get("txn") == txn.id

    def _held(self, txn: Transaction) -> bool:
        """Whether a node holds ``txn`` itself, pending or committed: what its ``replay`` refusal means
        unless the device's nonce was used by another transaction."""
        try:
            [status] = self.ledger.statuses([txn.id])
        except LedgerUnavailable as exc:
            raise LedgerUnreachable(f"the creation of {txn.submitter}: {exc}") from None
        return status.get("status") in ("pending", "committed")

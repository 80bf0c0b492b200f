"""Device enrolment: one-time provisioning tokens, endorsed DID creation, device credentials, status.

The flow and the QR payload are specified in ``docs/enrolment.md``. :class:`Enrolment` is the
portal's one service for it, built on :class:`web.provisioning.ProvisioningTokens` (tokens made,
claimed and released) and :class:`web.device_status.DeviceStatus` (devices listed, suspended,
reinstated and revoked); what they store and the errors they raise are in
:mod:`web.enrolment_records`, and are exported here too.

:meth:`Enrolment.enrol` checks the token and the device's self-signed ``did.create`` (the proof of
possession, :func:`wallet.enroll.check_enrolment_transaction`) before changing anything, then claims
the token with one conditional ``UPDATE`` (of two concurrent enrolments with one token exactly one
wins), co-signs the transaction as endorser, waits for the ledger to commit it, issues the
``DeviceCredential`` with revocation and suspension entries (:class:`wallet.issuer.Issuer`) and
records the device. If the ledger refuses, the claim is released. :meth:`Enrolment.enrol_many`
does the same for a factory line with batched ledger writes. Suspension, reinstatement and
revocation flip bits in the organisation's status lists on the ledger, one transaction per list.

If the portal's process dies while it holds a claim, the claim is abandoned: once it is older than
``claim_timeout`` the same device (the holder of the key that signed the creation the token is
reserved for) takes it over by enrolling again, and the enrolment completes as any retry does (a
creation already on the ledger is recognised as this very transaction). The credential the dead
process may have issued is withdrawn first: its id derives from the token and the claim
(:func:`web.undelivered.credential_id`), so no other credential is touched; so is the credential of a
claim left on a token that expired, when the token is expired or when its device enrols with another
token (:mod:`web.undelivered`). Marking the token used (with the device's row, in one database
transaction) and giving it back are conditional on the claim still being the enrolment's own, so a
process taken over, if alive after all, records nothing.

The service is put together from one module per part: :mod:`web.enrolment_requests` (the requests
checked), :mod:`web.device_creations` (the creations endorsed, and found on the ledger),
:mod:`web.enrolled_devices` (credentials issued and devices recorded) and :mod:`web.batch_enrolment`
(:meth:`Enrolment.enrol_many`); the single path (:meth:`Enrolment.enrol`) is here. :data:`BULK_CHUNK`
and :data:`Enrolled` are importable from here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy.engine import Engine

from did_registry.client import LedgerClient
from wallet.issuer import Issuer
from web.batch_enrolment import BULK_CHUNK, BatchEnrolment
from web.device_creations import _may_be_anchored
from web.device_status import DeviceStatus
from web.enrolled_devices import Enrolled
from web.enrolment_records import EnrolmentResult, create_tables
from web.organisation import LedgerRefused, Organisation, PortalError, committed, submit
from web.provisioning import CLAIM_TIMEOUT_FLOOR, new_claim_id

__all__ = ["BULK_CHUNK", "Enrolled", "Enrolment"]

_log = logging.getLogger("web.enrolment")


class Enrolment(BatchEnrolment, DeviceStatus):
    """Provisioning tokens, enrolment and device status for one organisation on one network.

    ``store`` is the portal database's engine (its enrolment and issuer tables are created if
    missing); ``ledger`` a client of the network; ``portal_url`` the base URL devices post to;
    ``nodes`` the node URLs put in QR payloads (default: the client's). ``timeout`` bounds each wait
    for the ledger. ``claim_timeout`` is how old a token's claim is when it counts as abandoned (its
    enrolment died with its process): by default five times ``timeout``, and at least
    :data:`~web.provisioning.CLAIM_TIMEOUT_FLOOR` (10 minutes), well beyond what a live enrolment
    takes between claiming and recording (two ledger waits: the creation and, rarely, a new pair of
    status lists) or a batch between renewing its claims (one chunk).
    """

    STATES: ClassVar[tuple[str, ...]] = ("active", "suspended", "revoked")

    def __init__(
        self,
        organisation: Organisation,
        store: Engine,
        *,
        ledger: LedgerClient,
        portal_url: str,
        nodes: Sequence[str] | None = None,
        credential_validity: timedelta | None = timedelta(days=365),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 60.0,
        claim_timeout: timedelta | None = None,
    ) -> None:
        self.organisation = organisation
        self.engine = store
        create_tables(store)
        self.ledger = ledger
        self.portal_url = portal_url.rstrip("/")
        self.nodes = tuple(nodes if nodes is not None else ledger.nodes)
        self.credential_validity = credential_validity
        self.clock = clock
        self.timeout = timeout
        self.claim_timeout = (
            claim_timeout
            if claim_timeout is not None
            else max(CLAIM_TIMEOUT_FLOOR, timedelta(seconds=5 * timeout))
        )
        if self.claim_timeout <= timedelta(0):
            raise ValueError("claim_timeout must be positive")
        self._time_untimed_claims()
        self._issuer: Issuer | None = None
        self._changing = threading.Lock()  # one status change at a time: see _change

    @property
    def issuer(self) -> Issuer:
        """The organisation's issuer on the portal database (made when first needed)."""
        if self._issuer is None:
            self._issuer = self.organisation.issuer(self.engine, self.nodes[0])
        return self._issuer

    # -- enrolment --------------------------------------------------------------------------
    def enrol(
        self, token: str, txn_json: Mapping[str, Any], *, on_enrolled: Enrolled | None = None
    ) -> EnrolmentResult:
        """Enrol the device whose self-signed did.create is ``txn_json``, with provisioning ``token``.
        ``on_enrolled`` (:data:`Enrolled`) hears of the device in the transaction that records it.

        The same device repeating its enrolment with the same token gets the same answer again; the
        same device enrolling again after an enrolment cut short (its claim abandoned) completes it.
        """
        prepared = self._prepare(token, txn_json)
        if isinstance(prepared, EnrolmentResult):
            return prepared
        row, txn = prepared
        claim = new_claim_id()
        self._claim(row, txn.submitter, claim)
        reserved = True  # until a refusal says the creation is not on the ledger: kept for this device
        try:
            try:
                submit(self.ledger, f"the creation of {txn.submitter}", [self._endorsed(txn)], self.timeout)
            except LedgerRefused as exc:
                if exc.rejection.code == "replay" and self._held(txn):
                    try:  # the ledger holds this very creation (a retry racing it): wait for it
                        committed(self.ledger, f"the creation of {txn.submitter}", [txn.id], self.timeout)
                    except LedgerRefused as rejected:
                        reserved = _may_be_anchored(rejected)
                        raise
                elif exc.rejection.code not in ("conflict", "replay") or not self._anchored_before(txn):
                    reserved = _may_be_anchored(exc)
                    raise
            [result] = self._complete([(row, txn)], claim, on_enrolled)
            if isinstance(result, PortalError):
                raise result
            return result
        except BaseException:
            self._release([row.token_hash], claim, reserved=reserved)  # only while the claim is ours
            raise

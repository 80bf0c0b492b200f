"""Device credentials issued by enrolments that never gave them to their device, and their withdrawal.

An enrolment issues its device's credential before it records the device and marks the token used;
if its process dies in between, the credential is on record with no device holding it. Its id derives
from the token and the enrolment's claim (:func:`credential_id`), and the claim's id stays on the
token, so it is found again and withdrawn (:meth:`~wallet.issuer.Issuer.withdraw_undelivered`: the
row goes, its status index is never given again):

- when the same device takes the abandoned claim over (:meth:`UndeliveredCredentials._withdraw_abandoned`);
- when the token expires with the claim on it (``expire_tokens``), which keeps the claim's id on the
  token until its credential is withdrawn (:meth:`UndeliveredCredentials._withdraw_expired_claims`);
- when the device enrols with another token (a new one, its first having expired): the claims its
  DID left abandoned or expired on other tokens are given up and their credentials withdrawn
  (:meth:`UndeliveredCredentials._withdraw_strays`).

:class:`web.enrolment.Enrolment` is built on this class.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from wallet.issuer import Issuer
from wallet.storage import IssuedCredentialRow, StatusListRow
from web.enrolment_records import DeviceRow, ProvisioningTokenRow
from web.organisation import DEVICE_CREDENTIAL

__all__ = ["UndeliveredCredentials", "credential_id"]

_log = logging.getLogger("web.enrolment")
_IN_CHUNK: Final = 500
_CREDENTIAL_IDS: Final = uuid.UUID("5c0b8a53-5f0e-4c1e-9d55-0b1f5a1d7e21")
"""The namespace of the credential ids :func:`credential_id` derives."""


def credential_id(token_hash: str, claim: str) -> str:
    """The id of the credential an enrolment holding claim ``claim`` of a token issues: a dead
    process's credential is found again from the claim it held."""
    return f"urn:uuid:{uuid.uuid5(_CREDENTIAL_IDS, f'{token_hash}/{claim}')}"


class UndeliveredCredentials:
    """Finds and withdraws the credentials of enrolments that died (see the module)."""

    engine: Engine
    clock: Callable[[], datetime]
    claim_timeout: timedelta

    @property
    def issuer(self) -> Issuer:
        """The organisation's issuer, which issued the credentials."""
        raise NotImplementedError

    def _withdraw(self, credential_ids: Sequence[str]) -> None:
        """Withdraw credentials no device was given; a failure is logged (the caller's outcome stands)."""
        try:
            self.issuer.withdraw_undelivered(credential_ids)
        except Exception:
            _log.exception("could not withdraw %d undelivered credentials", len(credential_ids))

    def _withdraw_abandoned(self, rows: Sequence[ProvisioningTokenRow]) -> None:
        """Withdraw what the enrolments whose abandoned claims were just taken over may have issued
        (``rows`` as read before the takeover): no device was given it, since the token was never
        marked used, and its enrolment can no longer record it. A claim with an id issued the
        credential whose id derives from it; for a claim of an earlier version, whose credentials had
        random ids, these are the device credentials of its DID issued by the organisation before the
        claim was timed (``_time_untimed_claims``) that no device row holds."""
        ids = [credential_id(row.token_hash, row.claim_id) for row in rows if row.claim_id]
        earlier = [row for row in rows if not row.claim_id and row.device_did and row.claimed_at]
        if earlier:
            issued = col(IssuedCredentialRow.id)
            with Session(self.engine) as session:
                for row in earlier:
                    query = (
                        select(IssuedCredentialRow.id)
                        .join(
                            StatusListRow, col(StatusListRow.url) == col(IssuedCredentialRow.revocation_list)
                        )
                        .where(
                            col(StatusListRow.issuer) == self.issuer.did,
                            col(IssuedCredentialRow.subject) == row.device_did,
                            col(IssuedCredentialRow.types).contains(f'"{DEVICE_CREDENTIAL}"'),
                            col(IssuedCredentialRow.issued_at) <= row.claimed_at,
                            issued.not_in(select(DeviceRow.credential_id)),
                        )
                    )
                    ids.extend(session.exec(query).all())
        if ids:
            self.issuer.withdraw_undelivered(ids)

    def _withdraw_expired_claims(self, dids: Collection[str] | None = None) -> None:
        """Withdraw the credentials the enrolments of claims left on expired tokens may have issued
        (never delivered: such a token can no longer be marked used), then take the claims' ids off the
        tokens; with ``dids``, only on tokens reserved for those DIDs. A failure is logged: the claims'
        ids stay, and the next call withdraws them."""
        token, claim = col(ProvisioningTokenRow.token_hash), col(ProvisioningTokenRow.claim_id)
        dead = self._claims([col(ProvisioningTokenRow.status) == "expired"], dids)
        if not dead or not self._withdrawn(dead):
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(ProvisioningTokenRow)
                .where(
                    token == bindparam("dead_hash"),
                    claim == bindparam("dead_claim"),
                    col(ProvisioningTokenRow.status) == "expired",
                )
                .values(claim_id=None),
                [{"dead_hash": h, "dead_claim": c} for h, c in dead],
            )

    def _withdraw_strays(self, dids: Collection[str], using: Collection[str]) -> None:
        """Before devices ``dids`` enrol with the tokens ``using``: give up the claims their DIDs left
        abandoned on other tokens (each with one conditional update, so its enrolment, should it be
        alive after all, records nothing; the token stays reserved for the DID) and withdraw the
        credentials those claims, and the claims left on expired tokens, may have issued. A failure is
        logged: the enrolment goes on."""
        try:
            token, claim = col(ProvisioningTokenRow.token_hash), col(ProvisioningTokenRow.claim_id)
            stale = self.clock() - self.claim_timeout
            where = [
                col(ProvisioningTokenRow.status) == "claimed",
                col(ProvisioningTokenRow.claimed_at) <= stale,
            ]
            abandoned = [(h, c) for h, c in self._claims(where, dids) if h not in using]
            given_up: list[tuple[str, str]] = []
            if abandoned:
                statement = (
                    update(ProvisioningTokenRow)
                    .where(
                        token == bindparam("dead_hash"),
                        claim == bindparam("dead_claim"),
                        col(ProvisioningTokenRow.status) == "claimed",
                        col(ProvisioningTokenRow.claimed_at) <= stale,
                    )
                    .values(status="issued", claimed_at=None, claim_id=None)
                )
                with self.engine.begin() as connection:  # in token order, as claims are taken
                    for h, c in sorted(abandoned):
                        if connection.execute(statement, {"dead_hash": h, "dead_claim": c}).rowcount == 1:
                            given_up.append((h, c))
            if given_up:
                self._withdrawn(given_up)
            self._withdraw_expired_claims(dids)
        except Exception:
            _log.exception("could not withdraw the credentials of claims the enrolling devices left")

    def _claims(
        self, where: Sequence[ColumnElement[bool]], dids: Collection[str] | None
    ) -> list[tuple[str, str]]:
        """The ``(token hash, claim id)`` of the tokens holding a claim id that match ``where``, and
        with ``dids`` are reserved for one of them."""
        claim = col(ProvisioningTokenRow.claim_id)
        query = select(ProvisioningTokenRow.token_hash, claim).where(claim.is_not(None), *where)
        found: list[tuple[str, str]] = []
        with Session(self.engine) as session:
            if dids is None:
                found.extend((h, c) for h, c in session.exec(query).all() if c is not None)
                return found
            wanted, reserved = list(dict.fromkeys(dids)), col(ProvisioningTokenRow.device_did)
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = query.where(reserved.in_(wanted[start : start + _IN_CHUNK]))
                found.extend((h, c) for h, c in session.exec(chunk).all() if c is not None)
        return found

    def _withdrawn(self, claims: Sequence[tuple[str, str]]) -> bool:
        """Withdraw the credentials the enrolments holding ``claims`` (token hash, claim id) issued,
        those a device row holds apart (none should); whether it was done (a failure is logged)."""
        ids = [credential_id(h, c) for h, c in claims]
        held: set[str] = set()
        with Session(self.engine) as session:
            for start in range(0, len(ids), _IN_CHUNK):
                query = select(DeviceRow.credential_id).where(
                    col(DeviceRow.credential_id).in_(ids[start : start + _IN_CHUNK])
                )
                held.update(session.exec(query).all())
        try:
            self.issuer.withdraw_undelivered([i for i in ids if i not in held])
        except Exception:
            _log.exception("could not withdraw %d undelivered credentials of dead claims", len(ids))
            return False
        return True

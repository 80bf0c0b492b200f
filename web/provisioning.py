"""Provisioning tokens: made in batches, listed, claimed for one device at a time, released, expired.

A provisioning token is 32 random bytes (base64url without padding) handed out once, in a QR code
(:meth:`ProvisioningTokens.payload`); the portal keeps only its SHA-256, with the device profile,
expiry and status (``issued``, ``claimed`` while an enrolment is under way, ``used``; ``expired`` is
computed, or written by :meth:`ProvisioningTokens.expire_tokens`). :class:`web.enrolment.Enrolment`
is built on this class.

A claim records when it was made (``claimed_at``) and a random id of its own (``claim_id``). A claim
older than ``claim_timeout`` is *abandoned*: the enrolment that made it died with its process (a live
one finishes, or gives the token back, well within that time, and a batch renews its claims as it
goes). An abandoned claim reads as ``issued`` (or ``expired``), reserved for the DID that made it,
and that device alone can take it over (:meth:`ProvisioningTokens._claim_many`). Whatever the
enrolment holding a claim does at its end (mark the token used, give it back) is conditional on its
``claim_id`` still being the token's, so an enrolment taken over, should it be alive after all,
changes nothing.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from did_registry.client import LedgerClient
from wallet.enroll import EnrolmentPayload
from web.enrolment_records import (
    DeviceProfile,
    EnrolmentError,
    ProvisioningToken,
    ProvisioningTokenRow,
    TokenExpired,
    TokenUsed,
    UnknownToken,
    profile_of,
    token_hash,
)

__all__ = ["CLAIM_TIMEOUT_FLOOR", "IN_CHUNK", "ProvisioningTokens", "new_claim_id"]

IN_CHUNK: Final = 500
"""Members of one SQL ``IN (...)`` list when reading a batch's rows."""

CLAIM_TIMEOUT_FLOOR: Final = timedelta(minutes=10)
"""The least time after which a claim counts as abandoned (see :class:`web.enrolment.Enrolment`)."""


def new_claim_id() -> str:
    """A fresh claim's id: 128 random bits, hex."""
    return uuid.uuid4().hex


class ProvisioningTokens:
    """The provisioning tokens of one portal database (``engine``), for devices enrolling on the
    network of ``ledger`` through ``portal_url``."""

    engine: Engine
    ledger: LedgerClient
    portal_url: str
    nodes: tuple[str, ...]
    clock: Callable[[], datetime]
    claim_timeout: timedelta
    """How old a claim is when it counts as abandoned (its enrolment died with its process)."""

    def payload(self, token: str) -> EnrolmentPayload:
        """What the QR code of ``token`` encodes."""
        genesis = self.ledger.genesis
        return EnrolmentPayload(self.portal_url, token, genesis.network, genesis.hash.hex(), self.nodes)

    def create_tokens(
        self, profile: DeviceProfile, count: int = 1, ttl: timedelta = timedelta(hours=24)
    ) -> list[ProvisioningToken]:
        """Create ``count`` one-time tokens for devices of ``profile``, valid for ``ttl``."""
        if count < 1 or ttl <= timedelta(0):
            raise EnrolmentError("create at least one token, with a positive lifetime")
        now = self.clock()
        expires = now + ttl
        values = [
            base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode() for _ in range(count)
        ]
        attributes = json.dumps(dict(profile.attributes))
        rows = [
            {
                "token_hash": token_hash(value),
                "model": profile.model,
                "firmware": profile.firmware,
                "attributes": attributes,
                "created_at": now,
                "expires_at": expires,
                "status": "issued",
            }
            for value in values
        ]
        with self.engine.begin() as connection:
            connection.execute(insert(ProvisioningTokenRow), rows)
        return [
            ProvisioningToken(
                token_hash(v), profile, now, expires, "issued", token=v, payload=self.payload(v)
            )
            for v in values
        ]

    def _abandoned(self, row: ProvisioningTokenRow, now: datetime) -> bool:
        """Whether ``row`` holds a claim older than :attr:`claim_timeout` (a claim of an earlier
        version, with no time, is timed from the start of :meth:`_time_untimed_claims`)."""
        return (
            row.status == "claimed"
            and row.claimed_at is not None
            and row.claimed_at <= now - self.claim_timeout
        )

    def _waiting(self, now: datetime) -> ColumnElement[bool]:
        """SQL: the token is issued, or holds an abandoned claim (which reads as issued)."""
        state, claimed_at = col(ProvisioningTokenRow.status), col(ProvisioningTokenRow.claimed_at)
        return or_(state == "issued", and_(state == "claimed", claimed_at <= now - self.claim_timeout))

    def _status_of(self, row: ProvisioningTokenRow, now: datetime) -> str:
        status = "issued" if self._abandoned(row, now) else row.status
        if status == "issued" and row.expires_at <= now:
            return "expired"
        return status

    def _time_untimed_claims(self) -> None:
        """Give claims made by an earlier version of the portal, which kept no claim time, the time
        now: they count as abandoned :attr:`claim_timeout` from now."""
        with self.engine.begin() as connection:
            connection.execute(
                update(ProvisioningTokenRow)
                .where(
                    col(ProvisioningTokenRow.status) == "claimed",
                    col(ProvisioningTokenRow.claimed_at).is_(None),
                )
                .values(claimed_at=self.clock())
            )

    def tokens(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ProvisioningToken]:
        """Tokens, newest first, with their current status (``issued``, ``claimed``, ``used``,
        ``expired``; a token whose claim was abandoned reads as ``issued`` or ``expired``)."""
        now = self.clock()
        query = select(ProvisioningTokenRow).order_by(
            col(ProvisioningTokenRow.created_at).desc(), col(ProvisioningTokenRow.token_hash)
        )
        state, expiry = col(ProvisioningTokenRow.status), col(ProvisioningTokenRow.expires_at)
        waiting = self._waiting(now)
        if status == "issued":
            query = query.where(waiting, expiry > now)
        elif status == "expired":
            query = query.where(or_(state == "expired", and_(waiting, expiry <= now)))
        elif status == "claimed":
            claimed_at = col(ProvisioningTokenRow.claimed_at)
            query = query.where(
                state == "claimed", or_(claimed_at.is_(None), claimed_at > now - self.claim_timeout)
            )
        elif status is not None:
            query = query.where(state == status)
        with Session(self.engine) as session:
            rows = session.exec(query.offset(offset).limit(limit)).all()
        return [
            ProvisioningToken(
                r.token_hash, profile_of(r), r.created_at, r.expires_at, self._status_of(r, now), r.device_did
            )
            for r in rows
        ]

    def progress(self, token_hashes: Sequence[str]) -> dict[str, int]:
        """How far the tokens ``token_hashes`` are: ``{"total", "issued", "claimed", "used", "expired"}``."""
        now = self.clock()
        counts = dict.fromkeys(("issued", "claimed", "used", "expired"), 0)
        with Session(self.engine) as session:
            for start in range(0, len(token_hashes), 500):
                chunk = list(token_hashes[start : start + 500])
                query = select(ProvisioningTokenRow).where(col(ProvisioningTokenRow.token_hash).in_(chunk))
                for row in session.exec(query).all():
                    counts[self._status_of(row, now)] += 1
        return {"total": len(token_hashes), **counts}

    def expire_tokens(self) -> int:
        """Mark issued tokens past their expiry, and those whose claim was abandoned, as ``expired``;
        return how many. An abandoned claim's id stays on its token until the credential its enrolment
        may have issued is withdrawn (:meth:`_withdraw_expired_claims`, done here)."""
        now = self.clock()
        with self.engine.begin() as connection:
            result = connection.execute(
                update(ProvisioningTokenRow)
                .where(self._waiting(now), col(ProvisioningTokenRow.expires_at) <= now)
                .values(status="expired")
            )
        self._withdraw_expired_claims()
        return int(result.rowcount)

    def _withdraw_expired_claims(self, dids: Collection[str] | None = None) -> None:
        """Withdraw what the enrolments of claims left on expired tokens issued: tokens issue nothing,
        so nothing here (:class:`web.undelivered.UndeliveredCredentials` does)."""

    def _check_token(self, token: object) -> ProvisioningTokenRow:
        """The row of a usable token; a typed error (and no change) otherwise."""
        hashed = token_hash(token) if isinstance(token, str) and token else None
        return self._usable(token, self._token_rows([hashed] if hashed else []).get(hashed or ""))

    def _token_rows(self, hashes: Iterable[str]) -> dict[str, ProvisioningTokenRow]:
        """The stored rows of the token hashes ``hashes`` (absent ones left out), in few queries."""
        wanted, rows = list(dict.fromkeys(hashes)), dict[str, ProvisioningTokenRow]()
        with Session(self.engine) as session:
            for start in range(0, len(wanted), IN_CHUNK):
                query = select(ProvisioningTokenRow).where(
                    col(ProvisioningTokenRow.token_hash).in_(wanted[start : start + IN_CHUNK])
                )
                rows.update((row.token_hash, row) for row in session.exec(query).all())
        return rows

    def _usable(self, token: object, row: ProvisioningTokenRow | None) -> ProvisioningTokenRow:
        """``row`` when ``token`` is a usable token stored as ``row``; else the typed error naming why."""
        if not isinstance(token, str) or not token:
            raise UnknownToken("no provisioning token was given")
        if row is None:
            raise UnknownToken("this provisioning token was never issued")
        status = self._status_of(row, self.clock())
        if status == "used":
            raise TokenUsed("this provisioning token was used already")
        if status == "claimed":
            minutes = max(1, round(self.claim_timeout.total_seconds() / 60))
            raise TokenUsed(
                "this provisioning token is in use by an enrolment under way; should that enrolment "
                f"have been cut short, the same device may retry {minutes} minutes after it began"
            )
        if status == "expired":
            raise TokenExpired(f"this provisioning token expired at {row.expires_at:%Y-%m-%dT%H:%M:%SZ}")
        return row

    def _claim(self, row: ProvisioningTokenRow, did: str, claim: str) -> None:
        """Take the token of ``row`` (as read before) for ``did`` as claim ``claim``, in one conditional
        update; the loser of a race gets :class:`TokenUsed`."""
        taken = {row.token_hash: row.claim_id or ""} if row.status == "claimed" else None
        if not self._claim_many([(row.token_hash, did)], claim=claim, abandoned=taken)[0]:
            raise TokenUsed("this provisioning token was used already")

    def _claim_many(
        self,
        claims: Sequence[tuple[str, str]],
        *,
        claim: str | None = None,
        abandoned: Mapping[str, str] | None = None,
    ) -> list[bool]:
        """Take each token ``(hash, did)`` as claim ``claim`` (a fresh id if none) with its own
        conditional update, all in one database transaction; whether each was won (of two concurrent
        claims of one token exactly one wins). A token released after its device's DID may have
        reached the ledger stays reserved for that DID (:meth:`_release`): only the same device, which
        alone can sign its creation, takes it. So does a token whose claim was abandoned (older than
        :attr:`claim_timeout`): ``abandoned`` names, by token hash, the id of the abandoned claim the
        caller read (``""`` for one of an earlier version, with none), and only that claim, still
        abandoned, is taken over: two takeovers racing, one wins."""
        if not claims:
            return []
        claim = claim or new_claim_id()
        state, claimed_at = col(ProvisioningTokenRow.status), col(ProvisioningTokenRow.claimed_at)
        statement = (
            update(ProvisioningTokenRow)
            .where(
                col(ProvisioningTokenRow.token_hash) == bindparam("claimed_hash"),
                or_(
                    state == "issued",
                    and_(
                        state == "claimed",
                        claimed_at <= bindparam("stale_before"),
                        func.coalesce(col(ProvisioningTokenRow.claim_id), "") == bindparam("abandoned"),
                    ),
                ),
                col(ProvisioningTokenRow.expires_at) > bindparam("now"),
                or_(
                    col(ProvisioningTokenRow.device_did).is_(None),
                    col(ProvisioningTokenRow.device_did) == bindparam("reserved_for"),
                ),
            )
            .values(
                status="claimed",
                device_did=bindparam("claimed_by"),
                claimed_at=bindparam("claimed_at"),
                claim_id=bindparam("claim"),
            )
        )
        now = self.clock()
        abandoned = abandoned or {}
        won: dict[int, bool] = {}
        with self.engine.begin() as connection:  # in token order: concurrent batches lock rows alike
            for position in sorted(range(len(claims)), key=lambda p: claims[p][0]):
                token_hash, did = claims[position]
                params = {
                    "claimed_hash": token_hash,
                    "stale_before": now - self.claim_timeout,
                    "abandoned": abandoned.get(token_hash),  # None: no takeover (NULL equals nothing)
                    "now": now,
                    "reserved_for": did,
                    "claimed_by": did,
                    "claimed_at": now,
                    "claim": claim,
                }
                won[position] = connection.execute(statement, params).rowcount == 1
        return [won[position] for position in range(len(claims))]

    def _renew(self, token_hashes: Sequence[str], claim: str) -> None:
        """Mark the tokens ``token_hashes`` still held by claim ``claim`` as claimed now (a batch going
        on): a live claim never looks abandoned."""
        now = self.clock()
        with self.engine.begin() as connection:
            for start in range(0, len(token_hashes), IN_CHUNK):
                connection.execute(
                    update(ProvisioningTokenRow)
                    .where(
                        col(ProvisioningTokenRow.token_hash).in_(
                            list(token_hashes[start : start + IN_CHUNK])
                        ),
                        col(ProvisioningTokenRow.status) == "claimed",
                        col(ProvisioningTokenRow.claim_id) == claim,
                    )
                    .values(claimed_at=now)
                )

    def _release(self, token_hashes: Iterable[str], claim: str, *, reserved: bool = True) -> None:
        """Give back the tokens claim ``claim`` still holds (one taken over since is left alone).
        ``reserved`` (whenever the device's creation may have reached the ledger) keeps each bound to
        the DID that claimed it, so only that device enrols with it again; otherwise any device may."""
        values: dict[str, Any] = {"status": "issued", "claimed_at": None, "claim_id": None}
        if not reserved:
            values["device_did"] = None
        wanted = list(token_hashes)
        with self.engine.begin() as connection:
            for start in range(0, len(wanted), IN_CHUNK):
                connection.execute(
                    update(ProvisioningTokenRow)
                    .where(
                        col(ProvisioningTokenRow.token_hash).in_(wanted[start : start + IN_CHUNK]),
                        col(ProvisioningTokenRow.status) == "claimed",
                        col(ProvisioningTokenRow.claim_id) == claim,
                    )
                    .values(**values)
                )

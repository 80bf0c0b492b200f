"""Provisioning tokens: made in batches, listed, claimed for one device at a time, released, expired.

A provisioning token is 32 random bytes (base64url without padding) handed out once, in a QR code
(:meth:`ProvisioningTokens.payload`); the portal keeps only its SHA-256, with the device profile,
expiry and status (``issued``, ``claimed`` while an enrolment is under way, ``used``; ``expired`` is
computed, or written by :meth:`ProvisioningTokens.expire_tokens`). :class:`web.enrolment.Enrolment`
is built on this class.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, bindparam, insert, or_, update
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

__all__ = ["IN_CHUNK", "ProvisioningTokens"]

IN_CHUNK: Final = 500
"""Members of one SQL ``IN (...)`` list when reading a batch's rows."""


class ProvisioningTokens:
    """The provisioning tokens of one portal database (``engine``), for devices enrolling on the
    network of ``ledger`` through ``portal_url``."""

    engine: Engine
    ledger: LedgerClient
    portal_url: str
    nodes: tuple[str, ...]
    clock: Callable[[], datetime]

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

    def _status_of(self, row: ProvisioningTokenRow, now: datetime) -> str:
        if row.status == "issued" and row.expires_at <= now:
            return "expired"
        return row.status

    def tokens(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ProvisioningToken]:
        """Tokens, newest first, with their current status (``issued``, ``claimed``, ``used``, ``expired``)."""
        now = self.clock()
        query = select(ProvisioningTokenRow).order_by(
            col(ProvisioningTokenRow.created_at).desc(), col(ProvisioningTokenRow.token_hash)
        )
        state, expiry = col(ProvisioningTokenRow.status), col(ProvisioningTokenRow.expires_at)
        if status == "issued":
            query = query.where(state == "issued", expiry > now)
        elif status == "expired":
            query = query.where(or_(state == "expired", and_(state == "issued", expiry <= now)))
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
        """Mark issued tokens past their expiry as ``expired``; return how many."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(ProvisioningTokenRow)
                .where(
                    col(ProvisioningTokenRow.status) == "issued",
                    col(ProvisioningTokenRow.expires_at) <= self.clock(),
                )
                .values(status="expired")
            )
        return int(result.rowcount)

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
        if status in ("used", "claimed"):
            raise TokenUsed("this provisioning token was used already")
        if status == "expired":
            raise TokenExpired(f"this provisioning token expired at {row.expires_at:%Y-%m-%dT%H:%M:%SZ}")
        return row

    def _claim(self, token_hash: str, did: str) -> None:
        """Take the token for ``did`` in one conditional update; the loser of a race gets :class:`TokenUsed`."""
        if not self._claim_many([(token_hash, did)])[0]:
            raise TokenUsed("this provisioning token was used already")

    def _claim_many(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """Take each token ``(hash, did)`` with its own conditional update, all in one database
        transaction; whether each was won (of two concurrent claims of one token exactly one wins).
        A token released after its device's DID may have reached the ledger stays reserved for that
        DID (:meth:`_release`): only the same device, which alone can sign its creation, takes it."""
        if not claims:
            return []
        statement = (
            update(ProvisioningTokenRow)
            .where(
                col(ProvisioningTokenRow.token_hash) == bindparam("claimed_hash"),
                col(ProvisioningTokenRow.status) == "issued",
                col(ProvisioningTokenRow.expires_at) > bindparam("claimed_at"),
                or_(
                    col(ProvisioningTokenRow.device_did).is_(None),
                    col(ProvisioningTokenRow.device_did) == bindparam("reserved_for"),
                ),
            )
            .values(status="claimed", device_did=bindparam("claimed_by"))
        )
        now = self.clock()
        won: dict[int, bool] = {}
        with self.engine.begin() as connection:  # in token order: concurrent batches lock rows alike
            for position in sorted(range(len(claims)), key=lambda p: claims[p][0]):
                token_hash, did = claims[position]
                params = {
                    "claimed_hash": token_hash,
                    "claimed_at": now,
                    "claimed_by": did,
                    "reserved_for": did,
                }
                won[position] = connection.execute(statement, params).rowcount == 1
        return [won[position] for position in range(len(claims))]

    def _release(self, token_hashes: Iterable[str], *, reserved: bool = True) -> None:
        """Give claimed tokens back. ``reserved`` (whenever the device's creation may have reached the
        ledger) keeps each bound to the DID that claimed it, so only that device enrols with it again;
        otherwise any device may."""
        values: dict[str, Any] = {"status": "issued"}
        if not reserved:
            values["device_did"] = None
        with self.engine.begin() as connection:
            connection.execute(
                update(ProvisioningTokenRow)
                .where(
                    col(ProvisioningTokenRow.token_hash).in_(list(token_hashes)),
                    col(ProvisioningTokenRow.status) == "claimed",
                )
                .values(**values)
            )

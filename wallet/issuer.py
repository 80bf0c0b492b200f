"""The issuer: issue credentials with status entries; revoke, suspend and reinstate them.

Each credential gets one index in the issuer's current pair of Bitstring Status Lists (one for
``revocation``, one for ``suspension``; W3C Bitstring Status List v1.0 §2.1), assigned at random and
never twice (:mod:`wallet.status_index`; the database's unique constraint is the last guard). Issuing
and the index allocation happen in one database transaction. The issuer signs its status lists as
``BitstringStatusListCredential``s (§2.2) with the same key as its credentials.

Every change to an issuer's lists (allocating indices, setting bits) reads a list and writes it back,
so changes of one issuer on one database are made one at a time: within a process under one lock
shared by every :class:`Issuer` of that DID on that database, and across processes by locking the
list rows (``SELECT … FOR UPDATE`` on PostgreSQL). SQLite has no row locks, and pysqlite begins a
transaction only at its first write, so a read-modify-write there could read a list another process
is about to change and write its stale copy back over that change. On SQLite a change therefore
starts with a write (a no-op ``UPDATE`` of the issuer's list rows) before it reads anything: that
takes the database's write lock, so a second writer waits (``busy_timeout``) until the first has
committed and then reads its change, or fails with :class:`~wallet.errors.IssuerError` once the wait
runs out.

A caller that keeps more than the issuer's tables in the same database (the portal: its device rows
and audit log) makes its own writes in the issuer's transaction: :meth:`Issuer.changing` holds the
locks and hands out the session, :meth:`Issuer.set_status` changes bits in it, and everything is
committed together, or nothing is. :meth:`Issuer.set_status` brings bits to a value (a bit already
so is left as it is), so repeating a change that was made already changes nothing and is no error.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from did_registry.identity.crypto import Ed25519PrivateKey, random_bytes
from did_registry.identity.status_list import BitstringStatusList
from did_registry.identity.status_list_credential import (
    BitstringStatusListCredential,
    BitstringStatusListEntry,
    StatusPurpose,
)
from wallet.credential import build_credential, issue_credential
from wallet.errors import IssuerError, StatusListFull
from wallet.status_index import permuted_index
from wallet.storage import IssuedCredentialRow, StatusListRow

__all__ = ["DEFAULT_LIST_LENGTH", "Issuer", "IssuedStatus"]

DEFAULT_LIST_LENGTH = 131_072
_IN_CHUNK = 500  # ids in one ``IN (…)`` of a read
_WRITERS: dict[tuple[str, str], threading.Lock] = {}  # (database URL, issuer DID) -> its changes' lock
_WRITERS_GUARD = threading.Lock()


def _writer_lock(engine: Engine, did: str) -> threading.Lock:
    """The one lock of the changes to ``did``'s lists on ``engine``'s database in this process."""
    key = (engine.url.render_as_string(hide_password=False), did)
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, threading.Lock())


@dataclass(frozen=True, slots=True)
class IssuedStatus:
    """Where an issued credential's status lives, and what it is now."""

    credential_id: str
    subject: str
    index: int
    revocation_list: str
    suspension_list: str
    revoked: bool
    suspended: bool


class Issuer:
    """Issues VC 2.0 credentials signed with ``eddsa-jcs-2022`` and keeps their status lists."""

    def __init__(
        self,
        *,
        did: str,
        key: Ed25519PrivateKey,
        verification_method: str,
        engine: Engine,
        status_base_url: str,
        list_length: int = DEFAULT_LIST_LENGTH,
    ) -> None:
        self.did = did
        self.key = key
        self.verification_method = verification_method
        self.engine = engine
        self.status_base_url = status_base_url.rstrip("/")
        self.list_length = list_length
        BitstringStatusList(list_length)  # refuse a bad length now, not at the first issue
        self._writing = _writer_lock(engine, did)

    # -- status lists -----------------------------------------------------------------------
    def _begin_change(self, session: Session) -> None:
        """Begin a change to this issuer's lists: on SQLite, take the database's write lock now,
        before anything is read (see the module's docstring); elsewhere the rows are locked as they
        are read (``FOR UPDATE``)."""
        if self.engine.dialect.name != "sqlite":
            return
        try:
            session.connection().execute(
                update(StatusListRow).where(col(StatusListRow.issuer) == self.did).values(issuer=self.did)
            )
        except OperationalError as exc:
            raise IssuerError(
                f"cannot change the status lists of {self.did}: another writer holds the database ({exc.orig})"
            ) from exc

    @contextmanager
    def changing(self) -> Iterator[Session]:
        """One change to this issuer's lists, made in the session this yields: the writers' lock is
        held and (on SQLite) the database's write lock taken before the session is handed out, and the
        session is committed when the block ends (rolled back if it raises). The caller may write its
        own rows of the same database in the session, to be committed with the issuer's; it changes
        the issuer's bits with :meth:`set_status`. Raises :class:`~wallet.errors.IssuerError` when
        another writer keeps the database past its wait."""
        with self._writing, Session(self.engine) as session:
            self._begin_change(session)
            yield session
            session.commit()

    def check_writable(self) -> None:
        """Raise :class:`~wallet.errors.IssuerError` unless a change to this issuer's lists could be
        made now: on SQLite the database's write lock is taken (waiting as a change would) and given
        back at once, changing nothing. For a caller about to do something it cannot undo (a ledger
        transaction) before it changes the lists: a database held by another writer is found first."""
        with self._writing, Session(self.engine) as session:
            self._begin_change(session)
            session.rollback()

    def _new_list(self, session: Session, purpose: StatusPurpose, number: int) -> StatusListRow:
        row = StatusListRow(
            url=f"{self.status_base_url}/{number}-{purpose.value}",
            issuer=self.did,
            purpose=purpose.value,
            length=self.list_length,
            permutation_key=random_bytes(32),
            bits=bytes(self.list_length // 8),
            updated_at=datetime.now(UTC),
        )
        session.add(row)
        return row

    def _current_lists(self, session: Session) -> tuple[StatusListRow, StatusListRow]:
        rows = session.exec(
            select(StatusListRow)
            .where(StatusListRow.issuer == self.did)
            .order_by(StatusListRow.url)
            .with_for_update()
        ).all()
        by_purpose = {p: [r for r in rows if r.purpose == p.value] for p in StatusPurpose}
        revocation = [r for r in by_purpose[StatusPurpose.REVOCATION] if r.allocated < r.length]
        if revocation:
            rev = revocation[0]
            sus_url = rev.url.removesuffix("-revocation") + "-suspension"
            sus = next(r for r in by_purpose[StatusPurpose.SUSPENSION] if r.url == sus_url)
            return rev, sus
        number = len(by_purpose[StatusPurpose.REVOCATION]) + 1
        return (
            self._new_list(session, StatusPurpose.REVOCATION, number),
            self._new_list(session, StatusPurpose.SUSPENSION, number),
        )

    def status_list_urls(self) -> list[str]:
        """The URLs of every status list this issuer keeps."""
        with Session(self.engine) as session:
            return list(session.exec(select(StatusListRow.url).where(StatusListRow.issuer == self.did)).all())

    def status_list(self, url: str) -> BitstringStatusList:
        """The current bits of one of this issuer's lists."""
        with Session(self.engine) as session:
            row = session.get(StatusListRow, url)
            if row is None or row.issuer != self.did:
                raise IssuerError(f"no status list {url} for issuer {self.did}")
            return BitstringStatusList.from_bytes(row.bits)

    def status_list_credential(self, url: str, *, now: datetime | None = None) -> dict[str, Any]:
        """The signed ``BitstringStatusListCredential`` publishing list ``url`` as it is now."""
        with Session(self.engine) as session:
            row = session.get(StatusListRow, url)
            if row is None or row.issuer != self.did:
                raise IssuerError(f"no status list {url} for issuer {self.did}")
            document = BitstringStatusListCredential(
                issuer=self.did,
                status_purposes=(StatusPurpose(row.purpose),),
                status_list=BitstringStatusList.from_bytes(row.bits),
                id=row.url,
                subject_id=f"{row.url}#list",
                valid_from=now or datetime.now(UTC),
            ).to_json()
        return issue_credential(document, self.key, self.verification_method, created=now)

    # -- issuing ----------------------------------------------------------------------------
    def issue(
        self,
        subject: Mapping[str, Any],
        *,
        types: Sequence[str] = (),
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        credential_id: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Issue a credential about ``subject`` (which must have an ``id``) with status entries."""
        [(signed, _)] = self.issue_many(
            [subject],
            types=types,
            valid_from=valid_from,
            valid_until=valid_until,
            credential_ids=None if credential_id is None else [credential_id],
            now=now,
        )
        return signed

    def issue_many(
        self,
        subjects: Sequence[Mapping[str, Any]],
        *,
        types: Sequence[str] = (),
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        credential_ids: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[tuple[dict[str, Any], IssuedStatus]]:
        """Issue one credential per subject, all in one database transaction (a factory batch):
        each signed credential with where its status lives. All are issued, or none."""
        if credential_ids is not None and len(credential_ids) != len(subjects):
            raise IssuerError("give one credential id per subject, or none")
        for subject in subjects:
            if not isinstance(subject.get("id"), str):
                raise IssuerError("the credential subject needs an id (the holder's DID)")
        now = now or datetime.now(UTC)
        issued = []
        rows: list[dict[str, Any]] = []
        with self._writing, Session(self.engine) as session:
            self._begin_change(session)
            lists: tuple[StatusListRow, StatusListRow] | None = None
            for number, subject in enumerate(subjects):
                if lists is None or lists[0].allocated >= lists[0].length:
                    lists = self._current_lists(session)
                revocation, suspension = lists
                if revocation.allocated >= revocation.length:
                    raise StatusListFull(f"status list {revocation.url} has no free index")
                credential_id = (
                    credential_ids[number] if credential_ids is not None else f"urn:uuid:{uuid.uuid4()}"
                )
                index = permuted_index(revocation.permutation_key, revocation.allocated, revocation.length)
                revocation.allocated += 1
                suspension.allocated += 1
                entries = [
                    BitstringStatusListEntry(
                        status_purpose=purpose,
                        status_list_index=index,
                        status_list_credential=row.url,
                        id=f"{row.url}#{index}",
                    ).to_json()
                    for purpose, row in (
                        (StatusPurpose.REVOCATION, revocation),
                        (StatusPurpose.SUSPENSION, suspension),
                    )
                ]
                credential = build_credential(
                    issuer=self.did,
                    subject=subject,
                    types=types,
                    credential_id=credential_id,
                    valid_from=valid_from or now,
                    valid_until=valid_until,
                    status=entries,
                )
                signed = issue_credential(credential, self.key, self.verification_method, created=now)
                rows.append(
                    {
                        "id": credential_id,
                        "subject": str(subject["id"]),
                        "types": json.dumps(signed["type"]),
                        "revocation_list": revocation.url,
                        "suspension_list": suspension.url,
                        "status_index": index,
                        "issued_at": now,
                        "valid_until": valid_until,
                        "revoked": False,
                        "suspended": False,
                    }
                )
                session.add(revocation)
                session.add(suspension)
                issued.append(
                    (
                        signed,
                        IssuedStatus(
                            credential_id,
                            str(subject["id"]),
                            index,
                            revocation.url,
                            suspension.url,
                            False,
                            False,
                        ),
                    )
                )
            session.flush()  # the lists' counters, then every credential's row in one statement
            if rows:
                session.execute(insert(IssuedCredentialRow), rows)
            session.commit()
        return issued

    def withdraw_undelivered(self, credential_ids: Sequence[str]) -> None:
        """Forget credentials issued but never handed to their holders (the step after issuing
        failed): their rows go; their status indices stay allocated, never to be given again.
        An id with no row is passed over; one another issuer issued is refused, and nothing goes."""
        if not credential_ids:
            return
        with self._writing, Session(self.engine) as session:
            rows = []
            for credential_id in credential_ids:
                row = session.get(IssuedCredentialRow, credential_id)
                if row is not None:
                    rows.append(self._check_own(session, row))
            for row in rows:
                session.delete(row)
            session.commit()

    def _check_own(self, session: Session, row: IssuedCredentialRow) -> IssuedCredentialRow:
        """Return ``row`` if this issuer issued it, or raise :class:`IssuerError`.

        A credential's row names no issuer: it is the issuer of the credential's status lists
        (several issuers may share one database)."""
        urls = (row.revocation_list, row.suspension_list)
        lists = [session.get(StatusListRow, url) for url in urls]
        if any(list_row is not None and list_row.issuer != self.did for list_row in lists):
            raise IssuerError(f"no credential {row.id} issued by {self.did}")
        for url, list_row in zip(urls, lists, strict=True):
            if list_row is None:  # no foreign key ties a credential's row to its list
                raise IssuerError(f"credential {row.id} names status list {url}, which is missing")
        return row

    # -- status changes ---------------------------------------------------------------------
    def _own_rows(self, session: Session, credential_ids: Sequence[str]) -> list[IssuedCredentialRow]:
        """The rows of ``credential_ids`` (each once, in order), read in a few queries; raises
        :class:`IssuerError` for one this issuer did not issue."""
        wanted = list(dict.fromkeys(credential_ids))
        found: dict[str, IssuedCredentialRow] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            query = select(IssuedCredentialRow).where(
                col(IssuedCredentialRow.id).in_(wanted[start : start + _IN_CHUNK])
            )
            found.update((row.id, row) for row in session.exec(query).all())
        rows = []
        for credential_id in wanted:
            row = found.get(credential_id)
            if row is None:
                raise IssuerError(f"no credential {credential_id} issued by {self.did}")
            rows.append(self._check_own(session, row))
        return rows

    def _flip(
        self, session: Session, rows: Sequence[IssuedCredentialRow], purpose: StatusPurpose, value: bool
    ) -> None:
        """Bring the ``purpose`` bit of each credential of ``rows`` to ``value`` in ``session`` (a bit
        already so is left alone; a list none of whose bits change is not written)."""
        revocation = purpose is StatusPurpose.REVOCATION
        if revocation and not value and any(row.revoked for row in rows):
            revoked = next(row for row in rows if row.revoked)
            raise IssuerError(f"credential {revoked.id} is revoked; revocation is final")
        lists: dict[str, tuple[StatusListRow, BitstringStatusList]] = {}
        changed: set[str] = set()
        for row in rows:
            url = row.revocation_list if revocation else row.suspension_list
            if url not in lists:
                list_row = session.get(StatusListRow, url, with_for_update=True)
                if list_row is None:  # no foreign key ties a credential's row to its list
                    raise IssuerError(f"credential {row.id} names status list {url}, which is missing")
                lists[url] = (list_row, BitstringStatusList.from_bytes(list_row.bits))
            bits = lists[url][1]
            if bits.get(row.status_index) != int(value):
                bits.set(row.status_index, int(value))
                changed.add(url)
            if (row.revoked if revocation else row.suspended) is not value:
                if revocation:
                    row.revoked = value
                else:
                    row.suspended = value
                session.add(row)
        for url in changed:
            list_row, bits = lists[url]
            list_row.bits = bits.to_bytes()
            list_row.updated_at = datetime.now(UTC)
            session.add(list_row)
        session.flush()

    def set_status(
        self, session: Session, credential_ids: Sequence[str], purpose: StatusPurpose, value: bool
    ) -> list[IssuedStatus]:
        """Bring the ``purpose`` bit of each credential to ``value`` in the caller's change (``session``
        from :meth:`changing`, which commits it): a bit already so stays as it is, so repeating a change
        is no error. Clearing a revocation bit is refused (revocation is final), as is a credential this
        issuer did not issue; the caller's transaction then rolls back, and nothing changes."""
        rows = self._own_rows(session, credential_ids)
        self._flip(session, rows, purpose, value)
        return [self._status(row) for row in rows]

    def statuses(self, credential_ids: Sequence[str]) -> list[IssuedStatus]:
        """Where each credential's status lives and what it is now, in order, read in a few queries;
        raises :class:`IssuerError` for one this issuer did not issue."""
        with Session(self.engine) as session:
            return [self._status(row) for row in self._own_rows(session, credential_ids)]

    def _set_status(
        self, credential_ids: Sequence[str], purpose: StatusPurpose, value: bool, revoked: str | None = None
    ) -> list[IssuedStatus]:
        """Set the ``purpose`` bit of each credential to ``value``, all or none; ``revoked``, when given,
        refuses a credential already revoked (checked with the change, under the writers' lock)."""
        with self.changing() as session:
            rows = self._own_rows(session, credential_ids)
            if revoked is not None:
                for row in rows:
                    if row.revoked:
                        raise IssuerError(f"credential {row.id} {revoked}")
            self._flip(session, rows, purpose, value)
            return [self._status(row) for row in rows]

    @staticmethod
    def _status(row: IssuedCredentialRow) -> IssuedStatus:
        return IssuedStatus(
            row.id,
            row.subject,
            row.status_index,
            row.revocation_list,
            row.suspension_list,
            row.revoked,
            row.suspended,
        )

    def revoke(self, *credential_ids: str) -> list[IssuedStatus]:
        """Revoke credentials for good: set their bits in the revocation list, in one transaction."""
        return self._set_status(credential_ids, StatusPurpose.REVOCATION, True, revoked="is already revoked")

    def suspend(self, *credential_ids: str) -> list[IssuedStatus]:
        """Suspend credentials: set their bits in the suspension list (reversible)."""
        return self._set_status(credential_ids, StatusPurpose.SUSPENSION, True)

    def reinstate(self, *credential_ids: str) -> list[IssuedStatus]:
        """Lift a suspension. A revoked credential cannot be reinstated."""
        return self._set_status(
            credential_ids, StatusPurpose.SUSPENSION, False, revoked="is revoked; revocation is final"
        )

    def set_bits(self, url: str, indices: Sequence[int], value: bool) -> None:
        """Set or clear bits by index in one of this issuer's lists, all or nothing.

        This is revoke / suspend / reinstate by index (what one ledger status-list update carries).
        Clearing a bit of a ``revocation`` list is refused: revocation is final.
        """
        with self._writing, Session(self.engine) as session:
            self._begin_change(session)
            row = session.get(StatusListRow, url, with_for_update=True)
            if row is None or row.issuer != self.did:
                raise IssuerError(f"no status list {url} for issuer {self.did}")
            if row.purpose == StatusPurpose.REVOCATION.value and not value:
                raise IssuerError(f"{url} is a revocation list; revocation is final")
            bits = BitstringStatusList.from_bytes(row.bits)
            bits.set_many(indices, int(value))  # checks every index before changing any bit
            row.bits, row.updated_at = bits.to_bytes(), datetime.now(UTC)
            session.add(row)
            column = (
                IssuedCredentialRow.revocation_list
                if row.purpose == StatusPurpose.REVOCATION.value
                else IssuedCredentialRow.suspension_list
            )
            issued = session.exec(
                select(IssuedCredentialRow).where(
                    column == url,
                    IssuedCredentialRow.status_index.in_(list(indices)),  # type: ignore[attr-defined]
                )
            ).all()
            for credential in issued:
                if row.purpose == StatusPurpose.REVOCATION.value:
                    credential.revoked = value
                else:
                    credential.suspended = value
                session.add(credential)
            session.commit()

    def status(self, credential_id: str) -> IssuedStatus:
        """Where credential ``credential_id``'s status lives and what it is."""
        with Session(self.engine) as session:
            row = session.get(IssuedCredentialRow, credential_id)
            if row is None:
                raise IssuerError(f"no credential {credential_id} issued by {self.did}")
            return self._status(self._check_own(session, row))

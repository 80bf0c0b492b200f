"""The issuer's status changes made in its caller's database transaction, and repeated safely.

A caller keeping its own rows in the issuer's database (the portal: device rows, audit entries) makes
the issuer's change and its own writes in one transaction (:meth:`Issuer.changing` and
:meth:`Issuer.set_status`), and can find out before an irreversible step whether the database can be
written now (:meth:`Issuer.check_writable`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from did_registry.identity.status_list_credential import StatusPurpose
from tests.wallet.conftest import KeyRing
from wallet.errors import IssuerError
from wallet.issuer import Issuer
from wallet.storage import open_engine


def _issuer(keyring: KeyRing, engine: Engine, name: str = "issuer") -> Issuer:
    identity = keyring.new()
    return Issuer(
        did=identity.did,
        key=identity.key,
        verification_method=identity.method,
        engine=engine,
        status_base_url=f"https://{name}.example/status",
    )


def _notes(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [str(row[0]) for row in connection.execute(text("SELECT body FROM note ORDER BY body"))]


def _bits(issuer: Issuer) -> dict[str, bytes]:
    return {url: issuer.status_list(url).to_bytes() for url in issuer.status_list_urls()}


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An in-memory database with the issuer's tables and a table of the caller's own (``note``)."""
    made = open_engine("sqlite://")
    with made.begin() as connection:
        connection.execute(text("CREATE TABLE note (body TEXT NOT NULL)"))
    yield made
    made.dispose()


def test_a_change_and_the_callers_rows_commit_together(keyring: KeyRing, engine: Engine) -> None:
    """Bits set with ``set_status`` in ``changing()`` and the caller's row written in the same session
    are committed together when the block ends."""
    issuer = _issuer(keyring, engine)
    credential = issuer.issue({"id": "did:example:device-1"})
    with issuer.changing() as session:
        [status] = issuer.set_status(session, [credential["id"]], StatusPurpose.REVOCATION, True)
        session.execute(text("INSERT INTO note (body) VALUES ('revoked device-1')"))
    assert status.revoked and issuer.status(credential["id"]).revoked
    assert issuer.status_list(status.revocation_list).get(status.index) == 1
    assert _notes(engine) == ["revoked device-1"]


def test_a_failure_in_the_callers_part_rolls_back_the_issuers_change(
    keyring: KeyRing, engine: Engine
) -> None:
    """The caller's write failing after ``set_status`` leaves neither its rows nor the issuer's bits."""
    issuer = _issuer(keyring, engine)
    credential = issuer.issue({"id": "did:example:device-1"})
    before = _bits(issuer)
    with pytest.raises(RuntimeError, match="audit insert failed"), issuer.changing() as session:
        issuer.set_status(session, [credential["id"]], StatusPurpose.SUSPENSION, True)
        session.execute(text("INSERT INTO note (body) VALUES ('suspended device-1')"))
        raise RuntimeError("audit insert failed")
    assert not issuer.status(credential["id"]).suspended
    assert _bits(issuer) == before and _notes(engine) == []
    issuer.suspend(credential["id"])  # the writers' lock was given back
    assert issuer.status(credential["id"]).suspended


def test_set_status_repeated_is_no_error_and_never_clears_a_revocation(
    keyring: KeyRing, engine: Engine
) -> None:
    """Bringing a bit to the value it has changes nothing and is no error (a repeated change completes);
    clearing a revocation bit is refused and rolls back the whole change."""
    issuer = _issuer(keyring, engine)
    revoked, other = (issuer.issue({"id": f"did:example:device-{n}"})["id"] for n in (1, 2))
    issuer.revoke(revoked)
    before = _bits(issuer)
    with issuer.changing() as session:
        issuer.set_status(session, [revoked], StatusPurpose.REVOCATION, True)
        issuer.set_status(session, [revoked, revoked], StatusPurpose.SUSPENSION, False)
    assert _bits(issuer) == before and issuer.status(revoked).revoked
    with pytest.raises(IssuerError, match="revocation is final"), issuer.changing() as session:
        issuer.set_status(session, [other], StatusPurpose.SUSPENSION, True)
        issuer.set_status(session, [other, revoked], StatusPurpose.REVOCATION, False)
    assert _bits(issuer) == before and not issuer.status(other).suspended
    with pytest.raises(IssuerError, match="already revoked"):  # revoke() itself still refuses
        issuer.revoke(revoked)


def test_set_status_refuses_another_issuers_credential(keyring: KeyRing, engine: Engine) -> None:
    """On a shared database, ``set_status`` and ``statuses`` refuse a credential another issuer issued."""
    mallory, issuer = _issuer(keyring, engine, "mallory"), _issuer(keyring, engine)
    theirs = issuer.issue({"id": "did:example:device-1"})["id"]
    refused = pytest.raises(IssuerError, match=f"no credential {theirs} issued by {mallory.did}")
    with refused, mallory.changing() as session:
        mallory.set_status(session, [theirs], StatusPurpose.REVOCATION, True)
    with pytest.raises(IssuerError, match=f"no credential {theirs} issued by {mallory.did}"):
        mallory.statuses([theirs])
    assert not issuer.status(theirs).revoked


def test_statuses_reads_many_credentials_in_order(keyring: KeyRing, engine: Engine) -> None:
    """``statuses`` answers each credential once, in the order asked, with its flags."""
    issuer = _issuer(keyring, engine)
    ids = [
        signed["id"] for signed, _ in issuer.issue_many([{"id": f"did:example:{n}"} for n in range(1_200)])
    ]
    issuer.suspend(ids[700])
    found = issuer.statuses([*reversed(ids), ids[0]])
    assert [s.credential_id for s in found] == list(reversed(ids))
    assert [s.credential_id for s in found if s.suspended] == [ids[700]]
    with pytest.raises(IssuerError, match="no credential urn:uuid:none"):
        issuer.statuses([ids[0], "urn:uuid:none"])


def test_check_writable_finds_a_database_held_by_another_writer(keyring: KeyRing, tmp_path: Path) -> None:
    """Another writer holding the SQLite file past the wait: ``check_writable`` (and ``changing``)
    raise :class:`IssuerError` and change nothing; once it lets go, both go ahead."""
    engine = open_engine(f"sqlite:///{tmp_path}/issuer.db")

    def short_wait(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA busy_timeout=200")

    event.listen(engine, "connect", short_wait)
    engine.dispose()
    issuer = _issuer(keyring, engine)
    credential = issuer.issue({"id": "did:example:device-1"})
    issuer.check_writable()
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        connection = sqlite3.connect(tmp_path / "issuer.db", timeout=10)
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(10)
        connection.rollback()
        connection.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    try:
        held.wait(10)
        started = time.monotonic()
        with pytest.raises(IssuerError, match="another writer holds the database"):
            issuer.check_writable()
        assert time.monotonic() - started < 5
        busy = pytest.raises(IssuerError, match="another writer holds the database")
        with busy, issuer.changing() as session:
            issuer.set_status(session, [credential["id"]], StatusPurpose.REVOCATION, True)
    finally:
        release.set()
        thread.join()
    assert not issuer.status(credential["id"]).revoked
    issuer.check_writable()
    with issuer.changing() as session:
        issuer.set_status(session, [credential["id"]], StatusPurpose.REVOCATION, True)
    assert issuer.status(credential["id"]).revoked
    engine.dispose()

"""Enrolments cut short by the portal's process dying while it held the token's claim: the same
device completes them once the claim is abandoned, nobody else can, and a live claim is left alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text, update
from sqlmodel import Session, col, select

from tests.web.support import old_database_url
from tests.web.test_enrolment import PORTAL, PROFILE, Portal, make_portal, new_device
from wallet.storage import IssuedCredentialRow
from web.enrolment import Enrolment
from web.enrolment_records import DeviceRow, EnrolmentResult, ProvisioningTokenRow, TokenUsed, open_store
from web.organisation import DEVICE_CREDENTIAL

LATER = timedelta(minutes=11)
"""Past the default claim timeout (10 minutes, at least five ledger timeouts of 60 s)."""


class Died(BaseException):
    """The portal's process ending here: nothing after this point runs in it."""


def die(enrolment: Enrolment, monkeypatch: pytest.MonkeyPatch, at: str) -> None:
    """Make ``enrolment`` stop dead at ``at`` (``before_issue``: the DID committed, nothing issued;
    ``after_issue``: the credential issued and committed too): a dead process gives no token back
    and withdraws nothing."""
    monkeypatch.setattr(enrolment, "_release", lambda *_, **__: None)
    monkeypatch.setattr(enrolment.issuer, "withdraw_undelivered", lambda *_, **__: None)
    if at == "before_issue":

        def stop(*_: Any, **__: Any) -> Any:
            raise Died

        monkeypatch.setattr(enrolment, "_complete", stop)
    else:
        issue_many = enrolment.issuer.issue_many

        def issue_then_stop(*args: Any, **kwargs: Any) -> Any:
            issue_many(*args, **kwargs)
            raise Died

        monkeypatch.setattr(enrolment.issuer, "issue_many", issue_then_stop)


def restarted(portal: Portal) -> Enrolment:
    """The portal's enrolment service as a new process makes it, on the same database."""
    return Enrolment(
        portal.organisation,
        portal.enrolment.engine,
        ledger=portal.client,
        portal_url=PORTAL,
        clock=portal.clock,
    )


def stored(enrolment: Enrolment) -> tuple[list[str], list[str], list[str]]:
    """Token statuses as stored, the devices' credential ids and the issued credentials' ids."""
    with Session(enrolment.engine) as session:
        tokens = [row.status for row in session.exec(select(ProvisioningTokenRow)).all()]
        devices = [row.credential_id for row in session.exec(select(DeviceRow)).all()]
        issued = [row.id for row in session.exec(select(IssuedCredentialRow)).all()]
    return sorted(tokens), sorted(devices), sorted(issued)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


@pytest.fixture
def on_file(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on a SQLite file (threads get connections of their own)."""
    yield from make_portal(tmp_path / "instance", f"sqlite:///{tmp_path / 'portal.db'}")


@pytest.fixture(params=["memory", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory SQLite database, then on PostgreSQL."""
    url = "sqlite://" if request.param == "memory" else request.getfixturevalue("postgres_url")
    yield from make_portal(tmp_path / "instance", url)


@pytest.mark.parametrize("at", ["before_issue", "after_issue"])
def test_an_enrolment_cut_short_is_completed_by_the_same_device_once_its_claim_is_abandoned(
    any_database: Portal, monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    """The process dies after the device's DID was anchored (and perhaps its credential issued): the
    token stays claimed while the claim may be live, then the same device's retry completes the
    enrolment, with one credential on record; another device never gets the token."""
    portal = any_database
    device, token = new_device(), portal.token()
    die(portal.enrolment, monkeypatch, at)
    with pytest.raises(Died):
        portal.enrolment.enrol(token, device.request())
    assert portal.client.resolve_record(device.did)[0] is not None
    assert stored(portal.enrolment)[:2] == (["claimed"], [])
    enrolment = restarted(portal)
    with pytest.raises(TokenUsed):  # the claim may be live: left alone
        enrolment.enrol(token, device.request())
    portal.clock.now += LATER
    with pytest.raises(TokenUsed):  # the token is kept for the device whose creation it endorsed
        enrolment.enrol(token, new_device().request())
    result = enrolment.enrol(token, device.request())
    assert result.did == device.did and not result.repeated
    assert result.credential["credentialSubject"]["id"] == device.did  # issued at the clock, 11 min ahead
    assert stored(enrolment) == (["used"], [result.credential_id], [result.credential_id])
    again = enrolment.enrol(token, device.request())
    assert again.repeated and again.credential == result.credential


def test_an_abandoned_claim_reads_as_waiting_then_expired(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch progress and the token list show a claim as being enrolled only while it may be
    live; an abandoned one reads as issued (its device may complete it), then expired, and
    expire_tokens writes it so."""
    token = portal.token(ttl=timedelta(hours=1))
    die(portal.enrolment, monkeypatch, "before_issue")
    with pytest.raises(Died):
        portal.enrolment.enrol(token, new_device().request())
    enrolment = restarted(portal)
    hashes = [t.token_hash for t in enrolment.tokens()]
    assert enrolment.progress(hashes) == {"total": 1, "issued": 0, "claimed": 1, "used": 0, "expired": 0}
    assert [t.status for t in enrolment.tokens(status="claimed")] == ["claimed"]
    portal.clock.now += LATER
    assert enrolment.progress(hashes) == {"total": 1, "issued": 1, "claimed": 0, "used": 0, "expired": 0}
    assert enrolment.tokens(status="claimed") == []
    assert [t.status for t in enrolment.tokens(status="issued")] == ["issued"]
    assert enrolment.expire_tokens() == 0
    portal.clock.now += timedelta(hours=1)
    assert enrolment.progress(hashes)["expired"] == 1
    assert [t.status for t in enrolment.tokens(status="expired")] == ["expired"]
    assert enrolment.expire_tokens() == 1
    assert stored(enrolment)[0] == ["expired"]


def test_a_live_claim_is_not_taken_over_and_one_that_outlives_the_timeout_records_nothing(
    on_file: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an enrolment is under way in another process, the same device's retry is refused. An
    enrolment stalled past the claim timeout is taken over by the retry, which completes; when the
    stalled one resumes it records nothing and its credential is withdrawn."""
    portal = on_file
    device, token = new_device(), portal.token()
    stalled, resume = threading.Event(), threading.Event()
    first = portal.enrolment
    record = first._record_enrolled

    def slow(*args: Any, **kwargs: Any) -> Any:
        stalled.set()
        assert resume.wait(60)
        return record(*args, **kwargs)

    monkeypatch.setattr(first, "_record_enrolled", slow)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(first.enrol(token, device.request()))
        except TokenUsed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert stalled.wait(60)
        other = restarted(portal)
        with pytest.raises(TokenUsed):
            other.enrol(token, device.request())
        portal.clock.now += LATER
        result = other.enrol(token, device.request())
    finally:
        resume.set()
        thread.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], TokenUsed)
    assert stored(other) == (["used"], [result.credential_id], [result.credential_id])
    assert result.credential["credentialSubject"]["id"] == device.did  # issued at the clock, 11 min ahead


def test_two_retries_of_an_abandoned_claim_at_once_complete_it_once(
    on_file: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two retries of the same device racing for an abandoned claim: one takes it over and enrols;
    the other is refused (or, if it comes after, gets the same answer again). One device row, one
    credential."""
    portal = on_file
    device, token = new_device(), portal.token()
    die(portal.enrolment, monkeypatch, "after_issue")
    with pytest.raises(Died):
        portal.enrolment.enrol(token, device.request())
    portal.clock.now += LATER
    services = [restarted(portal), restarted(portal)]
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def retry(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = services[n].enrol(token, device.request())
        except TokenUsed as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=retry, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    enrolled = [o for o in outcomes if isinstance(o, EnrolmentResult)]
    assert len([o for o in enrolled if not o.repeated]) == 1
    assert all(isinstance(o, EnrolmentResult | TokenUsed) for o in outcomes)
    assert {o.credential_id for o in enrolled} == {enrolled[0].credential_id}
    assert stored(services[0]) == (["used"], [enrolled[0].credential_id], [enrolled[0].credential_id])


def test_a_batch_cut_short_is_completed_by_sending_it_again(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A factory batch whose process died after its creations committed and its credentials were
    issued: sent again once its claims are abandoned, it enrols every device, one credential each."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=3)]
    devices = [new_device() for _ in tokens]
    items = [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t is not None]
    die(portal.enrolment, monkeypatch, "after_issue")
    with pytest.raises(Died):
        portal.enrolment.enrol_many(items)
    assert stored(portal.enrolment)[:2] == (["claimed"] * 3, [])
    enrolment = restarted(portal)
    assert all(isinstance(r, TokenUsed) for r in enrolment.enrol_many(items))  # may be live yet
    portal.clock.now += LATER
    results = enrolment.enrol_many(items)
    assert [r.did for r in results if isinstance(r, EnrolmentResult)] == [d.did for d in devices]
    ids = sorted(r.credential_id for r in results if isinstance(r, EnrolmentResult))
    assert stored(enrolment) == (["used"] * 3, ids, ids)


def test_a_batch_renews_its_claims_so_they_never_look_abandoned(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long batch (each chunk taking six minutes here, the claim timeout being ten) renews its
    claims before each further chunk: at no point does a token it holds read as free."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 2)
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=6)]
    devices = [new_device() for _ in tokens]
    ledger = portal.enrolment.ledger
    submit, seen = ledger.submit, []

    def slow_submit(txns: Any) -> Any:
        portal.clock.now += timedelta(minutes=6)
        seen.append({t.status for t in portal.enrolment.tokens()})
        return submit(txns)

    monkeypatch.setattr(ledger, "submit", slow_submit)
    results = portal.enrolment.enrol_many(
        [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t]
    )
    assert all(isinstance(r, EnrolmentResult) for r in results)
    assert len(seen) == 3 and all("issued" not in statuses for statuses in seen)


def test_a_claim_left_by_an_earlier_version_is_recovered(portal: Portal) -> None:
    """A token claimed by a portal of an earlier version (no claim time, no claim id), whose process
    died after anchoring the DID and issuing a credential with a random id: the next portal times the
    claim from its start; once abandoned, the device completes the enrolment and the stray
    credential is withdrawn."""
    device, token = new_device(), portal.token()
    enrolment = portal.enrolment
    portal.client.submit_and_wait([enrolment._endorsed(device.txn)])
    [(_, stray)] = enrolment.issuer.issue_many(
        [PROFILE.claims(device.did)], types=[DEVICE_CREDENTIAL], now=portal.clock()
    )
    with enrolment.engine.begin() as connection:
        connection.execute(
            update(ProvisioningTokenRow).values(
                status="claimed", device_did=device.did, claimed_at=None, claim_id=None
            )
        )
    assert [t.status for t in enrolment.tokens(status="claimed")] == ["claimed"]  # no time: live
    later = restarted(portal)
    with pytest.raises(TokenUsed):
        later.enrol(token, device.request())
    portal.clock.now += LATER
    result = later.enrol(token, device.request())
    assert result.credential_id != stray.credential_id
    assert stored(later) == (["used"], [result.credential_id], [result.credential_id])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_token_table_of_an_earlier_version_gets_the_claim_columns(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """A database made by an earlier version has no claim columns: opening it adds them and keeps
    the rows."""
    url = old_database_url(tmp_path, request, database)
    engine = open_store(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE portal_provisioning_token"))
        connection.execute(
            text(
                "CREATE TABLE portal_provisioning_token (token_hash VARCHAR PRIMARY KEY, model VARCHAR NOT NULL,"
                " firmware VARCHAR NOT NULL, attributes VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,"
                " expires_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, device_did VARCHAR, used_at TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO portal_provisioning_token VALUES ('h', 'TH-1', '1.0', '{}', '2030-01-01 00:00:00',"
                " '2030-01-02 00:00:00', 'claimed', 'did:trellis:testnet:x', NULL)"
            )
        )
    engine.dispose()
    engine = open_store(url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("portal_provisioning_token")}
        assert {"claimed_at", "claim_id"} <= columns
        open_store(url).dispose()  # a second opening finds them there
        with Session(engine) as session:
            row = session.exec(
                select(ProvisioningTokenRow).where(col(ProvisioningTokenRow.token_hash) == "h")
            ).one()
        assert (row.status, row.device_did, row.claimed_at, row.claim_id) == (
            "claimed",
            "did:trellis:testnet:x",
            None,
            None,
        )
    finally:
        engine.dispose()

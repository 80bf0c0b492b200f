"""The credential of an enrolment whose process died, once its token expired: withdrawn when the token
is expired or when the device enrols with another token, never left on record for good.

A reviewer found ``expire_tokens`` dropping an abandoned claim's id, the only way to find the dead
enrolment's credential (its id derives from the token and the claim): it stayed on record, and a
re-enrolment with a new token left the device two credentials, one never delivered.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, select

from tests.web.support import old_database_url
from tests.web.test_enrolment import Portal, make_portal, new_device
from tests.web.test_enrolment_recovery import LATER, Died, die, restarted, stored
from web.enrolment import Enrolment
from web.enrolment_records import EnrolmentResult, ProvisioningTokenRow, TokenExpired, open_store

LIFETIME = timedelta(minutes=30)


@pytest.fixture(params=["memory", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory SQLite database, then on PostgreSQL."""
    url = "sqlite://" if request.param == "memory" else request.getfixturevalue("postgres_url")
    yield from make_portal(tmp_path / "instance", url)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


def died_after_issuing(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> tuple[Enrolment, Any, str]:
    """A device whose enrolment died after its credential was issued, its token's lifetime then over
    (and its claim abandoned): the restarted service, the device and the dead claim's credential id."""
    device, token = new_device(), portal.token(ttl=LIFETIME)
    die(portal.enrolment, monkeypatch, "after_issue")
    with pytest.raises(Died):
        portal.enrolment.enrol(token, device.request())
    monkeypatch.undo()
    enrolment = restarted(portal)
    [stray] = stored(enrolment)[2]
    portal.clock.now += LATER + LIFETIME
    with pytest.raises(TokenExpired):
        enrolment.enrol(token, device.request())
    return enrolment, device, stray


def claim_ids(enrolment: Enrolment) -> list[str | None]:
    with Session(enrolment.engine) as session:
        return [row.claim_id for row in session.exec(select(ProvisioningTokenRow)).all()]


def test_expiring_an_abandoned_claim_withdraws_its_credential(
    any_database: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``expire_tokens`` writes the token expired and withdraws the dead claim's credential (it used to
    drop the claim's id and leave the credential on record for good); the device's new token then
    enrols it with one credential on record."""
    portal = any_database
    enrolment, device, _ = died_after_issuing(portal, monkeypatch)
    assert enrolment.expire_tokens() == 1
    assert stored(enrolment) == (["expired"], [], []) and claim_ids(enrolment) == [None]
    result = enrolment.enrol(portal.token(), device.request())
    assert isinstance(result, EnrolmentResult)
    assert stored(enrolment) == (["expired", "used"], [result.credential_id], [result.credential_id])


def test_a_device_enrolling_with_a_new_token_withdraws_what_its_expired_claim_left(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token expired with the abandoned claim on it (``expire_tokens`` never ran): the device's
    enrolment with a new token gives up the dead claim and withdraws its credential (it used to leave
    the device two credentials, one never delivered)."""
    enrolment, device, stray = died_after_issuing(portal, monkeypatch)
    result = enrolment.enrol(portal.token(), device.request())
    tokens, devices, issued = stored(enrolment)
    assert devices == issued == [result.credential_id] and stray not in issued
    assert sorted(tokens) == ["issued", "used"]  # the first token: given up, reads as expired
    assert [t.status for t in enrolment.tokens()].count("expired") == 1
    assert None in claim_ids(enrolment)  # the dead claim given up


def test_a_withdrawal_that_failed_at_expiry_is_done_when_the_device_enrols(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The withdrawal fails when the token is expired: the claim's id stays on the token, and the
    device's enrolment with a new token withdraws the credential."""
    enrolment, device, stray = died_after_issuing(portal, monkeypatch)
    real = enrolment.issuer.withdraw_undelivered

    def broken(*_: Any) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(enrolment.issuer, "withdraw_undelivered", broken)
    assert enrolment.expire_tokens() == 1
    assert stored(enrolment)[2] == [stray] and claim_ids(enrolment) != [None]
    monkeypatch.setattr(enrolment.issuer, "withdraw_undelivered", real)
    result = enrolment.enrol(portal.token(), device.request())
    assert stored(enrolment) == (["expired", "used"], [result.credential_id], [result.credential_id])


def test_another_devices_expired_claim_is_left_alone(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device enrolling withdraws only what claims of its own DID left."""
    enrolment, _, stray = died_after_issuing(portal, monkeypatch)
    result = enrolment.enrol(portal.token(), new_device().request())
    assert sorted(stored(enrolment)[2]) == sorted([stray, result.credential_id])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_token_table_of_an_earlier_version_gets_the_device_index(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """The tokens are found by the DID they are reserved for: a table of an earlier version gets the
    index (once, however often it is opened)."""
    url = old_database_url(tmp_path, request, database)
    engine = open_store(url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_portal_provisioning_token_device_did"))
    engine.dispose()
    for _ in range(2):
        engine = open_store(url)
        try:
            names = {index["name"] for index in inspect(engine).get_indexes("portal_provisioning_token")}
            assert "ix_portal_provisioning_token_device_did" in names
        finally:
            engine.dispose()

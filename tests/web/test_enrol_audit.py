"""An enrolment is audited in the database transaction that records its device: it never stands
unaudited, whether the audit entry or anything after it fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import select

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.web.ledger_support import LedgerPortal, ledger_portal
from tests.web.support import audit_actions, db, portal
from wallet.enroll import enrolment_transaction
from wallet.storage import IssuedCredentialRow
from web import audit
from web.enrolment_records import DeviceProfile
from web.models import Role


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerPortal]:
    """A portal whose organisation is set up on a running node."""
    with ledger_portal(tmp_path) as made:
        made.set_up()
        made.app.config["PROPAGATE_EXCEPTIONS"] = False  # an unhandled error is a 500, as in production
        yield made


@pytest.fixture
def client(ledger: LedgerPortal) -> FlaskClient:
    """A client without cookies (API calls)."""
    return ledger.app.test_client()


@pytest.fixture
def app(ledger: LedgerPortal) -> Any:
    """The ledger-backed app (for the account fixtures)."""
    return ledger.app


def fail_audit_once(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """Make the first audit entry of ``action`` fail (the database refusing the insert)."""
    record, failed = audit.record, list[str]()

    def flaky(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == action and not failed:
            failed.append(name)
            raise RuntimeError("database is locked (audit insert)")
        return record(name, *args, **kwargs)

    monkeypatch.setattr(audit, "record", flaky)


def enrolled(ledger: LedgerPortal) -> tuple[set[str], set[str], int]:
    """The DIDs of the devices recorded, those audited as device.enrol, and the credentials on record."""
    enrolment = portal(ledger.app).services.enrolment
    with db(ledger.app) as session:
        credentials = len(session.exec(select(IssuedCredentialRow)).all())
    devices = {d.did for d in enrolment.devices()}
    return devices, {a[2] or "" for a in audit_actions(ledger.app) if a[1] == "device.enrol"}, credentials


def test_an_enrolment_whose_audit_entry_fails_is_not_recorded_and_the_retry_is_audited(
    ledger: LedgerPortal, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit insert fails: the device is not recorded either (its credential withdrawn, its token
    kept for it); the device's retry enrols it, audited once."""
    enrolment = portal(ledger.app).services.enrolment
    made = enrolment.create_tokens(DeviceProfile("TH-1", "1.0", {}))[0]
    txn = enrolment_transaction(ledger.client.genesis.network, Ed25519PrivateKey.generate()).to_json()
    body = {"token": made.token, "txn": txn}
    fail_audit_once(monkeypatch, "device.enrol")
    assert client.post("/api/v1/enrol", json=body).status_code == 500
    assert enrolled(ledger) == (set(), set(), 0)
    assert [t.status for t in enrolment.tokens()] == ["issued"]
    again = client.post("/api/v1/enrol", json=body)
    assert again.status_code == 201
    did = again.get_json()["did"]
    assert enrolled(ledger) == ({did}, {did}, 1)
    assert client.post("/api/v1/enrol", json=body).status_code == 201  # a repeat: not audited again
    assert [a for a in audit_actions(ledger.app) if a[1] == "device.enrol"] == [
        ("device", "device.enrol", did)
    ]


def test_a_batch_whose_audit_entry_fails_records_no_device_unaudited(
    ledger: LedgerPortal,
    client: FlaskClient,
    token_of: Callable[[Role], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's audit entries go in the transaction that records its chunk: when they fail, that
    chunk's devices are not recorded; sent again, the batch enrols and audits every device."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 2)
    api = {"Authorization": f"Bearer {token_of(Role.OPERATOR)}"}
    enrolment = portal(ledger.app).services.enrolment
    tokens = [t.token for t in enrolment.create_tokens(DeviceProfile("TH-1", "1.0", {}), count=4)]
    network = ledger.client.genesis.network
    items = [
        {"token": t, "txn": enrolment_transaction(network, Ed25519PrivateKey.generate()).to_json()}
        for t in tokens
    ]
    fail_audit_once(monkeypatch, "device.enrol")
    assert client.post("/api/v1/enrol/batch", json={"items": items}, headers=api).status_code == 500
    devices, audited, _ = enrolled(ledger)
    assert devices == audited
    again = client.post("/api/v1/enrol/batch", json={"items": items}, headers=api)
    assert again.status_code == 200
    dids = {r["did"] for r in again.get_json()["results"]}
    assert len(dids) == 4 and enrolled(ledger) == (dids, dids, 4)

"""A device's record stands on a ledger height and never goes back; a change asked for is always sent.

Against a real in-process ledger node (``make_portal``) and, for the lagging cases, a second node that
replays answers the real one gave earlier (certified, genuine, just behind), listed first: a portal
process that has seen nothing yet (a restart, another worker) asks it, and the up-to-date node is slow
to give its head (past ``highest_head``'s 2 s) or down. Such a node used to make the portal record a
suspension the ledger never made (answered 200 with no transaction) and take a recorded suspension
back to active on a device page view. A revocation is sent even when the proven state cannot be read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session

from did_registry.client import LedgerClient
from tests.web.support import old_database_url
from tests.web.test_device_status_recovery import events_into, settle, time_out_once
from tests.web.test_enrolment import PORTAL, Portal, make_portal, new_device
from web.device_status import StatusEvent
from web.devices_pages import ACTIONS
from web.enrolment import Enrolment
from web.enrolment_records import DeviceRow, EnrolmentResult, open_store
from web.organisation import LedgerUnreachable


class Lagging(httpx.BaseTransport):
    """The real node at ``real_url`` (its head slow to come, or the node down, on demand), and
    ``node-stale``: answers the real node gave when :meth:`capture` ran (its head and the proofs of
    some keys), unreachable for anything else."""

    def __init__(self, real: httpx.BaseTransport, real_url: str = "http://node-1") -> None:
        self.real = real
        self.real_url = real_url.rstrip("/")
        self.stale: dict[tuple[str, str, tuple[str, ...] | None], tuple[int, bytes]] = {}
        self.slow_head = 0.0
        self.down = False

    def capture(self, *key_lists: Sequence[str], single: Sequence[str] = ()) -> None:
        """Keep the real node's head and its proofs of each list of keys (and of each ``single`` key,
        read alone) as they are now."""
        requests: dict[tuple[str, str, tuple[str, ...] | None], httpx.Request] = {
            ("GET", "/blocks/head", None): httpx.Request("GET", f"{self.real_url}/blocks/head")
        }
        for key in single:
            url = f"{self.real_url}/proofs/state"
            requests["GET", "/proofs/state", (key,)] = httpx.Request("GET", url, params={"key": key})
        for keys in key_lists:
            url = f"{self.real_url}/proofs/state"
            requests["POST", "/proofs/state", tuple(keys)] = httpx.Request(
                "POST", url, json={"keys": list(keys)}
            )
        for asked, request in requests.items():
            answer = self.real.handle_request(request)
            try:
                self.stale[asked] = (answer.status_code, answer.read())
            finally:
                answer.close()

    def close(self) -> None:
        """Close the real node's transport."""
        self.real.close()

    @property
    def stale_height(self) -> int:
        height = json.loads(self.stale[("GET", "/blocks/head", None)][1])["block"]["header"]["height"]
        assert isinstance(height, int)
        return height

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer as ``node-stale`` or pass on to the real node."""
        if request.url.host == "node-stale":
            body = request.read()
            keys = tuple(json.loads(body).get("keys", [])) if body else None
            keys = keys or tuple(request.url.params.get_list("key")) or None
            hit = self.stale.get((request.method, request.url.path, keys))
            if hit is None:
                raise httpx.ConnectError("node-stale takes nothing else", request=request)
            return httpx.Response(hit[0], content=hit[1], headers={"content-type": "application/json"})
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/blocks/head" and self.slow_head:
            time.sleep(self.slow_head)
        return self.real.handle_request(request)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


@pytest.fixture(params=["memory", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory SQLite database, then on PostgreSQL."""
    url = "sqlite://" if request.param == "memory" else request.getfixturevalue("postgres_url")
    yield from make_portal(tmp_path / "instance", url)


def lagging(portal: Portal) -> Lagging:
    """The portal's client's transport, with a lagging node next to the real one."""
    router = Lagging(portal.transport)
    portal.client._http._transport._inner = router  # type: ignore[attr-defined]
    return router


def list_keys(portal: Portal) -> list[str]:
    """The state keys of the organisation's first pair of lists, as the portal reads them."""
    issuer = portal.enrolment.issuer.did
    return [f"status:{issuer}:1-revocation", f"status:{issuer}:1-suspension"]


def capture_before_the_next_send(portal: Portal, router: Lagging) -> None:
    """The lagging node keeps the state as it is just before the next status change is sent."""
    enrolment = portal.enrolment
    real = enrolment._send

    def send(*args: Any, **kwargs: Any) -> Any:
        router.capture(list_keys(portal))
        del enrolment._send
        return real(*args, **kwargs)

    enrolment._send = send  # type: ignore[method-assign]


def fresh_process(portal: Portal, router: Lagging) -> Enrolment:
    """The enrolment service of another portal process on the same database, which has seen no block
    yet and asks the lagging node first."""
    client = LedgerClient(["http://node-1"], portal.client.genesis, transport=router)
    enrolment = Enrolment(
        portal.organisation, portal.enrolment.engine, ledger=client, portal_url=PORTAL, clock=portal.clock
    )
    client.nodes = ["http://node-stale", "http://node-1"]
    return enrolment


def stored(portal: Portal, device: EnrolmentResult) -> tuple[str, int | None]:
    """The device's recorded status and the ledger height it stands on."""
    with Session(portal.enrolment.engine) as session:
        row = session.get(DeviceRow, device.did)
    assert row is not None
    return row.status, row.status_height


# -- a lagging node ------------------------------------------------------------------------------
@pytest.mark.parametrize("up_to_date_node", ["slow_head", "down"])
def test_a_suspension_is_never_recorded_from_a_lagging_node_without_its_transaction(
    portal: Portal, up_to_date_node: str
) -> None:
    """Suspended, then reinstated (at height h): a node that has not got block h shows the device
    suspended. A fresh process suspending it again sends the suspension (it used to record it as
    'found on the ledger' with no transaction: 200, txn null, the device still accepted by verifiers);
    with the up-to-date node down, no node can show the state as of h, and the change is refused 503
    with nothing changed."""
    router = lagging(portal)
    device = portal.enrolment.enrol(portal.token(), new_device().request())
    portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    capture_before_the_next_send(portal, router)
    change = portal.enrolment.change("reinstate", [device.did], allowed=ACTIONS["reinstate"])
    reinstated = change.txns["1-suspension"]["height"]
    assert router.stale_height < reinstated and stored(portal, device)[0] == "active"

    other = fresh_process(portal, router)
    router.down = up_to_date_node == "down"
    router.slow_head = 2.5 if up_to_date_node == "slow_head" else 0.0
    portal.transport.posts.clear()
    events: list[StatusEvent] = []
    try:
        if up_to_date_node == "down":
            with pytest.raises(LedgerUnreachable):
                other.change("suspend", [device.did], allowed=ACTIONS["suspend"], record=events_into(events))
        else:
            change = other.change(
                "suspend", [device.did], allowed=ACTIONS["suspend"], record=events_into(events)
            )
    finally:
        router.down, router.slow_head = False, 0.0
    if up_to_date_node == "down":
        assert portal.transport.posts == [] and events == []
        assert portal.bit("", "1-suspension", device.status_index) == 0
        assert stored(portal, device) == ("active", reinstated)  # the height the reinstatement committed at
        return
    assert portal.transport.posts == [1]
    [status] = change.txns.values()
    [event] = events
    assert (event.action, event.txn, event.requested, event.found) == ("suspend", status["id"], True, None)
    assert portal.bit("", "1-suspension", device.status_index) == 1  # verifiers now refuse it
    assert stored(portal, device) == ("suspended", status["height"])


def test_reconciliation_never_takes_a_record_back_to_a_lagging_nodes_state(portal: Portal) -> None:
    """What a device page runs (``reconcile``), in a fresh process whose only answering node is behind
    the block of the recorded suspension: the record stays suspended (it used to go back to active,
    audited by 'portal'); once the up-to-date node answers, the record is found in line."""
    router = lagging(portal)
    device = portal.enrolment.enrol(portal.token(), new_device().request())
    capture_before_the_next_send(portal, router)
    change = portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    suspended = change.txns["1-suspension"]["height"]
    assert router.stale_height < suspended and stored(portal, device)[0] == "suspended"
    other = fresh_process(portal, router)
    events: list[StatusEvent] = []
    router.down = True
    try:
        with pytest.raises(LedgerUnreachable):
            other.reconcile([device.did], record=events_into(events))
        with pytest.raises(LedgerUnreachable):  # the refusal path reads the same way
            other.change("suspend", [device.did], allowed=ACTIONS["suspend"], record=events_into(events))
    finally:
        router.down = False
    assert events == [] and stored(portal, device)[0] == "suspended"
    assert stored(portal, device) == ("suspended", suspended)  # the height the suspension committed at
    [record] = other.reconcile([device.did], record=events_into(events))
    assert record.status == "suspended" and events == []


def test_a_reconciliation_read_before_a_later_change_was_recorded_does_not_undo_it(
    any_database: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes: one reads the ledger to reconcile (the device suspended there by a suspension whose
    answer timed out); meanwhile the other reinstates the device and records it, at a higher height.
    The first one's record, from the older read, is left out (it used to put the device back to
    suspended in the portal while the ledger says active)."""
    portal = any_database
    device = portal.enrolment.enrol(portal.token(), new_device().request())
    time_out_once(portal, monkeypatch)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    settle(portal, "1-suspension", device.status_index, 1)
    monkeypatch.undo()
    reader = Enrolment(
        portal.organisation,
        portal.enrolment.engine,
        ledger=portal.client,
        portal_url=PORTAL,
        clock=portal.clock,
    )
    real = reader._proven
    reinstated: list[int] = []

    def read_then_another_process_reinstates(rows: Any) -> Any:
        proven = real(rows)
        change = portal.enrolment.change("reinstate", [device.did], allowed=ACTIONS["reinstate"])
        reinstated.append(change.txns["1-suspension"]["height"])
        return proven

    monkeypatch.setattr(reader, "_proven", read_then_another_process_reinstates)
    events: list[StatusEvent] = []
    [record] = reader.reconcile([device.did], record=events_into(events))
    assert record.status == "active" and events == []
    assert stored(portal, device) == ("active", reinstated[0])
    assert portal.bit("", "1-suspension", device.status_index) == 0
    with Session(portal.enrolment.engine) as session:  # the issuer's bit stayed in line too
        assert not portal.enrolment.issuer.statuses([device.credential_id])[0].suspended
        assert session.get(DeviceRow, device.did) is not None


# -- a revocation when the proven state cannot be read -------------------------------------------
def test_a_revocation_is_sent_when_the_proven_state_cannot_be_read(portal: Portal) -> None:
    """The node's batch proofs fail (503): a revocation is sent all the same, checked against the
    portal's record, and recorded on its commit (it used to be refused 503); a suspension is refused
    503 with nothing sent."""
    first, second = (portal.enrolment.enrol(portal.token(), new_device().request()) for _ in range(2))
    real = portal.transport.handle_request

    def no_batch_proofs(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/proofs/state":
            return httpx.Response(503, json={"error": "busy"})
        return real(request)

    portal.transport.handle_request = no_batch_proofs  # type: ignore[method-assign]
    portal.transport.posts.clear()
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.change("suspend", [second.did], allowed=ACTIONS["suspend"])
    assert portal.transport.posts == []
    events: list[StatusEvent] = []
    change = portal.enrolment.change(
        "revoke", [first.did], allowed=ACTIONS["revoke"], record=events_into(events)
    )
    del portal.transport.handle_request
    [status] = change.txns.values()
    assert [d.status for d in change.devices] == ["revoked"] and portal.transport.posts == [1]
    assert [(e.action, e.txn, e.requested) for e in events] == [("revoke", status["id"], True)]
    assert stored(portal, first) == ("revoked", status["height"])
    assert portal.bit("", "1-revocation", first.status_index) == 1
    assert stored(portal, second) == ("active", None)


# -- the column ------------------------------------------------------------------------------------
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_device_table_of_an_earlier_version_gets_the_status_height_column(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """A database made by an earlier version has no ``status_height``: opening it adds the column
    (empty) and keeps the rows."""
    url = old_database_url(tmp_path, request, database)
    engine = open_store(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE portal_device"))
        connection.execute(
            text(
                "CREATE TABLE portal_device (did VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, firmware VARCHAR"
                " NOT NULL, attributes VARCHAR NOT NULL, token_hash VARCHAR NOT NULL UNIQUE, credential_id"
                " VARCHAR NOT NULL UNIQUE, credential VARCHAR NOT NULL, status_index INTEGER NOT NULL,"
                " revocation_list VARCHAR NOT NULL, suspension_list VARCHAR NOT NULL, status VARCHAR NOT"
                " NULL, enrolled_at TIMESTAMP NOT NULL)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO portal_device VALUES ('did:trellis:testnet:x', 'TH-1', '1.0', '{}', 'h', 'c',"
                " '{}', 7, 'r', 's', 'suspended', '2030-01-01 00:00:00')"
            )
        )
    engine.dispose()
    engine = open_store(url)
    try:
        assert "status_height" in {c["name"] for c in inspect(engine).get_columns("portal_device")}
        open_store(url).dispose()  # a second opening finds it there
        with Session(engine) as session:
            row = session.get(DeviceRow, "did:trellis:testnet:x")
            assert row is not None and (row.status, row.status_height) == ("suspended", None)
            row.status_height = 2**40  # heights beyond 32 bits fit
            session.add(row)
            session.commit()
            session.refresh(row)
            assert row.status_height == 2**40
    finally:
        engine.dispose()

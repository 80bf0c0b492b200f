"""Enrolment against a real in-process ledger node: tokens, endorsed DIDs, credentials, status bits."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select

from did_registry.client import LedgerClient, LedgerUnavailable, TrellisResolver
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multibase import encode_base58btc
from did_registry.identity.status_list import BitstringStatusList
from did_registry.ledger.txn import Transaction
from tests.did_registry.node.conftest import make_node
from tests.web.support import fail_third_submit
from wallet.credential import verify_credential
from wallet.enroll import enrolment_transaction
from wallet.errors import CredentialStatusRefused
from wallet.keystore import KDF_TESTING
from wallet.resolver import ResolverKeyLookup
from wallet.status import LedgerStatusCheck
from wallet.storage import IssuedCredentialRow
from web.enrolment import Enrolment
from web.enrolment_records import (
    DeviceFilter,
    DeviceProfile,
    DeviceRow,
    DeviceStateConflict,
    EnrolmentResult,
    InvalidEnrolmentRequest,
    ProvisioningTokenRow,
    TokenExpired,
    TokenUsed,
    UnknownDevice,
    UnknownToken,
    open_store,
)
from web.organisation import LedgerRefused, LedgerUnreachable, Organisation, Signer

PORTAL = "https://portal.example"
PROFILE = DeviceProfile("TH-1", "2.4.1", {"site": "depot-7"})


class Clock:
    """A settable clock for token expiry."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class CountingTransport(httpx.BaseTransport):
    """A WSGI transport to the node that counts the transaction submissions it carries."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.WSGITransport(app=app)
        self.posts: list[int] = []  # how many transactions each POST /txns carried

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Count POST /txns, then pass the request on."""
        if request.method == "POST" and request.url.path == "/txns":
            body = json.loads(request.read())
            self.posts.append(len(body) if isinstance(body, list) else 1)
        return self.inner.handle_request(request)


@dataclass
class Portal:
    """An organisation set up on a running node, its enrolment service and the ledger client."""

    enrolment: Enrolment
    client: LedgerClient
    transport: CountingTransport
    clock: Clock

    @property
    def organisation(self) -> Organisation:
        """The portal's organisation."""
        return self.enrolment.organisation

    def token(self, **options: Any) -> str:
        """A fresh provisioning token."""
        made = self.enrolment.create_tokens(PROFILE, **options)[0]
        assert made.token is not None
        return made.token

    def height(self) -> int:
        """The ledger's height."""
        return self.client.head().height

    def counts(self) -> tuple[int, int, int, int]:
        """Rows of devices, used and claimed tokens, and the ledger height: what must not change."""
        with Session(self.enrolment.engine) as session:
            devices = session.exec(select(func.count()).select_from(DeviceRow)).one()
            used = session.exec(
                select(func.count()).where(ProvisioningTokenRow.status.in_(["used", "claimed"]))  # type: ignore[attr-defined]
            ).one()
            tokens = session.exec(select(func.count()).select_from(ProvisioningTokenRow)).one()
        return devices, used, tokens, self.height()

    def verify(self, credential: dict[str, Any]) -> Any:
        """Verify a credential with keys resolved from the ledger and its status read from the ledger."""
        return verify_credential(
            credential,
            ResolverKeyLookup(TrellisResolver(self.client)),
            status_check=LedgerStatusCheck(lambda key: self.client.prove(key)[0]),
        )

    def bit(self, did: str, list_name: str, index: int) -> int:
        """A bit of one of the organisation's status lists, as the ledger proves it."""
        value, _ = self.client.prove(f"status:{self.organisation.did}:{list_name}")
        return BitstringStatusList.from_bytes(base64.urlsafe_b64decode(value["bits"])).get(index)


def make_portal(folder: Path, database: str = "sqlite://") -> Generator[Portal, None, None]:
    """A node, a set-up organisation and an enrolment service (stopped afterwards)."""
    node = make_node(block_interval=0.005)
    node.service.start()
    transport = CountingTransport(node.app)
    client = LedgerClient("http://node-1", node.service.app.genesis, transport=transport)
    organisation = Organisation.in_instance(folder, "portal pass phrase", params=KDF_TESTING)
    trustee = node.trustee
    try:
        assert organisation.setup(client, Signer(trustee.did, trustee.key, trustee.method)).complete
        clock = Clock()
        store = open_store(database)
        enrolment = Enrolment(organisation, store, ledger=client, portal_url=PORTAL, clock=clock)
        transport.posts.clear()
        try:
            yield Portal(enrolment, client, transport, clock)
        finally:
            store.dispose()  # its pooled connections closed here, not left to the collector
    finally:
        client.close()
        node.service.stop()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


@dataclass
class Device:
    """A device's key (kept here, on the device) and its self-signed did.create."""

    key: Ed25519PrivateKey
    txn: Transaction

    @property
    def did(self) -> str:
        """The device's DID."""
        return self.txn.submitter

    def request(self) -> dict[str, Any]:
        """What the device sends: its transaction as JSON."""
        return self.txn.to_json()


def new_device(network: str = "testnet") -> Device:
    """A device that made its own key and signed its DID creation."""
    key = Ed25519PrivateKey.generate()
    return Device(key, enrolment_transaction(network, key))


# -- tokens ----------------------------------------------------------------------------------
def test_tokens_are_stored_only_as_hashes(portal: Portal) -> None:
    """A token's value appears nowhere in the database; its SHA-256 does."""
    made = portal.enrolment.create_tokens(PROFILE, count=3)
    with Session(portal.enrolment.engine) as session:
        rows = session.exec(select(ProvisioningTokenRow)).all()
    stored = json.dumps([row.model_dump(mode="json") for row in rows])
    for token in made:
        assert token.token is not None and len(base64.urlsafe_b64decode(token.token + "=")) == 32
        assert token.token not in stored and token.token_hash in stored
    assert {t.status for t in portal.enrolment.tokens()} == {"issued"}


def test_token_payload_names_portal_network_and_nodes(portal: Portal) -> None:
    """The QR payload is compact JSON with the documented members, in order."""
    made = portal.enrolment.create_tokens(PROFILE)[0]
    assert made.payload is not None
    text = made.payload.encode()
    assert " " not in text
    genesis = portal.client.genesis
    assert json.loads(text) == {
        "v": 1,
        "type": "trellis-enrolment",
        "portal": PORTAL,
        "token": made.token,
        "network": genesis.network,
        "genesis": genesis.hash.hex(),
        "nodes": ["http://node-1"],
    }
    assert list(json.loads(text)) == ["v", "type", "portal", "token", "network", "genesis", "nodes"]


# -- one device ------------------------------------------------------------------------------
def test_enrol_one_device_end_to_end(portal: Portal) -> None:
    """The DID is on the ledger endorsed by the organisation; the credential verifies with ledger status."""
    device, token = new_device(), portal.token()
    result = portal.enrolment.enrol(token, device.request())
    assert result.did == device.did
    record, _ = portal.client.resolve_record(device.did)
    assert record is not None and record["endorser"] == portal.organisation.did
    assert record["document"] == initial_document(device.did, device.key.public_key).to_json()
    verified = portal.verify(result.credential)
    assert verified.issuer == portal.organisation.did
    assert verified.subject_ids == (device.did,)
    assert "DeviceCredential" in verified.types
    assert verified.subject["model"] == "TH-1" and verified.subject["site"] == "depot-7"
    purposes = {entry["statusPurpose"] for entry in result.credential["credentialStatus"]}
    assert purposes == {"revocation", "suspension"}
    assert [t.status for t in portal.enrolment.tokens()] == ["used"]
    listed = portal.enrolment.devices()
    assert [(d.did, d.status, d.credential_id) for d in listed] == [
        (device.did, "active", result.credential_id)
    ]


def test_the_private_key_never_leaves_the_device(portal: Portal) -> None:
    """Neither the request nor anything the portal stores holds the device's private key."""
    device = new_device()
    request = json.dumps(device.request())
    portal.enrolment.enrol(portal.token(), device.request())
    seed = device.key.seed
    with Session(portal.enrolment.engine) as session:
        stored = json.dumps([row.model_dump(mode="json") for row in session.exec(select(DeviceRow)).all()])
    for text in (request, stored):
        for form in (seed.hex(), encode_base58btc(seed), base64.urlsafe_b64encode(seed).decode().rstrip("=")):
            assert form not in text


# -- refusals change nothing -----------------------------------------------------------------
def test_reused_token_is_refused_and_changes_nothing(portal: Portal) -> None:
    """A second enrolment with a used token raises TokenUsed; rows and ledger height stay."""
    token = portal.token()
    portal.enrolment.enrol(token, new_device().request())
    before = portal.counts()
    other = new_device()
    with pytest.raises(TokenUsed):
        portal.enrolment.enrol(token, other.request())
    assert portal.counts() == before
    assert portal.client.resolve_record(other.did)[0] is None


def test_the_same_device_repeating_its_enrolment_gets_the_same_answer(portal: Portal) -> None:
    """A lost answer is recovered by sending the same request again; nothing is written twice."""
    device, token = new_device(), portal.token()
    first = portal.enrolment.enrol(token, device.request())
    before = portal.counts()
    again = portal.enrolment.enrol(token, device.request())
    assert (again.did, again.credential, again.status_index) == (
        first.did,
        first.credential,
        first.status_index,
    )
    assert portal.counts() == before


def test_a_failure_after_the_ledger_write_can_be_retried(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If issuing fails after the DID was anchored, the token is released and the same request succeeds."""
    device, token = new_device(), portal.token()
    real = portal.enrolment._complete

    def broken(*_: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(portal.enrolment, "_complete", broken)
    with pytest.raises(RuntimeError):
        portal.enrolment.enrol(token, device.request())
    assert portal.client.resolve_record(device.did)[0] is not None
    assert [t.status for t in portal.enrolment.tokens()] == ["issued"]
    monkeypatch.setattr(portal.enrolment, "_complete", real)
    result = portal.enrolment.enrol(token, device.request())
    portal.verify(result.credential)


def test_credentials_issued_before_a_failure_are_not_left_behind(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If publishing the status lists fails after the credential was issued, that credential is
    withdrawn (no device holds it); the retry issues one, and only one stays on record."""
    device, token = new_device(), portal.token()
    real = portal.organisation.ensure_status_lists

    def unreachable(*_: Any, **__: Any) -> None:
        raise LedgerUnavailable("no node answered")

    monkeypatch.setattr(portal.organisation, "ensure_status_lists", unreachable)
    with pytest.raises(LedgerUnavailable):
        portal.enrolment.enrol(token, device.request())
    with Session(portal.enrolment.engine) as session:
        assert session.exec(select(IssuedCredentialRow)).all() == []
    monkeypatch.setattr(portal.organisation, "ensure_status_lists", real)
    result = portal.enrolment.enrol(token, device.request())
    with Session(portal.enrolment.engine) as session:
        assert [row.id for row in session.exec(select(IssuedCredentialRow)).all()] == [result.credential_id]


def test_expired_token_is_refused_and_changes_nothing(portal: Portal) -> None:
    """A token past its lifetime raises TokenExpired and nothing changes."""
    token = portal.token(ttl=timedelta(minutes=5))
    portal.clock.now += timedelta(minutes=5, seconds=1)
    before = portal.counts()
    device = new_device()
    with pytest.raises(TokenExpired):
        portal.enrolment.enrol(token, device.request())
    assert portal.counts() == before
    assert portal.client.resolve_record(device.did)[0] is None
    assert [t.status for t in portal.enrolment.tokens()] == ["expired"]
    assert portal.enrolment.expire_tokens() == 1


def test_forged_token_is_refused_and_changes_nothing(portal: Portal) -> None:
    """A token that was never issued raises UnknownToken and nothing changes."""
    portal.token()
    before = portal.counts()
    forged = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    with pytest.raises(UnknownToken):
        portal.enrolment.enrol(forged, new_device().request())
    assert portal.counts() == before


@pytest.mark.parametrize(
    "tamper",
    [
        "other_network",
        "wrong_key",
        "extra_signature",
        "not_did_create",
        "foreign_document",
        "not_json_txn",
    ],
)
def test_a_transaction_that_proves_no_key_is_refused(portal: Portal, tamper: str) -> None:
    """The device's transaction must be its own did.create of this network, signed by its own key."""
    device, token = new_device(), portal.token()
    txn_json: Any
    if tamper == "other_network":
        txn_json = new_device("othernet").request()
    elif tamper == "wrong_key":
        txn_json = (
            Transaction.from_json(device.txn.unsigned_json())
            .signed(Ed25519PrivateKey.generate(), f"{device.did}#key-1")
            .to_json()
        )
    elif tamper == "extra_signature":
        txn_json = device.txn.signed(Ed25519PrivateKey.generate(), "did:trellis:testnet:x#key-1").to_json()
    elif tamper == "not_did_create":
        txn = Transaction.build("did.deactivate", network="testnet", submitter=device.did, nonce=1, body={})
        txn_json = txn.signed(device.key, f"{device.did}#key-1").to_json()
    elif tamper == "foreign_document":
        other = Ed25519PrivateKey.generate()
        other_did = str(trellis_did("testnet", other.public_key))
        body = {"document": initial_document(other_did, other.public_key).to_json()}
        txn = Transaction.build("did.create", network="testnet", submitter=device.did, nonce=1, body=body)
        txn_json = txn.signed(device.key, f"{device.did}#key-1").to_json()
    else:
        txn_json = "did.create please"
    before = portal.counts()
    with pytest.raises(InvalidEnrolmentRequest):
        portal.enrolment.enrol(token, txn_json)
    assert portal.counts() == before
    assert [t.status for t in portal.enrolment.tokens()] == ["issued"]


def test_a_ledger_refusal_releases_the_token(portal: Portal) -> None:
    """When the ledger refuses the creation, the token is issued again and no device is recorded."""
    device, token = new_device(), portal.token()
    me = portal.organisation.signer
    clash = Transaction.build(  # the same DID created first by another transaction
        "did.create", network="testnet", submitter=device.did, nonce=2, body=device.txn.body
    )
    portal.client.submit_and_wait(clash.signed(device.key, f"{device.did}#key-1").signed(me.key, me.method))
    with pytest.raises(LedgerRefused):
        portal.enrolment.enrol(token, device.request())
    assert [t.status for t in portal.enrolment.tokens()] == ["issued"]
    assert portal.enrolment.devices() == []


def test_an_enrolled_device_cannot_enrol_again(portal: Portal) -> None:
    """The same device with a second token is refused before anything changes."""
    device = new_device()
    portal.enrolment.enrol(portal.token(), device.request())
    token = portal.token()
    before = portal.counts()
    with pytest.raises(InvalidEnrolmentRequest):
        portal.enrolment.enrol(token, device.request())
    assert portal.counts() == before


def test_concurrent_use_of_one_token_lets_exactly_one_enrol(tmp_path: Path) -> None:
    """Two enrolments racing with one token: one succeeds, the other gets TokenUsed."""
    for portal in make_portal(tmp_path / "instance", f"sqlite:///{tmp_path / 'portal.db'}"):
        token = portal.token()
        devices = [new_device(), new_device()]
        barrier = threading.Barrier(2)
        outcomes: list[object] = [None, None]

        def run(n: int, portal: Portal = portal) -> None:
            barrier.wait()  # noqa: B023 (used before the loop moves on: the threads are joined)
            try:
                outcomes[n] = portal.enrolment.enrol(token, devices[n].request())  # noqa: B023
            except TokenUsed as exc:
                outcomes[n] = exc  # noqa: B023

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        winners = [o for o in outcomes if isinstance(o, EnrolmentResult)]
        losers = [o for o in outcomes if isinstance(o, TokenUsed)]
        assert len(winners) == 1 and len(losers) == 1
        assert [d.did for d in portal.enrolment.devices()] == [winners[0].did]
        loser = next(d for d in devices if d.did != winners[0].did)
        assert portal.client.resolve_record(loser.did)[0] is None


def test_concurrent_batches_claiming_the_same_tokens_each_win_some_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two factory batches claiming the same 300 tokens in opposite orders at once, on PostgreSQL:
    no deadlock, and every token is won by exactly one of them, for its device."""
    portals = make_portal(tmp_path / "instance", postgres_url)
    portal = next(portals)
    try:
        tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=300)]
        hashes = [hashlib.sha256(t.encode()).hexdigest() for t in tokens if t is not None]
        claims = [[(h, f"did:example:{side}-{n}") for n, h in enumerate(hashes)] for side in ("a", "b")]
        claims[1].reverse()
        start = threading.Barrier(2)
        won: list[list[bool]] = [[], []]
        errors: list[BaseException] = []

        def claim(side: int) -> None:
            start.wait()
            try:
                won[side] = portal.enrolment._claim_many(claims[side])
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(side,)) for side in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        by_a = dict(zip(hashes, won[0], strict=True))
        by_b = dict(zip(reversed(hashes), won[1], strict=True))
        assert all(by_a[h] != by_b[h] for h in hashes)
        claimed = {t.token_hash: t.device_did for t in portal.enrolment.tokens(status="claimed", limit=1000)}
        assert claimed == {h: f"did:example:{'a' if by_a[h] else 'b'}-{n}" for n, h in enumerate(hashes)}
    finally:
        portals.close()


# -- bulk --------------------------------------------------------------------------------------
def test_bulk_enrolment_of_200_devices_in_one_batched_write(portal: Portal) -> None:
    """200 devices are anchored with one POST /txns of 200 did.create and all get credentials."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=200)]
    devices = [new_device() for _ in tokens]
    results = portal.enrolment.enrol_many(
        [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t is not None]
    )
    assert all(isinstance(r, EnrolmentResult) for r in results)
    assert portal.transport.posts == [200]
    assert [r.did for r in results if isinstance(r, EnrolmentResult)] == [d.did for d in devices]
    resolved = portal.client.resolve_many([d.did for d in devices])
    assert all(r.did_document is not None for r in resolved)
    indices = {r.status_index for r in results if isinstance(r, EnrolmentResult)}
    assert len(indices) == 200
    assert len(portal.enrolment.devices(DeviceFilter(limit=1000))) == 200
    assert portal.enrolment.tokens(status="issued") == []
    first = results[0]
    assert isinstance(first, EnrolmentResult)
    portal.verify(first.credential)


def test_bulk_enrolment_reports_bad_items_and_enrols_the_rest(portal: Portal) -> None:
    """A used token or a bad transaction fails its own item only."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=3)]
    assert None not in tokens
    devices = [new_device() for _ in range(4)]
    items = [
        (tokens[0], devices[0].request()),
        (tokens[0], devices[1].request()),  # the token again
        (tokens[1], new_device("othernet").request()),
        (tokens[2], devices[3].request()),
    ]
    results = portal.enrolment.enrol_many(items)  # type: ignore[arg-type]
    assert isinstance(results[0], EnrolmentResult) and isinstance(results[3], EnrolmentResult)
    assert isinstance(results[1], TokenUsed)
    assert isinstance(results[2], InvalidEnrolmentRequest)
    assert {t.status for t in portal.enrolment.tokens()} == {"used", "issued"}
    assert len(portal.enrolment.tokens(status="issued")) == 1


def test_bulk_enrolment_in_chunks_overlaps_the_ledger_and_survives_a_refusal(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks go to the ledger one after another (the next is sent before the previous one's
    credentials are issued); a creation the ledger refuses at the door fails its own item only,
    its chunk is sent again without it, and its token is free again."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 3)
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=8)]
    devices = [new_device() for _ in tokens]
    taken = devices[4]  # its DID is on the ledger already, created outside the portal (another txn)
    clash = Transaction.build(
        "did.create", network="testnet", submitter=taken.did, nonce=2, body=taken.txn.body
    )
    portal.client.submit_and_wait([portal.enrolment._endorsed(clash.signed(taken.key, f"{taken.did}#key-1"))])
    issued: list[int] = []
    complete = portal.enrolment._complete

    def watched(anchored: Any, *rest: Any) -> Any:
        issued.append(len(portal.transport.posts))
        return complete(anchored, *rest)

    monkeypatch.setattr(portal.enrolment, "_complete", watched)
    portal.transport.posts.clear()
    results = portal.enrolment.enrol_many(
        [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t is not None]
    )
    assert isinstance(results[4], LedgerRefused)
    assert all(isinstance(r, EnrolmentResult) for n, r in enumerate(results) if n != 4)
    assert portal.transport.posts == [3, 3, 2, 2]  # the middle chunk again, without the refused one
    # the credentials of chunk k are issued once chunk k + 1 is with the ledger (its two posts)
    assert issued == [3, 4, 4]
    assert len(portal.enrolment.devices(DeviceFilter(limit=100))) == 7
    assert len(portal.enrolment.tokens(status="issued")) == 1


def test_a_batch_failing_midway_keeps_the_tokens_of_creations_sent_for_their_devices(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a batch fails after some creations reached the ledger, their tokens are not free for any
    device: only the device that signed the creation enrols with its token again (and does)."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 2)
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=6)]
    devices = [new_device() for _ in tokens]
    submit = fail_third_submit(monkeypatch, portal.enrolment.ledger)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.enrol_many([(t, d.request()) for t, d in zip(tokens, devices, strict=True)])
    monkeypatch.setattr(portal.enrolment.ledger, "submit", submit)
    sent = [(t, d) for t, d in zip(tokens[:4], devices[:4], strict=True)]
    anchored = [(t, d) for t, d in sent if portal.client.resolve_record(d.did)[0] is not None]
    assert anchored  # the first chunks' creations are on the ledger
    for token, _ in anchored:
        with pytest.raises(TokenUsed):
            portal.enrolment.enrol(token, new_device().request())  # another device: refused
    for token, device in anchored:
        assert portal.enrolment.enrol(token, device.request()).did == device.did
    assert portal.enrolment.enrol(tokens[5], devices[5].request()).did == devices[5].did  # never sent: free


def test_a_chunk_whose_answer_is_lost_keeps_its_tokens_for_their_devices(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk the ledger admitted but whose answer was lost counts as sent: when the batch then
    fails, its tokens stay reserved; another device cannot take them."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 2)
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=6)]
    devices = [new_device() for _ in tokens]
    submit = fail_third_submit(monkeypatch, portal.enrolment.ledger, admitted=True)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.enrol_many([(t, d.request()) for t, d in zip(tokens, devices, strict=True)])
    monkeypatch.setattr(portal.enrolment.ledger, "submit", submit)
    with pytest.raises(TokenUsed):
        portal.enrolment.enrol(tokens[4], new_device().request())
    assert portal.enrolment.enrol(tokens[4], devices[4].request()).did == devices[4].did


def test_a_batch_retried_after_its_answer_was_lost_enrols_its_devices(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that lost the answer to a batch whose creations committed sends it again: the
    creations already on the ledger are recognised as its own and completed, not refused."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=3)]
    devices = [new_device() for _ in tokens]
    real = portal.enrolment._complete

    def broken(*_: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(portal.enrolment, "_complete", broken)
    items = [(t, d.request()) for t, d in zip(tokens, devices, strict=True)]
    with pytest.raises(RuntimeError):
        portal.enrolment.enrol_many(items)
    monkeypatch.setattr(portal.enrolment, "_complete", real)
    results = portal.enrolment.enrol_many(items)
    assert [r.did for r in results if isinstance(r, EnrolmentResult)] == [d.did for d in devices]


# -- status ------------------------------------------------------------------------------------
def test_suspend_reinstate_and_revoke_flip_bits_on_the_ledger(portal: Portal) -> None:
    """Suspension sets, reinstatement clears, revocation sets the device's bits; verification follows."""
    result = portal.enrolment.enrol(portal.token(), new_device().request())
    did, index = result.did, result.status_index
    assert (portal.bit(did, "1-suspension", index), portal.bit(did, "1-revocation", index)) == (0, 0)
    assert [d.status for d in portal.enrolment.suspend(did)] == ["suspended"]
    assert portal.bit(did, "1-suspension", index) == 1
    with pytest.raises(CredentialStatusRefused):
        portal.verify(result.credential)
    assert [d.status for d in portal.enrolment.reinstate(did)] == ["active"]
    assert portal.bit(did, "1-suspension", index) == 0
    portal.verify(result.credential)
    assert [d.status for d in portal.enrolment.revoke(did)] == ["revoked"]
    assert portal.bit(did, "1-revocation", index) == 1
    with pytest.raises(CredentialStatusRefused):
        portal.verify(result.credential)
    height = portal.height()
    with pytest.raises(DeviceStateConflict):
        portal.enrolment.reinstate(did)
    assert portal.height() == height
    assert portal.enrolment.devices(DeviceFilter(status="revoked"))[0].did == did


def test_many_devices_are_suspended_with_one_transaction(portal: Portal) -> None:
    """Suspending several devices writes one status_list.update for their list."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=5)]
    results = portal.enrolment.enrol_many([(t, new_device().request()) for t in tokens if t is not None])
    dids = [r.did for r in results if isinstance(r, EnrolmentResult)]
    portal.transport.posts.clear()
    portal.enrolment.suspend(*dids)
    assert portal.transport.posts == [1]
    assert all(portal.bit(d, "1-suspension", r.status_index) for d, r in zip(dids, results, strict=True))  # type: ignore[union-attr]


def test_unknown_device_is_refused(portal: Portal) -> None:
    """Changing a device that was never enrolled raises UnknownDevice and writes nothing."""
    height = portal.height()
    with pytest.raises(UnknownDevice):
        portal.enrolment.suspend(new_device().did)
    assert portal.height() == height

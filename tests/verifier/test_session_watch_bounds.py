"""What a verifier keeps about the sessions it opened (to end them when a device's ledger records
change) lasts only as long as those sessions: devices whose sessions expired or were ended are
forgotten, on the next block or the next session opened, and the number followed is bounded."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.verifier.lifetime_world import LIST, URL, World, make_world
from verifier import MemorySessionStore, Verifier, session_following
from verifier.ledger_cache import Changes
from wallet.credential import build_credential, issue_credential
from wallet.device_client import CREDENTIAL_HEADER, SIGNED_COMPONENTS, encode_device_credential
from wallet.http_signatures import HttpRequest, sign_request


class Devices:
    """Devices enrolled on a world's ledger, each with a credential at its own status index."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.url = world.credential["credentialStatus"]["statusListCredential"]
        self.next_index = 100

    def enrol(self) -> tuple[Ed25519PrivateKey, str, str]:
        """A new device: its key, DID and Device-Credential header."""
        world = self.world
        key = Ed25519PrivateKey.generate()
        did = world.ledger.add_device(key)
        index, self.next_index = self.next_index, self.next_index + 1
        now = datetime.fromtimestamp(world.clock(), UTC)
        entry = {"id": f"{self.url}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
                 "statusListIndex": str(index), "statusListCredential": self.url}  # fmt: skip
        document = build_credential(
            issuer=world.issuer, subject={"id": did}, types=["DeviceCredential"],
            valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(days=30), status=entry,
        )  # fmt: skip
        credential = issue_credential(document, world.issuer_key, f"{world.issuer}#key-1")
        return key, did, encode_device_credential(credential)

    def request(self, device: tuple[Ed25519PrivateKey, str, str]) -> HttpRequest:
        """A fresh signed POST of ``device``, on the world's clock."""
        key, did, header = device
        base = HttpRequest(
            "POST", URL, {"content-type": "application/json", CREDENTIAL_HEADER: header}, b"{}"
        )
        created = int(self.world.clock())
        added = sign_request(
            base, key=key, keyid=f"{did}#key-1", components=SIGNED_COMPONENTS, created=created,
            expires=created + 60, nonce=secrets.token_urlsafe(16), alg="ed25519",
        )  # fmt: skip
        return HttpRequest("POST", URL, {**base.headers, **added}, b"{}")

    def open_sessions(self, verifier: Verifier, count: int) -> list[str]:
        """``count`` new devices, each authenticated once (opening a session); their DIDs."""
        dids = []
        for _ in range(count):
            device = self.enrol()
            assert verifier.authenticate_request(self.request(device)).session is not None
            dids.append(device[1])
        return dids


def _watched_dids(verifier: Verifier) -> set[str]:
    return {did for indices in verifier._watched.values() for dids in indices.values() for did in dids}


def _past_every_session(world: World, verifier: Verifier) -> None:
    world.clock.advance(verifier.policy.session_ttl + 1)


def test_a_block_forgets_devices_whose_sessions_expired() -> None:
    """After every session expired, the next block leaves nothing followed."""
    world = make_world()
    verifier = world.verifier()
    devices = Devices(world)
    devices.open_sessions(verifier, 100)
    assert len(verifier._sessions_of) == 100
    _past_every_session(world, verifier)
    world.ledger.accredit(world.issuer, ["OtherCredential"])  # a block
    assert (verifier._sessions_of, verifier._watched) == ({}, {})
    assert verifier._expiring == []


def test_the_next_session_opened_forgets_devices_whose_sessions_expired() -> None:
    """With no block meanwhile, a session opened after the others expired leaves only its own device."""
    world = make_world()
    verifier = world.verifier()
    devices = Devices(world)
    devices.open_sessions(verifier, 20)
    _past_every_session(world, verifier)
    [newcomer] = devices.open_sessions(verifier, 1)
    assert set(verifier._sessions_of) == {newcomer}
    assert _watched_dids(verifier) == {newcomer}


def test_a_device_whose_sessions_were_ended_is_no_longer_followed() -> None:
    """Sessions ended by a block (the device quarantined) leave neither its sessions nor its status
    entry behind."""
    world = make_world()
    verifier = world.verifier()
    devices = Devices(world)
    [did] = devices.open_sessions(verifier, 1)
    world.ledger.quarantine(did)
    assert (verifier._sessions_of, verifier._watched) == ({}, {})


def test_a_revoked_device_leaves_no_empty_status_list_behind() -> None:
    """A device's sessions ended by its revocation bit leave no list entry without devices."""
    world = make_world()
    verifier = world.verifier()
    devices = Devices(world)
    devices.open_sessions(verifier, 1)
    world.ledger.set_status(world.issuer, LIST, devices.next_index - 1)
    assert (verifier._sessions_of, verifier._watched) == ({}, {})


class _CountingStore(MemorySessionStore):
    """A session store that counts end_device calls (a Redis round trip each)."""

    ended = 0

    def end_device(self, did: str) -> int:
        self.ended += 1
        return super().end_device(did)


def test_a_catch_up_jump_ends_only_devices_with_live_sessions() -> None:
    """Changes(everything=True) ends the sessions of devices that still have some, not of every device
    that ever had one."""
    world = make_world()
    store = _CountingStore(clock=world.clock)
    verifier = world.verifier(store=store)
    devices = Devices(world)
    devices.open_sessions(verifier, 30)
    _past_every_session(world, verifier)
    devices.open_sessions(verifier, 2)
    verifier._on_changes(Changes(world.ledger.height, everything=True))
    assert store.ended == 2


def test_the_devices_followed_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past WATCHED_DEVICES_MAX devices, a device is let in without a session offer (noted); once
    sessions expire there is room again."""
    monkeypatch.setattr(session_following, "WATCHED_DEVICES_MAX", 3)
    world = make_world()
    verifier = world.verifier()
    devices = Devices(world)
    devices.open_sessions(verifier, 3)
    extra = devices.enrol()
    result = verifier.authenticate_request(devices.request(extra))
    assert (result.did, result.session) == (extra[1], None)
    assert len(verifier._sessions_of) == 3
    assert "follows the sessions of 3 devices" in verifier.session_errors[-1]
    _past_every_session(world, verifier)
    assert verifier.authenticate_request(devices.request(extra)).session is not None


def test_one_device_opening_sessions_again_and_again_keeps_the_expiry_queue_bounded() -> None:
    """Each full authentication opens a session (superseding the oldest): what is queued for expiry
    stays bounded by the devices followed, not by the sessions ever opened."""
    world = make_world()
    verifier = world.verifier()
    devices = Devices(world)
    device = devices.enrol()
    for _ in range(1100):
        assert verifier.authenticate_request(devices.request(device)).session is not None
    assert len(verifier._sessions_of) == 1
    assert len(verifier._expiring) <= 2 * 1 + 1024 + 1

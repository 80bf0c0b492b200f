"""The fleet operator's side of a simulation: the issuer organisation, bulk enrolment, status changes,
a reporter's quarantines and devices' key rotations — every ledger write the simulation makes.

The organisation is the portal's own (:class:`web.organisation.Organisation`, its keystore and
portal database in the run's folder), set up on the ledger with the trustee's key: DID, issuer role,
accreditation for ``DeviceCredential``, revocation and suspension lists. Devices enrol through the
portal's bulk path (:meth:`web.enrolment.Enrolment.enrol_many`, what ``POST /api/v1/enrol/batch``
runs): each device makes its key and signs its own ``did.create``; the portal endorses, anchors the
batch and issues each credential with its status entries. Revocation, suspension and reinstatement
go through the portal's :class:`~web.enrolment.Enrolment` too. A reporter (a DID holding the
``reporter`` role, granted by the trustee) files ``quarantine.report`` transactions.

Every write that the ledger acknowledges is noted in :attr:`Operator.acknowledged` (its transaction
id, where the simulation knows it) or as a change on the device, with the height it was committed
at: the invariants check later that none of them was lost.

Each write the simulation waits for gives one ``write_latency_ms`` sample, from handing it over to
its acknowledgement as committed: an enrolment batch (the bulk path's call, however many devices
it enrolled: its ``did.create`` transactions are submitted and waited for together, and the portal
claims the tokens before and issues the credentials after), a status change of a set of devices
through the portal, a quarantine, a key rotation. The set-up's writes are not sampled.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction
from fleet.devices import Change, SimulatedDevice
from fleet.errors import FleetError
from fleet.metrics import Recorder
from wallet.enroll import enrolment_transaction
from wallet.keystore import KDF_TESTING, Keystore
from wallet.ledger_cli import next_nonce
from wallet.rotation import rotation_transaction
from web.enrolment import Enrolment
from web.enrolment_records import DeviceProfile, EnrolmentResult, open_store
from web.organisation import Organisation, Signer

__all__ = ["ENROL_BATCH", "Acknowledged", "Operator", "SetupFailed"]

ENROL_BATCH: Final = 1_000
"""Devices a factory line hands to the bulk path at once."""
_TIMEOUT: Final = 120.0
_PORTAL_ACTIONS: Final = {"revocation": "revoke", "suspension": "suspend", "reinstatement": "reinstate"}


class SetupFailed(FleetError):
    """The organisation or the reporter could not be set up on the ledger (the message says which step)."""


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A write the ledger acknowledged as committed: what it was, its transaction id, when (run time)."""

    what: str
    txn_id: str
    at: float


class Operator:
    """The organisation, its enrolment service and a reporter, on one ledger (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        ledger: LedgerClient,
        trustee: Keystore,
        recorder: Recorder,
        portal_url: str,
    ) -> None:
        self.ledger = ledger
        self.network = ledger.genesis.network
        self.recorder = recorder
        self.trustee = Signer.from_keystore(trustee)
        directory.mkdir(parents=True, exist_ok=True)
        self.organisation = Organisation.in_instance(directory, "fleet simulation", params=KDF_TESTING)
        self.enrolment = Enrolment(
            self.organisation,
            open_store(f"sqlite:///{directory / 'portal.db'}"),
            ledger=ledger,
            portal_url=portal_url,
            timeout=_TIMEOUT,
        )
        self.reporter: Signer | None = None
        self._reporter_nonce = 1
        self._reporter_lock = threading.Lock()
        self.acknowledged: list[Acknowledged] = []
        self._lock = threading.Lock()

    # -- set-up -----------------------------------------------------------------------------
    def set_up(self) -> None:
        """Put the organisation on the ledger and make a reporter."""
        status = self.organisation.setup(self.ledger, self.trustee, timeout=_TIMEOUT)
        if not status.complete:
            raise SetupFailed(f"the organisation's set-up is incomplete: {status}")
        key = Ed25519PrivateKey.generate()
        did = str(trellis_did(self.network, key.public_key))
        reporter = Signer(did, key, f"{did}#key-1")
        create = Transaction.build(
            "did.create",
            network=self.network,
            submitter=did,
            nonce=1,
            body={"document": initial_document(did, key.public_key).to_json()},
        )
        create = create.signed(key, reporter.method).signed(self.trustee.key, self.trustee.method)
        grant = Transaction.build(
            "role.grant",
            network=self.network,
            submitter=self.trustee.did,
            nonce=next_nonce(self.ledger, self.trustee.did),
            body={"did": did, "role": "reporter"},
        ).signed(self.trustee.key, self.trustee.method)
        for txn, what in ((create, "the reporter's DID"), (grant, "the reporter role")):
            statuses = self.ledger.submit_and_wait([txn], _TIMEOUT)
            if statuses[0].get("status") != "committed":
                raise SetupFailed(f"{what} was not committed: {statuses[0]}")
            self._acknowledge(what, txn.id)
        self.reporter = reporter

    def _acknowledge(self, what: str, txn_id: str) -> None:
        with self._lock:
            self.acknowledged.append(Acknowledged(what, txn_id, self.recorder.now()))

    # -- enrolment --------------------------------------------------------------------------
    def enrol(
        self,
        count: int,
        *,
        batch: int = ENROL_BATCH,
        stop: threading.Event | None = None,
        on_batch: Callable[[list[SimulatedDevice]], None] | None = None,
    ) -> list[SimulatedDevice]:
        """Enrol ``count`` devices through the bulk path, ``batch`` at a time; the enrolled devices."""
        profile = DeviceProfile("TH-1", "1.4.2", {"site": "simulation"})
        enrolled: list[SimulatedDevice] = []
        for offset in range(0, count, batch):
            if stop is not None and stop.is_set():
                break
            size = min(batch, count - offset)
            tokens = [t.token for t in self.enrolment.create_tokens(profile, size)]
            keys = [Ed25519PrivateKey.generate() for _ in range(size)]  # made on each device
            txns = [enrolment_transaction(self.network, key) for key in keys]
            began = self.recorder.now()
            results = self.enrolment.enrol_many(
                [(token, txn.to_json()) for token, txn in zip(tokens, txns, strict=True) if token]
            )
            took = self.recorder.now() - began
            done: list[SimulatedDevice] = []
            for key, txn, result in zip(keys, txns, results, strict=True):
                if not isinstance(result, EnrolmentResult):
                    self.recorder.count("enrol_failed")
                    continue
                self._acknowledge("enrolment", txn.id)
                done.append(SimulatedDevice(result.did, key, result.credential))
            if done:  # the batch is one write the simulation waited for: one sample, not one per device
                self.recorder.sample("write_latency_ms", took * 1000)
            self.recorder.count("enrolled", len(done))
            enrolled.extend(done)
            if on_batch is not None:
                on_batch(done)
        return enrolled

    # -- status changes ---------------------------------------------------------------------
    def change_status(self, kind: str, devices: Sequence[SimulatedDevice]) -> int:
        """Revoke, suspend or reinstate ``devices`` through the portal; the height it was committed at."""
        action = _PORTAL_ACTIONS.get(kind)
        if action is None:
            raise FleetError(f"no status change {kind!r}")
        submitted = time.monotonic()
        indices = [d.record(Change(kind, submitted)) for d in devices]
        began = self.recorder.now()
        statuses = list(self.enrolment.change(action, [d.did for d in devices]).txns.values())
        self.recorder.sample("write_latency_ms", (self.recorder.now() - began) * 1000)
        for status in statuses:
            self._acknowledge(kind, str(status["id"]))
        height = max(int(status["height"]) for status in statuses)
        for device, index in zip(devices, indices, strict=True):
            device.committed(index, height)
        self.recorder.count(kind, len(devices))
        return height

    def quarantine(self, device: SimulatedDevice, evidence: str) -> int:
        """The reporter quarantines ``device`` for ``evidence``; the height it was committed at."""
        if self.reporter is None:
            raise FleetError("the reporter is not set up")
        with self._reporter_lock:
            self._reporter_nonce += 1
            body: dict[str, Any] = {
                "did": device.did,
                "evidence": {"hash": hashlib.sha256(evidence.encode()).hexdigest(), "description": evidence},
            }
            txn = Transaction.build(
                "quarantine.report",
                network=self.network,
                submitter=self.reporter.did,
                nonce=self._reporter_nonce,
                body=body,
            ).signed(self.reporter.key, self.reporter.method)
        index = device.record(Change("quarantine", time.monotonic()))
        return self._write(txn, "quarantine", lambda height: device.committed(index, height))

    def rotate(self, device: SimulatedDevice) -> int:
        """Rotate ``device``'s key (the device signs its own ``did.update``); the height committed at.

        The caller holds the device's lock: it signs with the old key until the rotation is
        acknowledged, and with the new one from then on.
        """
        record, _ = self.ledger.resolve_record(device.did)
        if record is None:
            raise FleetError(f"{device.did} is not on the ledger")
        new_key = Ed25519PrivateKey.generate()
        txn = rotation_transaction(
            record,
            key=device.key,
            method=device.verification_method,
            new_key=new_key,
            new_fragment=f"key-{device.key_number + 1}",
            network=self.network,
            nonce=device.nonce + 1,
        )
        submitted = time.monotonic()
        height = self._write(txn, "rotation", lambda _: None)
        device.nonce += 1
        device.rotate(new_key, submitted, height)
        return height

    def _write(self, txn: Transaction, what: str, committed: Callable[[int], None]) -> int:
        began = self.recorder.now()
        status = self.ledger.submit_and_wait([txn], _TIMEOUT)[0]
        if status.get("status") != "committed":
            raise FleetError(f"a {what} was not committed: {status}")
        self.recorder.sample("write_latency_ms", (self.recorder.now() - began) * 1000)
        self._acknowledge(what, txn.id)
        height = int(status["height"])
        committed(height)
        self.recorder.count(what)
        return height

"""``python -m bench.portal [--quick]``: device enrolments per second through the bulk path.

A four-validator PBFT network runs as separate ``trellis node start`` processes on loopback
(:class:`wallet.localnet.LocalNetwork`); the portal's organisation is set up on it for real (issuer
DID, role, accreditation, status lists). Then, for each batch of simulated devices: each device
makes its own key and signs its own ``did.create`` (:func:`wallet.enroll.enrolment_transaction`),
the portal checks and claims the tokens, endorses, anchors the batch in batched ledger writes,
waits for the commits and issues each device credential with its status entries
(:meth:`web.enrolment.Enrolment.enrol_many`). ``enrol_per_s`` counts complete enrolments per second
over the run, device key generation included. The yardstick ``raw_verify_per_s`` is measured in
the same run. Target: ``enrol_per_s`` >= 1,000.

``page_p95_ms``: the 95th percentile time to serve the device list page (``GET /devices``, signed
in, through the whole Flask app: session, roles, query, template) at 100,000 devices, over requests
mixing the first page, a page further on, a status filter, a model filter and a DID search. The
100,000 device rows are written straight into the portal's database (SQLite file, the embedded
default) — enrolling them through the ledger would take the length of a soak — so this figure
measures the page, not enrolment. Target: ``page_p95_ms`` <= 200.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import parse_args, raw_verify_per_s, report
from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from wallet.enroll import enrolment_transaction
from wallet.keystore import KDF_TESTING, Keystore
from wallet.localnet import LocalNetwork
from web.enrolment import Enrolment
from web.enrolment_records import DeviceProfile, open_store
from web.organisation import Organisation

__all__ = ["main"]

_NETWORK = "benchnet"
_BATCH = 5_000  # devices per bulk request (the ledger writes go in chunks of BULK_CHUNK)


def _enrol(devices: int, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="trellis-bench-portal-") as folder:
        net = LocalNetwork(Path(folder) / "net", 4, engine="pbft", network=_NETWORK)
        net.start()
        try:
            genesis = (net.directory / "genesis.json").read_text()
            with LedgerClient(net.urls, json.loads(genesis)) as ledger:
                trustee = Keystore.open(net.directory / "trustee.key", net.passphrase)
                organisation = Organisation.in_instance(Path(folder), "bench pass phrase", params=KDF_TESTING)
                status = organisation.setup(ledger, trustee)
                assert status.complete, status
                enrolment = Enrolment(
                    organisation,
                    open_store(f"sqlite:///{Path(folder) / 'portal.db'}"),
                    ledger=ledger,
                    portal_url="http://127.0.0.1:8000",
                    nodes=net.urls,
                )
                profile = DeviceProfile("TH-1", "1.0.0", {"site": "bench"})
                tokens = [t.token for t in enrolment.create_tokens(profile, devices)]
                done, failed = 0, 0
                start = time.monotonic()
                for offset in range(0, devices, batch):  # a factory line hands in batches
                    items = []
                    for token in tokens[offset : offset + batch]:
                        assert token is not None
                        key = Ed25519PrivateKey.generate()  # on the device
                        items.append((token, enrolment_transaction(_NETWORK, key).to_json()))
                    for result in enrolment.enrol_many(items):  # written in chunks, waited for once
                        if isinstance(result, Exception):
                            failed += 1
                        else:
                            done += 1
                elapsed = time.monotonic() - start
        finally:
            net.stop()
    return {"devices": done, "failed": failed, "seconds": elapsed, "enrol_per_s": done / elapsed}


def _page_p95_ms(devices: int, requests: int) -> float:
    """p95 of GET /devices (several shapes) at ``devices`` rows, through the real app."""
    import re
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert
    from sqlmodel import Session

    from web.accounts import create_operator
    from web.app import create_app
    from web.config import PortalConfig
    from web.enrolment_records import DeviceRow
    from web.portal import portal as running_portal

    with tempfile.TemporaryDirectory(prefix="trellis-bench-pages-") as folder:
        app = create_app(PortalConfig(instance_path=Path(folder)))
        with app.app_context():
            held = running_portal()
            engine, passwords = held.engine, held.passwords
        start = datetime(2026, 1, 1, tzinfo=UTC)
        statuses = ("active", "active", "active", "suspended", "revoked")
        with engine.begin() as conn:
            for offset in range(0, devices, 10_000):
                conn.execute(
                    insert(DeviceRow),
                    [
                        {
                            "did": f"did:trellis:benchnet:{i:022d}",
                            "model": f"TH-{i % 7}",
                            "firmware": "1.0.0",
                            "attributes": "{}",
                            "token_hash": f"{i:064x}",
                            "credential_id": f"urn:uuid:bench-{i}",
                            "credential": "{}",
                            "status_index": i,
                            "revocation_list": "1-revocation",
                            "suspension_list": "1-suspension",
                            "status": statuses[i % len(statuses)],
                            "enrolled_at": start + timedelta(seconds=i),
                        }
                        for i in range(offset, min(devices, offset + 10_000))
                    ],
                )
        with Session(engine) as db:
            create_operator(db, passwords, "bench", "bench pass phrase 1", "operator")
            db.commit()
        client = app.test_client()
        form = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        signed_in = client.post(
            "/login",
            data={"csrf_token": token.group(1), "username": "bench", "password": "bench pass phrase 1"},
        )
        assert signed_in.status_code in (302, 303), signed_in.status_code
        first = client.get("/devices")
        assert first.status_code == 200, first.status_code
        cursor = re.search(r'href="[^"]*after=([^"&]+)', first.get_data(as_text=True))
        shapes = [
            "/devices",
            f"/devices?after={cursor.group(1)}" if cursor else "/devices",
            "/devices?status=suspended",
            "/devices?model=TH-3",
            "/devices?q=000000000000000004242",
        ]
        times = []
        for k in range(requests):
            began = time.perf_counter()
            answer = client.get(shapes[k % len(shapes)])
            times.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, (shapes[k % len(shapes)], answer.status_code)
        times.sort()
        return times[min(len(times) - 1, int(0.95 * len(times)))]


def main() -> None:
    """Measure and print the JSON."""
    args = parse_args(__doc__ or "")
    devices = 1_000 if args.quick else 10_000
    raw = raw_verify_per_s(1.0 if args.quick else 3.0)
    page_p95 = _page_p95_ms(100_000, 100 if args.quick else 500)
    result = _enrol(devices, _BATCH)
    figures: dict[str, Any] = {
        "raw_verify_per_s": raw,
        "network": "4 PBFT validators, separate processes, SQLite, loopback",
        "enrol_devices": result["devices"],
        "enrol_failed": result["failed"],
        "enrol_per_s": result["enrol_per_s"],
        "page_p95_ms": page_p95,
        "page_devices": 100_000,
    }
    targets = {"enrol_per_s >= 1000": result["enrol_per_s"] >= 1000, "page_p95_ms <= 200": page_p95 <= 200}
    report("portal", figures, targets, args.quick)


if __name__ == "__main__":
    main()

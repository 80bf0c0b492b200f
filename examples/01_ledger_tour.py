"""A tour of the ledger: a local network, DIDs anchored with proofs, a credential revoked on-chain.

Run with ``make demo`` (after the wallet tour), or ``.venv/bin/python examples/01_ledger_tour.py``.
It initialises a four-validator PBFT network in ``.demo/`` (SQLite, the embedded default), starts
each node as its own process (``trellis node start``), and then, through the HTTP API with every answer
checked by :class:`~did_registry.client.LedgerClient`:

1. a trustee onboards a fleet operator as an accredited issuer;
2. the issuer creates its revocation list on the ledger;
3. a thermostat creates its own key and did:trellis, endorsed by the issuer;
4. the issuer issues its device credential; a service verifies it (keys resolved with proofs);
5. the issuer revokes it with one ledger transaction; the service refuses it from the next block.

With ``--simulate N`` a short fleet simulation follows (``trellis simulate --node …``): N devices
enrolled through the portal's bulk path authenticate to two example services for 20 seconds while
the issuer revokes and suspends, a device rotates its key and a rogue device is quarantined; its
report lands in ``.demo/fleet-report/report.html``. With ``--keep-running`` the network stays up
afterwards with the portal (Ctrl-C to stop); ``--validators 1`` runs one.

Ctrl-C, SIGTERM and SIGHUP (the terminal closed) stop the tour the same way: the portal, the
simulation and the validators are stopped before it exits. The processes it starts also stop by
themselves when it is killed outright (:func:`wallet.localnet.tied_command`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from did_registry.client import LedgerClient, TrellisResolver
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction
from wallet.credential import build_credential, issue_credential, verify_credential
from wallet.errors import VerificationFailed
from wallet.keystore import Keystore
from wallet.localnet import LocalNetwork, tied_command
from wallet.resolver import ResolverKeyLookup
from wallet.status import LedgerStatusCheck

ROOT = Path(__file__).resolve().parents[1]


def step(number: int, text: str) -> None:
    """Print a numbered step."""
    print(f"\n{number}. {text}", flush=True)


class Signer:
    """A did:trellis identity that numbers its own transactions."""

    def __init__(self, key: Ed25519PrivateKey, did: str, network: str) -> None:
        self.key, self.did, self.network, self.nonce = key, did, network, 0

    @property
    def method(self) -> str:
        """Its signing key's DID URL."""
        return f"{self.did}#key-1"

    def txn(self, txn_type: str, body: dict[str, object], *cosigners: Signer) -> Transaction:
        """A transaction by this identity, co-signed by ``cosigners``."""
        self.nonce += 1
        txn = Transaction.build(
            txn_type, network=self.network, submitter=self.did, nonce=self.nonce, body=body
        )
        txn = txn.signed(self.key, self.method)
        for other in cosigners:
            txn = txn.signed(other.key, other.method)
        return txn


def new_identity(network: str) -> Signer:
    """A fresh key and its did:trellis."""
    key = Ed25519PrivateKey.generate()
    return Signer(key, str(trellis_did(network, key.public_key)), network)


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP (the terminal closed) stop the tour as Ctrl-C does: KeyboardInterrupt,
    so ``main`` stops the portal, the simulation and the nodes. Once one came, the next are ignored
    until the tour exits, so that nothing cuts that clean-up short. A signal ignored when the tour
    started (``nohup``, a background job's SIGINT) stays ignored."""
    numbers = [
        n for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if signal.getsignal(n) != signal.SIG_IGN
    ]

    def stop(signum: int, frame: object) -> None:
        for number in numbers:
            signal.signal(number, signal.SIG_IGN)
        raise KeyboardInterrupt

    for number in numbers:
        signal.signal(number, stop)


def main() -> int:
    """Run the tour; exit 0 when everything behaved as expected (or it was stopped by a signal)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=ROOT / ".demo", help="Where the network lives.")
    parser.add_argument("--keep-running", action="store_true", help="Leave the network running afterwards.")
    parser.add_argument(
        "--validators", type=int, default=4, help="How many validators (PBFT when more than 1)."
    )
    parser.add_argument(
        "--simulate", type=int, default=0, metavar="N", help="Then simulate a fleet of N devices."
    )
    args = parser.parse_args()
    stop_on_signals()
    passphrase = os.environ.get("TRELLIS_PASSPHRASE") or secrets.token_urlsafe(12)
    shutil.rmtree(args.dir, ignore_errors=True)

    step(0, f"A {args.validators}-validator network in {args.dir} (SQLite), each node a separate process.")
    net: LocalNetwork | None = None
    try:
        net = LocalNetwork(args.dir, args.validators, network="demo", passphrase=passphrase)
        print(f"   its keys (trustee.key, node-N.key) are sealed with the passphrase {passphrase!r}")
        net.start()
        url = net.urls[-1]  # any node: requests reach the primary through it
        health = net.health("node-1")["consensus"]
        print(f"   consensus: {health['engine']}, primary {health['primary']}; nodes: {', '.join(net.urls)}")
        print(f"   node API: {url}   (try {url}/health, {url}/openapi.json)")
        ok = tour(url, args.dir, passphrase)
        if args.simulate and ok:
            ok = simulate(args.simulate, net.urls, args.dir, passphrase)
        if args.keep_running and ok:
            if not port_free(8000):
                print(f"\nPort 8000 is in use: the portal cannot serve at {PORTAL_URL}. Stop what holds it.")
                return 1
            portal = start_portal(args.dir, net.urls, passphrase)
            print(
                f"\nThe network keeps running ({', '.join(net.urls)}); its data is in {args.dir}.\n"
                f"The portal runs at {PORTAL_URL}: sign in as admin / {DEMO_ADMIN_PASSWORD}; on Setup,\n"
                f"upload {args.dir / 'trustee.key'} with the passphrase {passphrase!r}.\n"
                f"Ctrl-C stops everything. The node keys are sealed with the same passphrase: to start\n"
                f"validator N again on its files, TRELLIS_PASSPHRASE={passphrase!r} \\\n"
                f"  {Path(sys.executable).parent / 'trellis'} node start --config {args.dir / 'node-N.toml'}"
            )
            try:
                while net.running() and portal.poll() is None:
                    time.sleep(1)
            finally:
                stop_process(portal, 20)
            if portal.returncode not in (0, -signal.SIGTERM):  # it stopped by itself: say so
                print(f"\nThe portal stopped (exit {portal.returncode}); the network was stopped too.")
                return 1
        return 0 if ok else 1
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (stop_on_signals)
        return 0
    finally:
        if net is not None:
            net.stop()


PORTAL_URL = "http://127.0.0.1:8000"
DEMO_ADMIN_PASSWORD = "trellis-demo-admin"  # noqa: S105 - a local demonstration's first admin


def simulate(devices: int, nodes: list[str], directory: Path, passphrase: str) -> bool:
    """Step 6: ``trellis simulate`` against this network; True when every invariant held."""
    step(6, f"A fleet of {devices} devices for 20 s: enrolment, authentication, revocations, a quarantine.")
    command = tied_command("fleet.cli", "simulate", "--devices", str(devices), "--duration", "20",
                           "--genesis", str(directory / "genesis.json"), "--trustee", str(directory / "trustee.key"),
                           "--report", str(directory / "fleet-report"),
                           *[arg for node in nodes for arg in ("--node", node)])  # fmt: skip
    # Its own session, so that a signal from the terminal reaches only the tour, which stops it (SIGTERM:
    # it stops what it started) rather than SIGKILL as subprocess.run would on Ctrl-C.
    process = subprocess.Popen(
        command, env={**os.environ, "TRELLIS_PASSPHRASE": passphrase}, start_new_session=True
    )
    try:
        return process.wait() == 0
    finally:
        stop_process(process, 60)


def stop_process(process: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``process`` if it still runs, SIGKILL after ``timeout`` seconds, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def port_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be listened on now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_portal(directory: Path, nodes: list[str], passphrase: str) -> subprocess.Popen[str]:
    """``trellis web create-admin`` then ``trellis web serve`` for this network (the demo's portal)."""
    trellis = [sys.executable, "-c", "from web.cli import main; main()"]
    env = {
        **os.environ,
        "TRELLIS_WEB_INSTANCE": str(directory / "portal"),
        "TRELLIS_WEB_NODES": ",".join(nodes),
        "TRELLIS_WEB_GENESIS": str(directory / "genesis.json"),
        "TRELLIS_WEB_ORG_PASSPHRASE": passphrase,
        "TRELLIS_WEB_URL": PORTAL_URL,
        "TRELLIS_ADMIN_PASSWORD": DEMO_ADMIN_PASSWORD,
    }
    subprocess.run([*trellis, "web", "create-admin", "--username", "admin"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return subprocess.Popen(
        tied_command("web.cli", "web", "serve", "--port", "8000"), env=env, text=True, start_new_session=True
    )


def tour(url: str, directory: Path, passphrase: str) -> bool:
    """Steps 1 to 5 against the node at ``url``."""
    genesis = json.loads((directory / "genesis.json").read_text())
    network = genesis["network"]
    trustee_store = Keystore.open(directory / "trustee.key", passphrase)
    assert trustee_store.did is not None
    trustee = Signer(trustee_store.current_key, trustee_store.did, network)
    with LedgerClient(url, genesis) as ledger:
        step(
            1, "The trustee onboards a fleet operator: DID, issuer role, accreditation for DeviceCredential."
        )
        operator = new_identity(network)
        ledger.submit_and_wait(operator.txn("did.create", {"document": initial_document(operator.did, operator.key.public_key).to_json()}, trustee))  # fmt: skip
        ledger.submit_and_wait(trustee.txn("role.grant", {"did": operator.did, "role": "issuer"}))
        ledger.submit_and_wait(
            trustee.txn("trust.accredit", {"issuer": operator.did, "types": ["DeviceCredential"]})
        )
        print(f"   issuer {operator.did}")

        step(2, "The operator creates its revocation list (131,072 entries) on the ledger.")
        ledger.submit_and_wait(
            operator.txn("status_list.create", {"list": "devices-1", "purpose": "revocation"})
        )

        step(3, "A thermostat makes its own key and DID; the operator endorses the creation.")
        device = new_identity(network)
        document = initial_document(device.did, device.key.public_key).to_json()
        ledger.submit_and_wait(device.txn("did.create", {"document": document}, operator))
        print(f"   device {device.did}")

        step(4, "The operator issues the device credential; a service verifies it against the ledger.")
        index = secrets.randbelow(131_072)
        list_url = f"{url}/status-lists/{operator.did}/devices-1/credential"
        entry = {"id": f"{list_url}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
                 "statusListIndex": str(index), "statusListCredential": list_url}  # fmt: skip
        now = datetime.now(UTC)
        credential = issue_credential(
            build_credential(
                issuer=operator.did,
                subject={"id": device.did, "model": "TH-1"},
                types=["DeviceCredential"],
                valid_from=now,
                valid_until=now + timedelta(days=365),
                status=entry,
            ),
            operator.key,
            operator.method,
        )
        lookup = ResolverKeyLookup(TrellisResolver(ledger))
        status = LedgerStatusCheck(lambda key: ledger.prove(key)[0])

        def check() -> str:
            try:
                verified = verify_credential(credential, lookup, status_check=status)
            except VerificationFailed as refusal:
                return f"refused ({refusal.check}): {refusal.detail}"
            return f"accepted: {verified.subject_ids[0]} holds {verified.types[-1]} from {verified.issuer}"

        before = check()
        print(f"   {before}")

        step(5, "The operator revokes it with one ledger transaction; the next check is refused.")
        ledger.submit_and_wait(operator.txn("status_list.update", {"list": "devices-1", "set": [index]}))
        after = check()
        print(f"   {after}")
        head = ledger.head()
        print(f"   ledger height {head.height}, state root {head.state_root[:16]}…")
    ok = before.startswith("accepted") and after.startswith("refused (revoked)")
    print("\nLedger tour complete: every step behaved as expected." if ok else "\nLedger tour FAILED.")
    return ok


if __name__ == "__main__":
    sys.exit(main())

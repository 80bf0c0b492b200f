"""A service that lets in only authenticated devices: Flask, ``@auth.device_required``, a local ledger.

Run with ``.venv/bin/python examples/02_verifier_service.py``. It starts a one-validator network in a
temporary folder (``trellis node start`` as its own process), serves a small Flask app on loopback
whose ``POST /readings`` is protected by :class:`verifier.flask.DeviceAuth` (told the service's own
origin, so that a request signed for another service is refused), and then:

1. a trustee onboards a fleet operator as an accredited issuer with a revocation list;
2. a thermostat creates its key and did:trellis; the operator issues its device credential;
3. the thermostat posts a reading as an RFC 9421 signed request (its credential in the
   ``Device-Credential`` header): the verifier checks its DID document and credential against the
   ledger with proofs, and the service answers 200;
4. the operator revokes the credential with one ledger transaction;
5. the next signed request is refused: 403 ``application/problem+json`` with ``reason: revoked``.

It exits 0 when every step behaved as described.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flask
from werkzeug.serving import make_server

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction
from verifier import NetworkTrust, Verifier
from verifier.flask import DeviceAuth
from wallet.credential import build_credential, issue_credential
from wallet.device import DeviceWallet
from wallet.device_client import DeviceClient
from wallet.keystore import KDF_TESTING, Keystore
from wallet.localnet import LocalNetwork

PASSPHRASE = secrets.token_urlsafe(12)


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


def make_service(verifier: Verifier, origin: str) -> flask.Flask:
    """The protected service at ``origin``: devices post readings; ``flask.g.device`` says who posted."""
    app = flask.Flask("thermostats")
    # The service's own origin, never read from the request: a request a device signed for another
    # service (another origin) is refused wrong_audience.
    auth = DeviceAuth(app, verifier=verifier, audience=origin)

    @app.post("/readings")
    @auth.device_required
    def readings() -> dict[str, Any]:
        device = flask.g.device
        return {"accepted": flask.request.get_json(), "from": device.did, "issuer": device.credential.issuer}

    return app


def main() -> int:
    """Run the example; exit 0 when everything behaved as expected."""
    with tempfile.TemporaryDirectory(prefix="trellis-02-") as tmp:
        directory = Path(tmp)
        net = LocalNetwork(directory / "net", 1, network="demo", passphrase=PASSPHRASE)
        try:
            net.start()
            return 0 if run(net.urls[0], directory) else 1
        finally:
            net.stop()


def run(url: str, directory: Path) -> bool:
    """Steps 1 to 5 against the node at ``url``."""
    genesis = json.loads((directory / "net" / "genesis.json").read_text())
    network = genesis["network"]
    trustee_store = Keystore.open(directory / "net" / "trustee.key", PASSPHRASE)
    assert trustee_store.did is not None
    trustee = Signer(trustee_store.current_key, trustee_store.did, network)
    with LedgerClient(url, genesis) as ledger:
        step(1, "The trustee onboards a fleet operator: issuer role, accreditation, a revocation list.")
        operator = new_identity(network)
        ledger.submit_and_wait(operator.txn("did.create", {"document": initial_document(operator.did, operator.key.public_key).to_json()}, trustee))  # fmt: skip
        ledger.submit_and_wait(trustee.txn("role.grant", {"did": operator.did, "role": "issuer"}))
        ledger.submit_and_wait(trustee.txn("trust.accredit", {"issuer": operator.did, "types": ["DeviceCredential"]}))  # fmt: skip
        ledger.submit_and_wait(operator.txn("status_list.create", {"list": "devices-1", "purpose": "revocation"}))  # fmt: skip
        print(f"   issuer {operator.did}")

        step(2, "A thermostat makes its key and DID (endorsed by the operator) and gets its credential.")
        thermostat = new_identity(network)
        document = initial_document(thermostat.did, thermostat.key.public_key).to_json()
        ledger.submit_and_wait(thermostat.txn("did.create", {"document": document}, operator))
        index = secrets.randbelow(131_072)
        list_url = f"{url}/status-lists/{operator.did}/devices-1/credential"
        entry = {"id": f"{list_url}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
                 "statusListIndex": str(index), "statusListCredential": list_url}  # fmt: skip
        now = datetime.now(UTC)
        credential = issue_credential(
            build_credential(
                issuer=operator.did,
                subject={"id": thermostat.did, "model": "TH-1"},
                types=["DeviceCredential"],
                valid_from=now - timedelta(minutes=1),
                valid_until=now + timedelta(days=365),
                status=entry,
            ),
            operator.key,
            operator.method,
        )
        wallet = DeviceWallet.create(
            directory / "thermostat", PASSPHRASE, key=thermostat.key, did=thermostat.did, params=KDF_TESTING
        )
        assert isinstance(wallet, DeviceWallet)
        wallet.store(credential)
        print(f"   device {thermostat.did}")

        # follow=False: this script tells the verifier when to read new blocks (catch_up); a real
        # service keeps the default, and a background thread follows the certified header stream.
        verifier = Verifier([NetworkTrust(network, [url], genesis)], follow=False)
        listener = socket.create_server(("127.0.0.1", 0))  # bound first: the port is in the origin
        service_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        app = make_service(verifier, service_url)
        server = make_server("127.0.0.1", listener.getsockname()[1], app, fd=listener.fileno())
        listener.close()  # the server holds its own copy of the socket
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with DeviceClient(wallet, service_url) as device:
                step(3, f"The thermostat posts a signed reading to {service_url}/readings.")
                first = device.signed_request("POST", "/readings", json={"celsius": 21.5})
                print(f"   {first.status_code} {first.json()}")

                step(4, "The operator revokes the credential with one ledger transaction.")
                ledger.submit_and_wait(
                    operator.txn("status_list.update", {"list": "devices-1", "set": [index]})
                )
                verifier.caches[network].catch_up()
                print(f"   ledger height {ledger.head().height}")

                step(5, "The thermostat posts again: the service refuses it.")
                second = device.signed_request("POST", "/readings", json={"celsius": 21.7})
                print(f"   {second.status_code} {second.headers['content-type']} {second.json()}")
        finally:
            server.shutdown()
            verifier.close()
    ok = (
        first.status_code == 200
        and first.json()["from"] == thermostat.did
        and second.status_code == 403
        and second.headers["content-type"] == "application/problem+json"
        and second.json()["reason"] == "revoked"
    )
    print("\nVerifier service example complete: accepted, then refused (revoked)." if ok else "\nFAILED.")
    return ok


if __name__ == "__main__":
    sys.exit(main())

"""``trellis did create|update|deactivate --node URL``: DIDs on the ledger, keys in keystores.

These commands live in the wallet layer because they read and write encrypted keystores; they add
themselves to the ``did`` group that :mod:`did_registry.cli` defines.
"""

from __future__ import annotations

from pathlib import Path

import click

from did_registry.cli import did_group, genesis_option, ledger_client, node_option
from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction, TxnRejected
from wallet.errors import KeystoreError
from wallet.keystore import Keystore, passphrase_from_env_or_prompt
from wallet.rotation import rotated_document

__all__ = ["next_nonce", "signer_of", "signer_on_ledger"]


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def signer_of(keystore: Keystore) -> tuple[str, Ed25519PrivateKey, str]:
    """The DID, current key and verification method (``did#<key id>``) of a did:trellis keystore."""
    did = keystore.did
    if did is None or not did.startswith("did:trellis:"):
        raise KeystoreError("<keystore>", f"holds the keys of {did!r}, not of a did:trellis DID")
    return did, keystore.current_key, f"{did}#{keystore.current.id}"


def signer_on_ledger(keystore: Keystore, document: DIDDocument) -> tuple[str, Ed25519PrivateKey, str]:
    """:func:`signer_of`, but with the key the ledger's ``document`` lets sign (``capabilityInvocation``):
    the current key, else the newest kept key it still lists. A rotation whose update never committed
    (refused, or its answer lost) leaves the keystore's current key unknown to the ledger; the key the
    ledger knows then signs, and the next rotation replaces it."""
    did, _, _ = signer_of(keystore)
    for kept in sorted(
        keystore.keys, key=lambda k: (k.retired is None, k.retired or k.created), reverse=True
    ):
        method = f"{did}#{kept.id}"
        try:
            if document.public_key_for(method, "capabilityInvocation") == kept.public_key:
                return did, kept.private_key, method
        except DidRegistryError:
            continue
    raise KeystoreError("<keystore>", f"holds no key that the ledger's document of {did} lets sign")


def next_nonce(client: LedgerClient, did: str) -> int:
    """The submitter's next nonce: one above the last the ledger (provably) recorded."""
    last, _ = client.prove(f"nonce:{did}")
    return int(last or 0) + 1


def _open(path: Path) -> tuple[Keystore, str]:
    """The keystore at ``path`` and the passphrase that opened it (to seal it again with)."""
    try:
        passphrase = passphrase_from_env_or_prompt(path)
        return Keystore.open(path, passphrase), passphrase
    except (KeystoreError, OSError) as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable


def _client(nodes: tuple[str, ...], genesis_file: Path | None) -> LedgerClient:
    """A client for the command, closed when the command ends."""
    client = ledger_client(nodes, genesis_file)
    click.get_current_context().call_on_close(client.close)
    return client


def _run(client: LedgerClient, txn: Transaction) -> None:
    try:
        client.submit_and_wait(txn, timeout=60)
    except TxnRejected as exc:
        _fail(f"the ledger refused the transaction: {exc}")
    except (LedgerUnavailable, DidRegistryError) as exc:
        _fail(str(exc))


@did_group.command("create")
@node_option
@genesis_option
@click.option(
    "--endorser", "endorser_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def create(nodes: tuple[str, ...], genesis_file: Path | None, endorser_file: Path, out: Path) -> None:
    """Create a key and its did:trellis DID on the ledger, endorsed by ENDORSER; print the DID."""
    if not nodes:
        _fail("--node is required")
    if out.exists():
        _fail(f"{out} exists; refusing to overwrite a keystore")
    endorser, _ = _open(endorser_file)
    _, endorser_key, endorser_method = signer_of(endorser)
    client = _client(nodes, genesis_file)
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did(client.genesis.network, key.public_key))
    document = initial_document(did, key.public_key).to_json()
    txn = Transaction.build(
        "did.create", network=client.genesis.network, submitter=did, nonce=1, body={"document": document}
    )
    txn = txn.signed(key, f"{did}#key-1").signed(endorser_key, endorser_method)
    keystore = Keystore.new(key, metadata={"did": did}, params=endorser.params)
    try:  # a new keystore's passphrase is asked twice: a typo would lose the key
        passphrase = passphrase_from_env_or_prompt(out, confirm=True)
    except KeystoreError as exc:
        _fail(str(exc))
        return
    keystore.save(out, passphrase, overwrite=False)  # the key is safe before it is used
    _run(client, txn)
    click.echo(did)


@did_group.command("update")
@node_option
@genesis_option
@click.option(
    "--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--rotate", is_flag=True, help="Replace the current key with a new one (kept in the keystore).")
@click.option("--add-service", nargs=3, multiple=True, metavar="ID TYPE ENDPOINT", help="Add a service.")
@click.option("--remove-service", multiple=True, metavar="ID", help="Remove a service by id or fragment.")
def update(
    nodes: tuple[str, ...],
    genesis_file: Path | None,
    key_file: Path,
    rotate: bool,
    add_service: tuple[tuple[str, str, str], ...],
    remove_service: tuple[str, ...],
) -> None:
    """Update the DID document of the keystore's DID: rotate its key, add or remove services."""
    if not nodes:
        _fail("--node is required")
    keystore, passphrase = _open(key_file)
    did, _, _ = signer_of(keystore)
    client = _client(nodes, genesis_file)
    record, _ = client.resolve_record(did)
    if record is None:
        _fail(f"{did} is not on the ledger")
        return
    on_ledger = DIDDocument.from_json(record["document"])
    try:
        _, key, method = signer_on_ledger(keystore, on_ledger)
    except KeystoreError as exc:
        _fail(str(exc))
        return
    builder = DIDDocumentBuilder.from_document(on_ledger)
    try:
        if rotate:  # the signing key and the X25519 key agreement key derived from it both change
            new = keystore.rotate()
            document = rotated_document(
                builder.to_json(), method.partition("#")[2], new.private_key.public_key, new.id
            )
            builder = DIDDocumentBuilder.from_document(DIDDocument.from_json(document))
        for fragment, service_type, endpoint in add_service:
            builder.add_service(fragment, service_type, endpoint)
        for fragment in remove_service:
            builder.remove_service(fragment)
        document = builder.to_json()
    except DidRegistryError as exc:
        _fail(str(exc))
        return
    txn = Transaction.build(
        "did.update",
        network=client.genesis.network,
        submitter=did,
        nonce=next_nonce(client, did),
        body={"document": document},
    ).signed(key, method)
    before = key_file.read_bytes()
    if rotate:  # keep the new key before the ledger starts to require it
        keystore.save(key_file, passphrase, overwrite=True)
    try:
        client.submit_and_wait(txn, timeout=60)
    except TxnRejected as exc:  # never committed: the keystore goes back to the keys the ledger knows
        if rotate:
            Keystore.decrypt(before, passphrase, source=str(key_file)).save(
                key_file, passphrase, overwrite=True
            )
        _fail(f"the ledger refused the transaction: {exc}")
    except (LedgerUnavailable, DidRegistryError) as exc:  # it may yet commit: both keys stay kept
        _fail(str(exc))
    click.echo(f"updated {did} to version {record['version'] + 1}")


@did_group.command("deactivate")
@node_option
@genesis_option
@click.option(
    "--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.confirmation_option(prompt="Deactivation is final. Go on?")
def deactivate(nodes: tuple[str, ...], genesis_file: Path | None, key_file: Path) -> None:
    """Deactivate the keystore's DID for good."""
    if not nodes:
        _fail("--node is required")
    keystore, _ = _open(key_file)
    did, _, _ = signer_of(keystore)
    client = _client(nodes, genesis_file)
    record, _ = client.resolve_record(did)
    if record is None:
        _fail(f"{did} is not on the ledger")
        return
    try:
        _, key, method = signer_on_ledger(keystore, DIDDocument.from_json(record["document"]))
    except KeystoreError as exc:
        _fail(str(exc))
        return
    txn = Transaction.build(
        "did.deactivate",
        network=client.genesis.network,
        submitter=did,
        nonce=next_nonce(client, did),
        body={},
    ).signed(key, method)
    _run(client, txn)
    click.echo(f"deactivated {did}")

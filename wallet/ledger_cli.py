"""``trellis did create|update|deactivate --node URL``: DIDs on the ledger, keys in keystores.

These commands live in the wallet layer because they read and write encrypted keystores; they add
themselves to the ``did`` group that :mod:`did_registry.cli` defines.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, ParamSpec

import click
import httpx

from did_registry.cli import did_group, genesis_option, ledger_client, node_option
from did_registry.client import LedgerClient, LedgerUnavailable, RefusedByEveryNode
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import RELATIONSHIPS, DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.verification_method import PublicKey
from did_registry.ledger.txn import Transaction, TxnRejected
from wallet.errors import KeystoreError, KeystoreExists
from wallet.keystore import Keystore, passphrase_from_env_or_prompt
from wallet.rotation import rotated_document

__all__ = [
    "UnheldAuthority",
    "UpdateOutcome",
    "next_nonce",
    "signer_of",
    "signer_on_ledger",
    "unheld_authority",
    "update_outcome",
]

UpdateOutcome = Literal["committed", "refused", "unknown"]
_TIMEOUT = 60.0  # how long a command waits for its transaction, and then for one a node says it holds
_POLL = 2.0  # how long one question to a node about a transaction it holds waits
_PROVE_CHUNK = 1000  # keys per proven read (LedgerClient.prove_many)


P = ParamSpec("P")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def _clear_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Run ``command`` with what a keystore, a file, the network or the ledger raises printed as an
    error (exit 1), not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except KeystoreExists as exc:
            _fail(f"{exc}; refusing to overwrite a keystore")
        except (KeystoreError, DidRegistryError, httpx.HTTPError, OSError, ValueError, RecursionError) as exc:
            _fail(str(exc) or type(exc).__name__)

    return wrapper


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


def update_outcome(client: LedgerClient, txn: Transaction, version: int) -> tuple[UpdateOutcome, int | None]:
    """Where ``txn``, a ``did.update`` or ``did.deactivate`` of its submitter's DID, stands, read from
    the ledger's proven state only (a node's word, such as a rejection, proves nothing).

    ``version`` is the DID record's version when ``txn`` was built. ``committed``, with the version
    it made, when a later version of the record names ``txn``; ``refused`` when none does and the
    submitter's nonce has reached ``txn``'s, so ``txn`` can never commit; else ``unknown`` (it may
    still commit). Raises :class:`LedgerUnavailable` when no node gives a proven answer.
    """
    did = txn.submitter
    # the nonce first: the record, read as of a block no older, then shows every commit up to it
    last, _ = client.prove(f"nonce:{did}")
    record, _ = client.resolve_record(did)
    newest = version if record is None else int(record["version"])
    if record is not None and record.get("txn") == txn.id:
        return "committed", newest
    keys = [f"didv:{did}:{v}" for v in range(version + 1, newest)]
    for start in range(0, len(keys), _PROVE_CHUNK):
        values, _ = client.prove_many(keys[start : start + _PROVE_CHUNK])
        for offset, value in enumerate(values):
            if isinstance(value, dict) and value.get("txn") == txn.id:
                return "committed", version + 1 + start + offset
    if int(last or 0) >= txn.nonce:
        return "refused", None
    return "unknown", None


def _settle(
    client: LedgerClient, txn: Transaction, version: int, failure: DidRegistryError
) -> tuple[UpdateOutcome, int | None]:
    """:func:`update_outcome` after submitting ``txn`` failed with ``failure``. A ``replay`` or
    ``conflict`` answer may mean a node holds ``txn`` (pending): while one says so and the outcome
    is unknown, wait for it, up to ``_TIMEOUT``. A ledger that gives no proven answer: ``unknown``."""
    deadline = time.monotonic() + _TIMEOUT
    waiting = isinstance(failure, TxnRejected) and failure.code in ("replay", "conflict")
    while True:
        try:
            outcome, made = update_outcome(client, txn, version)
        except DidRegistryError:  # LedgerUnavailable, or every proof refused
            outcome, made = "unknown", None
        left = deadline - time.monotonic()
        if outcome != "unknown" or not waiting or left <= 0:
            return outcome, made
        try:
            [status] = client.wait([txn.id], timeout=min(_POLL, left))
        except DidRegistryError:
            return outcome, made
        # pending: wait on; committed: one more proven read settles it; else no node holds it
        waiting = status.get("status") == "pending"


@dataclass(frozen=True, slots=True)
class UnheldAuthority:
    """What in a DID document can act for the DID without a key the keystore holds.

    ``methods``: id of each verification method (listed or embedded) whose key is neither a key of
    the keystore nor a key's X25519 form, with the relationships that list it. ``references``: id of
    each method of another DID that a relationship lists, with those relationships. ``controllers``:
    the controllers other than the DID itself (they may update it).
    """

    methods: dict[str, tuple[str, ...]]
    references: dict[str, tuple[str, ...]]
    controllers: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.methods or self.references or self.controllers)

    def describe(self) -> str:
        """One line naming each item."""
        items = [f"{m} ({', '.join(rels) or 'in no relationship'})" for m, rels in self.methods.items()]
        items += [f"{m} of another DID ({', '.join(rels)})" for m, rels in self.references.items()]
        items += [f"controller {c}" for c in self.controllers]
        return "; ".join(items)

    def remove_from(self, builder: DIDDocumentBuilder) -> None:
        """Take every item out of ``builder``'s document (methods with every reference to them)."""
        for method_id in self.methods:
            builder.remove_verification_method(method_id)
        for method_id, relationships in self.references.items():
            for relationship in relationships:
                builder.remove_relationship(relationship, method_id)
        if self.controllers:
            listed = builder.to_json().get("controller")
            listed = [listed] if isinstance(listed, str) else list(listed or [])
            builder.set_controller([c for c in listed if c not in self.controllers] or None)


def unheld_authority(document: DIDDocument, keystore: Keystore) -> UnheldAuthority:
    """The keys, other DIDs' keys and controllers that ``document`` lets act for its DID and that
    ``keystore`` holds no key of (see :class:`UnheldAuthority`)."""
    held: set[PublicKey] = {key.public_key for key in keystore.keys}
    held |= {key.public_key.to_x25519() for key in keystore.keys}
    listing: dict[str, list[str]] = {}
    for relationship in RELATIONSHIPS:
        for method_id in document.relationship(relationship):
            listing.setdefault(method_id, []).append(relationship)
    own = {method.id for method in document.verification_methods}
    methods = {
        m.id: tuple(listing.get(m.id, ())) for m in document.verification_methods if m.public_key not in held
    }
    references = {m: tuple(rels) for m, rels in listing.items() if m not in own}
    controllers = tuple(c for c in document.controllers if c != str(document.id))
    return UnheldAuthority(methods, references, controllers)


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
@_clear_errors
@node_option
@genesis_option
@click.option(
    "--endorser", "endorser_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def create(nodes: tuple[str, ...], genesis_file: Path | None, endorser_file: Path, out: Path) -> None:
    """Create a key and its did:trellis DID on the ledger, endorsed by ENDORSER; print the DID.

    The new keystore OUT is written before the transaction is sent, so the key cannot be lost. When
    every node refuses the transaction OUT is removed again; when the outcome is unknown (no answer,
    a timeout) it is kept, and the error says where, since the DID may still be created.
    """
    if not nodes:
        _fail("--node is required")
    if out.exists():
        _fail(f"{out} exists; refusing to overwrite a keystore")
    endorser, _ = _open(endorser_file)
    endorser_did, endorser_key, endorser_method = signer_of(endorser)
    client = _client(nodes, genesis_file)
    try:  # a proven read first: a ledger that does not answer fails here, before a keystore is written
        endorser_record, _ = client.resolve_record(endorser_did)
    except LedgerUnavailable as exc:
        _fail(f"no node gives a proven answer, so nothing was written or sent: {exc}")
        return
    if endorser_record is None:
        _fail(f"the endorser {endorser_did} is not on the ledger")
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
    _submit_create(client, txn, out)
    click.echo(did)


def _submit_create(client: LedgerClient, txn: Transaction, out: Path) -> None:
    """Submit ``txn``, the ``did.create`` of the key just saved in the new keystore ``out``, and wait
    for it to commit. When every node refuses it (a 4xx each, none saying it holds it) and the ledger
    proves the DID absent, ``out`` is removed: its key belongs to no DID. On any other failure the DID may still be created (a lost
    answer, a timeout, a node's word that it was rejected), so ``out`` stays and the error says so."""
    did = txn.submitter
    kept = (
        f"its key stays in {out}. `trellis did resolve {did} --node URL` shows whether the DID was "
        f"created: once it resolves, {out} is its keystore; if it never does, {out} can be deleted"
    )
    try:
        client.submit_and_wait(txn, timeout=_TIMEOUT)
    except RefusedByEveryNode as exc:
        if {"replay", "conflict"} & set(exc.codes):  # a node holds it, or the DID is there: it may commit
            _fail(f"{did} may or may not be created (the ledger answered {exc}); {kept}")
            return
        try:  # a node's refusal proves nothing (one may have passed it on): the ledger must prove it absent
            record, _ = client.resolve_record(did)
        except (DidRegistryError, httpx.HTTPError, ValueError, RecursionError) as read:
            _fail(f"{did} may or may not be created (the ledger answered {exc}, then: {read}); {kept}")
            return
        if record is not None:  # created all the same: the keystore is its own
            return
        out.unlink(missing_ok=True)
        _fail(
            f"the ledger refused the transaction: {exc}; the new keystore {out} is removed (no DID has its key)"
        )
    except (DidRegistryError, httpx.HTTPError, OSError, ValueError, RecursionError) as exc:
        _fail(f"{did} may or may not be created ({str(exc) or type(exc).__name__}); {kept}")
    except BaseException:  # interrupted, or a failure no one foresaw: the key must not be lost unseen
        click.echo(f"note: {did} may or may not be created; {kept}", err=True)
        raise


@did_group.command("update")
@_clear_errors
@node_option
@genesis_option
@click.option(
    "--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--rotate", is_flag=True, help="Replace the current key with a new one (kept in the keystore).")
@click.option(
    "--unknown-keys",
    type=click.Choice(["refuse", "keep", "remove"]),
    default="refuse",
    show_default=True,
    help="With --rotate, when the document lets keys the keystore does not hold (or other DIDs) act for "
    "the DID: refuse to rotate, keep them, or remove them in the same update.",
)
@click.option("--add-service", nargs=3, multiple=True, metavar="ID TYPE ENDPOINT", help="Add a service.")
@click.option("--remove-service", multiple=True, metavar="ID", help="Remove a service by id or fragment.")
def update(
    nodes: tuple[str, ...],
    genesis_file: Path | None,
    key_file: Path,
    rotate: bool,
    unknown_keys: str,
    add_service: tuple[tuple[str, str, str], ...],
    remove_service: tuple[str, ...],
) -> None:
    """Update the DID document of the keystore's DID: rotate its key, add or remove services."""
    if not nodes:
        _fail("--node is required")
    if unknown_keys != "refuse" and not rotate:
        _fail("--unknown-keys goes with --rotate")
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
    new_id = ""
    try:
        if rotate:  # the signing key and the X25519 key agreement key derived from it both change
            unheld = unheld_authority(on_ledger, keystore)
            if unheld and unknown_keys == "refuse":
                _fail(
                    f"refusing to rotate: the document of {did} on the ledger lets these act for it, and "
                    f"this keystore holds none of their keys: {unheld.describe()}. A rotation would keep "
                    "them: pass --unknown-keys remove to remove them in the same update, or --unknown-keys "
                    "keep to keep them"
                )
                return
            if unknown_keys == "remove":
                unheld.remove_from(builder)
            new = keystore.rotate()
            new_id = new.id
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
    if not rotate:
        _run(client, txn)
        click.echo(f"updated {did} to version {record['version'] + 1}")
        return
    before = key_file.read_bytes()
    keystore.save(key_file, passphrase, overwrite=True)  # keep the new key before the ledger requires it
    try:
        client.submit_and_wait(txn, timeout=_TIMEOUT)
    except DidRegistryError as exc:  # TxnRejected, LedgerUnavailable: a node's word, proving nothing
        outcome, made = _settle(client, txn, record["version"], exc)
        if outcome == "refused":  # it can never commit: the keystore goes back to the keys the ledger knows
            Keystore.decrypt(before, passphrase, source=str(key_file)).save(
                key_file, passphrase, overwrite=True
            )
            _fail(
                f"the ledger refused the transaction: {exc} (nonce {txn.nonce} of {did} went to another "
                "transaction); the keystore is back as it was"
            )
        if outcome == "unknown":  # it may yet commit: the new key must not be lost
            _fail(
                f"the rotation may or may not commit: {exc}. The new key {new_id} stays in {key_file} with "
                f"the old one; see which the ledger lists with `trellis did resolve {did}`. `did update` "
                "signs with whichever kept key it lists, so if the old one is still listed, rotate again"
            )
        click.echo(f"note: {exc}; but the ledger shows the update committed", err=True)
        click.echo(f"updated {did} to version {made}")
        return
    click.echo(f"updated {did} to version {record['version'] + 1}")


@did_group.command("deactivate")
@_clear_errors
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

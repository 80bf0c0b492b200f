"""``trellis validator list|add|remove|rotate-key --node URL``: the ledger's validator set, changed by trustees.

``list`` reads the ``validators`` state record with a proof (the set in force, the pending changes and
the head). ``add``, ``remove`` and ``rotate-key`` build a ``validator.add`` / ``validator.remove`` /
``validator.rotate_key`` transaction (docs/ledger.md) taking effect at ``--at HEIGHT`` or ``--in N``
blocks after the head (default :data:`DEFAULT_MARGIN`), sign it with a trustee keystore and any
``--cosign`` keystores (``rules.validator_quorum`` trustee signatures), submit it and wait for its
commit. Everything that can be checked first is, with one proven read of the state, and nothing is
submitted when a check fails: the address, the key (a node key file, read for its public key only,
or an Ed25519 public Multikey), the height (above the block that can commit the transaction), the id
(known, for remove and rotate-key), the trustee quorum, and the change itself against the set and its
pending changes (:func:`did_registry.ledger.validators.schedule`, as the ledger will check it).

The commands live in the wallet layer because they open encrypted keystores (as
:mod:`wallet.ledger_cli` does); :mod:`web.cli` registers the group on the ``trellis`` command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx

from did_registry.cli import genesis_option, ledger_client, node_option
from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.genesis_file import GenesisFileError
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.multikey import decode_ed25519_public_key, encode_ed25519_public_key
from did_registry.ledger.block import BlockHeader
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.ledger.validators import (
    Validator,
    ValidatorSet,
    ValidatorSetError,
    scheduled,
    set_at,
    valid_address,
)
from wallet.errors import KeystoreError
from wallet.keystore import Keystore, passphrase_from_env_or_prompt
from wallet.ledger_cli import signer_of, signer_on_ledger

__all__ = ["DEFAULT_MARGIN", "MAX_HEIGHT", "public_multikey", "validator_group"]

DEFAULT_MARGIN = 5
"""Blocks after the head at which a change takes effect when neither ``--at`` nor ``--in`` is given.

The transaction commits in a later block than the head it was built at (at the earliest the next
one), and a change must take effect after the block that commits it: five leaves room for the blocks
other transactions (or the empty blocks of an idle network, one every ``freshness_interval``) add
meanwhile. When it is not enough, the ledger refuses the transaction (``malformed``) and nothing changes."""
MAX_HEIGHT = 2**53 - 1
"""The highest ``--at`` / ``--in`` (and effective height) a transaction can carry: JSON's safe integers."""
_FC = TypeVar("_FC", bound=Callable[..., Any])
_TIMEOUT = 60.0  # how long a command waits for its transaction to commit


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@click.group("validator")
def validator_group() -> None:
    """Show and change the ledger's validator set (trustees sign the changes)."""


def _client(nodes: tuple[str, ...], genesis_file: Path | None) -> LedgerClient:
    """A client for the command (closed when the command ends); a clear error when no node answers."""
    if not nodes:
        _fail("--node is required")
    try:
        client = ledger_client(nodes, genesis_file)
    except GenesisFileError as exc:
        _fail(str(exc))
    except (httpx.HTTPError, OSError, ValueError, DidRegistryError) as exc:
        _fail(f"cannot reach {nodes[0]}: {exc}")
    click.get_current_context().call_on_close(client.close)
    return client


def _open(path: Path) -> Keystore:
    try:
        return Keystore.open(path, passphrase_from_env_or_prompt(path))
    except (KeystoreError, OSError) as exc:
        _fail(str(exc))


def public_multikey(value: str) -> tuple[str, str]:
    """The Ed25519 public Multikey ``value`` names, and where it came from.

    ``value`` is a key file (an encrypted keystore, such as a ``node-<i>.key``: opened with
    ``$TRELLIS_PASSPHRASE`` or a prompt, and only its current key's public half is used), or a
    public Multikey (``z6Mk…``, also as ``did:key:z6Mk…``). Raises :class:`click.ClickException`
    (exit 1) when it is neither."""
    path = Path(value)
    if path.is_file():
        try:
            keystore = Keystore.open(path, passphrase_from_env_or_prompt(path))
        except (KeystoreError, OSError) as exc:
            raise click.ClickException(f"--key {value}: {exc}") from None
        return encode_ed25519_public_key(keystore.current_key.public_key), f"the current key of {path}"
    text = value.removeprefix("did:key:")
    try:
        decode_ed25519_public_key(text)
    except (DidRegistryError, ValueError) as exc:
        raise click.ClickException(
            f"--key {value!r} is neither a key file nor an Ed25519 public Multikey (z6Mk…): {exc}"
        ) from None
    return text, "given"


def _key(value: str) -> str:
    try:
        multikey, source = public_multikey(value)
    except click.ClickException as exc:
        _fail(exc.message)
    click.echo(f"key: {multikey} ({source})")
    return multikey


def _height(header: BlockHeader, at: int | None, within: int | None) -> int:
    """The effective height ``--at``/``--in`` name, checked against the head ``header``."""
    head = header.height
    if at is None:
        height = head + (DEFAULT_MARGIN if within is None else within)
        if height > MAX_HEIGHT:
            _fail(f"--in {within}: block {head} + {within} is past the highest height, {MAX_HEIGHT}")
        return height
    if at <= head:
        _fail(f"--at {at} is not above the head, block {head}: a change takes effect at a future block")
    if at == head + 1:
        _fail(
            f"--at {at}: the transaction commits in block {head + 1} at the earliest, and a change must "
            f"take effect after the block that commits it; give --at {head + 2} or more, or --in"
        )
    return at


def _describe(validator: dict[str, Any]) -> str:
    return f"{validator.get('id')}  {validator.get('public_key')}  {validator.get('address')}"


def _pending_line(pending: dict[str, Any]) -> str:
    change = pending.get("change", {})
    action = str(pending.get("action", "?"))
    if action == "add":
        what = f"add {_describe(change.get('validator', {}))}"
    elif action == "rotate_key":
        what = f"rotate-key {change.get('id')} to {change.get('public_key')}"
    else:
        what = f"{action} {change.get('id')}"
    return f"  at block {pending.get('height')}: {what}"


@validator_group.command("list")
@node_option
@genesis_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON: head, since, set, pending.")
def list_validators(nodes: tuple[str, ...], genesis_file: Path | None, as_json: bool) -> None:
    """Show the validator set and pending changes.

    The set in force, the pending changes with their heights and the head, read with a proof.
    """
    client = _client(nodes, genesis_file)
    try:
        record, header = client.prove("validators")
    except DidRegistryError as exc:
        _fail(f"cannot read the validator set: {exc}")
    pending = sorted(record.get("pending", []), key=lambda p: p["height"])
    if as_json:
        answer = {"head": header.height, "since": record.get("since", 0), "set": record["set"]}
        click.echo(json.dumps({**answer, "pending": pending}, indent=2))
        return
    in_force = ValidatorSet.from_json(record["set"])
    click.echo(f"head: block {header.height}")
    click.echo(
        f"in force since block {record.get('since', 0)}: {in_force.n} validator(s), quorum {in_force.quorum} "
        f"(tolerates {in_force.f} faulty)"
    )
    for validator in record["set"]:
        click.echo(f"  {_describe(validator)}")
    click.echo("pending:" if pending else "pending: none")
    for change in pending:
        click.echo(_pending_line(change))


_signer_options = [
    node_option,
    genesis_option,
    click.option(
        "--keystore",
        "keystore_file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The submitting trustee's keystore (a did:trellis DID with the trustee role).",
    ),
    click.option(
        "--cosign",
        "cosign_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Another trustee's keystore, when rules.validator_quorum needs more signatures (repeatable).",
    ),
    click.option(
        "--at",
        "at",
        type=click.IntRange(min=1, max=MAX_HEIGHT),
        help="The block height the change takes effect at.",
    ),
    click.option(
        "--in",
        "within",
        type=click.IntRange(min=2, max=MAX_HEIGHT),
        help=f"Take effect this many blocks after the head (default {DEFAULT_MARGIN}).",
    ),
]


def _signer_params(command: _FC) -> _FC:
    for option in reversed(_signer_options):
        command = option(command)
    return command


def _change(
    action: str,
    change: dict[str, Any],
    *,
    nodes: tuple[str, ...],
    genesis_file: Path | None,
    keystore_file: Path,
    cosign_files: tuple[Path, ...],
    at: int | None,
    within: int | None,
) -> int:
    """Check, sign, submit and wait for ``validator.<action>`` of ``change``; print what committed
    and the set it makes; return the effective height. Fails (exit 1), and submits nothing, when a
    check fails."""
    keystores = [_open(keystore_file), *(_open(path) for path in cosign_files)]
    try:
        dids = [signer_of(keystore)[0] for keystore in keystores]
    except KeystoreError as exc:
        _fail(str(exc))
    if len(set(dids)) != len(dids):
        _fail("a trustee signs once: the keystores given hold the same DID twice")
    client = _client(nodes, genesis_file)
    submitter = dids[0]
    keys = ["validators", "network", f"nonce:{submitter}", *(f"did:{d}" for d in dids)]
    keys += [f"role:{d}" for d in dids]
    try:  # one proven read: the set, the rules, the nonce and the signers as of one certified block
        values, header = client.prove_many(keys)
    except DidRegistryError as exc:
        _fail(f"cannot read the ledger: {exc}")
    record, network, last = values[0], values[1] or {}, values[2]
    documents, roles = values[3 : 3 + len(dids)], values[3 + len(dids) :]
    height = _height(header, at, within)

    target = change.get("id")
    if target is not None:  # remove, rotate-key: the id must name a validator by then
        then = set_at(record, height)
        if then.by_id(target) is None:
            _fail(
                f"no validator {target!r} in the set at block {height} (its validators: "
                f"{', '.join(v.id for v in then.validators)}); nothing submitted"
            )
    try:  # the check the ledger makes: the change against the set and the changes pending by then
        after = set_at(scheduled(record, action, change, height), height)
    except ValidatorSetError as exc:
        _fail(f"the change conflicts with the validator set: {exc}; nothing submitted")

    quorum = int(network.get("rules", {}).get("validator_quorum", 1))
    trustees = [d for d, held in zip(dids, roles, strict=True) if "trustee" in (held or [])]
    if len(trustees) < quorum:
        others = [d for d in dids if d not in trustees]
        _fail(
            f"validator.{action} needs {quorum} trustee signature(s) (rules.validator_quorum), these "
            f"keystores give {len(trustees)}"
            + (f" ({', '.join(others)} not a trustee)" if others else "")
            + ": add --cosign KEYSTORE of another trustee"
        )
    signers = []
    for keystore, did, document in zip(keystores, dids, documents, strict=True):
        if document is None:
            _fail(f"{did} is not on the ledger")
        if document.get("deactivated"):
            _fail(f"{did} is deactivated")
        try:
            _, key, method = signer_on_ledger(keystore, DIDDocument.from_json(document["document"]))
        except (KeystoreError, DidRegistryError) as exc:
            _fail(str(exc))
        signers.append((key, method))

    txn = Transaction.build(
        f"validator.{action}",
        network=client.genesis.network,
        submitter=submitter,
        nonce=int(last or 0) + 1,
        body={**change, "effective_height": height},
    )
    for key, method in signers:
        txn = txn.signed(key, method)
    try:
        client.submit(txn)
    except TxnRejected as exc:
        _fail(f"the ledger refused the transaction: {exc.code}: {exc.detail}")
    except DidRegistryError as exc:  # LedgerUnavailable
        _fail(f"no node took the transaction: {exc}")
    try:
        [status] = client.wait([txn.id], timeout=_TIMEOUT)
        if status.get("status") == "rejected":
            committed = _settle_refusal(client, txn, status)
        elif status.get("status") != "committed":
            raise LedgerUnavailable(f"not committed within {_TIMEOUT:.0f} s")
        else:
            _, committed = client.txn_proof(txn.id)  # a node's word is not enough
    except DidRegistryError as exc:
        _fail(
            f"transaction {txn.id} was submitted, but its commit is not proven: {exc}. It may still commit "
            f"(at most until block {height - 1}): see `trellis validator list`"
        )
    click.echo(f"committed transaction {txn.id} in block {committed.height}")
    click.echo(
        f"the set at block {height}: {after.n} validator(s), quorum {after.quorum} (tolerates {after.f} "
        f"faulty): {', '.join(v.id for v in after.validators)}"
    )
    return height


def _settle_refusal(client: LedgerClient, txn: Transaction, status: dict[str, Any]) -> BlockHeader:
    """What became of ``txn`` when a node's ``/txns/status`` says it was rejected: that is one node's
    word, so it is checked with proven reads. The header of the block that committed it when a node
    proves it on the ledger; exit 1 saying it was refused when the submitter's nonce was proven used
    by another transaction (a lower nonce can then never commit); otherwise
    :class:`LedgerUnavailable` (the caller says it may still commit)."""
    said = f"{status.get('code')}: {status.get('detail', '')}"
    key = f"nonce:{txn.submitter}"
    try:  # first, so a commit after this read is still found by the inclusion proof below
        last, header = client.prove(key)
    except DidRegistryError as exc:
        last, header, unread = None, None, str(exc)
    try:
        return client.txn_proof(txn.id)[1]  # a node lied about the rejection: it committed
    except DidRegistryError:
        pass
    if header is not None and type(last) is int and last >= txn.nonce:
        _fail(
            f"the ledger refused the transaction: {said} (proven as of block {header.height}: nonce "
            f"{txn.nonce} of {txn.submitter} went to another transaction, the last used is {last}, so "
            "this one can no longer commit)"
        )
    proven = (
        f"nonce {txn.nonce} of {txn.submitter} is not used as of block {header.height}"
        if header is not None
        else f"its nonce cannot be read: {unread}"
    )
    raise LedgerUnavailable(
        f"a node says the ledger refused it ({said}), but that is not proven (no node proves it on the "
        f"ledger, and {proven})"
    )


@validator_group.command("add")
@_signer_params
@click.option("--id", "validator_id", required=True, help="The new validator's id (its node's `id`).")
@click.option(
    "--key", "key", required=True, help="The new node's key file, or its Ed25519 public Multikey (z6Mk…)."
)
@click.option("--address", required=True, help="host:port where the other validators reach its transport.")
def add(validator_id: str, key: str, address: str, **signing: Any) -> None:
    """Add a validator at a future height.

    Submits validator.add; the new node follows the chain until that height and votes from it.
    """
    _at_or_in(signing)
    if not valid_address(address):
        _fail(f"bad --address {address!r}: host:port (or [v6]:port) with a port from 1 to 65535")
    multikey = _key(key)
    validator = {"id": validator_id, "public_key": multikey, "address": address}
    try:
        Validator.from_json(validator)
    except (ValidatorSetError, DidRegistryError) as exc:
        _fail(str(exc))
    height = _change(
        "add",
        {"validator": validator},
        **signing,
    )
    click.echo(f"validator {validator_id} ({multikey}, {address}) joins the set at block {height}")
    click.echo(
        f"next: start {validator_id} with the key file holding {multikey}, listening for peers at "
        f"{address} and with the other nodes as its peers; it follows the chain until block {height} and "
        f"votes from it (until it does, the network counts it as a faulty validator)"
    )


@validator_group.command("remove")
@_signer_params
@click.option("--id", "validator_id", required=True, help="The validator to remove.")
def remove(validator_id: str, **signing: Any) -> None:
    """Remove a validator at a future height (validator.remove)."""
    _at_or_in(signing)
    height = _change(
        "remove",
        {"id": validator_id},
        **signing,
    )
    click.echo(f"validator {validator_id} leaves the set at block {height}")
    click.echo(
        f"next: from block {height} {validator_id} no longer votes and follows the chain as an "
        "observer; stop it once that block is committed, or keep it to serve reads"
    )


@validator_group.command("rotate-key")
@_signer_params
@click.option("--id", "validator_id", required=True, help="The validator whose key changes.")
@click.option(
    "--key", "key", required=True, help="The new key file, or the new Ed25519 public Multikey (z6Mk…)."
)
def rotate_key(validator_id: str, key: str, **signing: Any) -> None:
    """Rotate a validator's key at a future height.

    Submits validator.rotate_key; restart the node with the new key file before or after that height.
    """
    _at_or_in(signing)
    multikey = _key(key)
    height = _change(
        "rotate_key",
        {"id": validator_id, "public_key": multikey},
        **signing,
    )
    click.echo(f"validator {validator_id} signs with {multikey} from block {height}")
    click.echo(
        f"next: restart {validator_id} with the key file holding {multikey} (key_file in its "
        f"node.toml), before or after block {height}: restarted before, it follows until block {height} "
        f"and votes from it; still running with its old key at block {height}, it stops voting and "
        "follows until restarted"
    )


def _at_or_in(signing: dict[str, Any]) -> None:
    if signing["at"] is not None and signing["within"] is not None:
        _fail("give --at or --in, not both")

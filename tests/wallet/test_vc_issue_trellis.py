"""`trellis vc issue` with a did:trellis keystore issues as that DID, with the key its document on a
live single-validator ledger lists for assertionMethod; `vc verify --node` resolves it with proofs
and refuses it once the DID is deactivated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from did_registry.client import LedgerClient
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.ledger.txn import Transaction
from did_registry.node.config import build_service, load_config
from did_registry.node.server import NodeServer
from wallet import ledger_cli
from wallet.keystore import Keystore
from web.cli import main

ENV = {"TRELLIS_PASSPHRASE": "correct horse battery staple"}
SUBJECT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """`network init --validators 1`, its node serving on a free loopback port, and the options
    that reach it (`--node URL --genesis genesis.json`)."""
    result = CliRunner().invoke(
        main, ["network", "init", "--validators", "1", "--network", "vcnet", "--dir", str(tmp_path), "--kdf",
               "interactive"], env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "node-1.toml")
    key = Keystore.open(config.key_file, ENV["TRELLIS_PASSPHRASE"]).current_key
    server = NodeServer(build_service(config, key))
    server.start()
    yield tmp_path, ["--node", server.url, "--genesis", str(tmp_path / "genesis.json")]
    server.stop()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def _create(folder: Path, common: list[str], name: str = "issuer.key") -> str:
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / name))  # fmt: skip
    assert code == 0, out
    return out.strip().splitlines()[-1]


def _issue(folder: Path, *options: str, name: str = "issuer.key") -> tuple[int, str]:
    return _run("vc", "issue", "--key", str(folder / name), "--subject", SUBJECT, "--type", "DeviceCredential",
                "--claims", '{"model": "TH-1"}', *options)  # fmt: skip


def _issued(folder: Path, common: list[str], file: str = "vc.json") -> tuple[Path, dict[str, Any]]:
    code, out = _issue(folder, *common)
    assert code == 0, out
    path = folder / file
    path.write_text(out, encoding="utf-8")
    return path, json.loads(out)


def _update(
    folder: Path, common: list[str], did: str, name: str, change: Callable[[DIDDocumentBuilder], None]
) -> None:
    """Commit a did.update of ``did`` with ``change`` applied, signed with the kept key the ledger
    lists for capabilityInvocation (as `did update` signs)."""
    keystore = Keystore.open(folder / name, ENV["TRELLIS_PASSPHRASE"])
    with LedgerClient(
        [common[1]], json.loads((folder / "genesis.json").read_text(encoding="utf-8"))
    ) as client:
        record, _ = client.resolve_record(did)
        assert record is not None
        document = DIDDocument.from_json(record["document"])
        _, key, method = ledger_cli.signer_on_ledger(keystore, document)
        builder = DIDDocumentBuilder.from_document(document)
        change(builder)
        txn = Transaction.build("did.update", network=client.genesis.network, submitter=did,
                                nonce=ledger_cli.next_nonce(client, did), body={"document": builder.to_json()})  # fmt: skip
        client.submit_and_wait(txn.signed(key, method), timeout=30)


def test_a_did_trellis_keystore_issues_as_its_did_and_deactivation_revokes_it(
    network: tuple[Path, list[str]],
) -> None:
    """The credential names the did:trellis DID as issuer and its #key-1 as verification method;
    `vc verify --node` resolves the DID with proofs and says valid; after `did deactivate` the same
    credential is refused, and the keystore issues nothing more."""
    folder, common = network
    did = _create(folder, common)
    path, credential = _issued(folder, common)
    assert credential["issuer"] == did
    assert credential["proof"]["verificationMethod"] == f"{did}#key-1"
    assert credential["proof"]["proofPurpose"] == "assertionMethod"

    code, out = _run("vc", "verify", str(path), *common)
    assert code == 0, out
    assert f"issued by {did}" in out

    code, out = _run("vc", "verify", str(path))  # without --node a did:trellis issuer cannot be resolved
    assert code == 1
    assert "refused" in out

    code, out = _run("did", "deactivate", *common, "--key", str(folder / "issuer.key"), "--yes")
    assert code == 0, out
    code, out = _run("vc", "verify", str(path), *common)
    assert code == 1, out
    assert "refused" in out and "deactivated" in out

    code, out = _issue(folder, *common)
    assert code == 1
    assert "deactivated" in out


def test_after_a_rotation_the_new_key_issues(network: tuple[Path, list[str]]) -> None:
    """After `did update --rotate` the credential is signed with #key-2, which the document lists."""
    folder, common = network
    did = _create(folder, common)
    code, out = _run("did", "update", *common, "--key", str(folder / "issuer.key"), "--rotate")
    assert code == 0, out
    path, credential = _issued(folder, common)
    assert credential["proof"]["verificationMethod"] == f"{did}#key-2"
    code, out = _run("vc", "verify", str(path), *common)
    assert code == 0, out


def test_after_a_rotation_that_never_committed_the_key_the_ledger_lists_issues(
    network: tuple[Path, list[str]],
) -> None:
    """A keystore whose current key the ledger does not know (its rotation never committed) issues
    with the kept key the document lists for assertionMethod, not with the current key's id."""
    folder, common = network
    did = _create(folder, common)
    keystore = Keystore.open(folder / "issuer.key", ENV["TRELLIS_PASSPHRASE"])
    keystore.rotate()
    keystore.save(folder / "issuer.key", ENV["TRELLIS_PASSPHRASE"], overwrite=True)
    path, credential = _issued(folder, common)
    assert credential["proof"]["verificationMethod"] == f"{did}#key-1"
    code, out = _run("vc", "verify", str(path), *common)
    assert code == 0, out


def test_a_document_without_the_keystore_s_key_in_assertion_method_is_refused(
    network: tuple[Path, list[str]],
) -> None:
    """When the document lists none of the keystore's keys for assertionMethod, nothing is issued
    (a credential signed anyway could never verify)."""
    folder, common = network
    did = _create(folder, common)
    _update(
        folder, common, did, "issuer.key", lambda b: b.remove_relationship("assertionMethod", f"{did}#key-1")
    )
    code, out = _issue(folder, *common)
    assert code == 1
    assert "assertionMethod" in out
    assert "proof" not in out


def test_a_did_trellis_keystore_without_node_is_a_clear_error(network: tuple[Path, list[str]]) -> None:
    """Without --node the ledger's document cannot be read: the error says to pass it."""
    folder, common = network
    _create(folder, common)
    code, out = _issue(folder)
    assert code == 1
    assert "--node" in out
    assert "proof" not in out


def test_a_did_key_keystore_still_issues_as_its_did_key(tmp_path: Path) -> None:
    """A did:key keystore issues as its did:key offline (a --node is not needed)."""
    code, did = _run("key", "new", "--out", str(tmp_path / "issuer.key"), "--kdf", "interactive")
    assert code == 0, did
    code, out = _issue(tmp_path)
    assert code == 0, out
    credential = json.loads(out)
    assert credential["issuer"] == did.strip()
    assert credential["proof"]["verificationMethod"].startswith(f"{did.strip()}#z6Mk")


def test_an_unreachable_node_is_a_clear_error(network: tuple[Path, list[str]]) -> None:
    """A node that does not answer: exit 1 naming the DID, no credential, no traceback."""
    folder, common = network
    did = _create(folder, common)
    code, out = _issue(folder, "--node", "http://127.0.0.1:9", "--genesis", str(folder / "genesis.json"))
    assert code == 1
    assert f"cannot issue as {did}" in out

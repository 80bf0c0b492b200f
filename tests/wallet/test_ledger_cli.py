"""`trellis did create|update|deactivate|resolve --node`: DIDs on a live single-validator node."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node.config import build_service, load_config
from did_registry.node.server import NodeServer
from wallet import ledger_cli
from wallet.keystore import Keystore
from web.cli import main

ENV = {"TRELLIS_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`network init --validators 1`, and its node serving on a free loopback port."""
    result = CliRunner().invoke(
        main, ["network", "init", "--validators", "1", "--network", "clinet", "--dir", str(tmp_path), "--kdf",
               "interactive"], env=ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "node-1.toml")
    key = Keystore.open(config.key_file, ENV["TRELLIS_PASSPHRASE"]).current_key
    server = NodeServer(build_service(config, key))
    server.start()
    yield tmp_path, server.url
    server.stop()


def _run(*args: str, folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=ENV)
    return result.exit_code, result.output


def test_create_resolve_rotate_deactivate(network: tuple[Path, str]) -> None:
    """A DID is created, resolved, rotated to a new key (kept in the keystore) and deactivated."""
    folder, url = network
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / "device.key"), folder=folder)  # fmt: skip
    assert code == 0, out
    did = out.strip().splitlines()[-1]
    assert did.startswith("did:trellis:clinet:")

    code, out = _run("did", "resolve", did, *common, folder=folder)
    assert code == 0, out
    assert json.loads(out)["didDocumentMetadata"]["versionId"] == "1"

    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate",
                     "--add-service", "status", "DeviceStatus", "https://device.example/status", folder=folder)  # fmt: skip
    assert code == 0, out
    document = json.loads(_run("did", "resolve", did, *common, folder=folder)[1])["didDocument"]
    fragments = sorted(m["id"].partition("#")[2] for m in document["verificationMethod"])
    assert fragments == ["key-2", "key-agreement-2"]
    assert document["service"][0]["serviceEndpoint"] == "https://device.example/status"
    keystore = Keystore.open(folder / "device.key", ENV["TRELLIS_PASSPHRASE"])
    assert [k.id for k in keystore.keys] == ["key-1", "key-2"]

    code, out = _run(
        "did", "deactivate", *common, "--key", str(folder / "device.key"), "--yes", folder=folder
    )
    assert code == 0, out
    code, out = _run("did", "resolve", did, *common, folder=folder)
    assert json.loads(out)["didDocumentMetadata"]["deactivated"] is True


def test_create_with_a_non_endorser_is_refused(network: tuple[Path, str]) -> None:
    """A DID endorsed by a key without an endorsing role is refused, naming the rule."""
    folder, url = network
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / "a.key"), folder=folder)  # fmt: skip
    assert code == 0, out
    code, out = _run("did", "create", *common, "--endorser", str(folder / "a.key"), "--out",
                     str(folder / "b.key"), folder=folder)  # fmt: skip
    assert code == 1
    assert "forbidden" in out


def test_unreachable_node_is_a_clear_error(network: tuple[Path, str]) -> None:
    """A node that does not answer gives exit 1 and says so, without a traceback."""
    folder, _ = network
    code, out = _run("did", "resolve", "did:trellis:clinet:4mJ1PRfKvTDzaWMTnMpTqq", "--node", "http://127.0.0.1:9",
                     "--genesis", str(folder / "genesis.json"), folder=folder)  # fmt: skip
    assert code == 1
    assert "internalError" in out or "error" in out


def _created(folder: Path, url: str, name: str) -> tuple[str, list[str]]:
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    code, out = _run("did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                     str(folder / name), folder=folder)  # fmt: skip
    assert code == 0, out
    return out.strip().splitlines()[-1], common


def _client(folder: Path, url: str) -> LedgerClient:
    return LedgerClient([url], json.loads((folder / "genesis.json").read_text(encoding="utf-8")))


def _listed(folder: Path, url: str, did: str) -> list[str]:
    """The fragments of the methods the DID's document on the ledger lists."""
    with _client(folder, url) as client:
        record, _ = client.resolve_record(did)
    assert record is not None
    return sorted(m.fragment or "" for m in DIDDocument.from_json(record["document"]).verification_methods)


def _key_ids(folder: Path, name: str = "device.key") -> list[str]:
    return [k.id for k in Keystore.open(folder / name, ENV["TRELLIS_PASSPHRASE"]).keys]


def _update_with_key_1(
    folder: Path, url: str, did: str, change: Callable[[DIDDocumentBuilder], None]
) -> None:
    """Commit a did.update of ``did`` signed with the keystore's key-1 (the DID's first key), as a
    second process (or whoever else holds key-1) would."""
    key = Keystore.open(folder / "device.key", ENV["TRELLIS_PASSPHRASE"]).keys[0].private_key
    with _client(folder, url) as client:
        record, _ = client.resolve_record(did)
        assert record is not None
        builder = DIDDocumentBuilder.from_document(DIDDocument.from_json(record["document"]))
        change(builder)
        txn = Transaction.build("did.update", network=client.genesis.network, submitter=did,
                                nonce=ledger_cli.next_nonce(client, did), body={"document": builder.to_json()})  # fmt: skip
        client.submit_and_wait(txn.signed(key, f"{did}#key-1"), timeout=30)


def test_a_refused_rotation_leaves_the_keys_the_ledger_knows(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation the ledger refuses (another update took its nonce first, so it can never commit)
    puts the keystore back as it was, and the next update signs and rotates as usual."""
    folder, url = network
    did, common = _created(folder, url, "device.key")
    real = LedgerClient.submit_and_wait
    overtook: list[bool] = []

    def overtaken(self: LedgerClient, txn: Transaction, timeout: float = 30.0) -> Any:
        if not overtook:  # the first submission (the rotation's) comes after another update's
            overtook.append(True)
            _update_with_key_1(
                folder, url, did, lambda b: b.add_service("first", "T", "https://first.example")
            )
        return real(self, txn, timeout)

    monkeypatch.setattr(LedgerClient, "submit_and_wait", overtaken)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert code == 1 and "the ledger refused the transaction: replay" in out
    assert _key_ids(folder) == ["key-1"]
    monkeypatch.setattr(LedgerClient, "submit_and_wait", real)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert code == 0, out


def test_a_rotation_whose_answer_was_lost_keeps_the_new_key(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first node admits the rotation but its answer is lost; the next node answers that the
    transaction is already there (a replay). The ledger shows it committed: the command succeeds and
    the keystore keeps the new key the ledger now lists."""
    folder, url = network
    did, _ = _created(folder, url, "device.key")
    alias = url.replace("127.0.0.1", "localhost")  # the same node under a second name: "another node"
    common = ["--node", url, "--node", alias, "--genesis", str(folder / "genesis.json")]
    real_post = httpx.Client.post
    lost: list[str] = []

    def post(self: httpx.Client, target: str, *args: Any, **kwargs: Any) -> httpx.Response:
        response = real_post(self, target, *args, **kwargs)
        if str(target).endswith("/txns") and not lost:
            lost.append(str(target))
            raise httpx.ReadTimeout("the answer was lost", request=response.request)
        return response

    monkeypatch.setattr(httpx.Client, "post", post)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert lost and code == 0, out
    assert _listed(folder, url, did) == ["key-2", "key-agreement-2"]
    assert _key_ids(folder) == ["key-1", "key-2"]


def _with_spare_key(folder: Path, url: str) -> tuple[str, list[str]]:
    """A created DID whose document also lists a key the keystore does not hold (``#spare``, for
    capabilityInvocation); its DID and the common CLI options."""
    did, common = _created(folder, url, "device.key")
    spare = Ed25519PrivateKey.generate().public_key
    _update_with_key_1(folder, url, did, lambda b: b.add_verification_method(
        spare, fragment="spare", relationships=("capabilityInvocation",)))  # fmt: skip
    return did, common


def test_a_false_rejection_keeps_the_new_key(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that answers a rotation with a rejection but keeps the signed update, and submits it
    after the command has ended, cannot take the DID away: the keystore keeps the new key."""
    folder, url = network
    did, common = _created(folder, url, "device.key")
    held: list[Transaction] = []

    def hostile(self: LedgerClient, txns: Transaction) -> list[str]:
        held.append(txns)
        raise TxnRejected("forbidden", "a lie", txn_id=txns.id)

    monkeypatch.setattr(LedgerClient, "submit", hostile)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert code == 1 and "may or may not commit" in out
    assert _key_ids(folder) == ["key-1", "key-2"]
    monkeypatch.undo()
    with _client(folder, url) as client:
        client.submit_and_wait(held, timeout=30)
    assert _listed(folder, url, did) == ["key-2", "key-agreement-2"]
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--add-service", "s", "T",
                     "https://x.example", folder=folder)  # fmt: skip
    assert code == 0, out


def test_a_rotation_refuses_to_keep_a_key_the_keystore_lacks(network: tuple[Path, str]) -> None:
    """A key the keystore does not hold (here: added by whoever stole key-1) makes a rotation
    refuse, naming the key, and nothing changes."""
    folder, url = network
    did, common = _with_spare_key(folder, url)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", folder=folder)
    assert code == 1 and f"{did}#spare (capabilityInvocation)" in out
    assert _key_ids(folder) == ["key-1"]
    assert _listed(folder, url, did) == ["key-1", "key-agreement-1", "spare"]


def test_unknown_keys_remove_takes_them_out_in_the_rotation(network: tuple[Path, str]) -> None:
    folder, url = network
    did, common = _with_spare_key(folder, url)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", "--unknown-keys",
                     "remove", folder=folder)  # fmt: skip
    assert code == 0, out
    assert _listed(folder, url, did) == ["key-2", "key-agreement-2"]


def test_unknown_keys_keep_rotates_and_keeps_them(network: tuple[Path, str]) -> None:
    folder, url = network
    did, common = _with_spare_key(folder, url)
    code, out = _run("did", "update", *common, "--key", str(folder / "device.key"), "--rotate", "--unknown-keys",
                     "keep", folder=folder)  # fmt: skip
    assert code == 0, out
    assert _listed(folder, url, did) == ["key-2", "key-agreement-2", "spare"]


def test_unheld_authority_names_other_dids_keys_and_controllers() -> None:
    """Besides unknown keys, a relationship listing another DID's key and a controller other than
    the DID itself can act for the DID: both are named."""
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did("clinet", key.public_key))
    other = "did:trellis:clinet:4mJ1PRfKvTDzaWMTnMpTqq"
    builder = DIDDocumentBuilder.from_document(initial_document(did, key.public_key))
    builder.set_controller([did, other])
    builder.add_relationship("capabilityInvocation", f"{other}#key-1")
    unheld = ledger_cli.unheld_authority(builder.build(), Keystore.new(key, metadata={"did": did}))
    assert unheld.methods == {}
    assert unheld.references == {f"{other}#key-1": ("capabilityInvocation",)}
    assert unheld.controllers == (other,)


def test_unheld_authority_removes_what_it_names() -> None:
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did("clinet", key.public_key))
    other = "did:trellis:clinet:4mJ1PRfKvTDzaWMTnMpTqq"
    builder = DIDDocumentBuilder.from_document(initial_document(did, key.public_key))
    builder.set_controller([did, other])
    builder.add_relationship("authentication", f"{other}#key-1")
    builder.add_verification_method(Ed25519PrivateKey.generate().public_key, fragment="spare",
                                    relationships=("capabilityInvocation",))  # fmt: skip
    keystore = Keystore.new(key, metadata={"did": did})
    ledger_cli.unheld_authority(builder.build(), keystore).remove_from(builder)
    assert builder.build().to_json() == {
        **initial_document(did, key.public_key).to_json(),
        "controller": [did],
    }


def test_unknown_keys_is_refused_without_rotate(tmp_path: Path) -> None:
    (tmp_path / "device.key").write_bytes(b"")
    code, out = _run("did", "update", "--node", "http://127.0.0.1:9", "--key", str(tmp_path / "device.key"),
                     "--unknown-keys", "keep", folder=tmp_path)  # fmt: skip
    assert code == 1 and "--unknown-keys goes with --rotate" in out


def test_unheld_authority_is_empty_for_a_document_of_the_keystore_s_keys() -> None:
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did("clinet", key.public_key))
    keystore = Keystore.new(key, metadata={"did": did})
    assert not ledger_cli.unheld_authority(initial_document(did, key.public_key), keystore)


def test_after_a_rotation_that_never_committed_the_key_the_ledger_knows_signs(
    network: tuple[Path, str],
) -> None:
    """A keystore whose current key the ledger never learnt (the update's answer was lost and it did
    not commit) still updates its DID: the kept key the document lists signs, and rotating again works."""
    folder, url = network
    did, common = _created(folder, url, "device.key")
    path = folder / "device.key"
    keystore = Keystore.open(path, ENV["TRELLIS_PASSPHRASE"])
    keystore.rotate()  # as a rotation does before it submits
    keystore.save(path, ENV["TRELLIS_PASSPHRASE"], overwrite=True)
    code, out = _run("did", "update", *common, "--key", str(path), "--add-service", "s", "T", "https://x.example",
                     folder=folder)  # fmt: skip
    assert code == 0, out
    code, out = _run("did", "update", *common, "--key", str(path), "--rotate", folder=folder)
    assert code == 0, out
    document = json.loads(_run("did", "resolve", did, *common, folder=folder)[1])["didDocument"]
    assert sorted(m["id"].partition("#")[2] for m in document["verificationMethod"]) == [
        "key-3",
        "key-agreement-3",
    ]


def _prompting(monkeypatch: pytest.MonkeyPatch, answer: Callable[[str], str]) -> None:
    """The commands ask passphrases on the terminal with ``answer`` (no TRELLIS_PASSPHRASE)."""
    real = ledger_cli.passphrase_from_env_or_prompt

    def asking(path: Path | None = None, *, confirm: bool = False) -> str:
        return real(path, confirm=confirm, environ={}, prompt=answer)

    monkeypatch.setattr(ledger_cli, "passphrase_from_env_or_prompt", asking)


def test_a_new_keystore_s_passphrase_is_asked_twice(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without TRELLIS_PASSPHRASE, `did create` asks the new keystore's passphrase twice, and a typo in
    the second answer refuses before anything is written or sent."""
    folder, url = network
    answers = iter(
        [ENV["TRELLIS_PASSPHRASE"], "correct horse battery staple", "correct horse battery stapel"]
    )
    _prompting(monkeypatch, lambda prompt: next(answers))
    common = ["--node", url, "--genesis", str(folder / "genesis.json")]
    result = CliRunner().invoke(main, ["did", "create", *common, "--endorser", str(folder / "trustee.key"), "--out",
                                       str(folder / "typo.key")], env={"TRELLIS_PASSPHRASE": ""})  # fmt: skip
    assert result.exit_code == 1 and "passphrase" in result.output
    assert not (folder / "typo.key").exists()


def test_a_rotation_seals_the_keystore_with_the_passphrase_that_opened_it(
    network: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keystore is not asked for a second passphrase to seal it after a rotation."""
    folder, url = network
    _, common = _created(folder, url, "device.key")
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return ENV["TRELLIS_PASSPHRASE"] if len(asked) == 1 else "a typo the second time"

    _prompting(monkeypatch, answer)
    result = CliRunner().invoke(main, ["did", "update", *common, "--key", str(folder / "device.key"), "--rotate"],
                                env={"TRELLIS_PASSPHRASE": ""})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(asked) == 1
    keystore = Keystore.open(folder / "device.key", ENV["TRELLIS_PASSPHRASE"])
    assert [k.id for k in keystore.keys] == ["key-1", "key-2"]

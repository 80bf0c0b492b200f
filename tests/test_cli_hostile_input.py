"""The `trellis` commands answer bad input and hostile answers with a clear error, never a traceback."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import trellis_did
from did_registry.node.config import build_service, load_config
from did_registry.node.server import NodeServer
from fleet.cli import main  # the `trellis` command (web.cli's, with `simulate` added)
from wallet.enroll import EnrollmentError, _Answer, _refusal, read_qr_image
from wallet.keystore import Keystore

ENV = {
    "TRELLIS_PASSPHRASE": "correct horse battery staple",
    "TRELLIS_ADMIN_PASSWORD": "a long enough password 1",
}
DEEP = "[" * 5000 + "]" * 5000


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={**ENV, **(env or {})})


def _clear_error(result: Result) -> str:
    """The output of a command that failed cleanly (exit 1 or 2, no exception but SystemExit)."""
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result.output


def test_a_keystore_into_a_folder_that_is_not_there(tmp_path: Path) -> None:
    out = _clear_error(_run("key", "new", "--out", str(tmp_path / "none" / "x.key"), "--kdf", "interactive"))
    assert out.startswith("error:")


def test_a_keystore_already_there_names_the_option_that_replaces_it(tmp_path: Path) -> None:
    path = str(tmp_path / "x.key")
    assert _run("key", "new", "--out", path, "--kdf", "interactive").exit_code == 0
    assert "--force" in _clear_error(_run("key", "new", "--out", path, "--kdf", "interactive"))


def test_a_validity_beyond_a_century_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "x.key")
    _run("key", "new", "--out", path, "--kdf", "interactive")
    out = _clear_error(
        _run("vc", "issue", "--key", path, "--subject", "did:key:z6Mkx", "--valid-days", "3000000")
    )
    assert "valid-days" in out


def test_claims_nested_too_deeply_are_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "x.key")
    _run("key", "new", "--out", path, "--kdf", "interactive")
    out = _clear_error(_run("vc", "issue", "--key", path, "--subject", "did:key:z6Mkx", "--claims", DEEP))
    assert "nested too deeply" in out


@pytest.mark.parametrize("document", [DEEP, '{"type": 5}', '{"type": "NotAVerifiablePresentation"}'])
def test_verify_refuses_hostile_documents(tmp_path: Path, document: str) -> None:
    path = tmp_path / "doc.json"
    path.write_text(document)
    assert "refused" in _clear_error(_run("vc", "verify", str(path)))


@pytest.mark.parametrize(
    "image",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00", b"P6\n3 x\n255\n", b"not an image at all"],
    ids=["truncated png header", "corrupt ppm", "no image"],
)
def test_an_image_that_does_not_read_is_an_enrolment_error(tmp_path: Path, image: bytes) -> None:
    path = tmp_path / "qr.png"
    path.write_bytes(image)
    with pytest.raises(EnrollmentError, match="cannot read an image"):
        read_qr_image(path)


def test_a_portal_refusal_cannot_send_terminal_escapes() -> None:
    """A hostile portal's problem detail is printed with its control characters escaped (an OSC
    sequence could retitle the terminal, a carriage return fake the line)."""
    body = json.dumps({"detail": "\x1b]0;PWNED\x07\rfake: enrolled OK"}).encode()
    message = str(_refusal(_Answer(400, body)))
    assert "\x1b" not in message and "\x07" not in message and "\r" not in message
    assert "\\x1b]0;PWNED" in message


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"TRELLIS_WEB_SESSION_HOURS": "abc"}, ()),
        ({"TRELLIS_WEB_SESSION_HOURS": "1e400"}, ()),
        ({}, ("--database-url", "notaurl")),
    ],
    ids=["session hours not a number", "session hours too large", "database url not a url"],
)
def test_create_admin_with_a_bad_setting_is_a_clear_error(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = _run(
        "web", "create-admin", "--username", "root", "--instance", str(tmp_path / "i"), *args, env=env
    )
    assert _clear_error(result).startswith("error:")


def test_the_instance_folder_is_made_private_even_when_it_was_there(tmp_path: Path) -> None:
    """The instance folder holds the database (password hashes): an existing one open to others is
    made private (0700)."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    instance.chmod(0o755)
    assert _run("web", "create-admin", "--username", "root", "--instance", str(instance)).exit_code == 0
    assert instance.stat().st_mode & 0o777 == 0o700


def test_network_init_refuses_a_folder_holding_a_node_database(tmp_path: Path) -> None:
    """An old node-1.db would hold another network's chain: init refuses the folder."""
    (tmp_path / "node-1.db").write_bytes(b"")
    out = _clear_error(
        _run("network", "init", "--dir", str(tmp_path), "--validators", "1", "--kdf", "interactive")
    )
    assert "node-1.db" in out


def test_did_create_with_a_did_key_endorser_is_a_clear_error(tmp_path: Path) -> None:
    """An endorser keystore of a did:key (no did:trellis DID to endorse with) is refused, not a traceback."""
    key = str(tmp_path / "k.key")
    assert _run("key", "new", "--out", key, "--kdf", "interactive").exit_code == 0
    out = _clear_error(
        _run(
            "did",
            "create",
            "--node",
            "http://127.0.0.1:1",
            "--endorser",
            key,
            "--out",
            str(tmp_path / "n.key"),
        )
    )
    assert out.startswith("error:") and "did:trellis" in out


def test_did_deactivate_with_no_node_answering_is_a_clear_error(tmp_path: Path) -> None:
    """Nothing listens on the node's port: an error naming the failure, not a traceback."""
    key = str(tmp_path / "k.key")
    assert _run("key", "new", "--out", key, "--kdf", "interactive").exit_code == 0
    out = _clear_error(_run("did", "deactivate", "--yes", "--node", "http://127.0.0.1:1", "--key", key))
    assert out.startswith("error:")


def test_did_resolve_with_a_genesis_nested_too_deeply_is_a_clear_error(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(DEEP)
    out = _clear_error(
        _run(
            "did",
            "resolve",
            "did:trellis:testnet:x",
            "--node",
            "http://127.0.0.1:1",
            "--genesis",
            str(genesis),
        )
    )
    assert out.startswith("error:")


def _network_files(folder: Path) -> Path:
    """`trellis network init` of one validator (network ``hostile``) into ``folder``."""
    result = _run(
        "network",
        "init",
        "--validators",
        "1",
        "--network",
        "hostile",
        "--dir",
        str(folder),
        "--kdf",
        "interactive",
    )
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A one-validator network's folder and its node serving on a free loopback port."""
    folder = _network_files(tmp_path / "net")
    config = load_config(folder / "node-1.toml")
    server = NodeServer(
        build_service(config, Keystore.open(config.key_file, ENV["TRELLIS_PASSPHRASE"]).current_key)
    )
    server.start()
    yield folder, server.url
    server.stop()


@pytest.fixture
def sigterm_kept() -> Iterator[None]:
    """`trellis simulate` makes SIGTERM exit; the test process gets its own handler back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _create(folder: Path, url: str, endorser: str, out: str) -> Result:
    return _run(
        "did",
        "create",
        "--node",
        url,
        "--genesis",
        str(folder / "genesis.json"),
        "--endorser",
        str(folder / endorser),
        "--out",
        str(folder / out),
    )


def test_a_create_every_node_refuses_leaves_no_keystore(node: tuple[Path, str]) -> None:
    """A did:trellis DID without an endorsing role endorses: every node refuses (403), so the new
    keystore, whose key belongs to no DID, is removed and the error says so."""
    folder, url = node
    assert _create(folder, url, "trustee.key", "a.key").exit_code == 0
    out = _clear_error(_create(folder, url, "a.key", "b.key"))
    assert "forbidden" in out and "removed" in out
    assert not (folder / "b.key").exists()


def test_a_create_whose_answer_is_lost_keeps_the_keystore_and_says_where(
    node: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node takes the create but its answer is lost: the DID may yet be created (here it is), so
    the new keystore stays, and the error names it and the DID."""
    folder, url = node
    real_post = httpx.Client.post

    def lost(self: httpx.Client, target: str, *args: Any, **kwargs: Any) -> httpx.Response:
        response = real_post(self, target, *args, **kwargs)
        if str(target).endswith("/txns"):
            raise httpx.ReadTimeout("the answer was lost", request=response.request)
        return response

    monkeypatch.setattr(httpx.Client, "post", lost)
    out = _clear_error(_create(folder, url, "trustee.key", "d.key"))
    did = Keystore.open(folder / "d.key", ENV["TRELLIS_PASSPHRASE"]).did
    assert did is not None and did in out and str(folder / "d.key") in out


def test_a_create_no_node_answers_writes_no_keystore(tmp_path: Path) -> None:
    """With the genesis given and no node answering, `did create` fails before it writes a keystore."""
    folder = _network_files(tmp_path)
    assert _create(folder, "http://127.0.0.1:1", "trustee.key", "n.key").exit_code == 1
    assert not (folder / "n.key").exists()


def test_simulate_with_a_wrong_passphrase_is_a_one_line_error(tmp_path: Path, sigterm_kept: None) -> None:
    folder = _network_files(tmp_path)
    result = _run(
        "simulate",
        "--node",
        "http://127.0.0.1:1",
        "--genesis",
        str(folder / "genesis.json"),
        "--trustee",
        str(folder / "trustee.key"),
        env={"TRELLIS_PASSPHRASE": "not the passphrase"},
    )
    out = _clear_error(result)
    assert out.startswith("error:") and "passphrase" in out and str(folder / "trustee.key") in out
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("duration", ["inf", "nan", "-1", "0"])
def test_simulate_refuses_a_duration_that_is_no_time_span(duration: str, sigterm_kept: None) -> None:
    result = _run("simulate", "--duration", duration)
    assert result.exit_code == 2 and "--duration" in result.output


@pytest.mark.parametrize("genesis", [None, "not json", "{}"], ids=["missing", "not json", "no genesis"])
def test_web_serve_with_a_genesis_it_cannot_use_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, genesis: str | None
) -> None:
    """The portal reads its genesis at first use: serve checks it first, and starts nothing."""
    path = tmp_path / "genesis.json"
    if genesis is not None:
        path.write_text(genesis)
    served: list[object] = []
    monkeypatch.setattr("web.server.serve", lambda *args, **kwargs: served.append(args))
    out = _clear_error(
        _run("web", "serve", "--port", "0", "--instance", str(tmp_path / "i"), "--genesis", str(path))
    )
    assert out.startswith("error:") and str(path) in out
    assert served == []


@pytest.mark.parametrize(
    "command",
    [
        ("did", "resolve", "did:trellis:hostile:x", "--node", "http://127.0.0.1:1"),
        ("validator", "list", "--node", "http://127.0.0.1:1"),
        ("vc", "verify", "DOCUMENT", "--node", "http://127.0.0.1:1"),
        ("simulate", "--node", "http://127.0.0.1:1", "--trustee", __file__),
    ],
    ids=["did resolve", "validator list", "vc verify", "simulate"],
)
def test_a_malformed_genesis_file_is_named_not_taken_for_an_unreachable_node(
    tmp_path: Path, command: tuple[str, ...], sigterm_kept: None
) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text('{"network": "hostile"')
    document = tmp_path / "document.json"
    document.write_text("{}")
    args = [str(document) if arg == "DOCUMENT" else arg for arg in command]
    out = _clear_error(_run(*args, "--genesis", str(genesis)))
    assert f"bad genesis file {genesis}: not JSON" in out and "cannot reach" not in out


def test_key_help_promises_only_what_key_does() -> None:
    """`trellis key` has one subcommand, `new`: its help promises no inspecting."""
    out = _run("key", "--help").output
    assert "inspect" not in out.lower() and "new" in out


@pytest.mark.parametrize("version_id", ["abc", "0", ""])
def test_a_version_id_that_is_no_version_is_invalid_options(tmp_path: Path, version_id: str) -> None:
    """DID Resolution: a bad resolution option is `invalidOptions` (not `invalidDid`, nor ignored)."""
    folder = _network_files(tmp_path)
    did = str(trellis_did("hostile", Ed25519PrivateKey.generate().public_key))
    result = _run(
        "did",
        "resolve",
        did,
        "--version-id",
        version_id,
        "--node",
        "http://127.0.0.1:1",
        "--genesis",
        str(folder / "genesis.json"),
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["didResolutionMetadata"]["error"] == "invalidOptions"


def _relaying_hostile_node(monkeypatch: pytest.MonkeyPatch, url: str) -> str:
    """A hostile node (the URL returned) that passes every request on to the real node at ``url``,
    and answers a submission with a 400 once the real node has committed it."""
    real_send = httpx.Client.send
    real = httpx.URL(url)

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if request.url.port != 1:
            return real_send(self, request, **kwargs)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        moved = httpx.Request(
            request.method, request.url.copy_with(host=real.host, port=real.port), headers=headers,
            content=request.content,
        )  # fmt: skip
        answer = real_send(self, moved, **kwargs)
        if request.method != "POST" or request.url.path != "/txns":
            return answer
        txn_id = json.loads(answer.read())["txns"][0]["id"]
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/txns/{txn_id}").json().get("status") != "committed":
            assert time.monotonic() < deadline, "the relayed create did not commit"
            time.sleep(0.05)
        return httpx.Response(400, json={"code": "malformed", "detail": "no such thing"}, request=request)

    monkeypatch.setattr(httpx.Client, "send", send)
    return "http://127.0.0.1:1"


def _create_at(folder: Path, out: str, *nodes: str) -> Result:
    options = [part for node in nodes for part in ("--node", node)]
    return _run("did", "create", *options, "--genesis", str(folder / "genesis.json"),
                "--endorser", str(folder / "trustee.key"), "--out", str(folder / out))  # fmt: skip


def test_a_create_one_node_refuses_but_another_holds_keeps_the_keystore(
    node: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reviewer's hostile node passed the create on, then answered 400; the honest node answered
    409 replay (it holds it). Every node refused, but the DID was created: the keystore, its only key,
    must stay (it was removed)."""
    folder, url = node
    hostile = _relaying_hostile_node(monkeypatch, url)
    result = _create_at(folder, "h.key", hostile, url)
    assert (folder / "h.key").exists(), result.output
    did = Keystore.open(folder / "h.key", ENV["TRELLIS_PASSPHRASE"]).did
    assert did is not None and did in result.output


def test_a_create_refused_by_every_node_yet_on_the_ledger_succeeds(
    node: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every node refused with a 400, yet the ledger proves the DID created: it is, and the keystore
    is its own (a node's refusal proves nothing)."""
    folder, url = node
    hostile = _relaying_hostile_node(monkeypatch, url)
    result = _create_at(folder, "r.key", hostile)
    assert result.exit_code == 0, result.output
    did = Keystore.open(folder / "r.key", ENV["TRELLIS_PASSPHRASE"]).did
    assert did is not None and did in result.output

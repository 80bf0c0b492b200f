"""The `trellis` commands answer bad input and hostile answers with a clear error, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wallet.enroll import EnrollmentError, _Answer, _refusal, read_qr_image
from web.cli import main

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

"""The `trellis key` and `trellis vc` commands: the contract the acceptance checks rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from web.cli import main

ENV = {"TRELLIS_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner."""
    return CliRunner()


def _new_key(runner: CliRunner, path: Path) -> str:
    result = runner.invoke(main, ["key", "new", "--out", str(path), "--kdf", "interactive"], env=ENV)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _issue(runner: CliRunner, tmp_path: Path, *extra: str) -> tuple[Path, str, str]:
    issuer = _new_key(runner, tmp_path / "issuer.key")
    device = _new_key(runner, tmp_path / "device.key")
    result = runner.invoke(
        main,
        [
            "vc",
            "issue",
            "--key",
            str(tmp_path / "issuer.key"),
            "--subject",
            device,
            "--type",
            "DeviceCredential",
            *extra,
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "vc.json"
    path.write_text(result.output)
    return path, issuer, device


def test_key_new_prints_did_key_and_writes_keystore(runner: CliRunner, tmp_path: Path) -> None:
    """`key new` writes an encrypted keystore (mode 0600) and prints its did:key."""
    did = _new_key(runner, tmp_path / "k.json")
    assert did.startswith("did:key:z6Mk")
    stored = json.loads((tmp_path / "k.json").read_text())
    assert stored["metadata"]["did"] == did
    assert (tmp_path / "k.json").stat().st_mode & 0o777 == 0o600


def test_key_new_refuses_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    """`key new` onto an existing keystore fails and leaves the file untouched."""
    path = tmp_path / "k.json"
    _new_key(runner, path)
    before = path.read_bytes()
    result = runner.invoke(main, ["key", "new", "--out", str(path), "--kdf", "interactive"], env=ENV)
    assert result.exit_code == 1
    assert path.read_bytes() == before


def test_issue_then_verify(runner: CliRunner, tmp_path: Path) -> None:
    """A credential issued by `vc issue` verifies offline with exit 0 and a one-line summary."""
    path, issuer, device = _issue(runner, tmp_path, "--claims", '{"model": "TH-1"}', "--valid-days", "30")
    credential = json.loads(path.read_text())
    assert credential["credentialSubject"] == {"id": device, "model": "TH-1"}
    result = runner.invoke(main, ["vc", "verify", str(path)])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "valid DeviceCredential" in result.output and issuer in result.output


def test_verify_names_the_failed_check(runner: CliRunner, tmp_path: Path) -> None:
    """A tampered credential exits 1 and prints the failed check."""
    path, _, _ = _issue(runner, tmp_path, "--claims", '{"model": "TH-1"}')
    path.write_text(path.read_text().replace("TH-1", "TH-9"))
    result = runner.invoke(main, ["vc", "verify", str(path)])
    assert result.exit_code == 1
    assert "bad_signature" in result.output


@pytest.mark.parametrize("content", ["not json", "[]", '{"type": "VerifiableCredential"}'])
def test_verify_refuses_garbage(runner: CliRunner, tmp_path: Path, content: str) -> None:
    """Files that are not credentials exit 1 with 'malformed', never a traceback."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = runner.invoke(main, ["vc", "verify", str(path)])
    assert result.exit_code == 1
    assert "malformed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_issue_with_wrong_passphrase_fails(runner: CliRunner, tmp_path: Path) -> None:
    """`vc issue` with the wrong passphrase exits 1 naming the keystore problem."""
    _new_key(runner, tmp_path / "issuer.key")
    result = runner.invoke(
        main,
        ["vc", "issue", "--key", str(tmp_path / "issuer.key"), "--subject", "did:example:1"],
        env={"TRELLIS_PASSPHRASE": "wrong"},
    )
    assert result.exit_code == 1
    assert "passphrase" in result.output


@pytest.mark.parametrize("claims", ["{", "[1]", '{"id": "did:example:x"}'])
def test_issue_refuses_bad_claims(runner: CliRunner, tmp_path: Path, claims: str) -> None:
    """--claims must be a JSON object without an id."""
    _new_key(runner, tmp_path / "issuer.key")
    result = runner.invoke(
        main,
        [
            "vc",
            "issue",
            "--key",
            str(tmp_path / "issuer.key"),
            "--subject",
            "did:example:1",
            "--claims",
            claims,
        ],
        env=ENV,
    )
    assert result.exit_code == 1
    assert "--claims" in result.output


def test_verify_refuses_a_lone_surrogate_in_a_claim_name(runner: CliRunner, tmp_path: Path) -> None:
    """A credential whose JSON names a claim ``"\\ud800"`` exits 1 with 'malformed', never a traceback."""
    path, _, _ = _issue(runner, tmp_path, "--claims", '{"model": "TH-1"}')
    path.write_text(path.read_text().replace('"model"', '"\\ud800"'))
    result = runner.invoke(main, ["vc", "verify", str(path)])
    assert result.exit_code == 1
    assert "malformed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

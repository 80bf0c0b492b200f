"""``trellis web create-admin`` and ``trellis web serve``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlmodel import Session, col, create_engine, select

from tests.web.support import PASSWORD
from web.cli import main
from web.models import AuditEntry, Operator


def stored(instance: Path) -> tuple[list[Operator], list[AuditEntry]]:
    """The operators and audit entries in the instance's database."""
    engine = create_engine(f"sqlite:///{instance / 'portal.db'}")
    try:
        with Session(engine) as session:
            operators = list(session.exec(select(Operator)).all())
            entries = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all())
    finally:
        engine.dispose()
    return operators, entries


def test_create_admin_takes_the_password_from_the_environment(tmp_path: Path) -> None:
    """With TRELLIS_ADMIN_PASSWORD set, an admin with an Argon2id hash is created and the creation audited."""
    instance = tmp_path / "instance"
    result = CliRunner().invoke(
        main, ["web", "create-admin", "--username", "root", "--instance", str(instance)],
        env={"TRELLIS_ADMIN_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "admin root created" in result.output
    operators, entries = stored(instance)
    assert [(op.username, op.role) for op in operators] == [("root", "admin")]
    assert operators[0].password_hash.startswith("$argon2id$")
    assert [(entry.actor, entry.action, entry.target) for entry in entries] == [
        ("system", "operator.create", "root")
    ]
    assert (instance / "secret_key").stat().st_mode & 0o077 == 0


def test_create_admin_prompts_twice(tmp_path: Path) -> None:
    """Without the variable the password is asked for and confirmed."""
    instance = tmp_path / "instance"
    result = CliRunner().invoke(
        main, ["web", "create-admin", "--username", "root", "--instance", str(instance)],
        input=f"{PASSWORD}\n{PASSWORD}\n", env={"TRELLIS_ADMIN_PASSWORD": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [op.username for op in stored(instance)[0]] == ["root"]


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("root", "short", "at least 12"),
        ("Root!", PASSWORD, "username must be"),
        ("root", PASSWORD + "\udcff", "not text"),  # the environment held a byte UTF-8 cannot decode
    ],
)
def test_create_admin_refuses_bad_input(tmp_path: Path, username: str, password: str, message: str) -> None:
    """A weak password, one that is not text, or a bad name exits 1 with the reason and creates nothing."""
    instance = tmp_path / "instance"
    result = CliRunner().invoke(
        main, ["web", "create-admin", "--username", username, "--instance", str(instance)],
        env={"TRELLIS_ADMIN_PASSWORD": password},
    )  # fmt: skip
    assert result.exit_code == 1
    assert message in result.output
    assert stored(instance) == ([], [])


def test_create_admin_refuses_a_taken_name(tmp_path: Path) -> None:
    """Creating the same admin twice fails the second time."""
    arguments = ["web", "create-admin", "--username", "root", "--instance", str(tmp_path / "i")]
    env = {"TRELLIS_ADMIN_PASSWORD": PASSWORD}
    assert CliRunner().invoke(main, arguments, env=env).exit_code == 0
    again = CliRunner().invoke(main, arguments, env=env)
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_serve_answers_on_loopback(tmp_path: Path) -> None:
    """``trellis web serve --port 0`` prints its URL and serves the sign-in page with waitress."""
    env = {**os.environ, "TRELLIS_WEB_INSTANCE": str(tmp_path / "instance")}
    command = [sys.executable, "-c", "from web.cli import main; main()", "web", "serve", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("serving on http://127.0.0.1:"), (
            process.stderr.read() if process.stderr else ""
        )
        url = line.removeprefix("serving on ")
        response = httpx.get(url + "/login", timeout=10)
        assert response.status_code == 200
        assert response.headers["server"] == "trellis-portal"
        assert "Sign in" in response.text
    finally:
        process.terminate()
        process.communicate(timeout=10)

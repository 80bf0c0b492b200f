"""The numbered examples run and end as they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_wallet_tour_runs_to_completion() -> None:
    """The wallet tour (what `make demo` shows) accepts, refuses when suspended or revoked, exits 0."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "00_wallet_tour.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused (revoked)" in result.stdout
    assert "refused (suspended)" in result.stdout


def test_ledger_tour_runs_to_completion(tmp_path: Path) -> None:
    """The ledger tour starts a node process, accepts the credential, then refuses it once revoked."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "01_ledger_tour.py"), "--dir", str(tmp_path / "net")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted:" in result.stdout
    assert "refused (revoked)" in result.stdout


def test_verifier_service_example_runs_to_completion() -> None:
    """The verifier service example lets the device in (200), then refuses it once revoked (403)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "02_verifier_service.py")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\n   200 " in result.stdout
    assert "403 application/problem+json" in result.stdout and "'reason': 'revoked'" in result.stdout

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

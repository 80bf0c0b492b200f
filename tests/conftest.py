"""Shared fixtures: where the published conformance vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _conformance_dir() -> Path:
    override = os.environ.get("TRELLIS_CONFORMANCE_DIR")
    path = Path(override) if override else REPO.parent / "shared" / "conformance"
    if not path.is_dir():
        raise RuntimeError(f"conformance vectors not found at {path} (set TRELLIS_CONFORMANCE_DIR)")
    return path


CONFORMANCE = _conformance_dir()


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The folder of published test vectors (../shared/conformance beside the repo)."""
    return CONFORMANCE

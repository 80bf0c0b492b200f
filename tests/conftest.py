"""Shared fixtures: where the published conformance vectors live; throwaway PostgreSQL and Redis servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import PostgresServer, RedisServer

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


# Throwaway database servers (tests/services.py, docs/testing.md). They start on first use, on free
# loopback ports, never the machine's own PostgreSQL or Redis. Missing binaries make the test error
# (never skip) with a message to run scripts/ensure-test-services.sh.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server shared by the session, removed at its end."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh database (t_<n>) for this test, dropped after it."""
    with postgres_server.temporary_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway Redis server (no persistence) shared by the session, removed at its end."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The redis:// URL of database 0 on the session's Redis server (shared: use distinct keys)."""
    return redis_server.url


# Soak tests (marker ``soak``) run only under ``make soak`` (TRELLIS_SOAK=1). Otherwise they are
# deselected, not skipped, so a run that never executed them does not report them at all.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``soak`` tests unless TRELLIS_SOAK=1."""
    if os.environ.get("TRELLIS_SOAK") == "1":
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]

"""The throwaway test servers (tests/services.py) and their fixtures in tests/conftest.py."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.services import (
    PostgresServer,
    RedisServer,
    ServiceStartError,
    ServiceUnavailable,
    find_postgres_bindir,
    free_port,
)

SYSTEM_POSTGRES_PORT = 5432
SYSTEM_REDIS_PORT = 6379


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    """An SQLAlchemy engine that is disposed of (its connections closed) after the block."""
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def scalar(url: str, query: str) -> object:
    """The single value ``query`` returns in the database at ``url``."""
    with engine_for(url) as engine, engine.connect() as conn:
        return conn.execute(sa.text(query)).scalar_one()


def make_executable(path: Path, body: str) -> Path:
    """Write a shell script to ``path`` and mark it executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class TestPostgres:
    def test_round_trips_rows_through_sqlalchemy(self, postgres_url: str) -> None:
        """If a table is created and filled through the URL, a select reads the rows back."""
        metadata = sa.MetaData()
        devices = sa.Table(
            "devices",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("did", sa.String(200), nullable=False, unique=True),
        )
        rows = [{"did": "did:trellis:abc"}, {"did": "did:trellis:def"}]
        with engine_for(postgres_url) as engine:
            metadata.create_all(engine)
            with engine.begin() as conn:
                conn.execute(devices.insert(), rows)
            with engine.connect() as conn:
                got = conn.execute(sa.select(devices.c.did).order_by(devices.c.did)).scalars().all()
        assert got == [row["did"] for row in rows]

    def test_url_names_the_psycopg_driver_on_loopback(self, postgres_url: str) -> None:
        """If a test asks for a database, its URL uses psycopg 3 on 127.0.0.1."""
        url = make_url(postgres_url)
        assert (url.drivername, url.host) == ("postgresql+psycopg", "127.0.0.1")

    def test_is_not_the_system_server(self, postgres_server: PostgresServer, postgres_url: str) -> None:
        """If the tests use PostgreSQL, the server listens on its own port, not 5432."""
        port = make_url(postgres_url).port
        assert port == postgres_server.port
        assert port != SYSTEM_POSTGRES_PORT
        assert scalar(postgres_url, "SHOW port") == str(port)

    def test_data_directory_is_temporary(self, postgres_server: PostgresServer, postgres_url: str) -> None:
        """If the server is asked for its data directory, it is the throwaway folder of this run."""
        data_directory = Path(str(scalar(postgres_url, "SHOW data_directory")))
        assert data_directory == postgres_server.data_dir
        assert data_directory.parent.name.startswith("trellis-pg-")
        assert data_directory.is_dir()

    def test_each_test_database_is_fresh(self, postgres_url: str) -> None:
        """If a test gets a database, it holds no tables yet and is named t_<n>."""
        name = str(scalar(postgres_url, "SELECT current_database()"))
        tables = scalar(postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert name.startswith("t_")
        assert tables == 0

    def test_databases_are_isolated(self, postgres_server: PostgresServer, postgres_url: str) -> None:
        """If a table is created in one test database, another database does not see it."""
        with engine_for(postgres_url) as engine, engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (x int)"))
        with postgres_server.temporary_database() as other_url:
            assert other_url != postgres_url
            assert scalar(other_url, "SELECT to_regclass('only_here') IS NULL") is True
        assert scalar(postgres_url, "SELECT to_regclass('only_here') IS NULL") is False

    def test_temporary_database_is_dropped_after_use(self, postgres_server: PostgresServer) -> None:
        """If a temporary database's block ends, the database no longer exists."""
        with postgres_server.temporary_database() as url:
            name = make_url(url).database
        with postgres_server.connect() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert row is None

    def test_stop_shuts_down_and_removes_the_folder(self) -> None:
        """If a server is stopped, its port no longer answers and its folder is gone."""
        server = PostgresServer().start()
        base, port = server.base_dir, server.port
        server.stop()
        assert base is not None
        assert not base.exists()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


class TestFindPostgres:
    def test_picks_the_newest_complete_version(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """If several versions are installed, the highest one with all three programs wins (10 beats 9.6)."""
        monkeypatch.delenv("TRELLIS_PG_BINDIR", raising=False)
        for version, programs in [("9.6", 3), ("10", 3), ("16", 2)]:
            for name in ("initdb", "pg_ctl", "postgres")[:programs]:
                make_executable(tmp_path / version / "bin" / name, "exit 0")
        assert find_postgres_bindir(tmp_path) == tmp_path / "10" / "bin"

    def test_missing_binaries_say_how_to_install(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If no server binaries are found, the error names scripts/ensure-test-services.sh."""
        monkeypatch.delenv("TRELLIS_PG_BINDIR", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(ServiceUnavailable, match=r"scripts/ensure-test-services\.sh"):
            find_postgres_bindir(tmp_path)

    def test_override_without_programs_is_rejected(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If TRELLIS_PG_BINDIR points at a folder lacking the programs, the search fails loudly."""
        monkeypatch.setenv("TRELLIS_PG_BINDIR", str(tmp_path))
        with pytest.raises(ServiceUnavailable, match="TRELLIS_PG_BINDIR"):
            find_postgres_bindir()


class TestRedis:
    def test_answers_ping_on_its_own_port(self, redis_server: RedisServer, redis_url: str) -> None:
        """If the tests use Redis, the server answers PING on a port that is not 6379."""
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.ping() is True
        finally:
            client.close()
        assert redis_server.port != SYSTEM_REDIS_PORT
        assert urlsplit(redis_url).port == redis_server.port

    def test_set_then_get(self, redis_url: str) -> None:
        """If a key is set, getting it returns the value."""
        value = os.urandom(16)
        client = redis.Redis.from_url(redis_url)
        try:
            client.set("test_services:set_then_get", value)
            assert client.get("test_services:set_then_get") == value
        finally:
            client.close()

    def test_start_failure_reports_the_log(self, tmp_path: Path) -> None:
        """If redis-server exits at start, the error carries what it printed."""
        fake = make_executable(tmp_path / "redis-server", "echo 'fatal: bad config line'; exit 1")
        server = RedisServer(executable=fake)
        with pytest.raises(ServiceStartError, match="fatal: bad config line"):
            server.start()
        assert server.base_dir is None

    def test_taken_port_is_retried_then_reported(self, tmp_path: Path) -> None:
        """If every port turns out taken, start retries a bounded number of times and then fails."""
        calls = tmp_path / "calls"
        body = f"echo x >> {calls}; echo 'bind: Address already in use'; exit 1"
        server = RedisServer(executable=make_executable(tmp_path / "redis-server", body))
        with pytest.raises(ServiceStartError, match="no free port"):
            server.start()
        assert len(calls.read_text().splitlines()) > 1

    def test_stop_closes_the_port_and_removes_the_folder(self) -> None:
        """If a Redis server is stopped, its port no longer answers and its folder is gone."""
        server = RedisServer().start()
        base, port = server.base_dir, server.port
        server.stop()
        assert base is not None
        assert not base.exists()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


def test_free_port_can_be_bound() -> None:
    """If a free port is asked for, a socket can bind it on 127.0.0.1."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port

"""Throwaway PostgreSQL and Redis servers for the test suite, started from the installed binaries.

Each server runs on a free loopback port with its data in a temporary folder, and is removed on
``stop()``. The machine's own services (PostgreSQL on 5432, Redis on 6379) are never touched.
``scripts/ensure-test-services.sh`` installs the binaries; see docs/testing.md.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from tests import ports

__all__ = [
    "ServiceUnavailable",
    "ServiceStartError",
    "free_port",
    "find_postgres_bindir",
    "find_redis_server",
    "PostgresServer",
    "RedisServer",
]

INSTALL_HINT = "run scripts/ensure-test-services.sh (it installs Debian's postgresql and redis-server)"
PG_ROOT = Path("/usr/lib/postgresql")
PG_PROGRAMS = ("initdb", "pg_ctl", "postgres")
PG_USER = "trellis"  # the superuser initdb creates inside the throwaway cluster
OS_USER = "trellis-test"  # the unprivileged account that runs PostgreSQL when the tests run as root
START_TIMEOUT = 30.0  # seconds; every wait below is bounded by this
PORT_ATTEMPTS = 5  # another process may take the free port between our probe and the server's bind
ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)


class ServiceUnavailable(RuntimeError):
    """The server binaries are not installed (the message says how to install them)."""


class ServiceStartError(RuntimeError):
    """A server did not start or answer in time (the message ends with its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range (tests/ports.py)."""
    return ports.free_port()


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (-1,)


def _has_programs(folder: Path, names: Sequence[str]) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in names)


def find_postgres_bindir(root: Path = PG_ROOT) -> Path:
    """The newest PostgreSQL server bin folder: $TRELLIS_PG_BINDIR, else <root>/<version>/bin, else PATH."""
    override = os.environ.get("TRELLIS_PG_BINDIR")
    if override:
        if _has_programs(Path(override), PG_PROGRAMS):
            return Path(override)
        raise ServiceUnavailable(
            f"TRELLIS_PG_BINDIR={override} lacks {', '.join(PG_PROGRAMS)}: point it at a folder holding them, or unset it"
        )
    found = [d for d in root.glob("*/bin") if _has_programs(d, PG_PROGRAMS)]
    if found:
        return max(found, key=_version_key)
    on_path = shutil.which("pg_ctl")
    if on_path and _has_programs(Path(on_path).parent, PG_PROGRAMS):
        return Path(on_path).parent
    raise ServiceUnavailable(
        f"PostgreSQL server binaries ({', '.join(PG_PROGRAMS)}) not found in {root}/*/bin: {INSTALL_HINT}"
    )


def find_redis_server() -> Path:
    """The redis-server executable on PATH (or /usr/bin)."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ServiceUnavailable(f"redis-server not found: {INSTALL_HINT}")


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _unprivileged_account() -> pwd.struct_passwd:
    """The OS account PostgreSQL runs as under root, created (as a system user) when missing."""
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        pass
    argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    argv += ["--shell", "/usr/sbin/nologin", OS_USER]
    made = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    try:  # a concurrent run may have created it first; either way it must exist now
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise ServiceUnavailable(
            f"cannot create the user {OS_USER} to run PostgreSQL: {made.stderr.strip()}"
        ) from None


class PostgresServer:
    """A throwaway PostgreSQL cluster: initdb into a temp folder, pg_ctl start on a free port."""

    def __init__(self, bindir: Path | None = None, database: str = "trellis") -> None:
        """Prepare (not start) a server; ``bindir`` defaults to :func:`find_postgres_bindir`."""
        self.bindir = bindir if bindir is not None else find_postgres_bindir()
        self.database = database
        self.base_dir: Path | None = None
        self.port = 0
        self.startup_seconds = 0.0
        self._as_user: list[str] = []
        self._databases = itertools.count(1)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (inside the temporary base folder)."""
        if self.base_dir is None:
            raise ServiceStartError("the PostgreSQL server is not started")
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server log that pg_ctl writes."""
        return self.data_dir.parent / "postgres.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the server's own database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Self:
        """Create the cluster and start it; raises ServiceStartError with the log tail on failure."""
        began = time.monotonic()
        self._as_user = self._run_as_prefix()
        self.base_dir = self._make_base_dir()
        try:
            self._initdb()
            self._start_on_free_port()
            self._wait_until_ready()
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Shut the server down (immediate mode) and remove its folder; safe to call twice."""
        atexit.unregister(self.stop)
        base, self.base_dir = self.base_dir, None
        if base is None:
            return
        data = base / "data"
        try:
            pid = int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0  # the server never started, or has already gone
        if pid:
            argv = [str(self.bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "15"]
            try:
                stopped = self._run(argv, check=False).returncode == 0
            except ServiceStartError:
                stopped = False
            if not stopped:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing any connections still open to it."""
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextmanager
    def temporary_database(self) -> Iterator[str]:
        """A fresh database ``t_<n>`` for the duration of the block; yields its URL."""
        name = f"t_{next(self._databases)}"
        url = self.create_database(name)
        try:
            yield url
        finally:
            self.drop_database(name)

    def connect(self, database: str = "postgres") -> psycopg.Connection[TupleRow]:
        """A psycopg connection (autocommit) to ``database`` on this server, as the superuser."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=PG_USER,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[TupleRow]]:
        with self.connect("postgres") as conn:
            yield conn

    @staticmethod
    def _run_as_prefix() -> list[str]:
        """PostgreSQL refuses to run as root, so under root every command goes through runuser."""
        if os.geteuid() != 0:
            return []
        _unprivileged_account()
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", OS_USER, "--"]

    def _make_base_dir(self) -> Path:
        """A private temp folder the server's OS user owns and can reach."""
        candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp"]  # fallbacks for a TMPDIR only root can reach
        for parent in dict.fromkeys(candidates):
            base = Path(tempfile.mkdtemp(prefix="trellis-pg-", dir=parent))
            if not self._as_user:
                return base
            account = pwd.getpwnam(OS_USER)
            os.chown(base, account.pw_uid, account.pw_gid)
            if self._run(["test", "-w", str(base)], check=False, cwd=Path("/")).returncode == 0:
                return base
            shutil.rmtree(base, ignore_errors=True)
        raise ServiceStartError(f"no temp folder that {OS_USER} can write to among {candidates}")

    def _run(
        self, argv: list[str], *, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        where = cwd or self.base_dir or Path("/")
        try:
            done = subprocess.run(
                self._as_user + argv,
                cwd=where,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT + 15,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceStartError(f"{shlex.join(argv)} timed out; log:\n{self._tail()}") from exc
        if check and done.returncode != 0:
            raise ServiceStartError(
                f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\nlog:\n{self._tail()}"
            )
        return done

    def _tail(self) -> str:
        return _log_tail(self.log_path) if self.base_dir is not None else "(no server folder)"

    def _initdb(self) -> None:
        argv = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            f"--username={PG_USER}",
        ]
        self._run([*argv, "--no-sync", "--encoding=UTF8", "--locale=C"])

    def _start_on_free_port(self) -> None:
        """pg_ctl start, on a new free port each time the last one was taken before the server bound it."""
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.log_path.unlink(
                missing_ok=True
            )  # a fresh log per attempt, so its tail tells this attempt's story
            options = f"-k {shlex.quote(str(self.base_dir))} -c listen_addresses=127.0.0.1 -p {self.port}"
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
            argv = [str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path)]
            done = self._run([*argv, "-w", "-t", str(int(START_TIMEOUT)), "-o", options], check=False)
            if done.returncode == 0:
                return
            if not ADDRESS_IN_USE.search(self._tail()):
                raise ServiceStartError(
                    f"pg_ctl start failed:\n{done.stdout}{done.stderr}\nlog:\n{self._tail()}"
                )
        raise ServiceStartError(f"no free port after {PORT_ATTEMPTS} attempts; log:\n{self._tail()}")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.connect() as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"PostgreSQL on port {self.port} not ready: {exc}\n{self._tail()}"
                    ) from exc
                time.sleep(0.05)


class RedisServer:
    """A throwaway redis-server (no persistence) run as a child process on a free port."""

    def __init__(self, executable: Path | None = None) -> None:
        """Prepare (not start) a server; ``executable`` defaults to :func:`find_redis_server`."""
        self.executable = executable if executable is not None else find_redis_server()
        self.base_dir: Path | None = None
        self.port = 0
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        if self.base_dir is None:
            raise ServiceStartError("the Redis server is not started")
        return self.base_dir / "redis.log"

    def start(self) -> Self:
        """Start redis-server and wait for PONG; raises ServiceStartError with the log tail on failure."""
        began = time.monotonic()
        self.base_dir = Path(tempfile.mkdtemp(prefix="trellis-redis-"))
        try:
            for _ in range(PORT_ATTEMPTS):
                self.port = free_port()
                self._process = self._spawn()
                if self._wait_until_ready():
                    break
            else:
                raise ServiceStartError(
                    f"no free port after {PORT_ATTEMPTS} attempts; log:\n{_log_tail(self.log_path)}"
                )
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Terminate the server and remove its folder; safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            _end(process)
        base, self.base_dir = self.base_dir, None
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [str(self.executable), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.base_dir)]
        with open(
            self.log_path, "wb"
        ) as log:  # a fresh log per attempt, so its tail tells this attempt's story
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.base_dir
            )

    def _wait_until_ready(self) -> bool:
        """True once the server answers PING; False if it exited because the port was taken."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                if ADDRESS_IN_USE.search(_log_tail(self.log_path)):
                    return False
                raise ServiceStartError(f"redis-server exited; log:\n{_log_tail(self.log_path)}")
            if _pings(self.port):
                return True
            time.sleep(0.02)
        raise ServiceStartError(
            f"redis-server on port {self.port} not ready in time; log:\n{_log_tail(self.log_path)}"
        )


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)

"""A local network's node processes never outlive the process that started them, however it ends.

Each test starts the network (or one node) from a child process, ends that child (SIGKILL, SIGHUP,
SIGTERM, or by exiting before the node got going) and finds the nodes by their folder (which is on
their command line) in /proc: none may be left within a few seconds. Whatever is left is SIGKILLed
in ``finally``, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wallet.localnet import LocalNetwork

GONE_WITHIN = 10.0  # seconds; a tied node looks for its parent every 0.2 s and stops on SIGTERM

_START_NETWORK = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from wallet.localnet import LocalNetwork
    net = LocalNetwork(Path(sys.argv[1]), int(sys.argv[2]), network="tied", kdf="interactive")
    net.start()
    print(json.dumps([node.process.pid for node in net.nodes.values()]), flush=True)
    time.sleep(600)
    """
)


def _live_processes_mentioning(marker: str) -> list[int]:
    """Pids of the processes, other than zombies, whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # it ended meanwhile
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_until_gone(marker: str, timeout: float = GONE_WITHIN) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _live_processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line from the child within {timeout} s")
    return process.stdout.readline()


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """The network's folder; any process still mentioning it afterwards is SIGKILLed."""
    yield tmp_path / "net"
    for pid in _live_processes_mentioning(str(tmp_path / "net")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("ending", [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_the_nodes_stop_when_the_process_that_started_them_ends(folder: Path, ending: signal.Signals) -> None:
    """The starter SIGKILLed (no clean-up at all), or ended by SIGHUP or SIGTERM it does not handle."""
    starter = subprocess.Popen(
        [sys.executable, "-c", _START_NETWORK, str(folder), "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        pids = json.loads(_read_line(starter, 120))
        assert sorted(set(_live_processes_mentioning(str(folder))) - {starter.pid}) == sorted(pids)
        starter.send_signal(ending)
        assert starter.wait(timeout=10) == -ending
        assert _wait_until_gone(str(folder)) == []
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(timeout=10)
        assert starter.stdout is not None
        starter.stdout.close()


def test_a_node_whose_starter_ended_before_it_started_does_not_start(folder: Path) -> None:
    """The race: the starter is gone before the node process looked whether it is still there."""
    LocalNetwork(folder, 1, network="tied", kdf="interactive")  # network init only: files, no process
    config = folder / "node-1.toml"
    starter = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import os, subprocess, sys
            from wallet.localnet import tied_command
            node = subprocess.Popen(tied_command("web.cli", "node", "start", "--config", sys.argv[1]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            print(node.pid, flush=True)
            os._exit(0)
            """
        ), str(config)],
        env={**os.environ, "TRELLIS_PASSPHRASE": "trellis-local-network"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert starter.returncode == 0, starter.stderr
    assert int(starter.stdout) > 0
    assert _wait_until_gone(str(folder)) == []


def test_nodes_started_from_a_thread_that_ended_keep_running(folder: Path) -> None:
    """The nodes watch the process that started them, not its thread: a node started (again) from a
    thread that then ends, as the fleet simulation's faults restart nodes, keeps serving."""
    net = LocalNetwork(folder, 1, network="tied", kdf="interactive")
    try:
        starting = threading.Thread(target=net.start)
        starting.start()
        starting.join(timeout=120)
        assert not starting.is_alive()
        time.sleep(2)  # ten times the interval at which a node looks for its parent
        assert net.running() == ["node-1"]
        assert net.health("node-1")["height"] >= 0
    finally:
        net.stop()
    assert _wait_until_gone(str(folder)) == []

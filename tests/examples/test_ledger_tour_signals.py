"""The ledger tour (what `make demo` runs) leaves no validator behind, however it is stopped.

Ctrl-C, SIGTERM and SIGHUP (the terminal closed) go through the same clean-up: the tour exits 0
once every validator it started has stopped. SIGKILLed, it cleans nothing up, and the validators
stop by themselves within a few seconds. The validators are found by the network's folder, which
is on their command line; whatever is left is SIGKILLed in ``finally``, by pid.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _validators_of(folder: Path, but: int) -> list[int]:
    """Pids of the live (not zombie) processes other than ``but`` whose command line names ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), but):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"{folder}/node-" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)


@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name
)
def test_a_stopped_tour_leaves_no_validator_running(tmp_path: Path, stop: signal.Signals) -> None:
    folder = tmp_path / "net"
    tour = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "01_ledger_tour.py"), "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert tour.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(tour.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("node API:" in line for line in output):  # the validators serve; the tour goes on
            output.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        assert len(_validators_of(folder, tour.pid)) == 4
        tour.send_signal(stop)
        code = tour.wait(timeout=60)
        if stop == signal.SIGKILL:
            assert code == -signal.SIGKILL
            deadline = time.monotonic() + 10  # they look for their parent every 0.2 s
            while _validators_of(folder, tour.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        else:  # the clean-up ran, and had stopped them by the time the tour exited
            while not lines.empty():
                output.append(lines.get())
            assert code == 0, "".join(output)
        assert _validators_of(folder, tour.pid) == []
    finally:
        if tour.poll() is None:
            tour.kill()
            tour.wait(timeout=10)
        for pid in _validators_of(folder, tour.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        tour.stdout.close()

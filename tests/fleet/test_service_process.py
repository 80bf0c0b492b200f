"""An example service process never outlives the process that started it (``trellis simulate``),
however that ends: killed outright, it left its services running for good."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.did_registry.ledger.conftest import make_genesis, new_actor
from tests.services import free_port
from tests.wallet.test_localnet_lifetime import _live_processes_mentioning, _wait_until_gone

_START_SERVICE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from fleet.service_process import ServiceProcess
    genesis = json.loads(Path(sys.argv[1]).read_text())
    service = ServiceProcess("tied", Path(sys.argv[2]), genesis["network"], ["http://127.0.0.1:1"],
                             genesis, int(sys.argv[3]))
    service.start()
    print(service.process.pid, flush=True)
    time.sleep(600)
    """
)


def test_a_service_stops_once_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(make_genesis(new_actor(), Ed25519PrivateKey.generate()).to_json()))
    folder = tmp_path / "service"
    starter = subprocess.Popen(
        [sys.executable, "-c", _START_SERVICE, str(genesis), str(folder), str(free_port())],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert starter.stdout is not None
        ready, _, _ = select.select([starter.stdout], [], [], 60)
        assert ready, "the service did not start"
        assert int(starter.stdout.readline()) in _live_processes_mentioning(str(folder))
        starter.kill()  # SIGKILL: nothing of the starter's own runs
        starter.wait(10)
        assert _wait_until_gone(str(folder)) == []
    finally:
        starter.kill()
        starter.wait(10)
        if starter.stdout is not None:
            starter.stdout.close()
        for pid in _live_processes_mentioning(str(folder)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

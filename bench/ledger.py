"""``python -m bench.ledger [--quick]``: committed transactions per second on real validator processes.

For four PBFT validators (``pbft4_``), four round-robin validators (``rr4_``) and one validator
(``solo_``), each a separate ``trellis node start`` process on loopback with its SQLite file, a
client sends signed ``did.create`` transactions (made and signed before the clock starts) in
batches from several threads, each thread waiting for its batch to be committed before sending the
next. Reported: ``<net>_txn_per_s`` (transactions committed per second over the measured window,
at least 20 s in a full run), ``<net>_p50_ms`` / ``<net>_p99_ms`` (from sending a batch to its last
transaction reported committed), and ``cpu_us_per_txn`` (CPU time of the four PBFT validator
processes, read from ``/proc``, per committed transaction). The yardstick ``raw_verify_per_s`` is
measured in the same run. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import did_creations, parse_args, raw_verify_per_s, report
from did_registry.ledger.txn import Transaction
from wallet.keystore import Keystore
from wallet.localnet import LocalNetwork

__all__ = ["main"]

_NETWORK = "benchnet"
_THREADS = 8
_BATCH = 50


def _transactions(trustee: Keystore, count: int) -> list[dict[str, Any]]:
    assert trustee.did is not None
    return [txn.to_json() for txn in did_creations(_NETWORK, count, trustee.current_key, trustee.did)]


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def _run(engine: str, count: int, seconds: float, warmup: float) -> dict[str, float]:
    """Run one network under load; return its throughput, latencies and CPU per transaction."""
    with tempfile.TemporaryDirectory(prefix=f"trellis-bench-{engine}-") as folder:
        n = 1 if engine == "solo" else 4
        net = LocalNetwork(Path(folder) / "net", n, engine=engine, network=_NETWORK)
        net.start()
        try:
            trustee = Keystore.open(net.directory / "trustee.key", net.passphrase)
            txns = _transactions(trustee, count)
            pids = [node.process.pid for node in net.nodes.values() if node.process is not None]
            return _load(net, txns, seconds, warmup, pids)
        finally:
            net.stop()


def _load(
    net: LocalNetwork, txns: list[dict[str, Any]], seconds: float, warmup: float, pids: list[int]
) -> dict[str, float]:
    urls = net.urls
    batches = [txns[i : i + _BATCH] for i in range(0, len(txns), _BATCH)]
    lock = threading.Lock()
    next_batch = iter(range(len(batches)))
    done: list[tuple[float, float, int]] = []  # (sent, committed, size)
    stop = threading.Event()

    def worker(k: int) -> None:
        with httpx.Client(timeout=30) as http:
            url = urls[k % len(urls)]
            while not stop.is_set():
                with lock:
                    index = next(next_batch, None)
                if index is None:
                    return
                batch = batches[index]
                sent = time.monotonic()
                answer = http.post(f"{url}/txns", json=batch)
                if answer.status_code != 202:
                    time.sleep(0.05)
                    continue
                last = Transaction.from_json(batch[-1]).id
                while not stop.is_set():
                    asked = time.monotonic()
                    status = http.get(f"{url}/txns/{last}", params={"wait": 5}).json()
                    if status.get("status") != "pending":
                        break
                    if time.monotonic() - asked < 0.05:  # answered without waiting (no wait slot free)
                        time.sleep(0.01)
                with lock:
                    done.append((sent, time.monotonic(), len(batch)))

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(_THREADS)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    window_start, cpu_start = time.monotonic(), _cpu_seconds(pids)
    time.sleep(seconds)
    window_end, cpu_end = time.monotonic(), _cpu_seconds(pids)
    stop.set()
    for thread in threads:
        thread.join(30)
    del start
    in_window = [d for d in done if window_start <= d[1] <= window_end]
    committed = sum(size for _, _, size in in_window)
    latencies = sorted((c - s) * 1000 for s, c, _ in in_window) or [float("nan")]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {
        "txn_per_s": committed / (window_end - window_start),
        "p50_ms": statistics.median(latencies),
        "p99_ms": p99,
        "cpu_us_per_txn": (cpu_end - cpu_start) * 1e6 / committed if committed else float("nan"),
    }


def main() -> None:
    """Measure and print the JSON."""
    args = parse_args(__doc__ or "")
    seconds = 5.0 if args.quick else 20.0
    warmup = 2.0 if args.quick else 5.0
    count = 8_000 if args.quick else 60_000
    raw = raw_verify_per_s(1.0 if args.quick else 3.0)
    figures: dict[str, Any] = {"raw_verify_per_s": raw, "measured_s": seconds}
    for engine, prefix in (("pbft", "pbft4"), ("round_robin", "rr4"), ("solo", "solo")):
        result = _run(engine, count, seconds, warmup)
        for name in ("txn_per_s", "p50_ms", "p99_ms"):
            figures[f"{prefix}_{name}"] = result[name]
        if engine == "pbft":
            figures["cpu_us_per_txn"] = result["cpu_us_per_txn"]
        else:
            figures[f"{prefix}_cpu_us_per_txn"] = result["cpu_us_per_txn"]
    targets = {
        "pbft4_txn_per_s >= 2000": figures["pbft4_txn_per_s"] >= 2000,
        "pbft4_p99_ms <= 1000": figures["pbft4_p99_ms"] <= 1000,
    }
    report("ledger", figures, targets, args.quick)


if __name__ == "__main__":
    main()

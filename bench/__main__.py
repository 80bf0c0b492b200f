"""``python -m bench [--quick]``: run every benchmark, write ``bench/results/NAME.json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = ["primitives", "registry", "storage", "ledger", "verifier", "portal", "fleet"]


def main() -> int:
    """Run each benchmark in its own process and keep its JSON."""
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    failed = 0
    for name in BENCHMARKS:
        run = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *sys.argv[1:]],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            failed += 1
            print(f"{name}: failed\n{run.stderr}", file=sys.stderr)
            continue
        figures = json.loads(run.stdout)
        (results / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"{name}: {json.dumps(figures['targets'])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's `trellis vc verify` examples with a presentation and status lists work as written: its
Python snippet makes the files from two `trellis key new` keystores, and the commands accept them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
TRELLIS = [sys.executable, "-c", "from web.cli import main; main()"]


def _snippet() -> str:
    text = README.read_text(encoding="utf-8")
    after = text.split("No `trellis` command makes a presentation", 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README lost its snippet making vp.json and the status lists"
    return match.group(1)


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_readme_snippet_makes_what_vc_verify_accepts(tmp_path: Path) -> None:
    env = {**os.environ, "TRELLIS_PASSPHRASE": "readme snippet passphrase"}
    for name in ("issuer.key", "device.key"):
        made = _run([*TRELLIS, "key", "new", "--out", name, "--kdf", "interactive"], tmp_path, env)
        assert made.returncode == 0, made.stderr
    (tmp_path / "make_files.py").write_text(_snippet())
    made = _run([sys.executable, "make_files.py"], tmp_path, env)
    assert made.returncode == 0, made.stderr

    lists = ["--status-list", "list-0.json", "--status-list", "list-1.json"]
    presented = _run([*TRELLIS, "vc", "verify", "vp.json", "--challenge", "N", "--domain", "https://svc.example"], tmp_path, env)  # fmt: skip
    assert presented.returncode == 0, presented.stdout + presented.stderr
    assert presented.stdout.startswith("valid presentation by did:key:")
    checked = _run([*TRELLIS, "vc", "verify", "vc-status.json", *lists], tmp_path, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "status checked" in checked.stdout

    # What the README says next: revoked, and the lists written again, the credential is refused.
    revoke = _snippet() + '\nissuer.revoke(vc["id"])\n'
    revoke += "for i, url in enumerate(issuer.status_list_urls()):\n"
    revoke += '    json.dump(issuer.status_list_credential(url), open(f"list-{i}.json", "w"))\n'
    (tmp_path / "revoke.py").write_text(revoke)
    assert _run([sys.executable, "revoke.py"], tmp_path, env).returncode == 0
    refused = _run([*TRELLIS, "vc", "verify", "vc-status.json", *lists], tmp_path, env)
    assert refused.returncode == 1
    assert "refused: revoked" in refused.stdout + refused.stderr

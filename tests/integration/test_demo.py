"""`make demo` is a promise to new users: run it as they would and check what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_delivers_both_jobs_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("== served by the gateway") == 2
    assert result.stdout.count('"specversion": "1.0"') == 2  # one event per job
    assert "demo OK: 2 jobs DELIVERED" in result.stdout

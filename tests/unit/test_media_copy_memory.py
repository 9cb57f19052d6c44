"""A small run of bench/copy_memory.py (16 MiB; the 1 GiB run is the benchmark itself): the
copy's SHA-256 is the origin's and the copying process's RSS growth stays in bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_streaming_copy_keeps_memory_bounded_and_bytes_exact(tmp_path: Path) -> None:
    out = tmp_path / "copy_memory.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "copy_memory.py"),
            "--size",
            "24MiB",
            "--timeout",
            "60",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # The packages as pytest's pythonpath finds them, installed or not.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/shared/python", "local"))},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["sha256_ok"] is True
    assert result["parts_in_flight_peak"] <= 3
    assert result["peak_rss_growth_mib"] <= 64

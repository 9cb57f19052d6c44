"""`make demo` is a promise to new users: run it as they would and check what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pixverse_jobs.mp4 import VideoFacts, read_facts

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
    # Each video's facts, as the copier read them from the MP4 (both jobs ask for 720p, 5 s), and
    # where the file was saved; the saved file is an MP4 whose facts agree.
    videos = [line for line in result.stdout.splitlines() if line.startswith("video: ")]
    assert len(videos) == 2
    for line in videos:
        assert line.startswith("video: 5 s, 1280x720, avc1  saved to "), line
        saved = Path(line.split("saved to ", 1)[1].split(" (", 1)[0])
        assert read_facts(saved.read_bytes()) == VideoFacts(5.0, 1280, 720, "avc1")

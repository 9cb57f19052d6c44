"""The README's quick start, run as written against the local stack: the block after the
``<!-- quickstart-test -->`` marker, in bash with ``set -euo pipefail``, with only its first line
(``API=http://127.0.0.1:3000``, ``make run``'s default port) pointed at this session's stack."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from pixverse_local.harness import ROOT, LocalClient

MARKER = "<!-- quickstart-test -->"
DEFAULT_API = "API=http://127.0.0.1:3000"


def quickstart_block() -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme.split(MARKER, 1)[1]
    match = re.match(r"\s*```bash\n(.*?)\n```", after, re.S)
    assert match, f"no bash block right after {MARKER}"
    return match.group(1)


def test_the_quick_start_runs_as_written_and_downloads_the_video(client: LocalClient, tmp_path: Path) -> None:
    block = quickstart_block()
    assert block.startswith(DEFAULT_API + "\n"), "the block must start by naming make run's API URL"
    script = f"API={client.ready['api']}\n" + block[len(DEFAULT_API) + 1 :]
    # Run where a user would: .venv/bin/pixverse-jobs is the project's, videos/ lands in the cwd.
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")

    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    [video] = list((tmp_path / "videos").iterdir())
    job_id = video.name.split("-", 1)[0]
    job = client.get_job(job_id)
    assert job["status"] == "DELIVERED"
    assert hashlib.sha256(video.read_bytes()).hexdigest() == job["outputs"][0]["sha256"]
    assert f'"job_id": "{job_id}"' in done.stdout or f'"job_id":"{job_id}"' in done.stdout

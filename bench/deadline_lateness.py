"""``deadline``: how late a job with ``deadline_seconds`` ends CANCELLED, on the local stack at
AWS's timings (``LOCAL_TIME_SCALE`` 1: the deadline message's SQS delay is real seconds).

Jobs that the simulator would take a minute for are POSTed with short deadlines, some at once and
some spread out; each job's lateness is read from its own record, so the driver's polling adds
nothing: ``updated_at`` of the CANCELLED write minus the exact deadline (``created_at`` +
``deadline_seconds``). The deadline is stored rounded up to the whole second, so lateness includes
up to a second of that rounding by design (never early). The reconciler runs on the template's
5-minute schedule, longer than the run, so every cancel measured is the deadline function's.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_JOBS = 30
DEADLINES = (2, 5, 10)
GENERATION_SECONDS = 60
TARGET_P95_SECONDS = 3.0  # "within a few seconds of the deadline"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_deadline(jobs: int = DEFAULT_JOBS, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    from pixverse_local.harness import LocalClient, StackProcess

    with tempfile.TemporaryDirectory(prefix="bench-deadline-") as tmp:
        stack = StackProcess(env={"LOCAL_TIME_SCALE": "1"}, log_path=Path(tmp) / "stack.log", start_timeout=90.0)
        ready = stack.start()
        client = LocalClient(ready)
        try:
            submitted: list[tuple[str, int]] = []
            lock = threading.Lock()

            def post(n: int) -> None:
                deadline = DEADLINES[n % len(DEADLINES)]
                body = {
                    "model": "pixverse-v6-text-to-video",
                    "input": {"prompt": f"deadline bench {n} [sim:seconds={GENERATION_SECONDS}]"},
                    "deadline_seconds": deadline,
                }
                response = client.submit(body)
                response.raise_for_status()
                with lock:
                    submitted.append((response.json()["job_id"], deadline))

            # Half at once (a burst of deadlines falling due together), half spread over 5 s.
            threads = [threading.Thread(target=post, args=(n,)) for n in range(jobs // 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for n in range(jobs // 2, jobs):
                post(n)
                time.sleep(5.0 / max(1, jobs - jobs // 2))
            log(f"deadline: {len(submitted)} jobs posted, deadlines {DEADLINES} s")
            rows = []
            for job_id, deadline in submitted:
                job = client.wait_for(job_id, timeout=120)
                exact = _epoch(job["created_at"]) + deadline
                rows.append(
                    {
                        "job_id": job_id,
                        "deadline_seconds": deadline,
                        "status": job["status"],
                        "code": (job.get("error") or {}).get("code"),
                        "late_seconds": round(_epoch(job["updated_at"]) - exact, 3),
                        "rounding_seconds": round(_epoch(job["deadline_at"]) - exact, 3),
                    }
                )
        finally:
            client.close()
            stack.stop()
    late = sorted(r["late_seconds"] for r in rows)
    cancelled = [r for r in rows if r["status"] == "CANCELLED" and r["code"] == "deadline_exceeded"]
    p95 = late[min(len(late) - 1, round(0.95 * (len(late) - 1)))]
    result = {
        "method": f"{jobs} jobs of a {GENERATION_SECONDS} s generation, deadlines {list(DEADLINES)} s, half POSTed "
        "at once and half over 5 s, LOCAL_TIME_SCALE 1; lateness = the CANCELLED write's updated_at minus "
        "created_at + deadline_seconds (the stored deadline is rounded up to the second)",
        "jobs": len(rows),
        "cancelled_deadline_exceeded": len(cancelled),
        "early": sum(1 for x in late if x < 0),
        "late_seconds": {
            "min": late[0],
            "median": round(statistics.median(late), 3),
            "p95": p95,
            "max": late[-1],
        },
        "rounding_seconds_median": round(statistics.median(r["rounding_seconds"] for r in rows), 3),
        "targets": {
            "p95_within_3s": {"met": p95 <= TARGET_P95_SECONDS and len(cancelled) == len(rows), "value": p95},
        },
        "jobs_detail": rows,
    }
    log(f"deadline: lateness {result['late_seconds']} s, {len(cancelled)}/{len(rows)} deadline_exceeded")
    return result

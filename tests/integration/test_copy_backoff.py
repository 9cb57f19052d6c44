"""A copy that keeps failing, on a stack that keeps AWS's timings at a hundredth of their length
(LOCAL_TIME_SCALE=0.01: the copy queue's 5400 s visibility timeout lasts 54 s, the copier's 30 s
first backoff 0.3 s) and whose reconciler looks at every unfinished job each second.

The README's bound: with CopyMaxReceiveCount 5 the copier waits between half and all of 30, 60,
120 and 240 s between attempts (225 to 450 s in all), makes at most 3 media requests per attempt
against an origin answering 503, and ends the job DELIVERY_FAILED on the fifth; the reconciler
never adds a copy request while a retry is pending. Before the backoff, the retry came back only
after the 5400 s visibility timeout while every reconciler run sent a fresh message: a download
every 5 minutes for about 6 hours."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pixverse_local.harness import LocalClient, StackProcess

TIME_SCALE = 0.01
ATTEMPTS = 5  # template.yaml's CopyMaxReceiveCount
REQUESTS_PER_ATTEMPT = 3  # MediaCopier's attempts without progress
BACKOFF_STEPS = [30.0 * 2**n for n in range(ATTEMPTS - 1)]  # 30, 60, 120, 240 s: the defaults
# Each attempt against an origin answering 503 lasts its in-invocation retries (0.5 s base, 4 s cap,
# jittered), about 1.5 s at most; the stack's own latency adds to it.
ATTEMPT_SECONDS = 3.0


@pytest.fixture(scope="module")
def scaled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClient]:
    log: Path = tmp_path_factory.mktemp("backoff") / "local-stack.log"
    env = {
        "LOCAL_TIME_SCALE": str(TIME_SCALE),
        # An eager reconciler: any job older than 1 s is looked at every second.
        "RECONCILE_AFTER_SECONDS": "1",
        "LOCAL_RECONCILE_EVERY_SECONDS": "1",
    }
    with StackProcess(log_path=log, env=env) as process:
        assert process.ready is not None
        client = LocalClient(process.ready)
        yield client
        client.close()


def _at(entry: dict[str, str]) -> float:
    return datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()


def test_failing_copy_backs_off_and_ends_delivery_failed_within_the_stated_bound(scaled_stack: LocalClient) -> None:
    client = scaled_stack
    prompt = f"A harbour at dawn {uuid.uuid4().hex[:8]} [sim:media-status=503]"
    response = client.submit({"model": "pixverse-c1-text-to-video", "input": {"prompt": prompt}})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    job = client.wait_for(job_id, {"DELIVERY_FAILED", "DELIVERED"}, timeout=90)
    ended = time.time()

    assert job["status"] == "DELIVERY_FAILED", job
    requests = sorted(client.simulated_request(job["request_id"])["media_requests"], key=_at)
    # One copy request in flight: exactly five attempts of three requests, whatever the reconciler did.
    assert len(requests) == ATTEMPTS * REQUESTS_PER_ATTEMPT, requests
    times = [_at(r) for r in requests]
    attempts = [times[i : i + REQUESTS_PER_ATTEMPT] for i in range(0, len(times), REQUESTS_PER_ATTEMPT)]
    waits = [later[0] - earlier[-1] for earlier, later in itertools.pairwise(attempts)]
    # Backed off: each wait at least half its step (the jitter's floor), scaled.
    for wait, step in zip(waits, BACKOFF_STEPS, strict=True):
        assert wait >= 0.5 * step * TIME_SCALE - 0.05, (waits, BACKOFF_STEPS)
    # Ended within the bound: every backoff step in full plus the attempts themselves.
    bound = sum(BACKOFF_STEPS) * TIME_SCALE + ATTEMPTS * ATTEMPT_SECONDS
    assert ended - times[0] <= bound + 2.0, f"{ended - times[0]:.1f} s > {bound:.1f} s"

    # And nothing more: a few seconds of eager reconciler runs (5 AWS minutes here) download nothing.
    time.sleep(3.0)
    assert len(client.simulated_request(job["request_id"])["media_requests"]) == len(requests)

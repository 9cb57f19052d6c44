"""The reconciler on the local stack: jobs whose callback never comes are delivered anyway,
each with its object and one event. A stack of its own, whose reconciler looks at jobs after
2 s, so it does not race the other integration tests' hand-made callbacks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED
from pixverse_local.harness import EventInbox, LocalClient, StackProcess


@pytest.fixture(scope="module")
def quick_reconciler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClient]:
    log: Path = tmp_path_factory.mktemp("reconcile") / "local-stack.log"
    env = {"LOCAL_TIME_SCALE": "0.001", "RECONCILE_AFTER_SECONDS": "2", "LOCAL_RECONCILE_EVERY_SECONDS": "1"}
    with StackProcess(log_path=log, env=env) as process:
        assert process.ready is not None
        client = LocalClient(process.ready)
        yield client
        client.close()


def _lost(directives: str = "") -> dict[str, Any]:
    prompt = f"A paper boat on a rainy street {uuid.uuid4().hex[:8]} [sim:no-callback] {directives}".strip()
    return {"model": "pixverse-c1-text-to-video", "input": {"prompt": prompt}}


def test_jobs_whose_callback_never_comes_are_delivered_by_the_reconciler(quick_reconciler: LocalClient) -> None:
    client = quick_reconciler
    inbox = EventInbox(client)
    try:
        job_ids = [client.submit(_lost()).json()["job_id"] for _ in range(4)]

        jobs = [client.wait_for(job_id, timeout=60) for job_id in job_ids]

        assert [job["status"] for job in jobs] == ["DELIVERED"] * 4
        for job in jobs:
            served = client.simulated_request(job["request_id"])
            assert served["callbacks"] == [], "the simulator must not have called back"
            size, sha256 = client.object_sha256(job["outputs"][0]["bucket"], job["outputs"][0]["key"])
            assert (size, sha256) == (served["media"][0]["size"], served["media"][0]["sha256"])
        events = inbox.collect(wait=3.0)
        assert sorted((e["subject"], e["type"]) for e in events) == sorted((j, JOB_DELIVERED) for j in job_ids)
    finally:
        inbox.close()


def test_failed_job_without_callback_ends_failed_with_one_failed_event(quick_reconciler: LocalClient) -> None:
    client = quick_reconciler
    inbox = EventInbox(client)
    try:
        job_id = client.submit(_lost("[sim:fail]")).json()["job_id"]

        job = client.wait_for(job_id, timeout=60)

        assert job["status"] == "FAILED"
        assert [e["type"] for e in inbox.for_job(job_id, wait=3.0)] == [JOB_FAILED]
    finally:
        inbox.close()


def test_reconciler_runs_take_their_lease_in_the_jobs_table(quick_reconciler: LocalClient) -> None:
    # The schedule fires every second; each run takes and gives back lease#reconciler.
    client = quick_reconciler
    deadline = time.monotonic() + 10
    item: dict[str, Any] = {}
    while not item and time.monotonic() < deadline:
        key = {"job_id": {"S": "lease#reconciler"}}
        item = client.dynamodb.get_item(TableName=client.ready["table"], Key=key).get("Item", {})
        time.sleep(0.2)

    # Neither index may hold it: no owner, no unfinished flag.
    assert item and set(item) <= {"job_id", "lease_holder", "lease_until"}

"""The functions' log lines on the local stack name the function that wrote them, as CloudWatch does.

On AWS every execution environment is its own process, so a line carries the keys of the
invocation that logged it (function_name, cold_start, function_request_id, job_id ...). The local
stack runs every function in one process: these tests drive jobs through all of them at once and
read the stack's log, so a line labelled with another function's name, a job_id taken from
another invocation or a cold start counted once per process fails here (issue 16, the local logs).

Each message below is logged by one function only on the paths these jobs take."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pixverse_local.harness import LocalClient, StackProcess

MODEL = "pixverse-v6-text-to-video"
JOBS = 6

# Which function logs each message for a job that the gateway calls back.
CALLED_BACK = {
    "idempotent repeat": "SubmitFunction",
    "job submitted": "SubmitterFunction",
    "submit message handled": "SubmitterFunction",
    "callback applied": "WebhookFunction",
    "copy requested": "WebhookFunction",
    "media copied": "MediaCopyFunction",
    "event published": "MediaCopyFunction",
}
# And for a job whose callback never comes, moved on by the reconciler's poll (in its pool threads).
RECONCILED = {
    "job submitted": "SubmitterFunction",
    "job moved by the gateway's status": "ReconcileFunction",
    "callback applied": "ReconcileFunction",
    "copy requested": "ReconcileFunction",
    "media copied": "MediaCopyFunction",
    "event published": "MediaCopyFunction",
}


def _lines(log_path: Path | None) -> list[dict[str, Any]]:
    """The functions' structured (Powertools) lines of the stack's log, in order."""
    assert log_path is not None
    return [
        record
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and "function_name" in (record := json.loads(line))
    ]


def _function(record: dict[str, Any]) -> str:
    """The template's logical id in a line's function_name (``<stack>-<LogicalId>`` locally)."""
    name = str(record["function_name"])
    assert record["function_arn"].endswith(f":function:{name}"), record
    return name.rsplit("-", 1)[-1]


def _job_lines(stack: StackProcess, job_ids: set[str], messages: set[str], wait: float = 5.0) -> list[dict[str, Any]]:
    """The lines with one of ``messages`` that name one of ``job_ids``, once each job has its
    "event published" line (the stack's output reaches its log file a little after the answers)."""
    deadline = time.monotonic() + wait
    while True:
        found = [r for r in _lines(stack.log_path) if r.get("message") in messages and r.get("job_id") in job_ids]
        published = {r["job_id"] for r in found if r["message"] == "event published"}
        if published == job_ids or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _prompt(directives: str = "") -> dict[str, Any]:
    prompt = f"A lighthouse in fog {uuid.uuid4().hex[:8]} {directives}".strip()
    return {"model": MODEL, "input": {"prompt": prompt}, "metadata": {"test": "function-logs"}}


def test_concurrent_jobs_log_each_line_under_the_function_that_ran_it(client: LocalClient, stack: StackProcess) -> None:
    # Given six jobs submitted at once, each POSTed twice with its Idempotency-Key
    def submit(_: int) -> dict[str, Any]:
        body, headers = _prompt(), {"Idempotency-Key": f"logs-{uuid.uuid4().hex}"}
        first = client.submit(body, headers)
        assert first.status_code == 202, first.text
        repeat = client.submit(body, headers)
        assert repeat.json()["job_id"] == first.json()["job_id"], repeat.text
        return dict(first.json())

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        accepted = list(pool.map(submit, range(JOBS)))
        # When every function runs for them, several at a time
        jobs = {job["job_id"]: job for job in pool.map(lambda job: client.wait_for(job["job_id"]), accepted)}
    assert {job["status"] for job in jobs.values()} == {"DELIVERED"}

    # Then every line names the function that logged it, and the job it was about
    lines = _job_lines(stack, set(jobs), set(CALLED_BACK))
    wrong = [(r["message"], _function(r)) for r in lines if _function(r) != CALLED_BACK[r["message"]]]
    assert wrong == [], wrong
    for job_id, job in jobs.items():
        counts = dict.fromkeys(CALLED_BACK, 0)
        for record in lines:
            # A repeated submit message (the idempotent repeat queues one) is handled as "skipped".
            if record["job_id"] == job_id and record.get("outcome") != "skipped":
                counts[record["message"]] += 1
                if "request_id" in record:  # appended by the function that saw the gateway's answer
                    assert record["request_id"] == job["request_id"], record
        # Every line of the job is there once, none lost to another invocation's job_id.
        assert counts == dict.fromkeys(CALLED_BACK, 1), (job_id, counts)


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackProcess, LocalClient]]:
    """A stack of its own (its first invocations are cold starts), whose reconciler looks at a job
    2 s after its creation and runs every second."""
    log: Path = tmp_path_factory.mktemp("function-logs") / "local-stack.log"
    env = {"LOCAL_TIME_SCALE": "0.001", "RECONCILE_AFTER_SECONDS": "2", "LOCAL_RECONCILE_EVERY_SECONDS": "1"}
    with StackProcess(log_path=log, env=env) as process:
        assert process.ready is not None
        client = LocalClient(process.ready)
        yield process, client
        client.close()


def test_reconciler_lines_name_the_reconciler_and_each_function_logs_its_own_cold_start(
    fresh_stack: tuple[StackProcess, LocalClient],
) -> None:
    stack, client = fresh_stack
    # Given jobs whose callbacks never come, submitted at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        job_ids = list(pool.map(lambda _: client.submit(_prompt("[sim:no-callback]")).json()["job_id"], range(4)))
        # When the reconciler polls them and the copier delivers them
        jobs = list(pool.map(lambda job_id: client.wait_for(job_id, timeout=60), job_ids))
    assert [job["status"] for job in jobs] == ["DELIVERED"] * 4

    # Then the reconciler's lines (its pool threads' too) name it, and carry their job's id
    lines = _job_lines(stack, set(job_ids), set(RECONCILED))
    wrong = [(r["message"], _function(r)) for r in lines if _function(r) != RECONCILED[r["message"]]]
    assert wrong == [], wrong
    for job_id in job_ids:
        logged = Counter(r["message"] for r in lines if r["job_id"] == job_id)
        # A poll may find the job still PROCESSING first (a loaded machine): one more move, applied.
        polls = logged["job moved by the gateway's status"]
        assert logged == {
            **dict.fromkeys(RECONCILED, 1),
            "job moved by the gateway's status": polls,
            "callback applied": polls,
        }, (job_id, logged)
    every_line = _lines(stack.log_path)
    runs = [r for r in every_line if r.get("message") == "reconciler run"]
    assert runs, "no reconciler run logged"
    assert {_function(r) for r in runs} == {"ReconcileFunction"}, [_function(r) for r in runs]
    # And each function logged its own cold start (one per execution environment, as on AWS, not
    # one per process); the reconciler's first run, which always logs, was one
    cold = {_function(r) for r in every_line if r["cold_start"]}
    assert {"SubmitterFunction", "ReconcileFunction", "MediaCopyFunction"} <= cold, cold
    assert runs[0]["cold_start"] is True, runs[0]
    assert any(not r["cold_start"] for r in runs[1:]), "every reconciler run logged a cold start"

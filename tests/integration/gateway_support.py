"""What the gateway simulator saw, read per job, and the submit queue, for the integration tests.

Since admission (issue 14) POST /jobs answers 202 before anything reaches the gateway: the
submitter sends the job later, from the submit queue. A test that counts gateway submits therefore
counts them per job (the simulator records each submit it accepted with the job's signed callback
URL, ``/webhooks/pixazo/<job_id>?sig=``), and waits for the job to be sent (``wait_sent``) before
it reads what the gateway did."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from pixverse_local.harness import TERMINAL, LocalClient, StackProcess


def webhook_job_id(record: dict[str, Any]) -> str | None:
    """The job a simulated gateway request belongs to: the last segment of its callback URL."""
    url = record.get("webhook_url")
    return httpx.URL(str(url)).path.rsplit("/", 1)[-1] if url else None


def gateway_requests(client: LocalClient) -> list[dict[str, Any]]:
    """Every request the simulator accepted, in the order it accepted them."""
    assert client.gateway is not None
    response = client.gateway.get("/_sim/requests", timeout=60)
    response.raise_for_status()
    records: list[dict[str, Any]] = response.json()
    return records


def gateway_requests_for(client: LocalClient, job_id: str) -> list[dict[str, Any]]:
    """The requests the simulator accepted for ``job_id`` (more than one is a duplicate submit)."""
    return [r for r in gateway_requests(client) if webhook_job_id(r) == job_id]


def submits_received(client: LocalClient) -> int:
    """Every submit that reached the simulator, accepted or answered with an injected fault."""
    assert client.gateway is not None
    return int(client.gateway.get("/_sim/stats").json()["submits_received"])


def add_fault(client: LocalClient, spec: dict[str, Any]) -> None:
    assert client.gateway is not None
    client.gateway.post("/_sim/faults", json=spec).raise_for_status()


def clear_faults(client: LocalClient) -> None:
    assert client.gateway is not None
    client.gateway.delete("/_sim/faults").raise_for_status()


def wait_faults_used(client: LocalClient, timeout: float = 30.0) -> None:
    """Wait until the simulator has answered every injected fault: a submit fault is taken by the
    next submit to arrive, which the submitter sends a moment after the POST."""
    assert client.gateway is not None
    deadline = time.monotonic() + timeout
    while faults := client.gateway.get("/_sim/faults").json()["faults"]:
        assert time.monotonic() < deadline, f"faults still pending after {timeout}s: {faults}"
        time.sleep(0.05)


def wait_job(
    client: LocalClient,
    job_id: str,
    done: Any,
    *,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll GET /jobs/{job_id} until ``done(job)`` holds; the last job read."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.api.get(f"/jobs/{job_id}", headers=headers or {})
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not get there in {timeout}s: {job}"
        time.sleep(0.05)


def is_sent(job: dict[str, Any]) -> bool:
    """What ``LocalClient.wait_sent`` waits for: the submitter has dealt with the job (its
    request_id known, or it ended, or its submit's outcome is unknown)."""
    return bool(job.get("request_id")) or job["status"] in TERMINAL or job.get("submit_outcome") == "unknown"


def wait_sent_as(client: LocalClient, job_id: str, caller: dict[str, str], timeout: float = 60.0) -> dict[str, Any]:
    """``LocalClient.wait_sent`` for a job of another caller than the client's own."""
    return wait_job(client, job_id, is_sent, timeout=timeout, headers=caller)


def submit_queue_url(client: LocalClient) -> str:
    """The stack's SubmitQueue (template.yaml), found by its logical id in the local name."""
    urls = [u for u in client.sqs.list_queues()["QueueUrls"] if u.endswith("-SubmitQueue")]
    assert len(urls) == 1, f"expected one submit queue: {urls}"
    return str(urls[0])


def queue_depth(client: LocalClient, queue_url: str) -> int:
    """Messages in the queue: waiting, in flight and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = client.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def wait_submit_queue_drained(client: LocalClient, timeout: float = 120.0) -> None:
    """Wait until the submitter has dealt with every submit message (what earlier tests queued
    included), so that a fault injected next is taken by this test's job."""
    url = submit_queue_url(client)
    deadline = time.monotonic() + timeout
    while depth := queue_depth(client, url):
        assert time.monotonic() < deadline, f"{depth} submit messages still queued after {timeout}s"
        time.sleep(0.1)


def log_lines(stack: StackProcess, message: str) -> int:
    """How many of the functions' structured log lines carry ``message``. Not per job: the local
    stack runs concurrent invocations in threads of one process, which share the Powertools logger,
    so a line's appended keys (job_id) can be cleared by another invocation's start."""
    assert stack.log_path is not None
    count = 0
    for line in Path(stack.log_path).read_text().splitlines():
        if message in line and line.startswith("{") and json.loads(line).get("message") == message:
            count += 1
    return count


def wait_log_lines(stack: StackProcess, message: str, more_than: int, timeout: float = 60.0) -> int:
    """Wait until more than ``more_than`` lines carry ``message``; their count."""
    deadline = time.monotonic() + timeout
    while (count := log_lines(stack, message)) <= more_than:
        assert time.monotonic() < deadline, f"no new {message!r} line logged in {timeout}s"
        time.sleep(0.1)
    return count

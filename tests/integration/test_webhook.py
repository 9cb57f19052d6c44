"""The webhook receiver on the local stack, driven as the gateway drives it: real HTTP to the
local API, the job's own signed URL (as the simulator received it with the submit), media the
simulator serves, the copy queue, S3 and the events topic.

Jobs here are submitted with ``[sim:no-callback]`` so that every callback is one this module
sends, once the submitter has sent them (POST /jobs answers ACCEPTED before the gateway is
called). The callback-before-request_id race runs here too, through a delayed 202 from the
simulator to the submitter; it is also covered in one process in tests/unit/test_webhook_handler.py."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from gateway_support import add_fault, clear_faults, gateway_requests_for, wait_faults_used, wait_submit_queue_drained
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED
from pixverse_local.harness import EventInbox, LocalClient, StackProcess

MODEL = "pixverse-v6-text-to-video"
LATE_202_SECONDS = 2.5


def _submit(
    client: LocalClient, *, mode: str = "terminal", directives: str = "[sim:no-callback]", sent: bool = True
) -> dict[str, Any]:
    """POST the job; with ``sent``, the job once the submitter has sent it (its request_id known)."""
    body = {
        "model": MODEL,
        "input": {"prompt": f"A harbour at night {uuid.uuid4().hex[:8]} {directives}".strip()},
        "webhook_mode": mode,
        "metadata": {"test": "webhook"},
    }
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "ACCEPTED", job
    return client.wait_sent(job["job_id"]) if sent else job


def _finished_simulation(client: LocalClient, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The simulator's record once its media exists (it ends COMPLETED ~0.8 s after the submit)."""
    deadline = time.monotonic() + timeout
    while True:
        record = client.simulated_request(request_id)
        if record["status"] == "COMPLETED":
            return record
        assert time.monotonic() < deadline, f"simulated request {request_id} still {record['status']}"
        time.sleep(0.05)


def _callback_path(record: dict[str, Any]) -> str:
    """Path and query of the signed URL the gateway was given (``/webhooks/pixazo/<job>?sig=``)."""
    url = httpx.URL(record["webhook_url"])
    return url.raw_path.decode()


def _payload(request_id: str, status: str, media_urls: list[str] | None = None) -> dict[str, Any]:
    completed = status in ("COMPLETED", "FAILED", "ERROR")
    return {
        "request_id": request_id,
        "status": status,
        "model_id": MODEL,
        "error": "Generation failed" if status in ("FAILED", "ERROR") else None,
        "output": {"media_url": media_urls, "media_type": "video/mp4"} if status == "COMPLETED" else None,
        "created_at": "2026-11-25T12:00:00.000Z",
        "updated_at": "2026-11-25 12:00:05",
        "completed_at": "2026-11-25 12:00:05" if completed else None,
    }


def _item(client: LocalClient, job_id: str) -> dict[str, Any]:
    """The job's raw table item, read strongly consistent."""
    item: dict[str, Any] = client.dynamodb.get_item(
        TableName=client.ready["table"], Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )["Item"]
    return item


def _objects(client: LocalClient, job_id: str) -> list[str]:
    listing = client.s3.list_objects_v2(Bucket=client.ready["bucket"], Prefix=f"videos/{MODEL}/{job_id}/")
    return [o["Key"] for o in listing.get("Contents", [])]


def _webhook_logs(stack: StackProcess, job_id: str, message: str) -> list[dict[str, Any]]:
    """The functions' structured log lines for ``job_id`` with ``message`` (from the stack's log)."""
    assert stack.log_path is not None
    found = []
    for line in Path(stack.log_path).read_text().splitlines():
        if job_id in line and message in line and line.startswith("{"):
            record = json.loads(line)
            if record.get("job_id") == job_id and record.get("message") == message:
                found.append(record)
    return found


def _logged_counts(stack: StackProcess, job_id: str, expected: dict[str, int], wait: float = 5.0) -> dict[str, int]:
    """How many lines of each message the stack logged for ``job_id``, waiting up to ``wait`` s for
    ``expected``: the stack's stderr reaches its log file through a pipe, a little after the answers."""
    deadline = time.monotonic() + wait
    while True:
        counts = {message: len(_webhook_logs(stack, job_id, message)) for message in expected}
        if counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def _open_connection(http: httpx.Client) -> None:
    """Connect before the race, so the 20 callbacks go out at once on open keep-alive connections.

    The local API listens with socketserver's default backlog of 5: 20 simultaneous connects
    can overflow it and get reset, which would test the emulator's TCP, not the receiver. An
    unrouted path answers 404 without invoking any function."""
    for _ in range(20):
        try:
            http.get("/_webhook-test-connect")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("could not connect to the local API")


def test_twenty_concurrent_completed_callbacks_make_one_transition_enqueue_object_and_event(
    client: LocalClient, stack: StackProcess, inbox: EventInbox
) -> None:
    job = _submit(client)
    record = _finished_simulation(client, job["request_id"])
    path = _callback_path(record)
    body = _payload(job["request_id"], "COMPLETED", [m["url"] for m in record["media"]])
    start = threading.Barrier(20)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=client.ready["api"], timeout=30.0) as http:
            _open_connection(http)
            start.wait(timeout=10)
            return http.post(path, json=body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))

    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["applied"] for r in responses) == [False] * 19 + [True]
    final = client.wait_for(job["job_id"])
    assert final["status"] == "DELIVERED"
    expected = {"callback applied": 1, "copy requested": 1, "callback changed nothing": 19}
    # Every line names its job: each execution environment keeps its own logger keys locally, as
    # on AWS, so no other function's clear_state can drop a job_id (tests/integration/test_function_logs.py).
    assert _logged_counts(stack, job["job_id"], expected) == expected
    assert client.simulated_request(job["request_id"])["media_gets"] == 1
    assert len(_objects(client, job["job_id"])) == 1
    events = inbox.for_job(job["job_id"], wait=2.0)
    assert [e["type"] for e in events] == [JOB_DELIVERED]


def test_sync_mode_sequence_with_late_processing_after_completed_ends_delivered(
    client: LocalClient, inbox: EventInbox
) -> None:
    job = _submit(client, mode="sync")
    assert job["webhook_mode"] == "sync"
    record = _finished_simulation(client, job["request_id"])
    path = _callback_path(record)
    media = [m["url"] for m in record["media"]]

    seen = []
    for status in ("QUEUED", "PROCESSING", "PROCESSING", "COMPLETED", "PROCESSING", "QUEUED"):
        response = client.api.post(path, json=_payload(job["request_id"], status, media))
        assert response.status_code == 200, response.text
        seen.append((status, response.json()["applied"], client.get_job(job["job_id"])["status"]))

    assert seen[:4] == [
        ("QUEUED", True, "QUEUED"),
        ("PROCESSING", True, "PROCESSING"),
        ("PROCESSING", True, "PROCESSING"),
        ("COMPLETED", True, seen[3][2]),
    ]
    assert seen[3][2] in ("COMPLETED", "COPYING", "DELIVERED")
    # The late ones change nothing, whatever stage the copy has reached.
    assert [(s, applied) for s, applied, _ in seen[4:]] == [("PROCESSING", False), ("QUEUED", False)]
    assert all(status in ("COMPLETED", "COPYING", "DELIVERED") for _, _, status in seen[4:])
    final = client.wait_for(job["job_id"])
    assert final["status"] == "DELIVERED"
    assert client.api.post(path, json=_payload(job["request_id"], "PROCESSING")).json()["applied"] is False
    assert client.get_job(job["job_id"])["status"] == "DELIVERED"
    assert [e["type"] for e in inbox.for_job(job["job_id"], wait=2.0)] == [JOB_DELIVERED]


def test_callback_arriving_before_the_submit_stored_the_request_id_is_kept(client: LocalClient) -> None:
    # The simulator accepts the submitter's request but answers 202 only after 2.5 s; its callback
    # comes at ~0.8 s, while the job is still SUBMITTING without a request_id. Earlier tests' submit
    # messages are dealt with first, so that the fault meets this job.
    wait_submit_queue_drained(client)
    add_fault(client, {"submit_status": 202, "delay_seconds": LATE_202_SECONDS, "count": 1})
    try:
        job = _submit(client, directives="", sent=False)
        wait_faults_used(client)  # the submitter's call took it
    finally:
        clear_faults(client)

    (record,) = _records_when(client, job["job_id"], lambda r: bool(r["callbacks"]))
    assert [c["status_code"] for c in record["callbacks"]][:1] == [200]  # accepted, not refused
    # The premise: the first callback was answered before the submit's own answer went out.
    first_callback = _moment(record["callbacks"][0]["at"]) - _moment(record["submitted_at"])
    assert first_callback < LATE_202_SECONDS, record["callbacks"]
    final = client.wait_for(job["job_id"])
    assert (final["status"], final["request_id"]) == ("DELIVERED", record["request_id"])
    # The submitter's late answer came after the callback had moved the job on, and changed
    # nothing: the job was sent once, and is delivered with the callback's request_id.
    assert final["submit_attempts"] == 1
    assert len(gateway_requests_for(client, job["job_id"])) == 1


def _moment(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _records_when(client: LocalClient, job_id: str, ready: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The simulator's records for ``job_id`` once ``ready`` holds for each (and there is one)."""
    deadline = time.monotonic() + timeout
    while True:
        records = gateway_requests_for(client, job_id)
        if records and all(ready(r) for r in records):
            return records
        assert time.monotonic() < deadline, f"simulated requests of {job_id}: {records}"
        time.sleep(0.05)


def _refused_cases(job_id: str, other_request_id: str, sig: str) -> list[tuple[str, str, Any, int]]:
    """(name, path, body, expected status) of callbacks that must change nothing."""
    base = f"/webhooks/pixazo/{job_id}"
    return [
        ("forged sig", f"{base}?sig={'0' * 64}", None, 401),
        ("sig of another secret", f"{base}?sig={'a1' * 32}", None, 401),
        ("missing sig", base, None, 401),
        ("another job's payload on a valid URL", f"{base}?sig={sig}", {"request_id": other_request_id}, 409),
        ("malformed body", f"{base}?sig={sig}", "{not json", 400),
        ("unknown status", f"{base}?sig={sig}", {"status": "DONE"}, 400),
        ("missing request_id", f"{base}?sig={sig}", {"request_id": None}, 400),
        ("oversize body", f"{base}?sig={sig}", "x" * (64 * 1024 + 1), 413),
    ]


def test_refused_callbacks_are_4xx_and_leave_the_item_unchanged(client: LocalClient) -> None:
    job = _submit(client)
    other = _submit(client)
    record = _finished_simulation(client, job["request_id"])
    sig = httpx.URL(record["webhook_url"]).params["sig"]
    media = [m["url"] for m in record["media"]]
    # Move it to PROCESSING first, so that a wrongly accepted COMPLETED would visibly change it.
    assert client.api.post(_callback_path(record), json=_payload(job["request_id"], "PROCESSING")).status_code == 200
    before = _item(client, job["job_id"])

    results = {}
    for name, path, change, expected in _refused_cases(job["job_id"], other["request_id"], sig):
        if isinstance(change, str):
            response = client.api.post(path, content=change, headers={"Content-Type": "application/json"})
        else:
            body = {**_payload(job["request_id"], "COMPLETED", media), **(change or {})}
            response = client.api.post(path, json=body)
        results[name] = (response.status_code, expected)
        assert response.json()["error"]["code"] in ("callback_rejected", "payload_too_large"), name
        assert sig not in response.text

    assert {name: got for name, (got, _) in results.items()} == {name: want for name, (_, want) in results.items()}
    assert _item(client, job["job_id"]) == before
    assert _item(client, other["job_id"])["request_id"] == {"S": other["request_id"]}


def test_failed_callback_twice_ends_the_job_once_with_one_failed_event(client: LocalClient, inbox: EventInbox) -> None:
    job = _submit(client)
    record = _finished_simulation(client, job["request_id"])
    answers = [
        client.api.post(_callback_path(record), json=_payload(job["request_id"], "FAILED")).json()["applied"]
        for _ in range(2)
    ]
    assert answers == [True, False]
    final = client.wait_for(job["job_id"])
    assert (final["status"], final["error"]["code"]) == ("FAILED", "generation_failed")
    assert [e["type"] for e in inbox.for_job(job["job_id"], wait=2.0)] == [JOB_FAILED]

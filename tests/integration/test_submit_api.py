"""The submit API over real HTTP on the local stack: admission (202 ACCEPTED at once, the gateway
called later by the submitter), Idempotency-Key, request limits, listing, and a gateway that answers
the submitter's call later than the submitter can wait."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from gateway_support import (
    add_fault,
    clear_faults,
    gateway_requests_for,
    log_lines,
    wait_faults_used,
    wait_log_lines,
    wait_sent_as,
    wait_submit_queue_drained,
)
from pixverse_jobs.admission import SUBMIT_CALL_SECONDS
from pixverse_jobs.events import JOB_DELIVERED
from pixverse_jobs.request_size import submit_body_limit
from pixverse_local.harness import EventInbox, LocalClient, StackProcess


def _body(tag: str = "") -> dict[str, Any]:
    return {
        "model": "pixverse-c1-text-to-video",
        "input": {"prompt": f"A paper boat on a river {uuid.uuid4().hex[:8]} {tag} [sim:no-callback]", "duration": 5},
    }


def _caller() -> dict[str, str]:
    """A caller of its own, whose listing shows only what this test created."""
    return {"X-Local-Principal-Arn": f"arn:aws:iam::000000000000:user/submit-api-{uuid.uuid4().hex[:8]}"}


def _listed(client: LocalClient, caller: dict[str, str]) -> list[str]:
    page = client.api.get("/jobs", params={"limit": "100"}, headers=caller)
    assert page.status_code == 200, page.text
    return [j["job_id"] for j in page.json()["jobs"]]


def test_idempotency_key_repeat_returns_same_job_sent_to_the_gateway_once(client: LocalClient) -> None:
    key = f"order-{uuid.uuid4()}"
    body = _body()
    caller = _caller()
    first = client.submit(body, headers={"Idempotency-Key": key, **caller})
    second = client.submit(body, headers={"Idempotency-Key": key, **caller})
    assert first.status_code == second.status_code == 202
    job_id = first.json()["job_id"]
    assert second.json()["job_id"] == job_id
    assert _listed(client, caller) == [job_id]

    job = wait_sent_as(client, job_id, caller)
    assert (job["status"], job["submit_attempts"]) == ("QUEUED", 1)
    assert len(gateway_requests_for(client, job_id)) == 1


def test_five_concurrent_identical_requests_make_one_job_and_one_gateway_submit(client: LocalClient) -> None:
    key = f"order-{uuid.uuid4()}"
    body = _body()
    caller = _caller()

    def post(_: int) -> httpx.Response:
        return client.submit(body, headers={"Idempotency-Key": key, **caller})

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(post, range(5)))
    assert [r.status_code for r in responses] == [202] * 5
    (job_id,) = {r.json()["job_id"] for r in responses}
    assert _listed(client, caller) == [job_id]
    assert wait_sent_as(client, job_id, caller)["submit_attempts"] == 1
    assert len(gateway_requests_for(client, job_id)) == 1


def test_idempotency_key_with_another_body_is_409_and_admits_nothing(client: LocalClient) -> None:
    key = f"order-{uuid.uuid4()}"
    caller = _caller()
    first = client.submit(_body("a"), headers={"Idempotency-Key": key, **caller})
    assert first.status_code == 202
    conflict = client.submit(_body("b"), headers={"Idempotency-Key": key, **caller})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert _listed(client, caller) == [first.json()["job_id"]]


def test_oversized_body_is_413_and_writes_nothing(client: LocalClient) -> None:
    caller = _caller()
    count = client.dynamodb.scan(TableName=client.ready["table"], Select="COUNT")["Count"]
    body = _body()
    # Just over the limit the catalog's widest request sets (whatever spacing the client uses).
    body["input"]["prompt"] = ""
    envelope = len(json.dumps(body).encode())
    body["input"]["prompt"] = "x" * (submit_body_limit() - envelope + 100)
    response = client.submit(body, headers=caller)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert client.dynamodb.scan(TableName=client.ready["table"], Select="COUNT")["Count"] == count
    assert _listed(client, caller) == []


def test_wrong_content_type_is_400(client: LocalClient) -> None:
    response = client.api.post("/jobs", content=b"model=pixverse", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert "Content-Type" in response.json()["error"]["message"]


def test_list_jobs_paginates_newest_first_and_filters_by_status(client: LocalClient) -> None:
    caller = {"X-Local-Principal-Arn": f"arn:aws:iam::000000000000:user/lister-{uuid.uuid4().hex[:8]}"}
    created = [client.submit(_body(str(i)), headers=caller).json()["job_id"] for i in range(5)]
    failed = client.submit({"model": "pixverse", "input": {"prompt": "p"}}, headers=caller)
    assert failed.status_code == 400  # refused requests leave no job to list

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": "2", **({"next_token": token} if token else {})}
        page = client.api.get("/jobs", params=params, headers=caller)
        assert page.status_code == 200, page.text
        seen += [j["job_id"] for j in page.json()["jobs"]]
        token = page.json()["next_token"]
        pages += 1
        if not token:
            break
    assert pages >= 3
    assert seen == list(reversed(created))

    # Once the submitter has sent them, the gateway holds them QUEUED ([sim:no-callback]).
    for job_id in created:
        wait_sent_as(client, job_id, caller)
    queued = client.api.get("/jobs", params={"status": "QUEUED", "limit": "100"}, headers=caller).json()["jobs"]
    assert {j["job_id"] for j in queued} == set(created)
    none = client.api.get("/jobs", params={"status": "DELIVERED"}, headers=caller).json()["jobs"]
    assert none == []
    # Someone else's listing does not show them.
    nobody = {"X-Local-Principal-Arn": "arn:aws:iam::000000000000:user/nobody-" + uuid.uuid4().hex[:6]}
    other = client.api.get("/jobs", headers=nobody).json()["jobs"]
    assert other == []


def test_list_jobs_rejects_bad_query_naming_fields(client: LocalClient) -> None:
    response = client.api.get("/jobs", params={"limit": "0", "status": "DONE", "next_token": "garbage", "x": "1"})
    assert response.status_code == 400
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"limit", "status", "next_token", "x"}


def test_next_token_of_another_caller_is_refused(client: LocalClient) -> None:
    owner = {"X-Local-Principal-Arn": f"arn:aws:iam::000000000000:user/owner-{uuid.uuid4().hex[:8]}"}
    for i in range(2):
        client.submit(_body(str(i)), headers=owner)
    token = client.api.get("/jobs", params={"limit": "1"}, headers=owner).json()["next_token"]
    assert token
    thief_arn = {"X-Local-Principal-Arn": "arn:aws:iam::000000000000:user/thief"}
    thief = client.api.get("/jobs", params={"next_token": token}, headers=thief_arn)
    assert thief.status_code == 400


def test_delivered_job_has_presigned_download_url_serving_the_object(client: LocalClient) -> None:
    body = {"model": "pixverse-v6-text-to-video", "input": {"prompt": f"A fox {uuid.uuid4().hex[:8]}"}}
    job = client.wait_for(client.submit(body).json()["job_id"])
    assert job["status"] == "DELIVERED"
    output = job["outputs"][0]
    assert output["download_url_expires_in"] == 900
    downloaded = httpx.get(output["download_url"], timeout=30)
    assert downloaded.status_code == 200
    assert hashlib.sha256(downloaded.content).hexdigest() == output["sha256"]


# ------------------------------------------------------------------ a submit answered too late
# The gateway takes the job at once but answers the submitter's call only after the submitter's
# deadline for one submit (admission.SUBMIT_CALL_SECONDS): its outcome is unknown to the submitter,
# which never sends it again (the gateway may have accepted, and will bill, it); its callback moves it on.
LATE_ANSWER_SECONDS = SUBMIT_CALL_SECONDS + 10
UNKNOWN_OUTCOME = "gateway answer not in time; submit outcome unknown"


@pytest.fixture
def late_gateway(client: LocalClient) -> Iterator[None]:
    """The simulator takes the next submit at once (and starts the job) but answers it late. The
    submit messages earlier tests queued are dealt with first, so that the next submit is this test's."""
    wait_submit_queue_drained(client)
    add_fault(client, {"submit_status": 202, "delay_seconds": LATE_ANSWER_SECONDS, "count": 1})
    yield
    clear_faults(client)


def test_submit_answered_after_the_submitters_deadline_is_delivered_once_by_its_callback(
    client: LocalClient, stack: StackProcess, inbox: EventInbox, late_gateway: None
) -> None:
    # Given a gateway that accepts the job at once but answers the submit only after the submitter gave up
    tag = uuid.uuid4().hex
    body = {"model": "pixverse-v6-text-to-video", "input": {"prompt": f"A lighthouse at dusk {tag}"}}
    gave_up_before = log_lines(stack, UNKNOWN_OUTCOME)

    # When the job is submitted
    response = client.submit(body)

    # Then the caller has its 202 at once (the gateway is not called in the request), and the
    # gateway's callback delivers the job while the submitter still waits for the submit's answer
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "ACCEPTED"
    job_id = response.json()["job_id"]
    wait_faults_used(client)
    final = client.wait_for(job_id)
    assert final["status"] == "DELIVERED"
    assert final["submit_outcome"] == "accepted"
    assert [e["type"] for e in inbox.for_job(job_id, wait=2.0)] == [JOB_DELIVERED]
    # Once the submitter gave up on the answer, the job is still the callback's: one gateway
    # submit, accepted (so billed) once, never sent again after the late answer; its message,
    # seen again meanwhile (the queue's visibility timeout is 0.36 s at this time scale), skipped.
    # (Only this test's submit is late, so the submitter's next "not in time" line is this job's.)
    wait_log_lines(stack, UNKNOWN_OUTCOME, more_than=gave_up_before, timeout=LATE_ANSWER_SECONDS + 10)
    (record,) = gateway_requests_for(client, job_id)
    assert record["request_id"] == final["request_id"]
    assert (client.get_job(job_id)["status"], client.get_job(job_id)["submit_attempts"]) == ("DELIVERED", 1)


def test_submit_outcome_unknown_waits_for_and_is_moved_on_by_the_signed_callback(
    client: LocalClient, late_gateway: None
) -> None:
    # Given a late-answering gateway whose own callback is held back
    tag = uuid.uuid4().hex
    body = {"model": "pixverse-v6-text-to-video", "input": {"prompt": f"A harbour at dawn {tag} [sim:no-callback]"}}

    # When the job is submitted and the submitter's deadline for the gateway's answer passes
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job = client.wait_sent(response.json()["job_id"], timeout=LATE_ANSWER_SECONDS + 10)

    # Then the job says it is recorded but its submit's outcome is not known: sent once, not again
    assert (job["status"], job["submit_outcome"], job["request_id"]) == ("SUBMITTING", "unknown", None)
    assert job["submit_attempts"] == 1
    (record,) = gateway_requests_for(client, job["job_id"])

    # When the gateway's callback for the job it accepted arrives at the signed URL
    deadline = time.monotonic() + 30
    while record["status"] != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.2)
        (record,) = gateway_requests_for(client, job["job_id"])
    callback = {
        "request_id": record["request_id"],
        "status": "COMPLETED",
        "output": {"media_url": [m["url"] for m in record["media"]], "media_type": "video/mp4"},
    }
    answer = httpx.post(record["webhook_url"], json=callback, timeout=30)

    # Then the job takes the request_id and is delivered, without a second submit
    assert answer.status_code == 200, answer.text
    final = client.wait_for(job["job_id"])
    assert (final["status"], final["request_id"], final["submit_outcome"]) == (
        "DELIVERED",
        record["request_id"],
        "accepted",
    )
    assert len(gateway_requests_for(client, job["job_id"])) == 1

"""The submit API over real HTTP on the local stack: Idempotency-Key, request limits, a gateway
that answers the submit later than the API can wait."""

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
from pixverse_jobs.events import JOB_DELIVERED
from pixverse_jobs.request_size import submit_body_limit
from pixverse_local.harness import EventInbox, LocalClient


def _body(tag: str = "") -> dict[str, Any]:
    return {
        "model": "pixverse-c1-text-to-video",
        "input": {"prompt": f"A paper boat on a river {uuid.uuid4().hex[:8]} {tag} [sim:no-callback]", "duration": 5},
    }


def _submits_received(client: LocalClient) -> int:
    assert client.gateway is not None
    return int(client.gateway.get("/_sim/stats").json()["submits_received"])


def _submit_counts(client: LocalClient) -> tuple[int, int]:
    """The simulator's submits received and accepted so far (its /_sim/stats counters)."""
    assert client.gateway is not None
    stats = client.gateway.get("/_sim/stats").json()
    return int(stats["submits_received"]), int(stats["submits_accepted"])


def test_idempotency_key_repeat_returns_same_job_without_new_submit(client: LocalClient) -> None:
    key = f"order-{uuid.uuid4()}"
    body = _body()
    before = _submits_received(client)
    first = client.submit(body, headers={"Idempotency-Key": key})
    second = client.submit(body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert _submits_received(client) - before == 1


def test_five_concurrent_identical_requests_make_one_gateway_submit(client: LocalClient) -> None:
    key = f"order-{uuid.uuid4()}"
    body = _body()
    before = _submits_received(client)

    def post(_: int) -> httpx.Response:
        return client.submit(body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(post, range(5)))
    assert [r.status_code for r in responses] == [202] * 5
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert _submits_received(client) - before == 1


def test_idempotency_key_with_another_body_is_409(client: LocalClient) -> None:
    key = f"order-{uuid.uuid4()}"
    assert client.submit(_body("a"), headers={"Idempotency-Key": key}).status_code == 202
    before = _submits_received(client)
    conflict = client.submit(_body("b"), headers={"Idempotency-Key": key})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert _submits_received(client) == before


def test_oversized_body_is_413_and_writes_nothing(client: LocalClient) -> None:
    before = _submits_received(client)
    count = client.dynamodb.scan(TableName=client.ready["table"], Select="COUNT")["Count"]
    body = _body()
    # Just over the limit the catalog's widest request sets (whatever spacing the client uses).
    body["input"]["prompt"] = ""
    envelope = len(json.dumps(body).encode())
    body["input"]["prompt"] = "x" * (submit_body_limit() - envelope + 100)
    response = client.submit(body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert client.dynamodb.scan(TableName=client.ready["table"], Select="COUNT")["Count"] == count
    assert _submits_received(client) == before


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
LATE_ANSWER_SECONDS = 35  # past the API's 29 s integration timeout (template.yaml)
API_TIMEOUT_SECONDS = 30  # the HTTP API's maximum integration timeout


@pytest.fixture
def late_gateway(client: LocalClient) -> Iterator[None]:
    """The simulator takes the next submit at once (and starts the job) but answers it 35 s later."""
    assert client.gateway is not None
    fault = {"submit_status": 202, "delay_seconds": LATE_ANSWER_SECONDS, "count": 1}
    client.gateway.post("/_sim/faults", json=fault).raise_for_status()
    yield
    client.gateway.delete("/_sim/faults")


def _simulated_by_prompt(client: LocalClient, tag: str) -> list[dict[str, Any]]:
    assert client.gateway is not None
    records: list[dict[str, Any]] = client.gateway.get("/_sim/requests").json()
    return [r for r in records if tag in str(r["body"].get("prompt", ""))]


def test_submit_answered_after_the_api_timeout_is_202_then_delivered_once(
    client: LocalClient, inbox: EventInbox, late_gateway: None
) -> None:
    # Given a gateway that accepts the job at once but answers the submit only after 35 s
    tag = uuid.uuid4().hex
    received_before, accepted_before = _submit_counts(client)
    body = {"model": "pixverse-v6-text-to-video", "input": {"prompt": f"A lighthouse at dusk {tag}"}}

    # When the job is submitted
    started = time.monotonic()
    response = client.submit(body)
    elapsed = time.monotonic() - started

    # Then the caller has its 202 before the API's timeout, and the gateway's callback delivers the job
    assert response.status_code == 202, response.text
    assert elapsed < API_TIMEOUT_SECONDS, elapsed
    job_id = response.json()["job_id"]
    final = client.wait_for(job_id)
    assert final["status"] == "DELIVERED"
    assert final["submit_outcome"] == "accepted"
    assert [e["type"] for e in inbox.for_job(job_id, wait=2.0)] == [JOB_DELIVERED]
    # One gateway submit, received and accepted (so billed) once: no retry after the late answer.
    received, accepted = _submit_counts(client)
    assert (received - received_before, accepted - accepted_before) == (1, 1)
    assert [r["request_id"] for r in _simulated_by_prompt(client, tag)] == [final["request_id"]]


def test_submit_outcome_unknown_is_moved_on_by_the_signed_callback(client: LocalClient, late_gateway: None) -> None:
    # Given a late-answering gateway whose own callback is held back
    tag = uuid.uuid4().hex
    before = _submits_received(client)
    body = {"model": "pixverse-v6-text-to-video", "input": {"prompt": f"A harbour at dawn {tag} [sim:no-callback]"}}

    # When the job is submitted
    started = time.monotonic()
    response = client.submit(body)
    elapsed = time.monotonic() - started

    # Then the answer says the job is recorded but its submit's outcome is not known yet
    assert response.status_code == 202, response.text
    assert elapsed < API_TIMEOUT_SECONDS, elapsed
    job = response.json()
    assert (job["status"], job["submit_outcome"], job["request_id"]) == ("SUBMITTING", "unknown", None)
    assert _submits_received(client) - before == 1

    # When the gateway's callback for the job it accepted arrives at the signed URL
    (record,) = _simulated_by_prompt(client, tag)
    deadline = time.monotonic() + 30
    while record["status"] != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.2)
        (record,) = _simulated_by_prompt(client, tag)
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
    assert _submits_received(client) - before == 1

"""The submit API over real HTTP on the local stack: Idempotency-Key, request limits."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pixverse_local.harness import LocalClient


def _body(tag: str = "") -> dict[str, Any]:
    return {
        "model": "pixverse-c1-text-to-video",
        "input": {"prompt": f"A paper boat on a river {uuid.uuid4().hex[:8]} {tag} [sim:no-callback]", "duration": 5},
    }


def _submits_received(client: LocalClient) -> int:
    assert client.gateway is not None
    return int(client.gateway.get("/_sim/stats").json()["submits_received"])


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
    body["input"]["prompt"] = "x" * (70 * 1024)
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

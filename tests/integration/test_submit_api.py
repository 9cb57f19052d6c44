"""The submit API over real HTTP on the local stack: Idempotency-Key, request limits."""

from __future__ import annotations

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

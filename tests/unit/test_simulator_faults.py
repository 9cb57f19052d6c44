"""The simulator's injected gateway faults beyond submits: status polls and media GETs answer the
next N requests with an error (or late), then recover; each kind is counted in /_sim/stats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pixverse_local.gateway_sim import GatewaySimulator

API_KEY = "sim-fault-test-key"
KEY_HEADERS = {"Ocp-Apim-Subscription-Key": API_KEY}
PROMPT_BODY = {"prompt": "A lighthouse at dusk [sim:size=4096]"}
C1_PATH = "/pixverse-c1-text-to-video/v1/pixverse-c1-text-to-video-request"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    simulator = GatewaySimulator(api_key=API_KEY, queue_seconds=0.0, processing_seconds=0.05)
    url = simulator.start()
    try:
        with httpx.Client(base_url=url, timeout=5.0) as http:
            yield http
    finally:
        simulator.stop()


def _completed_request(client: httpx.Client) -> dict[str, Any]:
    request_id = client.post(C1_PATH, json=PROMPT_BODY, headers=KEY_HEADERS).json()["request_id"]
    deadline = time.monotonic() + 5
    while True:
        payload: dict[str, Any] = client.get(f"/v2/requests/status/{request_id}", headers=KEY_HEADERS).json()
        if payload.get("status") == "COMPLETED" or time.monotonic() > deadline:
            return payload
        time.sleep(0.02)


def test_poll_fault_answers_429_with_retry_after_then_recovers(client: httpx.Client) -> None:
    payload = _completed_request(client)
    client.post("/_sim/faults", json={"poll_status": 429, "count": 2, "retry_after": 3}).raise_for_status()

    answers = [client.get(f"/v2/requests/status/{payload['request_id']}", headers=KEY_HEADERS) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "3"
    assert answers[2].json()["status"] == "COMPLETED"
    assert client.get("/_sim/stats").json()["poll_faults"] == 2


def test_poll_fault_does_not_touch_submits(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"poll_status": 500, "count": 1}).raise_for_status()

    submitted = client.post(C1_PATH, json=PROMPT_BODY, headers=KEY_HEADERS)
    polled = client.get(f"/v2/requests/status/{submitted.json()['request_id']}", headers=KEY_HEADERS)

    assert submitted.status_code == 202
    assert polled.status_code == 500
    assert polled.json() == {"error": "Internal Server Error", "message": "An unexpected error occurred."}


def test_poll_fault_200_with_delay_answers_late(client: httpx.Client) -> None:
    payload = _completed_request(client)
    client.post("/_sim/faults", json={"poll_status": 200, "count": 1, "delay_seconds": 0.6}).raise_for_status()

    with pytest.raises(httpx.ReadTimeout):
        client.get(f"/v2/requests/status/{payload['request_id']}", headers=KEY_HEADERS, timeout=0.2)


def test_media_fault_answers_503_then_serves_the_bytes_and_is_recorded(client: httpx.Client) -> None:
    payload = _completed_request(client)
    url = httpx.URL(payload["output"]["media_url"][0])
    client.post("/_sim/faults", json={"media_get_status": 503, "count": 1, "retry_after": 1}).raise_for_status()

    failed = client.get(url.path)
    served = client.get(url.path)
    record = client.get(f"/_sim/requests/{payload['request_id']}").json()

    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "1"
    assert served.status_code == 200
    assert len(served.content) == 4096
    assert [r.get("fault") for r in record["media_requests"]] == [503, None]
    assert client.get("/_sim/stats").json()["media_faults"] == 1


def test_fault_specs_name_one_target_with_its_statuses(client: httpx.Client) -> None:
    both = client.post("/_sim/faults", json={"poll_status": 500, "media_get_status": 503})
    wrong = client.post("/_sim/faults", json={"media_get_status": 404})
    listed = client.post("/_sim/faults", json={"media_get_status": 502, "count": 2}).json()

    assert both.status_code == 400
    assert wrong.status_code == 400
    assert wrong.json()["message"].startswith("media_get_status: must be one of")
    assert listed == {"faults": [{"media_get_status": 502, "remaining": 2, "retry_after": None, "delay_seconds": 0.0}]}

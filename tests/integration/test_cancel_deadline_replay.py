"""Cancel, deadline and replay on the local stack, end to end (issue 15): the API, the deadline
queue and function, the copier's cancelled event, the simulator's later callback refused."""

from __future__ import annotations

import time
from typing import Any

from pixverse_local.harness import EventInbox, LocalClient

MODEL = "pixverse-v6-text-to-video"


def _submit(client: LocalClient, prompt: str, **fields: object) -> dict[str, Any]:
    response = client.submit({"model": MODEL, "input": {"prompt": prompt, "duration": 5}, **fields})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _objects_of(client: LocalClient, job_id: str) -> list[str]:
    bucket = client.ready["bucket"]
    listed = client.s3.list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listed.get("Contents", []) if job_id in o["Key"]]


def test_cancel_of_a_running_job_ends_it_and_its_outcome_changes_nothing(
    client: LocalClient, inbox: EventInbox
) -> None:
    job = _submit(client, "a slow harbour at dawn [sim:seconds=6]")
    job_id = str(job["job_id"])
    sent = client.wait_sent(job_id)
    assert sent["request_id"]

    response = client.api.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["status"], cancelled["error"]["code"], cancelled["submit_outcome"]) == (
        "CANCELLED",
        "cancelled",
        "accepted",
    )
    events = _wait_events(inbox, job_id, 1)
    assert [e["type"] for e in events] == ["pixverse.job.cancelled"]
    # The simulator finishes the generation 6 s after the submit and calls back: refused.
    request = client.simulated_request(str(sent["request_id"]))
    _wait_until(lambda: client.simulated_request(str(sent["request_id"]))["status"] == "COMPLETED", 20)
    time.sleep(1.0)  # its callback's delivery
    assert request["request_id"] == sent["request_id"]
    assert client.get_job(job_id)["status"] == "CANCELLED"
    assert _objects_of(client, job_id) == []
    assert [e["type"] for e in inbox.for_job(job_id, wait=1.0)] == ["pixverse.job.cancelled"]  # still one

    again = client.api.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_ended"


def test_cancel_of_an_ended_job_is_409_already_ended(client: LocalClient) -> None:
    job_id = str(_submit(client, "a quick one")["job_id"])
    ended = client.wait_for(job_id, timeout=60)
    assert ended["status"] == "DELIVERED"

    response = client.api.post(f"/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "already_ended",
        "message": f"job {job_id} has already ended (DELIVERED)",
        "details": [],
        "job_status": "DELIVERED",
    }
    assert client.get_job(job_id)["status"] == "DELIVERED"


def test_a_3_second_deadline_ends_a_12_second_job_within_seconds_of_it(client: LocalClient, inbox: EventInbox) -> None:
    started = time.monotonic()
    job = _submit(client, "a long lighthouse orbit [sim:seconds=12]", deadline_seconds=3)
    job_id = str(job["job_id"])
    assert job["deadline_seconds"] == 3 and job["deadline_at"]

    ended = client.wait_for(job_id, timeout=30)
    ended_after = time.monotonic() - started

    assert ended["status"] == "CANCELLED" and ended["error"]["code"] == "deadline_exceeded"
    # Within a few seconds of the deadline, not at a reconciler run.
    assert 3.0 <= ended_after <= 8.0, f"ended {ended_after:.1f} s after the submit"
    events = _wait_events(inbox, job_id, 1)
    assert [e["type"] for e in events] == ["pixverse.job.cancelled"]
    assert events[0]["data"]["error"]["code"] == "deadline_exceeded"
    # The generation finishes at the simulator later; nothing is copied, nothing more published.
    request_id = str(client.get_job(job_id)["request_id"])
    _wait_until(lambda: client.simulated_request(request_id)["status"] == "COMPLETED", 30)
    time.sleep(1.0)
    assert client.get_job(job_id)["status"] == "CANCELLED"
    assert _objects_of(client, job_id) == []
    assert len(inbox.for_job(job_id, wait=0.5)) == 1


def test_replay_sends_the_same_event_again_and_a_job_not_ended_is_409(client: LocalClient, inbox: EventInbox) -> None:
    job_id = str(_submit(client, "replay me")["job_id"])
    client.wait_for(job_id, timeout=60)
    [first] = _wait_events(inbox, job_id, 1)

    response = client.api.post(f"/jobs/{job_id}/replay")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_id": job_id,
        "event_id": first["id"],
        "event_type": "pixverse.job.delivered",
        "status": "DELIVERED",
    }
    [_, again] = _wait_events(inbox, job_id, 2)
    assert again["id"] == first["id"]
    assert {k: v for k, v in again.items() if k != "_sns_attributes"} == {
        k: v for k, v in first.items() if k != "_sns_attributes"
    }

    running = str(_submit(client, "still going [sim:seconds=20]")["job_id"])
    not_ended = client.api.post(f"/jobs/{running}/replay")
    assert not_ended.status_code == 409 and not_ended.json()["error"]["code"] == "not_ended"
    assert client.api.post(f"/jobs/{running}/cancel").status_code == 200


def _wait_events(inbox: EventInbox, job_id: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every event for ``job_id`` so far, once there are at least ``count`` (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        events = inbox.for_job(job_id, wait=0.2)
        if len(events) >= count or time.monotonic() > deadline:
            return events


def _wait_until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)

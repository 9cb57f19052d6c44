"""End to end on the local stack: POST /jobs (202, ACCEPTED) -> submit queue -> submitter ->
gateway simulator -> signed callback -> copy queue -> streaming copy into S3 -> SNS event."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED, event_id
from pixverse_local.harness import EventInbox, LocalClient

EVENT_SCHEMA = Path(__file__).resolve().parents[2] / "events" / "pixverse-job-event.schema.json"


def _t2v(prompt_suffix: str = "") -> dict[str, Any]:
    return {
        "model": "pixverse-v6-text-to-video",
        "input": {"prompt": f"A lighthouse in a storm, cinematic {uuid.uuid4().hex[:8]} {prompt_suffix}".strip()},
        "metadata": {"test": "pipeline"},
    }


def _objects_under(client: LocalClient, prefix: str) -> list[str]:
    listing = client.s3.list_objects_v2(Bucket=client.ready["bucket"], Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_job_end_to_end_is_delivered_with_served_bytes_and_one_event(client: LocalClient, inbox: EventInbox) -> None:
    response = client.submit(_t2v())
    assert response.status_code == 202, response.text
    # Admitted, not yet sent: the gateway is called by the submitter, after the answer.
    answered = response.json()
    assert (answered["status"], answered["submit_outcome"], answered["request_id"]) == ("ACCEPTED", "waiting", None)
    assert (answered["submit_attempts"], answered["last_submit_error"]) == (0, None)
    assert response.headers["Location"] == f"/jobs/{answered['job_id']}"
    job_id = answered["job_id"]

    job = client.wait_for(job_id)

    assert job["status"] == "DELIVERED"
    assert (job["submit_outcome"], job["submit_attempts"], job["last_submit_error"]) == ("accepted", 1, None)
    served = client.simulated_request(job["request_id"])["media"]
    assert len(job["outputs"]) == len(served) == 1
    size, sha256 = client.object_sha256(job["outputs"][0]["bucket"], job["outputs"][0]["key"])
    assert (size, sha256) == (served[0]["size"], served[0]["sha256"])
    assert job["outputs"][0]["sha256"] == sha256
    events = inbox.for_job(job_id, wait=2.0)
    assert [e["type"] for e in events] == [JOB_DELIVERED]
    assert events[0]["id"] == event_id(job_id, JOB_DELIVERED)
    published = {k: v for k, v in events[0].items() if k != "_sns_attributes"}
    jsonschema.validate(published, json.loads(EVENT_SCHEMA.read_text()))
    assert events[0]["data"]["outputs"][0]["s3_uri"] == job["outputs"][0]["s3_uri"]
    assert events[0]["_sns_attributes"] == {
        "type": JOB_DELIVERED,
        "model": "pixverse-v6-text-to-video",
        "status": "DELIVERED",
    }


def test_job_the_gateway_fails_ends_failed_with_one_failed_event(client: LocalClient, inbox: EventInbox) -> None:
    job_id = client.submit(_t2v("[sim:fail]")).json()["job_id"]

    job = client.wait_for(job_id)

    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "generation_failed"
    assert job["outputs"] == []
    events = inbox.for_job(job_id, wait=2.0)
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert events[0]["data"]["status"] == "FAILED"
    assert _objects_under(client, f"videos/pixverse-v6-text-to-video/{job_id}/") == []


def test_job_the_gateway_errors_ends_error(client: LocalClient, inbox: EventInbox) -> None:
    job_id = client.submit(_t2v("[sim:error]")).json()["job_id"]
    job = client.wait_for(job_id)
    assert job["status"] == "ERROR"
    assert [e["type"] for e in inbox.for_job(job_id, wait=2.0)] == [JOB_FAILED]


def test_terminal_callback_delivered_three_times_concurrently_gives_one_copy_and_one_event(
    client: LocalClient, inbox: EventInbox
) -> None:
    job_id = client.submit(_t2v("[sim:dup=3]")).json()["job_id"]

    job = client.wait_for(job_id)

    assert job["status"] == "DELIVERED"
    record = client.simulated_request(job["request_id"])
    completed_posts = [c for c in record["callbacks"] if c.get("status_code") == 200]
    assert len(completed_posts) == 3  # the gateway really did deliver it three times
    assert record["media_gets"] == 1  # one copy
    assert len(_objects_under(client, f"videos/pixverse-v6-text-to-video/{job_id}/")) == 1
    assert [e["type"] for e in inbox.for_job(job_id, wait=2.0)] == [JOB_DELIVERED]


def test_image_to_video_v56_with_string_duration_is_delivered(client: LocalClient) -> None:
    body = {
        "model": "pixverse-i2v",
        "input": {
            "prompt": f"A dragon over a stormy sky {uuid.uuid4().hex[:8]}",
            "resolution": "720p",
            "duration": "5",
            "image_url": "https://imagesai.appypie.com/7686410/ZU2sxXLmgRF6dgSktn9o_017731475651251.png",
        },
    }
    job = client.wait_for(client.submit(body).json()["job_id"])
    assert job["status"] == "DELIVERED"
    assert job["outputs"][0]["key"].startswith("videos/pixverse-i2v/")


def test_invalid_request_is_400_and_reaches_no_gateway(client: LocalClient) -> None:
    assert client.gateway is not None
    before = client.gateway.get("/_sim/stats").json()["submits_received"]
    response = client.submit({"model": "pixverse", "input": {"prompt": "x", "duration": "5"}})
    assert response.status_code == 400
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"input.aspect_ratio", "input.resolution", "input.duration"}
    assert client.gateway.get("/_sim/stats").json()["submits_received"] == before


def test_forged_callback_is_401_and_changes_nothing(client: LocalClient) -> None:
    job_id = client.submit(_t2v("[sim:no-callback]")).json()["job_id"]
    # Sent and QUEUED at the gateway, with its request_id: the forged callback names it.
    before = client.wait_sent(job_id)
    assert before["status"] == "QUEUED" and before["request_id"], before
    forged = client.api.post(
        f"/webhooks/pixazo/{job_id}?sig={'0' * 64}",
        json={"request_id": before["request_id"], "status": "FAILED", "error": "forged", "output": None},
    )
    assert forged.status_code == 401
    after = client.get_job(job_id)
    assert after["status"] == before["status"]
    assert after["error"] is None


def test_another_callers_job_is_404(client: LocalClient) -> None:
    job_id = client.submit(_t2v("[sim:no-callback]")).json()["job_id"]
    someone_else = {"X-Local-Principal-Arn": "arn:aws:iam::000000000000:user/someone-else"}
    assert client.api.get(f"/jobs/{job_id}", headers=someone_else).status_code == 404
    assert client.api.get(f"/jobs/{job_id}").status_code == 200

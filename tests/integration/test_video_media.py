"""Videos that are videos, on the local stack: the simulator serves real MP4 clips shaped by the
request, the copier records their facts, and media that is not a video ends DELIVERY_FAILED
media_not_video with no object left."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import av
import pytest
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED
from pixverse_jobs.mp4 import read_facts
from pixverse_local.harness import EventInbox, LocalClient

pytestmark = pytest.mark.integration

MODEL = "pixverse-v6-text-to-video"
FACTS = ("duration_seconds", "width", "height", "codec")


def _submit(client: LocalClient, prompt: str, **parameters: Any) -> str:
    body = {"model": MODEL, "input": {"prompt": f"{prompt} {uuid.uuid4().hex[:8]}", **parameters}}
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _events_for(inbox: EventInbox, job_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    events = inbox.for_job(job_id, wait=0.1)
    while not events and time.monotonic() < deadline:
        events = inbox.for_job(job_id, wait=0.2)
    return events


def _keys(client: LocalClient, job_id: str) -> tuple[list[str], list[str]]:
    prefix = f"videos/{MODEL}/{job_id}/"
    bucket = client.ready["bucket"]
    objects = client.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    uploads = client.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    return [o["Key"] for o in objects], [u["Key"] for u in uploads]


def test_delivered_video_plays_and_its_outputs_carry_the_requested_facts(
    client: LocalClient, inbox: EventInbox
) -> None:
    job_id = _submit(client, "A lighthouse in a storm", resolution="360p", aspect_ratio="16:9", duration=5)

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERED", job
    output = job["outputs"][0]
    assert {name: output[name] for name in FACTS} == {
        "duration_seconds": 5,
        "width": 640,
        "height": 360,
        "codec": "avc1",
    }
    events = _events_for(inbox, job_id)
    assert [e["type"] for e in events] == [JOB_DELIVERED]
    assert {name: events[0]["data"]["outputs"][0][name] for name in FACTS} == {name: output[name] for name in FACTS}
    # The stored object is a video FFmpeg decodes, and it agrees with what the copier recorded.
    data = client.s3.get_object(Bucket=output["bucket"], Key=output["key"])["Body"].read()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height, stream.codec_context.codec_tag) == (640, 360, "avc1")
        assert (container.duration or 0) / 1_000_000 == pytest.approx(5.0, abs=0.01)
    assert frames > 0
    assert read_facts(data).as_output() == {name: output[name] for name in FACTS}


def test_portrait_request_gives_a_portrait_video(client: LocalClient) -> None:
    job_id = _submit(client, "A tall waterfall", resolution="540p", aspect_ratio="9:16", duration=3)

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERED", job
    output = job["outputs"][0]
    assert (output["width"], output["height"], output["duration_seconds"]) == (540, 960, 3)


def test_job_whose_media_is_an_html_page_ends_delivery_failed_media_not_video(
    client: LocalClient, inbox: EventInbox
) -> None:
    # Served with Content-Type video/mp4: only the bytes show it is not a video.
    job_id = _submit(client, "A harbour at dawn [sim:media-body=html]")

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERY_FAILED", job
    assert job["error"]["code"] == "media_not_video"
    assert "ftyp" in job["error"]["message"]
    assert job["outputs"] == []
    events = _events_for(inbox, job_id)
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert events[0]["data"]["error"]["code"] == "media_not_video"
    assert _keys(client, job_id) == ([], [])
    # Permanent: refused on the first download, never retried.
    assert len(client.simulated_request(job["request_id"])["media_requests"]) == 1

"""Media delivery on the local stack: gateway simulator media (with prompt directives for cuts,
redirects, foreign URLs, statuses and content types) -> copy queue -> MediaCopyFunction ->
S3 (moto server) -> SNS events.

An S3 failure in the middle of a multipart upload is shown at unit level
(tests/unit/test_media_copy.py, moto with a botocore hook failing UploadPart): the local stack's
moto server offers no way to fail one S3 call of one function from outside."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from pixverse_jobs.clock import utc_now_iso
from pixverse_jobs.delivery import DeliveryService
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED, EventPublisher, event_id
from pixverse_jobs.media import MediaCopier
from pixverse_jobs.store import JobStore
from pixverse_local.harness import EventInbox, LocalClient
from traps import Trap

MODEL = "pixverse-v6-text-to-video"
MiB = 1024 * 1024


def _submit(client: LocalClient, directives: str) -> str:
    body = {"model": MODEL, "input": {"prompt": f"A harbour at dawn {uuid.uuid4().hex[:8]} {directives}"}}
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _events_for(inbox: EventInbox, job_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The job's events: wait for the first, then a little longer for any duplicate."""
    deadline = time.monotonic() + timeout
    events = inbox.for_job(job_id, wait=0.1)
    while not events and time.monotonic() < deadline:
        events = inbox.for_job(job_id, wait=0.2)
    return inbox.for_job(job_id, wait=0.3)


def _objects(client: LocalClient, job_id: str) -> list[str]:
    listing = client.s3.list_objects_v2(Bucket=client.ready["bucket"], Prefix=f"videos/{MODEL}/{job_id}/")
    return [o["Key"] for o in listing.get("Contents", [])]


def _open_uploads(client: LocalClient, job_id: str) -> list[Any]:
    uploads = client.s3.list_multipart_uploads(Bucket=client.ready["bucket"], Prefix=f"videos/{MODEL}/{job_id}/")
    return list(uploads.get("Uploads", []))


def _tags(client: LocalClient, output: dict[str, Any]) -> dict[str, str]:
    tagging = client.s3.get_object_tagging(Bucket=output["bucket"], Key=output["key"])
    return {t["Key"]: t["Value"] for t in tagging["TagSet"]}


def _assert_delivery_failed(client: LocalClient, inbox: EventInbox, job_id: str, reason: str) -> dict[str, Any]:
    job = client.wait_for(job_id, timeout=60)
    assert job["status"] == "DELIVERY_FAILED", job
    assert job["error"]["code"] == "delivery_failed"
    assert reason in job["error"]["message"]
    assert job["outputs"] == []
    events = _events_for(inbox, job_id)
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert events[0]["id"] == event_id(job_id, JOB_FAILED)
    assert _objects(client, job_id) == []
    assert _open_uploads(client, job_id) == []
    return job


# ------------------------------------------------------------------ streaming and retries
def test_download_cut_half_way_is_resumed_and_the_object_has_the_served_sha256(
    client: LocalClient, inbox: EventInbox
) -> None:
    size = 12 * MiB
    job_id = _submit(client, f"[sim:cut=1] [sim:size={size}]")

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERED", job
    record = client.simulated_request(job["request_id"])
    # One invocation: the cut GET, then a Range request for the rest.
    assert [r["range"] for r in record["media_requests"]] == [None, f"bytes={size // 2}-"]
    served = record["media"][0]
    output = job["outputs"][0]
    assert client.object_sha256(output["bucket"], output["key"]) == (size, served["sha256"])
    assert output["sha256"] == served["sha256"] and output["size"] == size
    # A multipart object: the file's sha256 is its tag (its metadata was fixed before the hash was known).
    assert _tags(client, output) == {"sha256": served["sha256"]}
    head = client.s3.head_object(Bucket=output["bucket"], Key=output["key"])
    assert "sha256" not in head["Metadata"]
    assert head["Metadata"]["job_id"] == job_id and head["Metadata"]["request_id"] == job["request_id"]
    assert head["ContentType"] == "video/mp4"
    assert [e["type"] for e in _events_for(inbox, job_id)] == [JOB_DELIVERED]
    assert _open_uploads(client, job_id) == []


def test_cut_download_from_an_origin_without_ranges_restarts_and_is_right(client: LocalClient) -> None:
    size = 6 * MiB
    job_id = _submit(client, f"[sim:cut=1] [sim:no-ranges] [sim:size={size}]")

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERED", job
    record = client.simulated_request(job["request_id"])
    assert [r["range"] for r in record["media_requests"]] == [None, None]
    output = job["outputs"][0]
    assert client.object_sha256(output["bucket"], output["key"]) == (size, record["media"][0]["sha256"])


def test_job_with_two_media_urls_delivers_two_objects_listed_in_job_and_event(
    client: LocalClient, inbox: EventInbox
) -> None:
    job_id = _submit(client, "[sim:media=2] [sim:size=200000]")

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERED", job
    served = client.simulated_request(job["request_id"])["media"]
    keys = [f"videos/{MODEL}/{job_id}/{n}.mp4" for n in range(2)]
    assert [o["key"] for o in job["outputs"]] == keys
    assert sorted(_objects(client, job_id)) == keys
    for output, item in zip(job["outputs"], served, strict=True):
        assert client.object_sha256(output["bucket"], output["key"]) == (200000, item["sha256"])
        assert output["sha256"] == item["sha256"]
        # Single-part objects: the sha256 tag and the sha256 metadata.
        assert _tags(client, output) == {"sha256": item["sha256"]}
        assert client.s3.head_object(Bucket=output["bucket"], Key=output["key"])["Metadata"]["sha256"] == item["sha256"]
    events = _events_for(inbox, job_id)
    assert [e["type"] for e in events] == [JOB_DELIVERED]
    assert [o["s3_uri"] for o in events[0]["data"]["outputs"]] == [o["s3_uri"] for o in job["outputs"]]


def test_transient_failure_on_every_receive_ends_delivery_failed_on_the_last_one(
    client: LocalClient, inbox: EventInbox
) -> None:
    # template.yaml's CopyMaxReceiveCount (5) is the queue's maxReceiveCount and the copier's limit.
    job_id = _submit(client, "[sim:media-status=503]")

    job = _assert_delivery_failed(client, inbox, job_id, "after 5 attempts")

    assert "HTTP 503" in job["error"]["message"]
    record = client.simulated_request(job["request_id"])
    assert len(record["media_requests"]) == 5 * 3  # five receives, three attempts each
    # The attempts are counted on the job (a re-driven message continues the count), and the
    # retry it waited for is gone with the end of the copy.
    item = client.dynamodb.get_item(TableName=client.ready["table"], Key={"job_id": {"S": job_id}})["Item"]
    assert item["copy_attempts"] == {"N": "5"}
    assert "copy_retry_at" not in item and "copy_retry_message" not in item


def test_copy_that_fails_once_is_retried_by_its_own_message_and_delivered(client: LocalClient) -> None:
    # Six cut downloads: the first attempt gives up (MediaCopier's six requests in all), so the
    # copier schedules a retry on the job and sets its message's visibility; the second copies.
    job_id = _submit(client, "[sim:cut=6]")

    job = client.wait_for(job_id, timeout=60)

    assert job["status"] == "DELIVERED", job
    item = client.dynamodb.get_item(TableName=client.ready["table"], Key={"job_id": {"S": job_id}})["Item"]
    assert item["copy_attempts"] == {"N": "2"}
    assert "copy_retry_at" not in item and "copy_retry_message" not in item
    assert len(client.simulated_request(job["request_id"])["media_requests"]) == 6 + 1


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("directive", "reason", "media_requests"),
    [
        ("[sim:media-url=https://evil.example/v.mp4]", "evil.example:443 is not in ALLOWED_MEDIA_HOSTS", 0),
        ("[sim:media-url=http://169.254.169.254/latest/meta-data/]", "169.254.169.254:80 must be https", 0),
        ("[sim:media-url=https://10.0.0.1/v.mp4]", "10.0.0.1:443 is not in ALLOWED_MEDIA_HOSTS", 0),
        ("[sim:content-type=text/html]", "Content-Type 'text/html'", 1),
        ("[sim:media-status=410]", "HTTP 410", 1),
        ("[sim:hops=4]", "redirected more than 3 times", 4),
    ],
    ids=["foreign-host", "metadata-service", "private-address", "html", "gone", "four-redirects"],
)
def test_refused_media_ends_delivery_failed_at_once_with_one_failed_event(
    client: LocalClient, inbox: EventInbox, directive: str, reason: str, media_requests: int
) -> None:
    job_id = _submit(client, directive)
    job = _assert_delivery_failed(client, inbox, job_id, reason)
    # Permanent: no retry, and nothing sent to a refused URL (the simulator sees only its own).
    assert len(client.simulated_request(job["request_id"])["media_requests"]) == media_requests


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254:80 must be https"),
        ("https://10.0.0.1/v.mp4", "10.0.0.1:443 is not in ALLOWED_MEDIA_HOSTS"),
    ],
    ids=["metadata", "private"],
)
def test_redirect_from_the_allowed_host_to_a_refused_address_is_not_followed(
    client: LocalClient, inbox: EventInbox, target: str, reason: str
) -> None:
    job_id = _submit(client, f"[sim:redirect={target}]")
    job = _assert_delivery_failed(client, inbox, job_id, reason)
    assert len(client.simulated_request(job["request_id"])["media_requests"]) == 1


def test_redirect_to_another_loopback_port_sends_nothing_there(
    client: LocalClient, inbox: EventInbox, trap: Trap
) -> None:
    job_id = _submit(client, f"[sim:redirect=http://127.0.0.1:{trap.port}/v.mp4]")
    _assert_delivery_failed(client, inbox, job_id, f"127.0.0.1:{trap.port} is not in ALLOWED_MEDIA_HOSTS")
    assert trap.connections == 0


def test_redirects_on_the_allowed_host_are_followed_up_to_three(client: LocalClient) -> None:
    job_id = _submit(client, "[sim:hops=3]")
    job = client.wait_for(job_id, timeout=60)
    assert job["status"] == "DELIVERED", job
    assert [r["hop"] for r in client.simulated_request(job["request_id"])["media_requests"]] == [0, 1, 2, 3]


# ------------------------------------------------------------------ outbox
class CrashingPublisher(EventPublisher):
    """Stands for a copier that dies after writing DELIVERED and before publishing."""

    def publish(self, event: dict[str, Any]) -> None:
        raise RuntimeError("copier crashed before publishing")


def test_crash_between_copy_and_publish_publishes_once_on_retry_without_copying_again(
    client: LocalClient, inbox: EventInbox
) -> None:
    # Given media the simulator finished for a request nobody is told about (no webhook)
    assert client.gateway is not None
    submitted = client.gateway.post(
        f"/{MODEL}/v1/{MODEL}-request",
        json={"prompt": f"A crash test {uuid.uuid4().hex[:8]}"},
        headers={"Ocp-Apim-Subscription-Key": "local-dev-key"},
    )
    assert submitted.status_code == 202, submitted.text
    request_id = submitted.json()["request_id"]
    deadline = time.monotonic() + 20
    while (status := client.gateway.get(f"/_sim/requests/{request_id}").json())["status"] != "COMPLETED":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    media_url = status["media"][0]["url"]
    # and a COMPLETED job for it in the stack's table
    store = JobStore(client.ready["table"], client.dynamodb)
    job_id = f"job_{uuid.uuid4().hex}"
    # Created now: the stack's reconciler (every 10 s) leaves jobs younger than ReconcileAfterSeconds
    # (900 s) alone, so the only redelivery below is the test's own (an hours-old job raced it).
    now = utc_now_iso()
    store.create(
        {
            "job_id": job_id,
            "owner": "local",
            "model": MODEL,
            "input": {"prompt": "crash test"},
            "status": "COMPLETED",
            "request_id": request_id,
            "media_urls": [media_url],
            "media_type": "video/mp4",
            "created_at": now,
            "updated_at": now,
        }
    )
    # When a copier copies it, writes DELIVERED and dies before publishing
    crashed = DeliveryService(
        store,
        MediaCopier([httpx.URL(media_url).netloc.decode()], s3_client=client.s3),
        CrashingPublisher(client.ready["topic"], client.sns),
        bucket=client.ready["bucket"],
        key_prefix="videos",
        event_source="urn:pixverse-jobs:pixverse-local",
    )
    with pytest.raises(RuntimeError, match="crashed"):
        crashed.deliver(job_id)
    assert client.get_job(job_id)["status"] == "DELIVERED"
    assert inbox.for_job(job_id, wait=0.3) == []
    # and its message is delivered again to the stack's copier
    client.sqs.send_message(QueueUrl=client.ready["queue"], MessageBody=json.dumps({"job_id": job_id}))

    # Then exactly one event is published, without a second download
    events = _events_for(inbox, job_id)
    assert [e["type"] for e in events] == [JOB_DELIVERED]
    assert events[0]["id"] == event_id(job_id, JOB_DELIVERED)
    stored = client.get_job(job_id)["outputs"]
    assert [(o["key"], o["sha256"]) for o in events[0]["data"]["outputs"]] == [(o["key"], o["sha256"]) for o in stored]
    assert client.simulated_request(request_id)["media_gets"] == 1
    item = client.dynamodb.get_item(TableName=client.ready["table"], Key={"job_id": {"S": job_id}})["Item"]
    assert item["event_id"]["S"] == event_id(job_id, JOB_DELIVERED)

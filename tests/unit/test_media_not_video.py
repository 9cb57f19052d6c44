"""The copier sniffs the container: media that is not a video ends the job DELIVERY_FAILED
media_not_video, whatever Content-Type it came with, and leaves no object and no open upload."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs.delivery import DeliveryService
from pixverse_jobs.errors import MediaNotVideo
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED, EventPublisher
from pixverse_jobs.media import MediaCopier
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore
from pixverse_local.gateway_sim.clips import ClipSpec
from pixverse_local.gateway_sim.media import HTML_PAGE, MediaItem, skeleton_mp4

MiB = 1024 * 1024
PART = 5 * MiB
URL = "https://pub.r2.dev/v1/x/output.mp4"


def _origin(body: bytes, content_type: str = "video/mp4") -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        return httpx.Response(200, headers=headers, content=body)

    return handler


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="media")
        sns, sqs, ddb = boto3.client("sns"), boto3.client("sqs"), boto3.client("dynamodb")
        topic = sns.create_topic(Name="events")["TopicArn"]
        inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield {
            "s3": s3,
            "sns": sns,
            "sqs": sqs,
            "ddb": ddb,
            "topic": topic,
            "inbox": inbox,
            "table": create_jobs_table(ddb),
        }


def _copier(aws: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response]) -> MediaCopier:
    return MediaCopier(
        ["*.r2.dev"],
        s3_client=aws["s3"],
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        part_size=PART,
        resolver=lambda host, port: ["104.16.0.1"],
        sleep=lambda seconds: None,
    )


def _left_in_bucket(aws: dict[str, Any]) -> tuple[list[str], list[str]]:
    objects = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket="media").get("Contents", [])]
    uploads = [u["Key"] for u in aws["s3"].list_multipart_uploads(Bucket="media").get("Uploads", [])]
    return objects, uploads


def _events(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["inbox"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]


def _copy(aws: dict[str, Any], body: bytes, content_type: str = "video/mp4", media_type: str = "video/mp4") -> Any:
    return _copier(aws, _origin(body, content_type)).copy(
        URL, bucket="media", key="k/0.mp4", media_type=media_type, metadata={"job_id": "j"}
    )


def test_html_page_served_as_video_mp4_is_refused_and_nothing_is_stored(aws: dict[str, Any]) -> None:
    with pytest.raises(MediaNotVideo, match="does not start with an MP4 'ftyp' box"):
        _copy(aws, HTML_PAGE)

    assert _left_in_bucket(aws) == ([], [])


def test_html_page_declared_octet_stream_is_refused_too(aws: dict[str, Any]) -> None:
    # The V5.6 models declare application/octet-stream: only the bytes can tell.
    with pytest.raises(MediaNotVideo):
        _copy(aws, HTML_PAGE, content_type="application/octet-stream", media_type="application/octet-stream")

    assert _left_in_bucket(aws) == ([], [])


def test_multipart_sized_file_without_moov_is_refused_at_its_end_and_its_upload_aborted(aws: dict[str, Any]) -> None:
    head = skeleton_mp4(640, 360, 5)
    ftyp = head[: struct.unpack_from(">I", head)[0]]
    filler = 12 * MiB
    body = ftyp + struct.pack(">I4s", 8 + filler, b"mdat") + bytes(filler)  # two parts sent before the end

    with pytest.raises(MediaNotVideo, match="no moov"):
        _copy(aws, body)

    assert _left_in_bucket(aws) == ([], [])


def test_copied_video_carries_its_facts(aws: dict[str, Any]) -> None:
    item = MediaItem("facts", 0, 6 * MiB, ClipSpec(width=640, height=360, duration=5, text="facts"))

    copied = _copy(aws, b"".join(item.chunks()))

    assert {k: copied.as_output()[k] for k in ("duration_seconds", "width", "height", "codec")} == {
        "duration_seconds": 5.0,
        "width": 640,
        "height": 360,
        "codec": "avc1",
    }


def _job(store: JobStore, job_id: str, urls: list[str] | None = None) -> None:
    store.create(
        {
            "job_id": job_id,
            "owner": "o",
            "model": "pixverse",
            "input": {"prompt": "x"},
            "status": str(JobStatus.COMPLETED),
            "request_id": "pixverse_1",
            "media_urls": urls or [URL],
            "media_type": "video/mp4",
            "error": None,
            "created_at": "2026-11-25T12:00:00.000Z",
            "updated_at": "2026-11-25T12:00:00.000Z",
        }
    )


def _service(
    aws: dict[str, Any], body: bytes, handler: Callable[[httpx.Request], httpx.Response] | None = None
) -> tuple[DeliveryService, JobStore]:
    store = JobStore(aws["table"], aws["ddb"])
    service = DeliveryService(
        store,
        _copier(aws, handler or _origin(body)),
        EventPublisher(aws["topic"], aws["sns"]),
        bucket="media",
        key_prefix="videos",
        event_source="urn:test",
    )
    return service, store


def test_job_whose_media_is_an_html_page_ends_delivery_failed_media_not_video(aws: dict[str, Any]) -> None:
    service, store = _service(aws, HTML_PAGE)
    _job(store, "j1")

    service.deliver("j1")

    job = store.get("j1")
    assert job is not None
    assert job["status"] == "DELIVERY_FAILED"
    assert job["error"]["code"] == "media_not_video"
    assert "ftyp" in job["error"]["message"]
    assert not job.get("outputs")
    events = _events(aws)
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert events[0]["data"]["error"]["code"] == "media_not_video"
    assert _left_in_bucket(aws) == ([], [])


def test_delivered_job_outputs_and_event_carry_the_video_facts(aws: dict[str, Any]) -> None:
    item = MediaItem("facts", 0, None, ClipSpec(width=720, height=1280, duration=3, text="portrait"))
    service, store = _service(aws, b"".join(item.chunks()))
    _job(store, "j2")

    service.deliver("j2")

    job = store.get("j2")
    assert job is not None and job["status"] == "DELIVERED"
    facts = {"duration_seconds": 3.0, "width": 720, "height": 1280, "codec": "avc1"}
    assert {k: job["outputs"][0][k] for k in facts} == facts
    events = _events(aws)
    assert [e["type"] for e in events] == [JOB_DELIVERED]
    assert {k: events[0]["data"]["outputs"][0][k] for k in facts} == facts


def test_a_refused_second_media_item_takes_the_first_one_s_object_with_it(aws: dict[str, Any]) -> None:
    video = b"".join(MediaItem("two", 0, None, ClipSpec(width=640, height=360, duration=1, text="one")).chunks())
    bodies = {"/v1/x/output.mp4": video, "/v1/x/second.mp4": HTML_PAGE}

    def origin(request: httpx.Request) -> httpx.Response:
        return _origin(bodies[request.url.path])(request)

    service, store = _service(aws, b"", origin)
    _job(store, "j3", [URL, "https://pub.r2.dev/v1/x/second.mp4"])

    service.deliver("j3")

    job = store.get("j3")
    assert job is not None and job["status"] == "DELIVERY_FAILED"
    assert job["error"]["code"] == "media_not_video"
    assert _left_in_bucket(aws) == ([], [])

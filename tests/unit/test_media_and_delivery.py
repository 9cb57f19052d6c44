from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs.delivery import DeliveryService
from pixverse_jobs.errors import PermanentDeliveryError, TransientDeliveryError
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED, EventPublisher, event_id
from pixverse_jobs.media import MediaCopier, host_allowed
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.mark.parametrize(
    ("url", "patterns", "allowed"),
    [
        ("https://pub-1.r2.dev/v1/a.mp4", ["*.r2.dev"], True),
        ("https://r2.dev/a.mp4", ["*.r2.dev"], False),
        ("https://evil.com/a.mp4", ["*.r2.dev"], False),
        ("https://pub-1.r2.dev.evil.com/a.mp4", ["*.r2.dev"], False),
        ("http://127.0.0.1:8080/m/0.mp4", ["127.0.0.1:8080"], True),
        ("http://127.0.0.1:9090/m/0.mp4", ["127.0.0.1:8080"], False),
        ("https://CDN.Example.com/a", ["cdn.example.com"], True),
    ],
)
def test_host_allowed(url: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(url, patterns) is allowed


def _payload(size: int) -> bytes:
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def _media_server(body: bytes, *, cut_first: int = 0, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if status != 200:
            return httpx.Response(status)
        if calls["n"] <= cut_first:
            # Full Content-Length, half the bytes: a download cut half-way.
            return httpx.Response(200, headers={"Content-Length": str(len(body))}, content=body[: len(body) // 2])
        return httpx.Response(
            200, headers={"Content-Length": str(len(body)), "Content-Type": "video/mp4"}, content=body
        )

    return handler


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="media")
        ddb = boto3.client("dynamodb")
        sns = boto3.client("sns")
        sqs = boto3.client("sqs")
        topic = sns.create_topic(Name="events")["TopicArn"]
        inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        yield {
            "s3": s3,
            "ddb": ddb,
            "sns": sns,
            "sqs": sqs,
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
    )


def _events(aws: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    while True:
        msgs = aws["sqs"].receive_message(QueueUrl=aws["inbox"], MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(json.loads(m["Body"])["Message"]))
            aws["sqs"].delete_message(QueueUrl=aws["inbox"], ReceiptHandle=m["ReceiptHandle"])


def test_small_file_is_copied_with_one_put(aws: dict[str, Any]) -> None:
    body = _payload(300_000)
    copied = _copier(aws, _media_server(body)).copy(
        "https://pub.r2.dev/a.mp4", bucket="media", key="k/0.mp4", content_type="video/mp4", metadata={"job_id": "j"}
    )
    obj = aws["s3"].get_object(Bucket="media", Key="k/0.mp4")
    assert obj["Body"].read() == body
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    assert obj["Metadata"]["sha256"] == copied.sha256
    assert obj["ContentType"] == "video/mp4"


def test_large_file_is_copied_multipart_with_right_sha256(aws: dict[str, Any]) -> None:
    body = _payload(12 * MiB + 123)
    copied = _copier(aws, _media_server(body)).copy(
        "https://pub.r2.dev/a.mp4", bucket="media", key="k/0.mp4", content_type="video/mp4", metadata={}
    )
    stored = aws["s3"].get_object(Bucket="media", Key="k/0.mp4")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(body).hexdigest() == copied.sha256
    assert copied.size == len(body)


def test_cut_download_leaves_no_object_and_no_open_upload(aws: dict[str, Any]) -> None:
    body = _payload(12 * MiB)
    with pytest.raises(TransientDeliveryError):
        _copier(aws, _media_server(body, cut_first=1)).copy(
            "https://pub.r2.dev/a.mp4", bucket="media", key="k/0.mp4", content_type="video/mp4", metadata={}
        )
    assert aws["s3"].list_objects_v2(Bucket="media").get("KeyCount") == 0
    assert aws["s3"].list_multipart_uploads(Bucket="media").get("Uploads", []) == []


@pytest.mark.parametrize("url", ["https://evil.example/a.mp4", "http://pub.r2.dev/a.mp4", "ftp://pub.r2.dev/a"])
def test_disallowed_url_is_refused_without_request(aws: dict[str, Any], url: str) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"x")

    with pytest.raises(PermanentDeliveryError):
        _copier(aws, handler).copy(url, bucket="media", key="k", content_type="video/mp4", metadata={})
    assert requests == []


def test_404_is_permanent(aws: dict[str, Any]) -> None:
    with pytest.raises(PermanentDeliveryError):
        _copier(aws, _media_server(b"", status=404)).copy(
            "https://pub.r2.dev/a.mp4", bucket="media", key="k", content_type="video/mp4", metadata={}
        )


# ------------------------------------------------------------------ delivery
class CrashingPublisher(EventPublisher):
    """Fails the first publish, as a crash between the copy and the publish would."""

    def __init__(self, topic_arn: str, client: Any) -> None:
        super().__init__(topic_arn, client)
        self.attempts = 0

    def publish(self, event: dict[str, Any]) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("crash before publish")
        super().publish(event)


def _service(
    aws: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response], publisher: EventPublisher | None = None
) -> tuple[DeliveryService, JobStore]:
    store = JobStore(aws["table"], aws["ddb"])
    service = DeliveryService(
        store,
        _copier(aws, handler),
        publisher or EventPublisher(aws["topic"], aws["sns"]),
        bucket="media",
        key_prefix="videos",
        event_source="urn:test",
    )
    return service, store


def _completed_job(store: JobStore, job_id: str, urls: list[str], status: JobStatus = JobStatus.COMPLETED) -> None:
    store.create(
        {
            "job_id": job_id,
            "owner": "o",
            "model": "pixverse",
            "input": {"prompt": "x"},
            "status": str(status),
            "request_id": "pixverse_1",
            "media_urls": urls,
            "media_type": "video/mp4",
            "error": {"code": "generation_failed", "message": "nope"} if status is JobStatus.FAILED else None,
            "created_at": "2026-11-25T12:00:00.000Z",
            "updated_at": "2026-11-25T12:00:00.000Z",
        }
    )


def test_deliver_copies_every_media_url_and_publishes_one_event(aws: dict[str, Any]) -> None:
    body = _payload(100_000)
    service, store = _service(aws, _media_server(body))
    _completed_job(store, "j1", ["https://a.r2.dev/v1/x/output.mp4", "https://a.r2.dev/v1/x/second.mp4"])
    service.deliver("j1")
    service.deliver("j1")  # a redelivered message changes nothing
    job = store.get("j1")
    assert job is not None and job["status"] == "DELIVERED"
    assert [o["key"] for o in job["outputs"]] == ["videos/pixverse/j1/0.mp4", "videos/pixverse/j1/1.mp4"]
    head = aws["s3"].head_object(Bucket="media", Key="videos/pixverse/j1/0.mp4")
    assert head["Metadata"] == {
        "job_id": "j1",
        "request_id": "pixverse_1",
        "model": "pixverse",
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    events = _events(aws)
    assert len(events) == 1
    assert events[0]["type"] == JOB_DELIVERED
    assert events[0]["id"] == event_id("j1", JOB_DELIVERED)
    assert events[0]["data"]["outputs"][1]["s3_uri"] == "s3://media/videos/pixverse/j1/1.mp4"


def test_crash_between_copy_and_publish_publishes_once_without_recopy(aws: dict[str, Any]) -> None:
    gets: list[httpx.Request] = []
    serve = _media_server(_payload(1000))

    def handler(request: httpx.Request) -> httpx.Response:
        gets.append(request)
        return serve(request)

    service, store = _service(aws, handler, CrashingPublisher(aws["topic"], aws["sns"]))
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])
    with pytest.raises(RuntimeError):
        service.deliver("j1")
    assert store.get("j1")["status"] == "DELIVERED"  # type: ignore[index]
    service.deliver("j1")
    assert len(gets) == 1
    assert [e["type"] for e in _events(aws)] == [JOB_DELIVERED]


def test_failed_job_publishes_failed_event(aws: dict[str, Any]) -> None:
    service, store = _service(aws, _media_server(b""))
    _completed_job(store, "j1", [], status=JobStatus.FAILED)
    outcome = service.deliver("j1")
    assert outcome.published
    events = _events(aws)
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert events[0]["data"]["error"]["message"] == "nope"


def test_disallowed_host_ends_delivery_failed_with_one_failed_event(aws: dict[str, Any]) -> None:
    service, store = _service(aws, _media_server(b"x"))
    _completed_job(store, "j1", ["https://169.254.169.254/latest/meta-data"])
    service.deliver("j1")
    assert store.get("j1")["status"] == "DELIVERY_FAILED"  # type: ignore[index]
    assert [e["type"] for e in _events(aws)] == [JOB_FAILED]


def test_transient_failure_releases_lease_for_the_retry(aws: dict[str, Any]) -> None:
    body = _payload(6 * MiB)
    service, store = _service(aws, _media_server(body, cut_first=1))
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])
    with pytest.raises(TransientDeliveryError):
        service.deliver("j1")
    assert store.get("j1")["status"] == "COPYING"  # type: ignore[index]
    service.deliver("j1")
    job = store.get("j1")
    assert job is not None and job["status"] == "DELIVERED"
    assert job["outputs"][0]["sha256"] == hashlib.sha256(body).hexdigest()

"""MediaCopier basics and DeliveryService against moto: every media URL copied, one event per
job, the outbox, and where a job that cannot be copied ends (attempt / max_attempts)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from lambda_support import create_jobs_table, load_event, load_function
from moto import mock_aws
from pixverse_jobs.cancel import Canceller
from pixverse_jobs.delivery import RECORD_RETRY_SECONDS, CopyRetryScheduled, DeliveryService
from pixverse_jobs.errors import PermanentDeliveryError, TransientDeliveryError
from pixverse_jobs.events import JOB_CANCELLED, JOB_DELIVERED, JOB_FAILED, EventPublisher, event_id
from pixverse_jobs.media import MediaCopier
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore
from pixverse_local.gateway_sim.media import media_bytes

MiB = 1024 * 1024
PART = 5 * MiB


def _payload(size: int) -> bytes:
    """An MP4 of ``size`` bytes (the copier refuses anything else): the simulator's container
    facts followed by an mdat of filler."""
    return media_bytes("unit-delivery", 0, size)


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
        resolver=lambda host, port: ["104.16.0.1"],
        sleep=lambda seconds: None,
    )


def _tags(aws: dict[str, Any], key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws["s3"].get_object_tagging(Bucket="media", Key=key)["TagSet"]}


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
        "https://pub.r2.dev/a.mp4", bucket="media", key="k/0.mp4", media_type="video/mp4", metadata={"job_id": "j"}
    )
    obj = aws["s3"].get_object(Bucket="media", Key="k/0.mp4")
    assert obj["Body"].read() == body
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    assert obj["Metadata"]["sha256"] == copied.sha256
    assert _tags(aws, "k/0.mp4") == {"sha256": copied.sha256}
    assert obj["ContentType"] == "video/mp4"


def test_large_file_is_copied_multipart_with_right_sha256_as_a_tag(aws: dict[str, Any]) -> None:
    body = _payload(12 * MiB + 123)
    copied = _copier(aws, _media_server(body)).copy(
        "https://pub.r2.dev/a.mp4", bucket="media", key="k/0.mp4", media_type="video/mp4", metadata={"job_id": "j"}
    )
    obj = aws["s3"].get_object(Bucket="media", Key="k/0.mp4")
    assert hashlib.sha256(obj["Body"].read()).hexdigest() == hashlib.sha256(body).hexdigest() == copied.sha256
    assert copied.size == len(body)
    assert _tags(aws, "k/0.mp4") == {"sha256": copied.sha256}
    assert obj["Metadata"] == {"job_id": "j"}  # fixed when the upload started, before the hash was known


def test_cut_download_leaves_no_object_and_no_open_upload(aws: dict[str, Any]) -> None:
    body = _payload(12 * MiB)
    with pytest.raises(TransientDeliveryError):
        _copier(aws, _media_server(body, cut_first=100)).copy(
            "https://pub.r2.dev/a.mp4", bucket="media", key="k/0.mp4", media_type="video/mp4", metadata={}
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
        _copier(aws, handler).copy(url, bucket="media", key="k", media_type="video/mp4", metadata={})
    assert requests == []


def test_404_is_permanent(aws: dict[str, Any]) -> None:
    with pytest.raises(PermanentDeliveryError):
        _copier(aws, _media_server(b"", status=404)).copy(
            "https://pub.r2.dev/a.mp4", bucket="media", key="k", media_type="video/mp4", metadata={}
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
    assert _tags(aws, "videos/pixverse/j1/0.mp4") == {"sha256": hashlib.sha256(body).hexdigest()}
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


class FlakyOrigin:
    """Serves each path's body, or the status ``broken`` names for it (every request counted)."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.broken: dict[str, int] = {}
        self.gets: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.gets.append(request.url.path)
        if request.url.path in self.broken:
            return httpx.Response(self.broken[request.url.path])
        body = self.bodies[request.url.path]
        return httpx.Response(
            200, headers={"Content-Type": "video/mp4", "Content-Length": str(len(body))}, content=body
        )


def _service_with(
    aws: dict[str, Any], origin: FlakyOrigin, *, max_attempts: int = 3
) -> tuple[DeliveryService, JobStore]:
    store = JobStore(aws["table"], aws["ddb"])
    service = DeliveryService(
        store,
        _copier(aws, origin),
        EventPublisher(aws["topic"], aws["sns"]),
        bucket="media",
        key_prefix="videos",
        event_source="urn:test",
        max_attempts=max_attempts,
    )
    return service, store


def test_transient_failure_before_the_last_attempt_raises_and_releases_the_lease(aws: dict[str, Any]) -> None:
    body = _payload(6 * MiB)
    origin = FlakyOrigin({"/o.mp4": body})
    origin.broken["/o.mp4"] = 503
    service, store = _service_with(aws, origin, max_attempts=3)
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])

    with pytest.raises(TransientDeliveryError, match="HTTP 503"):
        service.deliver("j1", attempt=2, message_id="m-1")

    job = store.get("j1")
    assert job is not None and job["status"] == "COPYING" and "copy_lease_until" not in job
    assert _events(aws) == []
    origin.broken.clear()
    assert service.deliver("j1", attempt=3, message_id="m-1").status is JobStatus.DELIVERED  # its retry
    job = store.get("j1")
    assert job is not None and job["outputs"][0]["sha256"] == hashlib.sha256(body).hexdigest()


def test_composite_checksum_mismatch_leaves_the_job_unannounced_and_the_retry_rewrites_the_object(
    aws: dict[str, Any],
) -> None:
    # Given an S3 whose CompleteMultipartUpload answer, once, names a checksum the parts do not give
    body = _payload(12 * MiB)
    origin = FlakyOrigin({"/o.mp4": body})
    service, store = _service_with(aws, origin, max_attempts=3)
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])
    corrupted: list[bool] = []

    def corrupt(parsed: dict[str, Any], **_: Any) -> None:
        if not corrupted:
            corrupted.append(True)
            parsed["ChecksumSHA256"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=-3"

    aws["s3"].meta.events.register("after-call.s3.CompleteMultipartUpload", corrupt)
    key = "videos/pixverse/j1/0.mp4"

    # When the first attempt runs: the message is retried, the job names no object, the object is untagged
    with pytest.raises(TransientDeliveryError, match="checksum of the completed multipart object differs"):
        service.deliver("j1", attempt=1, message_id="m-1")
    job = store.get("j1")
    assert job is not None and job["status"] == "COPYING" and "copy_lease_until" not in job
    assert "outputs" not in job and "copied_outputs" not in job
    assert _tags(aws, key) == {} and _events(aws) == []

    # Then the retry writes the key again and delivers it tagged
    assert service.deliver("j1", attempt=2, message_id="m-1").status is JobStatus.DELIVERED
    assert origin.gets == ["/o.mp4", "/o.mp4"]
    assert _tags(aws, key) == {"sha256": hashlib.sha256(body).hexdigest()}
    assert [e["type"] for e in _events(aws)] == [JOB_DELIVERED]


def test_transient_failure_on_the_last_attempt_ends_delivery_failed_with_one_failed_event(aws: dict[str, Any]) -> None:
    origin = FlakyOrigin({"/o.mp4": b"x"})
    origin.broken["/o.mp4"] = 503
    service, store = _service_with(aws, origin, max_attempts=3)
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])

    outcome = service.deliver("j1", attempt=3)  # no raise: the message is done with
    service.deliver("j1", attempt=4)  # a stray redelivery changes nothing

    assert outcome.status is JobStatus.DELIVERY_FAILED and outcome.published
    job = store.get("j1")
    assert job is not None and "copy_lease_until" not in job
    assert job["error"]["code"] == "delivery_failed"
    assert "after 3 attempts" in job["error"]["message"] and "HTTP 503" in job["error"]["message"]
    events = _events(aws)
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert events[0]["id"] == event_id("j1", JOB_FAILED)
    assert events[0]["data"]["status"] == "DELIVERY_FAILED"


def test_permanent_failure_fails_at_once_even_on_the_first_attempt(aws: dict[str, Any]) -> None:
    origin = FlakyOrigin({})
    origin.broken["/gone.mp4"] = 410
    service, store = _service_with(aws, origin)
    _completed_job(store, "j1", ["https://a.r2.dev/gone.mp4"])

    outcome = service.deliver("j1", attempt=1)

    assert outcome.status is JobStatus.DELIVERY_FAILED
    assert origin.gets == ["/gone.mp4"]
    assert [e["type"] for e in _events(aws)] == [JOB_FAILED]


def test_retry_after_a_partial_copy_copies_only_the_missing_media(aws: dict[str, Any]) -> None:
    first, second = _payload(1000), _payload(2000)
    origin = FlakyOrigin({"/a/0.mp4": first, "/a/1.mp4": second})
    origin.broken["/a/1.mp4"] = 503
    service, store = _service_with(aws, origin)
    _completed_job(store, "j1", ["https://a.r2.dev/a/0.mp4", "https://a.r2.dev/a/1.mp4"])
    with pytest.raises(TransientDeliveryError):
        service.deliver("j1", attempt=1, message_id="m-1")
    origin.broken.clear()

    service.deliver("j1", attempt=2, message_id="m-1")

    job = store.get("j1")
    assert job is not None and job["status"] == "DELIVERED" and "copied_outputs" not in job
    assert origin.gets.count("/a/0.mp4") == 1  # not fetched again
    assert [o["sha256"] for o in job["outputs"]] == [hashlib.sha256(b).hexdigest() for b in (first, second)]
    assert [e["type"] for e in _events(aws)] == [JOB_DELIVERED]


class RecordingCrashPublisher(CrashingPublisher):
    def __init__(self, topic_arn: str, client: Any) -> None:
        super().__init__(topic_arn, client)
        self.documents: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.documents.append(json.loads(json.dumps(event)))
        super().publish(event)


def test_republish_after_a_crash_sends_the_very_same_event(aws: dict[str, Any]) -> None:
    publisher = RecordingCrashPublisher(aws["topic"], aws["sns"])
    service, store = _service(aws, _media_server(_payload(1000)), publisher)
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])
    with pytest.raises(RuntimeError):
        service.deliver("j1", attempt=1)

    service.deliver("j1", attempt=2)
    service.deliver("j1", attempt=3)

    assert len(publisher.documents) == 2
    assert publisher.documents[0] == publisher.documents[1]
    assert [e["id"] for e in _events(aws)] == [event_id("j1", JOB_DELIVERED)]
    job = store.get("j1")
    assert job is not None and job["event_id"] == event_id("j1", JOB_DELIVERED)


def test_media_copy_handler_passes_receive_count_and_a_deadline(
    aws: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "JOBS_TABLE": aws["table"],
        "MEDIA_BUCKET": "media",
        "EVENTS_TOPIC_ARN": aws["topic"],
        "EVENT_BUS_NAME": "events",
        "ALLOWED_MEDIA_HOSTS": "*.r2.dev",
        "COPY_MAX_RECEIVE_COUNT": "4",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    module = load_function("MediaCopyFunction")
    seen: list[tuple[str, int, float | None, str | None]] = []

    def deliver(job_id: str, *, attempt: int = 1, deadline: float | None = None, message_id: str | None = None) -> Any:
        seen.append((job_id, attempt, deadline, message_id))
        raise TransientDeliveryError("origin down")

    monkeypatch.setattr(module.service, "deliver", deliver)
    event = load_event("media_copy")
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"

    started = time.monotonic()
    result = module.handler(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert module.service._max_attempts == 4
    (_, attempt, deadline, message_id) = seen[0]
    assert attempt == 3
    assert message_id == event["Records"][0]["messageId"]
    # FakeLambdaContext has 30 s left: stop a tenth of it early, leaving time to clean up.
    assert deadline is not None and started + 26 < deadline < started + 28


class SlowPublisher(EventPublisher):
    """Publishes after a pause, so two deliveries overlap inside their publish."""

    def __init__(self, aws: dict[str, Any]) -> None:
        super().__init__(aws["topic"], aws["sns"])
        self.published: list[str] = []

    def publish(self, event: dict[str, Any]) -> None:
        time.sleep(0.2)
        self.published.append(event["id"])
        super().publish(event)


def test_concurrent_redeliveries_of_an_unannounced_job_publish_once(aws: dict[str, Any]) -> None:
    # Given a DELIVERED job whose event is not out yet (its copier crashed before publishing)
    publisher = SlowPublisher(aws)
    service, store = _service(aws, _media_server(b""), publisher)
    _completed_job(store, "job_race", [], status=JobStatus.DELIVERED)

    # When the message's retry and a reconciler re-drive deliver it at the same moment
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda _: service.deliver("job_race"), range(2)))

    # Then exactly one of them publishes, and the outbox flag is set
    assert sorted(o.published for o in outcomes) == [False, True]
    assert publisher.published == [event_id("job_race", JOB_DELIVERED)]
    job = store.get("job_race")
    assert job is not None and job.get("event_published_at")


def test_failed_delivered_write_gives_the_lease_back_and_the_retry_does_not_copy_again(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a copy whose DELIVERED write fails once (the objects are already in S3)
    body = _payload(1024)
    gets = {"n": 0}

    def origin(request: httpx.Request) -> httpx.Response:
        gets["n"] += 1
        return _media_server(body)(request)

    service, store = _service(aws, origin)
    _completed_job(store, "job_w", ["https://pub-1.r2.dev/a.mp4"])
    real_advance = store.advance

    def advance_failing_delivered(job_id: str, target: JobStatus, **kwargs: Any) -> Any:
        if target is JobStatus.DELIVERED and not getattr(advance_failing_delivered, "failed", False):
            advance_failing_delivered.failed = True  # type: ignore[attr-defined]
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")
        return real_advance(job_id, target, **kwargs)

    monkeypatch.setattr(store, "advance", advance_failing_delivered)

    # When the first attempt fails on that write
    with pytest.raises(CopyRetryScheduled, match="recording the delivery failed") as scheduled:
        service.deliver("job_w", attempt=1)

    # Then its message comes back within seconds, not after the queue's visibility timeout
    assert scheduled.value.retry_in == RECORD_RETRY_SECONDS <= 10

    # Then the lease is back and the copied object is recorded
    job = store.get("job_w")
    assert job is not None and job["status"] == "COPYING" and "copy_lease_until" not in job
    # and the message's retry ends the job at once, without downloading again
    outcome = service.deliver("job_w", attempt=2)
    assert outcome.status is JobStatus.DELIVERED and outcome.published
    assert gets["n"] == 1


def test_a_job_cancelled_during_its_copy_keeps_no_object_and_publishes_the_cancelled_event(
    aws: dict[str, Any],
) -> None:
    serve = _media_server(_payload(1000))
    store = JobStore(aws["table"], aws["ddb"])
    queue = aws["sqs"].create_queue(QueueName="copy")["QueueUrl"]

    def cancel_while_downloading(request: httpx.Request) -> httpx.Response:
        # The caller cancels while the media is on its way into the bucket.
        job = store.get("j1")
        assert job is not None and job["status"] == "COPYING"
        assert Canceller(store, CopyQueue(queue, aws["sqs"])).cancel(job).cancelled
        return serve(request)

    service, _ = _service(aws, cancel_while_downloading)
    _completed_job(store, "j1", ["https://a.r2.dev/o.mp4"])

    outcome = service.deliver("j1")

    assert outcome.status is JobStatus.CANCELLED and outcome.published
    assert store.get("j1")["status"] == "CANCELLED"  # type: ignore[index]
    assert aws["s3"].list_objects_v2(Bucket="media").get("KeyCount") == 0
    assert [e["type"] for e in _events(aws)] == [JOB_CANCELLED]


def test_a_job_cancelled_between_two_copy_attempts_keeps_none_of_the_first_attempts_objects(
    aws: dict[str, Any],
) -> None:
    # The first media copies, the second fails for now: the first object is kept for the retry.
    origin = FlakyOrigin({"/a/0.mp4": _payload(1000), "/a/1.mp4": _payload(2000)})
    origin.broken["/a/1.mp4"] = 503
    service, store = _service_with(aws, origin)
    _completed_job(store, "j1", ["https://a.r2.dev/a/0.mp4", "https://a.r2.dev/a/1.mp4"])
    with pytest.raises(TransientDeliveryError):
        service.deliver("j1", attempt=1, message_id="m-1")
    assert aws["s3"].list_objects_v2(Bucket="media").get("KeyCount") == 1
    queue = aws["sqs"].create_queue(QueueName="copy")["QueueUrl"]
    job = store.get("j1")
    assert job is not None and Canceller(store, CopyQueue(queue, aws["sqs"])).cancel(job).cancelled

    outcome = service.deliver("j1", attempt=2, message_id="m-1")  # the retry's message

    assert outcome.status is JobStatus.CANCELLED and outcome.published
    assert aws["s3"].list_objects_v2(Bucket="media").get("KeyCount") == 0
    assert "copied_outputs" not in store.get("j1")  # type: ignore[operator]
    assert [e["type"] for e in _events(aws)] == [JOB_CANCELLED]

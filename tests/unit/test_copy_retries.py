"""A failing copy backs off and ends in bounded time (issue 13, finding 2.3).

Before: a transient failure gave the lease back and left the message to return after the queue's
90-minute visibility timeout, while every reconciler run (5 min) sent a fresh copy message with
a receive count of 1: a full download every 5 minutes, and the last-attempt rule never fired.
Now the copier records when the retry is due and which message brings it, sets that message's
visibility to the backoff, the reconciler leaves the job alone meanwhile, and the attempts are
counted on the job. Against moto (DynamoDB, S3, SNS, SQS in-process) and a media origin behind
httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
from lambda_support import create_jobs_table, load_event, load_function
from moto import mock_aws
from pixverse_jobs import config, delivery
from pixverse_jobs.callbacks import CallbackProcessor
from pixverse_jobs.config import ReconcileSettings
from pixverse_jobs.delivery import DeliveryService
from pixverse_jobs.errors import ConfigurationError
from pixverse_jobs.events import JOB_FAILED, EventPublisher
from pixverse_jobs.media import MediaCopier
from pixverse_jobs.queue import CopyQueue, job_id_from_message
from pixverse_jobs.reconcile import Action, Reconciler
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore
from pixverse_local.gateway_sim.media import media_bytes

URL = "https://pub-1.r2.dev/v1/job/output.mp4"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FailingOrigin:
    """A media server that answers 503 to every request, counting them."""

    def __init__(self) -> None:
        self.requests = 0
        self.healthy = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.healthy:
            body = media_bytes("unit-retries", 0, 4096)  # an MP4: the copier refuses anything else
            return httpx.Response(200, headers={"Content-Type": "video/mp4", "Content-Length": "4096"}, content=body)
        return httpx.Response(503)


@dataclass
class Clock:
    """Epoch seconds the copier and the reconciler read (the test moves it)."""

    now: int = int(NOW.timestamp())

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    store: JobStore
    service: DeliveryService
    origin: FailingOrigin
    clock: Clock
    aws: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    clock = Clock()
    # The copier and the reconciler read the time through ``epoch_seconds``; one clock for both.
    monkeypatch.setattr("pixverse_jobs.delivery.epoch_seconds", clock)
    monkeypatch.setattr("pixverse_jobs.reconcile.epoch_seconds", clock)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3.create_bucket(Bucket="media")
        topic = sns.create_topic(Name="events")["TopicArn"]
        inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        store = JobStore(create_jobs_table(ddb), ddb)
        origin = FailingOrigin()
        copier = MediaCopier(
            ["*.r2.dev"],
            s3_client=s3,
            http_client=httpx.Client(transport=httpx.MockTransport(origin)),
            resolver=lambda host, port: ["104.16.0.1"],
            sleep=lambda seconds: None,
        )
        service = DeliveryService(
            store,
            copier,
            EventPublisher(topic, sns),
            bucket="media",
            key_prefix="videos",
            event_source="urn:test",
            max_attempts=5,
            backoff=delivery.CopyBackoff(30, 900),
            jitter=lambda: 1.0,  # the longest delay of each step: the bound is reached exactly
        )
        yield World(store, service, origin, clock, {"ddb": ddb, "sqs": sqs, "sns": sns, "inbox": inbox})


def _completed(world: World, job_id: str = "job_1") -> str:
    created = (NOW - timedelta(seconds=1200)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    world.store.create(
        {
            "job_id": job_id,
            "owner": "owner-1",
            "model": "pixverse",
            "status": "COMPLETED",
            "request_id": "req_1",
            "media_urls": [URL],
            "media_type": "video/mp4",
            "created_at": created,
            "updated_at": created,
        }
    )
    return job_id


def _events(world: World) -> list[dict[str, Any]]:
    sqs, inbox = world.aws["sqs"], world.aws["inbox"]
    out = []
    while messages := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            out.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
    return out


# ---------------------------------------------------------------- the backoff schedule


def test_backoff_doubles_from_its_base_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    backoff = delivery.CopyBackoff(base_seconds=30, max_seconds=200)

    assert [backoff.ceiling(n) for n in range(1, 6)] == [30, 60, 120, 200, 200]
    assert [backoff.delay(n, lambda: 0.0) for n in range(1, 6)] == [15, 30, 60, 100, 100]
    assert [backoff.delay(n, lambda: 1.0) for n in range(1, 6)] == [30, 60, 120, 200, 200]
    assert backoff.ceiling(10_000) == 200  # no overflow, whatever the count


def test_backoff_bound_is_the_sum_of_the_waits_between_attempts() -> None:
    # The defaults (COPY_RETRY_BASE_SECONDS=30, COPY_RETRY_MAX_SECONDS=900) and CopyMaxReceiveCount=5.
    assert delivery.CopyBackoff(30, 900).bound(5) == 30 + 60 + 120 + 240
    assert delivery.CopyBackoff(30, 900).bound(1) == 0


def test_retry_cap_below_its_base_is_refused_naming_the_settings() -> None:
    env = {
        "MEDIA_BUCKET": "media",
        "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
        "EVENT_BUS_NAME": "events",
        "ALLOWED_MEDIA_HOSTS": "*.r2.dev",
        "COPY_RETRY_BASE_SECONDS": "60",
        "COPY_RETRY_MAX_SECONDS": "30",
    }
    with pytest.raises(ConfigurationError, match=r"COPY_RETRY_MAX_SECONDS .* COPY_RETRY_BASE_SECONDS"):
        config.DeliverySettings.from_env(env)
    env["COPY_RETRY_MAX_SECONDS"] = "43000"  # past what SQS holds a message invisible (12 h in all)
    with pytest.raises(ConfigurationError, match="COPY_RETRY_MAX_SECONDS"):
        config.DeliverySettings.from_env(env)


# ---------------------------------------------------------------- the copier


def test_transient_failure_records_when_the_retry_is_due_and_which_message_brings_it(world: World) -> None:
    job_id = _completed(world)

    with pytest.raises(delivery.CopyRetryScheduled) as raised:
        world.service.deliver(job_id, attempt=1, message_id="m-1")

    assert raised.value.retry_in == 30 and raised.value.attempt == 1
    job = world.store.get(job_id)
    assert job is not None and job["status"] == "COPYING" and "copy_lease_until" not in job
    assert job["copy_retry_at"] == world.clock.now + 30
    assert job["copy_retry_message"] == "m-1"
    assert job["copy_attempts"] == 1


def test_duplicate_message_while_a_retry_is_pending_is_dropped_without_a_download(world: World) -> None:
    job_id = _completed(world)
    with pytest.raises(delivery.CopyRetryScheduled):
        world.service.deliver(job_id, attempt=1, message_id="m-1")
    requests = world.origin.requests

    outcome = world.service.deliver(job_id, attempt=1, message_id="m-2")  # e.g. a reconciler re-drive

    assert outcome.status is JobStatus.COPYING and not outcome.published
    assert world.origin.requests == requests
    job = world.store.get(job_id)
    assert job is not None and job["copy_retry_message"] == "m-1" and job["copy_attempts"] == 1


def test_the_retry_s_own_message_copies_even_a_moment_before_it_is_due(world: World) -> None:
    job_id = _completed(world)
    with pytest.raises(delivery.CopyRetryScheduled):
        world.service.deliver(job_id, attempt=1, message_id="m-1")
    world.origin.healthy = True
    world.clock.now += 29  # clocks of two hosts may disagree by a little

    outcome = world.service.deliver(job_id, attempt=2, message_id="m-1")

    assert outcome.status is JobStatus.DELIVERED and outcome.published
    job = world.store.get(job_id)
    assert job is not None and "copy_retry_at" not in job and "copy_retry_message" not in job


def test_a_fresh_message_continues_the_job_s_attempt_count_to_the_last_attempt(world: World) -> None:
    # Given three failed attempts, each brought by a different message received once
    job_id = _completed(world)
    for n in range(1, 5):
        with pytest.raises(delivery.CopyRetryScheduled) as raised:
            world.service.deliver(job_id, attempt=1, message_id=f"m-{n}")
        assert raised.value.attempt == n
        world.clock.now += raised.value.retry_in

    # When a fifth message, again with ApproximateReceiveCount 1, finds the copy failing
    outcome = world.service.deliver(job_id, attempt=1, message_id="m-5")

    # Then it is the last of the five attempts: the job ends with its one failed event
    assert outcome.status is JobStatus.DELIVERY_FAILED and outcome.published
    job = world.store.get(job_id)
    assert job is not None and "after 5 attempts" in job["error"]["message"]
    assert [e["type"] for e in _events(world)] == [JOB_FAILED]


# ---------------------------------------------------------------- the handler


def test_failed_copy_message_comes_back_after_the_backoff_not_the_queue_timeout(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a copy queue whose own visibility timeout would make a failed message visible at once
    sqs = world.aws["sqs"]
    queue_url = sqs.create_queue(QueueName="copy", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    job_id = _completed(world)
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": job_id}))
    received = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"])["Messages"][0]
    for name, value in {
        "JOBS_TABLE": "jobs",
        "MEDIA_BUCKET": "media",
        "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
        "EVENT_BUS_NAME": "events",
        "ALLOWED_MEDIA_HOSTS": "*.r2.dev",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    module = load_function("MediaCopyFunction")
    monkeypatch.setattr(module, "service", world.service)
    event = load_event("media_copy")
    record = event["Records"][0]
    record.update(
        messageId=received["MessageId"],
        receiptHandle=received["ReceiptHandle"],
        body=received["Body"],
        eventSourceARN=queue_arn,
    )

    # When the copy fails transiently
    result = module.handler(event, lambda_context)

    # Then the message is reported failed, the job names its retry, and the message stays away
    assert result == {"batchItemFailures": [{"itemIdentifier": received["MessageId"]}]}
    job = world.store.get(job_id)
    assert job is not None and job["copy_retry_message"] == received["MessageId"]
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages", []) == []


# ---------------------------------------------------------------- the reconciler


class NoGateway:
    def status(self, request_id: str) -> dict[str, Any]:
        raise AssertionError("a COPYING job is never polled")


def _reconciler(world: World, queue: CopyQueue) -> Reconciler:
    settings = ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=2)
    gateway: Any = NoGateway()
    # The reconciler's now is the copier's: a job's next look is set from the copy's lease and retry.
    return Reconciler(
        world.store,
        gateway,
        CallbackProcessor(world.store, queue),
        queue,
        settings,
        now=lambda: datetime.fromtimestamp(world.clock.now, UTC),
    )


def test_reconciler_leaves_a_copy_waiting_for_its_retry_to_that_retry(world: World) -> None:
    sqs = world.aws["sqs"]
    queue_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
    reconciler = _reconciler(world, CopyQueue(queue_url, sqs))
    job_id = _completed(world)
    with pytest.raises(delivery.CopyRetryScheduled):
        world.service.deliver(job_id, attempt=1, message_id="m-1")

    waiting = reconciler.run()
    world.clock.now += 30 + 61  # the retry was due and its message did not come (lost)
    overdue = reconciler.run()

    assert waiting.actions == {str(Action.SKIPPED): 1}
    assert overdue.actions == {str(Action.DELIVERY_REQUESTED): 1}
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [job_id_from_message(m["Body"]) for m in messages] == [job_id]


# ---------------------------------------------------------------- the whole loop, in virtual time


@dataclass
class Message:
    job_id: str
    message_id: str
    visible_at: int
    receives: int = 0


def _simulate(world: World, *, seconds: int, reconcile_every: int = 300, queue_timeout: int = 5400) -> dict[str, Any]:
    """The copy queue, the copier and the reconciler schedule in virtual time (one-second steps,
    copies taking no time): SQS's visibility rules as AWS applies them (a failed message comes
    back after the visibility the copier set, else after the queue's VisibilityTimeout), one
    ApproximateReceiveCount per message. Returns what happened."""
    job_id = _completed(world)
    start = world.clock.now
    messages = [Message(job_id, "webhook-1", start)]
    sent = 0

    class SimulatedQueue(CopyQueue):
        def __init__(self) -> None:
            pass

        def request_delivery(self, job_id: str) -> None:
            nonlocal sent
            sent += 1
            messages.append(Message(job_id, f"reconciler-{sent}", world.clock.now))

    reconciler = _reconciler(world, SimulatedQueue())
    downloads_by_10_minutes: list[int] = []
    ended_after: int | None = None
    while world.clock.now - start < seconds:
        elapsed = world.clock.now - start
        if elapsed % 600 == 0:
            downloads_by_10_minutes.append(world.origin.requests)
        if elapsed and elapsed % reconcile_every == 0:
            reconciler.run()
        for message in [m for m in messages if m.visible_at <= world.clock.now]:
            message.receives += 1
            try:
                world.service.deliver(message.job_id, attempt=message.receives, message_id=message.message_id)
            except delivery.CopyRetryScheduled as exc:
                message.visible_at = world.clock.now + exc.retry_in
                continue
            except Exception:
                message.visible_at = world.clock.now + queue_timeout
                continue
            messages.remove(message)
            job = world.store.get(job_id)
            if ended_after is None and job is not None and job["status"] == "DELIVERY_FAILED":
                ended_after = world.clock.now - start
        world.clock.now += 1
    return {"ended_after": ended_after, "downloads": world.origin.requests, "by_10_minutes": downloads_by_10_minutes}


def test_failing_copy_backs_off_and_ends_delivery_failed_within_the_bound(world: World) -> None:
    outcome = _simulate(world, seconds=6 * 3600)

    # Five attempts of three requests each (MediaCopier retries within an attempt), whatever the
    # reconciler does meanwhile; the last one ends the job after the waits between them.
    bound = delivery.CopyBackoff(30, 900).bound(5)
    assert outcome["ended_after"] is not None and outcome["ended_after"] <= bound
    assert outcome["downloads"] == 5 * 3
    assert outcome["by_10_minutes"][1] == 15  # every request within the first 10 minutes

"""Cancel, deadline and replay (issue 15) against moto: the API routes, the deadline function, the
reconciler's backstop and what a cancelled job refuses afterwards."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from lambda_support import FakeLambdaContext, create_jobs_table, load_event, load_function, sqs_event
from moto import mock_aws
from pixverse_jobs.cancel import DEADLINE_AT, Canceller, DeadlineOutcome, DeadlineWatch
from pixverse_jobs.events import JOB_CANCELLED, JOB_FAILED, event_id
from pixverse_jobs.queue import CopyQueue, DeadlineQueue
from pixverse_jobs.signing import sign
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import CHECK_AT, JobStore
from pixverse_jobs.views import job_view

SIGNING_SECRET = "w" * 64
JOB_ID = "job_0123456789abcdef0123456789abcdef"
OWNER = "arn:aws:iam::123456789012:user/video-backend"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        sns = boto3.client("sns")
        secrets = boto3.client("secretsmanager")
        table = create_jobs_table(ddb)
        queues = {
            name: sqs.create_queue(QueueName=name)["QueueUrl"]
            for name in ("copy", "submit", "deadline", "inbox", "bus-inbox")
        }
        topic = sns.create_topic(Name="events")["TopicArn"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=queues["inbox"], AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        # The stack's bus, and a rule sending every event on it to a queue.
        events = boto3.client("events")
        events.create_event_bus(Name="events")
        events.put_rule(Name="all", EventBusName="events", EventPattern=json.dumps({"source": [{"prefix": ""}]}))
        bus_inbox_arn = sqs.get_queue_attributes(QueueUrl=queues["bus-inbox"], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_targets(Rule="all", EventBusName="events", Targets=[{"Id": "q", "Arn": bus_inbox_arn}])
        signing_arn = secrets.create_secret(Name="signing", SecretString=SIGNING_SECRET)["ARN"]
        for name, value in {
            "JOBS_TABLE": table,
            "COPY_QUEUE_URL": queues["copy"],
            "SUBMIT_QUEUE_URL": queues["submit"],
            "DEADLINE_QUEUE_URL": queues["deadline"],
            "EVENTS_TOPIC_ARN": topic,
            "EVENT_SOURCE": "urn:pixverse-jobs:test",
            "UPLOAD_BUCKET": "media",
            "EVENT_BUS_NAME": "events",
            "MAX_JOB_AGE_SECONDS": "3600",
            "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
            "PIXAZO_API_KEY_SECRET": "pixverse-jobs/pixazo-api-key",
            "WEBHOOK_SECRET_ARN": signing_arn,
            "WEBHOOK_MODE": "terminal",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        store = JobStore(table, ddb)
        yield {"ddb": ddb, "sqs": sqs, "sns": sns, "table": table, "store": store, "topic": topic, **queues}


def _messages(env: dict[str, Any], queue: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = (
            env["sqs"]
            .receive_message(QueueUrl=env[queue], MaxNumberOfMessages=10, AttributeNames=["All"])
            .get("Messages", [])
        )
        if not got:
            return out
        for message in got:
            out.append(message)
            env["sqs"].delete_message(QueueUrl=env[queue], ReceiptHandle=message["ReceiptHandle"])


def _events(env: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(json.loads(m["Body"])["Message"]) for m in _messages(env, "inbox")]


def _bus_events(env: dict[str, Any]) -> list[dict[str, Any]]:
    """The CloudEvents the bus's rule delivered (each in its envelope's ``detail``)."""
    return [json.loads(m["Body"])["detail"] for m in _messages(env, "bus-inbox")]


def _job(env: dict[str, Any], status: JobStatus, *, job_id: str = JOB_ID, **extra: Any) -> dict[str, Any]:
    record = {
        "job_id": job_id,
        "owner": OWNER,
        "model": "pixverse-v6-text-to-video",
        "input": {"prompt": "a cat"},
        "metadata": {},
        "webhook_mode": "terminal",
        "status": str(status),
        "created_at": "2026-12-07T12:00:00.000Z",
        "updated_at": "2026-12-07T12:00:00.000Z",
        **extra,
    }
    env["store"].create(record)
    return record


def _route_event(route: str, job_id: str = JOB_ID) -> dict[str, Any]:
    event = load_event(f"{route}_job")
    event["rawPath"] = f"/jobs/{job_id}/{route}"
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"] = {"job_id": job_id}
    return event


def _call(api: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def _copier(env: dict[str, Any]) -> Any:
    """MediaCopyFunction, publishing to the test topic."""
    return load_function("MediaCopyFunction")


def _deliver_copy_messages(env: dict[str, Any]) -> int:
    """Run MediaCopyFunction's handler on every copy message (Lambda's poller would)."""
    handled = 0
    copier = load_function("MediaCopyFunction")
    for message in _messages(env, "copy"):
        result = copier.handler(
            sqs_event([message], queue_arn="arn:aws:sqs:us-east-1:123456789012:copy"), FakeLambdaContext()
        )
        assert result == {"batchItemFailures": []}
        handled += 1
    return handled


@pytest.fixture
def copier_env(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    boto3.client("s3").create_bucket(Bucket="media")
    monkeypatch.setenv("MEDIA_BUCKET", "media")
    monkeypatch.setenv("ALLOWED_MEDIA_HOSTS", "*.r2.dev")
    return env


# ------------------------------------------------------------------ cancel
def test_cancel_of_a_waiting_job_ends_it_not_sent_and_its_submit_message_sends_nothing(
    copier_env: dict[str, Any],
) -> None:
    env = copier_env
    api = load_function("SubmitFunction")
    created = api.handler(load_event("submit_job"), FakeLambdaContext())
    job_id = json.loads(created["body"])["job_id"]

    status, body = _call(api, _route_event("cancel", job_id))

    assert status == 200
    assert (body["status"], body["submit_outcome"], body["error"]["code"]) == ("CANCELLED", "not_sent", "cancelled")
    assert "nothing was billed" in body["error"]["message"]
    # The submitter's claim is refused: the job is never sent to the gateway.
    submitter = load_function("SubmitterFunction")
    calls: list[Any] = []
    submitter.submitter._gateway.submit = lambda *a, **k: calls.append(a)
    for message in _messages(env, "submit"):
        submitter.handler(sqs_event([message]), FakeLambdaContext())
    assert calls == []
    assert env["store"].get(job_id)["status"] == "CANCELLED"
    # One cancelled event, from the copier.
    assert _deliver_copy_messages(env) == 1
    events = _events(env)
    assert [(e["type"], e["id"]) for e in events] == [(JOB_CANCELLED, event_id(job_id, JOB_CANCELLED))]
    assert events[0]["data"]["status"] == "CANCELLED"


def test_cancel_of_an_ended_job_is_409_already_ended_and_changes_nothing(env: dict[str, Any]) -> None:
    _job(env, JobStatus.FAILED, request_id="req_1", error={"code": "generation_failed", "message": "nope"})
    api = load_function("SubmitFunction")

    status, body = _call(api, _route_event("cancel"))

    assert status == 409
    assert body["error"]["code"] == "already_ended" and body["error"]["job_status"] == "FAILED"
    assert env["store"].get(JOB_ID)["status"] == "FAILED"
    assert _messages(env, "copy") == []


def test_cancel_of_another_callers_job_is_404(env: dict[str, Any]) -> None:
    _job(env, JobStatus.QUEUED, request_id="req_1", owner="arn:aws:iam::123456789012:user/someone-else")
    api = load_function("SubmitFunction")

    status, body = _call(api, _route_event("cancel"))

    assert status == 404 and body["error"]["code"] == "not_found"
    assert env["store"].get(JOB_ID)["status"] == "QUEUED"


def test_a_callback_after_the_cancel_changes_nothing_and_copies_nothing(copier_env: dict[str, Any]) -> None:
    env = copier_env
    _job(env, JobStatus.PROCESSING, request_id="req_1")
    api = load_function("SubmitFunction")
    status, body = _call(api, _route_event("cancel"))
    assert status == 200 and body["submit_outcome"] == "accepted"
    assert "may still be billed" in body["error"]["message"]
    copy_requests = _messages(env, "copy")
    assert len(copy_requests) == 1  # the cancelled event's

    webhook = load_function("WebhookFunction")
    event = load_event("webhook_callback")
    event["rawPath"] = f"/webhooks/pixazo/{JOB_ID}"
    event["pathParameters"] = {"job_id": JOB_ID}
    event["queryStringParameters"] = {"sig": sign(JOB_ID, SIGNING_SECRET)}
    event["rawQueryString"] = f"sig={sign(JOB_ID, SIGNING_SECRET)}"
    callback = json.loads(event["body"])
    callback["request_id"] = "req_1"
    event["body"] = json.dumps(callback)
    answer = webhook.handler(event, FakeLambdaContext())

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["applied"] is False
    job = env["store"].get(JOB_ID)
    assert job["status"] == "CANCELLED" and not job.get("media_urls")
    assert _messages(env, "copy") == []  # no copy asked


def test_cancel_retries_when_the_status_moved_between_read_and_write(env: dict[str, Any]) -> None:
    _job(env, JobStatus.QUEUED, request_id="req_1")
    stale = env["store"].get(JOB_ID)
    env["store"].advance(JOB_ID, JobStatus.PROCESSING)
    canceller = Canceller(env["store"], CopyQueue(env["copy"], env["sqs"]))

    ending = canceller.cancel(stale)

    assert ending.cancelled and ending.job["status"] == "CANCELLED"
    assert ending.job["cancelled_from"] == "PROCESSING"


def test_a_cancel_never_overwrites_an_outcome_that_came_first(env: dict[str, Any]) -> None:
    _job(env, JobStatus.QUEUED, request_id="req_1")
    stale = env["store"].get(JOB_ID)
    env["store"].advance(JOB_ID, JobStatus.FAILED, attributes={"error": {"code": "generation_failed", "message": "x"}})

    ending = Canceller(env["store"], CopyQueue(env["copy"], env["sqs"])).cancel(stale)

    assert not ending.cancelled and ending.job["status"] == "FAILED"
    assert env["store"].get(JOB_ID)["error"]["code"] == "generation_failed"


def test_submit_outcome_of_a_cancelled_job_says_whether_it_may_be_billed() -> None:
    base = {"job_id": JOB_ID, "status": "CANCELLED"}
    assert job_view({**base, "cancelled_from": "ACCEPTED"})["submit_outcome"] == "not_sent"
    assert job_view({**base, "cancelled_from": "SUBMITTING"})["submit_outcome"] == "unknown"
    assert job_view({**base, "cancelled_from": "SUBMITTING", "request_id": "r"})["submit_outcome"] == "accepted"


# ------------------------------------------------------------------ replay
def test_replay_sends_the_final_event_again_with_the_same_id_and_document(copier_env: dict[str, Any]) -> None:
    env = copier_env
    _job(
        env,
        JobStatus.FAILED,
        request_id="req_1",
        error={"code": "generation_failed", "message": "nope"},
        unfinished="u#01",
        check_at=0,
    )
    # The copier's publish, then the caller's replay.
    CopyQueue(env["copy"], env["sqs"]).request_delivery(JOB_ID)
    _deliver_copy_messages(env)
    [first] = _events(env)
    assert _bus_events(env) == [first]

    status, body = _call(load_function("SubmitFunction"), _route_event("replay"))

    assert status == 200
    assert body == {"job_id": JOB_ID, "event_id": first["id"], "event_type": JOB_FAILED, "status": "FAILED"}
    [again] = _events(env)
    assert again == first
    assert _bus_events(env) == [first]


def test_replay_of_a_job_not_ended_is_409_not_ended_and_publishes_nothing(env: dict[str, Any]) -> None:
    _job(env, JobStatus.PROCESSING, request_id="req_1")

    status, body = _call(load_function("SubmitFunction"), _route_event("replay"))

    assert status == 409 and body["error"]["code"] == "not_ended"
    assert body["error"]["job_status"] == "PROCESSING"
    assert _events(env) == []


def test_replay_of_another_callers_job_is_404(env: dict[str, Any]) -> None:
    _job(env, JobStatus.FAILED, owner="arn:aws:iam::123456789012:user/someone-else")

    status, _ = _call(load_function("SubmitFunction"), _route_event("replay"))

    assert status == 404
    assert _events(env) == []


@pytest.mark.parametrize("route", ["cancel", "replay"])
def test_other_methods_on_the_new_routes_are_405_with_allow_post(env: dict[str, Any], route: str) -> None:
    event = _route_event(route)
    event["requestContext"]["http"]["method"] = "GET"
    event["routeKey"] = f"ANY /jobs/{{job_id}}/{route}"

    response = load_function("SubmitFunction").handler(event, FakeLambdaContext())

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"


# ------------------------------------------------------------------ deadline
def _submit(api: Any, **fields: Any) -> tuple[int, dict[str, Any]]:
    event = load_event("submit_job")
    body = json.loads(event["body"])
    body.update(fields)
    event["body"] = json.dumps(body)
    return _call(api, event)


@pytest.mark.parametrize("bad", [0, -1, 3601, True, "5", 5.5, None])
def test_deadline_seconds_out_of_range_is_400_naming_it_and_the_range(env: dict[str, Any], bad: Any) -> None:
    api = load_function("SubmitFunction")
    event = load_event("submit_job")
    body = json.loads(event["body"])
    body["deadline_seconds"] = bad
    event["body"] = json.dumps(body)

    status, answer = _call(api, event)

    if bad is None:  # null is "no deadline"
        assert status == 202 and answer["deadline_seconds"] is None
        return
    assert status == 400
    [detail] = answer["error"]["details"]
    assert detail["field"] == "deadline_seconds"
    assert "from 1 to 3600" in detail["message"]
    assert env["store"].get(JOB_ID) is None


def test_a_job_with_a_deadline_is_watched_by_a_message_delayed_until_it(env: dict[str, Any]) -> None:
    api = load_function("SubmitFunction")
    before = time.time()
    status, job = _submit(api, deadline_seconds=3)
    after = time.time()
    assert status == 202 and job["deadline_seconds"] == 3 and job["deadline_at"]

    record = env["store"].get(job["job_id"])
    # Never before the deadline, at most a second after it (whole seconds).
    assert before + 3 <= record[DEADLINE_AT] <= after + 4
    # The reconciler's look is no later than just past the deadline, should the message be lost.
    assert record[CHECK_AT] <= math.ceil(record[DEADLINE_AT]) + 30
    attributes = env["sqs"].get_queue_attributes(QueueUrl=env["deadline"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_deadline_message_before_the_deadline_is_sent_again_for_the_time_left(env: dict[str, Any]) -> None:
    _job(env, JobStatus.QUEUED, request_id="req_1", **{DEADLINE_AT: 10_000})
    sent: list[dict[str, Any]] = []

    class Recording:
        def send_message(self, **kwargs: Any) -> None:
            sent.append(kwargs)

    now = [10_000 - 3 * 3600 - 7.2]
    watch = DeadlineWatch(
        env["store"],
        Canceller(env["store"], CopyQueue(env["copy"], env["sqs"])),
        DeadlineQueue("q", Recording()),
        clock=lambda: now[0],
    )

    # Three hours and a bit ahead: SQS delays at most 15 minutes, so it hops.
    assert watch.on_message(JOB_ID, wait_budget=20) is DeadlineOutcome.NOT_YET
    now[0] = 10_000 - 30.2  # further than the invocation may wait
    assert watch.on_message(JOB_ID, wait_budget=20) is DeadlineOutcome.NOT_YET
    assert [s["DelaySeconds"] for s in sent] == [900, 30]  # rounded down: the rest is waited inline
    assert env["store"].get(JOB_ID)["status"] == "QUEUED"


def test_deadline_message_seconds_early_waits_for_the_deadline_within_its_budget(env: dict[str, Any]) -> None:
    _job(env, JobStatus.QUEUED, request_id="req_1", **{DEADLINE_AT: 10_000})
    now = [10_000 - 7.5]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    watch = DeadlineWatch(
        env["store"],
        Canceller(env["store"], CopyQueue(env["copy"], env["sqs"])),
        DeadlineQueue(env["deadline"], env["sqs"]),
        clock=lambda: now[0],
        sleep=sleep,
    )

    # With too little budget it goes round the queue; with enough it waits and cancels.
    assert watch.on_message(JOB_ID, wait_budget=5) is DeadlineOutcome.NOT_YET
    assert slept == []
    assert watch.on_message(JOB_ID, wait_budget=20) is DeadlineOutcome.CANCELLED
    assert slept == [7.5]
    assert env["store"].get(JOB_ID)["error"]["code"] == "deadline_exceeded"


def test_deadline_message_at_the_deadline_cancels_the_job_with_deadline_exceeded(env: dict[str, Any]) -> None:
    _job(env, JobStatus.PROCESSING, request_id="req_1", deadline_seconds=3, **{DEADLINE_AT: 10_000})
    watch = DeadlineWatch(
        env["store"],
        Canceller(env["store"], CopyQueue(env["copy"], env["sqs"])),
        DeadlineQueue(env["deadline"], env["sqs"]),
        clock=lambda: 10_000.2,
    )

    assert watch.on_message(JOB_ID) is DeadlineOutcome.CANCELLED
    assert watch.on_message(JOB_ID) is DeadlineOutcome.ENDED  # a duplicate message

    job = env["store"].get(JOB_ID)
    assert job["status"] == "CANCELLED"
    assert job["error"]["code"] == "deadline_exceeded" and "(3)" in job["error"]["message"]
    assert len(_messages(env, "copy")) == 1
    assert _messages(env, "deadline") == []


def test_deadline_function_cancels_the_job_of_a_due_message(env: dict[str, Any]) -> None:
    _job(env, JobStatus.QUEUED, request_id="req_1", deadline_seconds=1, **{DEADLINE_AT: int(time.time()) - 1})
    module = load_function("DeadlineFunction")

    result = module.handler(
        sqs_event([{"MessageId": "m1", "ReceiptHandle": "r1", "Body": json.dumps({"job_id": JOB_ID})}]),
        FakeLambdaContext(),
    )

    assert result == {"batchItemFailures": []}
    assert env["store"].get(JOB_ID)["error"]["code"] == "deadline_exceeded"


def test_deadline_of_an_ended_job_changes_nothing(env: dict[str, Any]) -> None:
    _job(env, JobStatus.DELIVERED, request_id="req_1", **{DEADLINE_AT: 10_000})
    watch = DeadlineWatch(
        env["store"],
        Canceller(env["store"], CopyQueue(env["copy"], env["sqs"])),
        DeadlineQueue(env["deadline"], env["sqs"]),
        clock=lambda: 20_000,
    )

    assert watch.on_message(JOB_ID) is DeadlineOutcome.ENDED
    assert env["store"].get(JOB_ID)["status"] == "DELIVERED"
    assert _messages(env, "copy") == []


def test_a_deadline_without_a_deadline_queue_is_refused_before_anything_is_written(env: dict[str, Any]) -> None:
    from pixverse_jobs.errors import ConfigurationError
    from pixverse_jobs.jobs import JobService, parse_submit_request
    from pixverse_jobs.queue import SubmitQueue

    service = JobService(env["store"], SubmitQueue(env["submit"], env["sqs"]))  # no deadline queue
    request = parse_submit_request(
        {"model": "pixverse-v6-text-to-video", "input": {"prompt": "a cat"}, "deadline_seconds": 5}
    )

    with pytest.raises(ConfigurationError, match="DEADLINE_QUEUE_URL"):
        service.submit(request, owner=OWNER, webhook_base_url="https://example.com")

    assert env["ddb"].scan(TableName=env["table"])["Count"] == 0
    assert _messages(env, "submit") == []

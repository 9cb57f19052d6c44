"""WebhookFunction's handler with events/ against moto: what a callback writes, sends and costs.

Every AWS call the function makes goes through its own module-level clients (``dynamodb``,
``sqs``, ``secretsmanager``, ``sns``); ``_CallLog`` hooks botocore's ``before-call`` event on
them, so the counts below are the real API calls per callback."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import boto3
import pytest
from lambda_support import create_jobs_table, load_event, load_function
from moto import mock_aws
from pixverse_jobs import config
from pixverse_jobs.callbacks import ENQUEUE_FAILED_FLAG
from pixverse_jobs.events import JOB_PROGRESS, progress_event_id
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.signing import sign
from pixverse_jobs.store import JobStore

SECRET = "webhook-signing-secret-0123456789abcdef-DO-NOT-LOG"
JOB_ID = "job_0123456789abcdef0123456789abcdef"
OTHER_JOB_ID = "job_fedcba9876543210fedcba9876543210"
REQUEST_ID = "pixverse-v6-text-to-video_019d5a3e-7c11-7b2a-9e0f-3c4d5e6f7a8b"
MEDIA_URL = f"https://pub-582b7213209642b9b995c96c95a30381.r2.dev/v1/{REQUEST_ID}/output.mp4"


@dataclass
class Aws:
    ddb: Any
    sqs: Any
    secrets: Any
    sns: Any
    table: str
    queue_url: str
    secret_arn: str
    topic_arn: str
    store: JobStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = JobStore(self.table, self.ddb)

    def queued(self) -> list[dict[str, Any]]:
        """Copy requests on the queue (received and deleted)."""
        bodies: list[dict[str, Any]] = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return bodies
            for m in msgs:
                bodies.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        secrets = boto3.client("secretsmanager")
        sns = boto3.client("sns")
        table = create_jobs_table(ddb)
        queue_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
        secret_arn = secrets.create_secret(Name="signing", SecretString=SECRET)["ARN"]
        topic_arn = sns.create_topic(Name="events")["TopicArn"]
        bus = boto3.client("events").create_event_bus(Name="events")["EventBusArn"].rsplit("/", 1)[1]
        for name, value in {
            "EVENT_BUS_NAME": bus,
            "JOBS_TABLE": table,
            "COPY_QUEUE_URL": queue_url,
            "WEBHOOK_SECRET_ARN": secret_arn,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("PROGRESS_EVENTS", raising=False)
        monkeypatch.delenv("EVENTS_TOPIC_ARN", raising=False)
        yield Aws(ddb, sqs, secrets, sns, table, queue_url, secret_arn, topic_arn)
    config.progress_settings.cache_clear()


def _load_webhook() -> ModuleType:
    # lambda_support.load_function re-reads the other settings; progress settings are new.
    config.progress_settings.cache_clear()
    module: ModuleType = load_function("WebhookFunction")
    return module


@pytest.fixture
def webhook(aws: Aws) -> ModuleType:
    return _load_webhook()


def _seed(
    aws: Aws, job_id: str = JOB_ID, status: str = "QUEUED", request_id: str | None = REQUEST_ID, **extra: Any
) -> None:
    job: dict[str, Any] = {
        **extra,
        "job_id": job_id,
        "owner": "arn:aws:iam::123456789012:user/video-backend",
        "model": "pixverse-v6-text-to-video",
        "input": {"prompt": "A lighthouse at dusk"},
        "metadata": {"order": "A-1001"},
        "webhook_mode": "sync",
        "status": status,
        "created_at": "2026-11-25T12:00:00.000Z",
        "updated_at": "2026-11-25T12:00:00.000Z",
    }
    if request_id:
        job["request_id"] = request_id
    aws.store.create(job)


def _body(status: str, request_id: str = REQUEST_ID) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_event("webhook_callback")["body"])
    body.update(request_id=request_id, status=status)
    if status != "COMPLETED":
        body["output"] = None
        body["completed_at"] = None
    if status in ("FAILED", "ERROR"):
        body["error"] = "Generation failed: content policy"
    return body


def _event(
    body: dict[str, Any] | str | bytes,
    *,
    job_id: str = JOB_ID,
    sig: str | None = "valid",
    base64_body: bool = False,
) -> dict[str, Any]:
    event: dict[str, Any] = load_event("webhook_callback")
    signature = sign(job_id, SECRET) if sig == "valid" else sig
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhooks/pixazo/{job_id}"
    event["pathParameters"] = {"job_id": job_id}
    if signature is None:
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = ""
    else:
        event["queryStringParameters"] = {"sig": signature}
        event["rawQueryString"] = f"sig={signature}"
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    if base64_body:
        event["body"] = base64.b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = raw.decode() if isinstance(raw, bytes) else raw
    return event


def _call(module: ModuleType, event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = module.handler(event, context)
    return response["statusCode"], json.loads(response["body"])


class _CallLog:
    """Names of the AWS API calls the function's clients make (``dynamodb.UpdateItem`` ...)."""

    def __init__(self, module: ModuleType) -> None:
        self.calls: list[str] = []
        for client in (module.dynamodb, module.sqs, module.secretsmanager, module.sns):
            if client is not None:
                client.meta.events.register("before-call.*.*", self._record)

    def _record(self, event_name: str, **_: Any) -> None:
        self.calls.append(event_name.removeprefix("before-call."))

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


# ------------------------------------------------------------------ happy path and call counts
def test_completed_transition_costs_one_write_and_one_send_once_warm(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    # Given a warm container (one callback for another job has filled the secret cache)
    _seed(aws)
    # (its reconciler look is not near: a progress callback does not push it, see _keep_alive)
    _seed(aws, OTHER_JOB_ID, request_id="warm-up-request", check_at=int(time.time()) + 3600)
    log = _CallLog(webhook)
    assert _call(webhook, _event(_body("PROCESSING", "warm-up-request"), job_id=OTHER_JOB_ID), lambda_context)[0] == 200
    assert log.take() == ["secrets-manager.GetSecretValue", "dynamodb.UpdateItem"]

    # When the job's COMPLETED callback arrives
    status, body = _call(webhook, _event(_body("COMPLETED")), lambda_context)

    # Then it costs exactly one conditional write and one copy request
    assert (status, body) == (200, {"job_id": JOB_ID, "status": "COMPLETED", "applied": True})
    assert log.take() == ["dynamodb.UpdateItem", "sqs.SendMessage"]
    assert aws.queued() == [{"job_id": JOB_ID}]
    job = aws.store.get(JOB_ID)
    assert job is not None
    assert (job["status"], job["media_urls"], job["media_type"]) == ("COMPLETED", [MEDIA_URL], "video/mp4")


def test_duplicate_completed_costs_one_conditional_write_and_nothing_else(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 200
    aws.queued()
    before = aws.store.get(JOB_ID)
    log = _CallLog(webhook)

    status, body = _call(webhook, _event(_body("COMPLETED")), lambda_context)

    assert (status, body) == (200, {"job_id": JOB_ID, "status": "COMPLETED", "applied": False})
    assert log.take() == ["dynamodb.UpdateItem"]
    assert aws.queued() == []
    assert aws.store.get(JOB_ID) == before


def test_forged_signature_costs_one_previous_version_lookup_then_nothing(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    _call(webhook, _event(_body("PROCESSING")), lambda_context)  # warm: current secret cached
    log = _CallLog(webhook)
    forged = sign(JOB_ID, "another-secret")

    first = _call(webhook, _event(_body("COMPLETED"), sig=forged), lambda_context)
    first_calls = log.take()
    second = _call(webhook, _event(_body("COMPLETED"), sig=forged), lambda_context)

    assert first[0] == second[0] == 401
    # The previous version is looked up once (the secret was never rotated: not found, cached) ...
    assert first_calls == ["secrets-manager.GetSecretValue"]
    # ... and a forged request after that costs no AWS call at all.
    assert log.take() == []


# ------------------------------------------------------------------ refused callbacks change nothing
@pytest.mark.parametrize(
    ("sig", "body", "status_code"),
    [
        (None, _body("COMPLETED"), 401),
        ("0" * 64, _body("COMPLETED"), 401),
        (sign(JOB_ID, "another-secret"), _body("COMPLETED"), 401),
        (sign(OTHER_JOB_ID, SECRET), _body("COMPLETED"), 401),  # another job's valid sig
        ("ZZ" * 32, _body("COMPLETED"), 401),
        ("ü" * 64, _body("COMPLETED"), 401),  # non-ASCII: refused, not a 500
        ("valid", "{not json", 400),
        ("valid", "[]", 400),
        ("valid", {"status": "COMPLETED"}, 400),
        ("valid", {**_body("COMPLETED"), "status": "DONE"}, 400),
        ("valid", {**_body("COMPLETED"), "status": None}, 400),
        ("valid", {**_body("COMPLETED"), "output": None}, 400),
        ("valid", {**_body("COMPLETED"), "output": {"media_url": [3]}}, 400),
        ("valid", _body("COMPLETED", request_id="pixverse-v6-text-to-video_another-request"), 409),
        ("valid", "x" * (64 * 1024 + 1), 413),
    ],
    ids=[
        "missing-sig",
        "zero-sig",
        "forged-sig",
        "other-jobs-sig",
        "non-hex-sig",
        "non-ascii-sig",
        "malformed-json",
        "not-an-object",
        "missing-request-id",
        "unknown-status",
        "null-status",
        "completed-without-media",
        "bad-media-url",
        "another-jobs-payload",
        "oversize",
    ],
)
def test_refused_callback_is_4xx_and_changes_nothing(
    aws: Aws,
    webhook: ModuleType,
    lambda_context: Any,
    sig: str | None,
    body: dict[str, Any] | str,
    status_code: int,
) -> None:
    _seed(aws, status="PROCESSING")
    before = aws.store.get(JOB_ID)

    status, answer = _call(webhook, _event(body, sig=sig), lambda_context)

    assert status == status_code
    assert answer["error"]["code"] == ("payload_too_large" if status_code == 413 else "callback_rejected")
    assert aws.store.get(JOB_ID) == before
    assert aws.queued() == []


def test_bad_signature_is_refused_before_the_body_is_read(
    aws: Aws, webhook: ModuleType, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(aws)

    def must_not_parse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the body was read before the signature was checked")

    monkeypatch.setattr("pixverse_jobs.callbacks.callback_body", must_not_parse)
    monkeypatch.setattr("pixverse_jobs.callbacks.parse_callback", must_not_parse)
    status, _ = _call(webhook, _event("x" * (64 * 1024 + 1), sig="0" * 64), lambda_context)
    assert status == 401


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "QUERY"])
@pytest.mark.parametrize("sig", ["valid", None, "0" * 64], ids=["signed", "unsigned", "forged"])
def test_other_method_is_405_allow_post_before_the_signature_and_costs_no_call(
    aws: Aws, webhook: ModuleType, lambda_context: Any, method: str, sig: str | None
) -> None:
    # Given a job and a callback body, sent with another method through template.yaml's ANY route
    _seed(aws)
    before = aws.store.get(JOB_ID)
    log = _CallLog(webhook)
    event = _event(_body("COMPLETED"), sig=sig)
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = "ANY /webhooks/pixazo/{job_id}"

    # When it arrives
    response = webhook.handler(event, lambda_context)

    # Then it is a 405 naming POST, decided before the signature (no secret read), with no AWS call
    assert (response["statusCode"], response["headers"]["Allow"]) == (405, "POST")
    assert json.loads(response["body"])["error"]["code"] == "method_not_allowed"
    assert log.take() == []
    assert aws.store.get(JOB_ID) == before
    assert aws.queued() == []


def test_another_jobs_payload_on_a_terminal_job_is_still_409(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    # A valid URL replayed with another request's payload after the job ended: refused, not "duplicate".
    _seed(aws, status="DELIVERED")
    before = aws.store.get(JOB_ID)
    status, _ = _call(webhook, _event(_body("COMPLETED", request_id="another-request")), lambda_context)
    assert status == 409
    assert aws.store.get(JOB_ID) == before


def test_callback_for_unknown_job_is_404_and_creates_nothing(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    status, _ = _call(webhook, _event(_body("COMPLETED")), lambda_context)
    assert status == 404
    assert aws.store.get(JOB_ID) is None


def test_event_without_a_job_id_is_404_and_costs_no_call(aws: Aws, webhook: ModuleType, lambda_context: Any) -> None:
    # API Gateway only routes POST /webhooks/pixazo/{job_id} here; anything else is answered, not crashed on.
    log = _CallLog(webhook)
    event = _event(_body("COMPLETED"))
    del event["pathParameters"]

    status, body = _call(webhook, event, lambda_context)

    assert (status, body["error"]["code"]) == (404, "not_found")
    assert log.take() == []


def test_unexpected_error_is_a_500_in_the_api_error_format(
    aws: Aws,
    webhook: ModuleType,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(metrics, "namespace", "PixverseJobsTests")
    _seed(aws)
    response = webhook.handler(_event(_body("COMPLETED"), sig="f" * 64), lambda_context)  # warm-up: a wrong sig
    assert response["statusCode"] == 401

    def broken(**_: Any) -> None:
        raise RuntimeError("DynamoDB is on fire")

    webhook.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", broken)
    response = webhook.handler(_event(_body("COMPLETED")), lambda_context)

    assert response["statusCode"] == 500
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == {"error": {"code": "internal", "message": "internal error", "details": []}}
    # and the 500 is counted, as Lambda's Errors metric does not count an answered error (issue 13, 2.8)
    handled = [d for d in _emf_documents(capsys.readouterr().out) if "HandledErrors" in d]
    assert len(handled) == 1 and handled[0]["function"] == "webhook"
    assert sorted(handled[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == ["function", "service"]


def _emf_documents(out: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def test_base64_encoded_body_is_decoded(aws: Aws, webhook: ModuleType, lambda_context: Any) -> None:
    _seed(aws)
    status, body = _call(webhook, _event(_body("COMPLETED"), base64_body=True), lambda_context)
    assert (status, body["status"]) == (200, "COMPLETED")


def test_invalid_base64_body_is_400(aws: Aws, webhook: ModuleType, lambda_context: Any) -> None:
    _seed(aws)
    event = _event(_body("COMPLETED"))
    event["isBase64Encoded"] = True
    event["body"] = "!!not base64!!"
    assert _call(webhook, event, lambda_context)[0] == 400
    assert aws.store.get(JOB_ID)["status"] == "QUEUED"  # type: ignore[index]


# ------------------------------------------------------------------ ordering, sync mode, races
def test_sync_mode_sequence_with_late_processing_ends_completed_with_one_enqueue(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws, status="SUBMITTING", request_id=None)
    answers = []
    updated = []
    for status in ("QUEUED", "PROCESSING", "PROCESSING", "COMPLETED", "PROCESSING", "QUEUED", "COMPLETED"):
        answers.append(_call(webhook, _event(_body(status)), lambda_context)[1])
        updated.append(aws.store.get(JOB_ID)["updated_at"])  # type: ignore[index]

    assert [(a["status"], a["applied"]) for a in answers] == [
        ("QUEUED", True),
        ("PROCESSING", True),
        ("PROCESSING", True),  # a sync-mode repeat refreshes updated_at
        ("COMPLETED", True),
        ("COMPLETED", False),  # late PROCESSING: never backwards
        ("COMPLETED", False),
        ("COMPLETED", False),  # duplicate terminal callback: a no-op answering 200
    ]
    assert updated[2] >= updated[1]
    assert updated[3] == updated[4] == updated[5] == updated[6]  # refused writes touch nothing
    assert aws.queued() == [{"job_id": JOB_ID}]
    job = aws.store.get(JOB_ID)
    assert job is not None
    assert (job["status"], job["request_id"]) == ("COMPLETED", REQUEST_ID)


def test_progress_event_file_moves_a_queued_job_to_processing(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    event = load_event("webhook_progress")
    event["queryStringParameters"] = {"sig": sign(JOB_ID, SECRET)}
    status, body = _call(webhook, event, lambda_context)
    assert (status, body) == (200, {"job_id": JOB_ID, "status": "PROCESSING", "applied": True})


def test_failed_callback_records_error_and_enqueues_the_failed_delivery(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    status, body = _call(webhook, _event(_body("FAILED")), lambda_context)
    assert (status, body["status"]) == (200, "FAILED")
    job = aws.store.get(JOB_ID)
    assert job is not None
    assert job["error"] == {"code": "generation_failed", "message": "Generation failed: content policy"}
    assert aws.queued() == [{"job_id": JOB_ID}]


def test_callback_that_outruns_the_submit_is_applied_and_the_submit_keeps_it(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    """The race end to end in one process: the gateway calls back *before* its 202 reaches the
    submitter, so the job is still SUBMITTING without a request_id."""
    import httpx
    from pixverse_jobs.admission import Outcome, Submitter
    from pixverse_jobs.config import SubmitterSettings
    from pixverse_jobs.gateway import GatewayClient, RetryPolicy
    from pixverse_jobs.jobs import JobService, parse_submit_request
    from pixverse_jobs.queue import CopyQueue, SubmitMessage, SubmitQueue

    seen: dict[str, Any] = {}

    def gateway(request: httpx.Request) -> httpx.Response:
        url = httpx.URL(request.headers["X-Webhook-URL"])
        job_id = url.path.rsplit("/", 1)[-1]
        record = aws.store.get(job_id)
        assert record is not None
        seen["status_before"], seen["had_request_id"] = record["status"], "request_id" in record
        callback = _event(_body("COMPLETED"), job_id=job_id, sig=url.params["sig"])
        seen["callback"] = _call(webhook, callback, lambda_context)
        return httpx.Response(202, json={"request_id": REQUEST_ID, "status": "QUEUED", "polling_url": "x"})

    submit_queue = SubmitQueue(aws.sqs.create_queue(QueueName="submit")["QueueUrl"], aws.sqs)
    service = JobService(aws.store, submit_queue)
    submitter = Submitter(
        aws.store,
        GatewayClient(
            "https://gateway.pixazo.ai",
            lambda: "key",
            httpx.Client(transport=httpx.MockTransport(gateway)),
            retry=RetryPolicy(attempts=1),
        ),
        lambda: SECRET,
        submit_queue,
        CopyQueue(aws.queue_url, aws.sqs),
        SubmitterSettings(submit_queue_url="unused", max_age_seconds=86400),
    )
    request = parse_submit_request({"model": "pixverse-v6-text-to-video", "input": {"prompt": "race"}})
    job = service.submit(request, owner="tester", webhook_base_url="https://api.example.com")

    outcome = submitter.handle(SubmitMessage(job["job_id"], "tester", 0))

    assert outcome is Outcome.SUBMITTED
    assert (seen["status_before"], seen["had_request_id"]) == ("SUBMITTING", False)
    assert seen["callback"] == (200, {"job_id": job["job_id"], "status": "COMPLETED", "applied": True})
    stored = aws.store.get(job["job_id"])
    assert stored is not None
    assert (stored["status"], stored["request_id"]) == ("COMPLETED", REQUEST_ID)
    assert aws.queued() == [{"job_id": job["job_id"]}]


def test_failed_enqueue_answers_500_and_the_gateways_retry_enqueues_once(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    failures = {"left": 1}

    def sqs_down(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("SQS unavailable")

    webhook.sqs.meta.events.register("before-call.sqs.SendMessage", sqs_down)

    first = _call(webhook, _event(_body("COMPLETED")), lambda_context)
    assert first[0] == 500
    assert aws.store.get(JOB_ID)[ENQUEUE_FAILED_FLAG] is True  # type: ignore[index]
    assert aws.queued() == []

    retries = [_call(webhook, _event(_body("COMPLETED")), lambda_context) for _ in range(3)]

    assert [r[0] for r in retries] == [200, 200, 200]
    assert aws.queued() == [{"job_id": JOB_ID}]
    assert ENQUEUE_FAILED_FLAG not in aws.store.get(JOB_ID)  # type: ignore[operator]


# ------------------------------------------------------------------ progress events
def _subscribe(aws: Aws) -> str:
    inbox = aws.sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.sns.subscribe(TopicArn=aws.topic_arn, Protocol="sqs", Endpoint=arn)
    return str(inbox)


def _events(aws: Aws, inbox: str) -> list[dict[str, Any]]:
    msgs = aws.sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) for m in msgs]


def test_progress_events_are_off_by_default_and_create_no_sns_client(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    inbox = _subscribe(aws)
    _seed(aws)
    assert webhook.sns is None
    _call(webhook, _event(_body("PROCESSING")), lambda_context)
    assert _events(aws, inbox) == []


def test_progress_event_published_once_per_status_change_not_on_duplicates(
    aws: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROGRESS_EVENTS", "true")
    monkeypatch.setenv("EVENTS_TOPIC_ARN", aws.topic_arn)
    monkeypatch.setenv("EVENT_SOURCE", "urn:pixverse-jobs:test")
    webhook = _load_webhook()
    inbox = _subscribe(aws)
    _seed(aws, status="SUBMITTING", request_id=None)
    log = _CallLog(webhook)

    for status in ("QUEUED", "QUEUED", "PROCESSING", "PROCESSING", "QUEUED"):
        assert _call(webhook, _event(_body(status)), lambda_context)[0] == 200
    calls = log.take()

    events = _events(aws, inbox)
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        (JOB_PROGRESS, "QUEUED"),
        (JOB_PROGRESS, "PROCESSING"),
    ]
    assert [e["id"] for e in events] == [progress_event_id(JOB_ID, "QUEUED"), progress_event_id(JOB_ID, "PROCESSING")]
    assert {e["source"] for e in events} == {"urn:pixverse-jobs:test"}
    assert events[1]["subject"] == JOB_ID
    assert events[1]["data"]["metadata"] == {"order": "A-1001"}
    assert "owner" not in events[1]["data"]
    assert calls.count("sns.Publish") == 2


def test_progress_event_publish_failure_still_answers_200(
    aws: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROGRESS_EVENTS", "true")
    monkeypatch.setenv("EVENTS_TOPIC_ARN", aws.topic_arn)
    webhook = _load_webhook()
    _seed(aws)

    def sns_down(**_: Any) -> None:
        raise RuntimeError("SNS unavailable")

    webhook.sns.meta.events.register("before-call.sns.Publish", sns_down)
    status, body = _call(webhook, _event(_body("PROCESSING")), lambda_context)
    assert (status, body["status"], body["applied"]) == (200, "PROCESSING", True)


def test_progress_events_disabled_by_flag_publish_nothing_and_completed_publishes_no_progress(
    aws: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROGRESS_EVENTS", "true")
    monkeypatch.setenv("EVENTS_TOPIC_ARN", aws.topic_arn)
    webhook = _load_webhook()
    inbox = _subscribe(aws)
    _seed(aws, status="PROCESSING")
    _call(webhook, _event(_body("COMPLETED")), lambda_context)
    # The final events are the copier's (delivered / failed), never a progress event.
    assert _events(aws, inbox) == []


# ------------------------------------------------------------------ logs and metrics
@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = cast(logging.StreamHandler, logger.registered_handler)  # type: ignore[type-arg]
    previous_stream = handler.setStream(buffer)
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    yield buffer
    logger.setLevel(previous_level)
    if previous_stream is not None:
        handler.setStream(previous_stream)


def test_logs_and_error_bodies_never_contain_the_sig_or_the_secret(
    aws: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, captured_logs: io.StringIO
) -> None:
    # Even with event logging switched on for every other function, the webhook's event (its
    # query string holds the sig) is never logged.
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    webhook = _load_webhook()
    _seed(aws)
    valid = sign(JOB_ID, SECRET)
    forged = sign(JOB_ID, "forged-" + SECRET)

    answers = [
        webhook.handler(_event(_body("COMPLETED"), sig=forged), lambda_context),
        webhook.handler(_event(_body("COMPLETED"), sig=valid), lambda_context),
        webhook.handler(_event(_body("COMPLETED"), sig=valid), lambda_context),
        webhook.handler(_event("{broken", sig=valid), lambda_context),
    ]

    logs = captured_logs.getvalue()
    assert [a["statusCode"] for a in answers] == [401, 200, 200, 400]
    records = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert any(r.get("job_id") == JOB_ID and r.get("request_id") == REQUEST_ID for r in records)
    assert any("signature" in str(r.get("message")) for r in records)  # the forged one was logged
    for text in [logs, *(json.dumps(a) for a in answers)]:
        assert valid not in text
        assert forged not in text
        assert SECRET not in text


def test_warm_container_does_not_carry_the_previous_callbacks_keys(
    aws: Aws, webhook: ModuleType, lambda_context: Any, captured_logs: io.StringIO
) -> None:
    _seed(aws)
    _call(webhook, _event(_body("PROCESSING")), lambda_context)
    captured_logs.truncate(0)
    captured_logs.seek(0)
    _call(webhook, _event(_body("PROCESSING"), job_id=OTHER_JOB_ID, sig="0" * 64), lambda_context)
    records = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.strip()]
    assert records
    assert all(r.get("request_id") != REQUEST_ID for r in records)
    assert all(r.get("job_id") == OTHER_JOB_ID for r in records)


def test_metrics_count_callbacks_by_status_and_duplicates(
    aws: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(metrics, "namespace", "PixverseJobsTests")
    monkeypatch.setattr(metrics, "service", "pixverse-jobs-tests")
    webhook = _load_webhook()
    _seed(aws)
    metrics.clear_metrics()  # with metrics disabled, earlier tests' counts were never flushed
    capsys.readouterr()

    _call(webhook, _event(_body("COMPLETED")), lambda_context)
    _call(webhook, _event(_body("COMPLETED")), lambda_context)
    _call(webhook, _event(_body("COMPLETED"), sig="0" * 64), lambda_context)

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    for blob in blobs:  # EMF writes a value either as a number or as a list of them
        blob.update({k: sum(v) for k, v in blob.items() if isinstance(v, list)})
    by_status = [b for b in blobs if "Callbacks" in b]
    assert [(b["status"], b["Callbacks"]) for b in by_status] == [("COMPLETED", 1.0), ("COMPLETED", 1.0)]
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "status"]] for b in by_status)
    invocation = [b for b in blobs if "Callbacks" not in b]
    # The status dimension stays on its own metric; the invocation's counters keep [service].
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for b in invocation)
    # (the first callback's only metric was Callbacks{status}: its invocation flushed nothing else)
    assert [(b.get("CallbacksDuplicate"), b.get("CallbacksRejected")) for b in invocation] == [(1.0, None), (None, 1.0)]

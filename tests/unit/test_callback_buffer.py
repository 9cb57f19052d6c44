"""The callback buffer (issue 14, "Callbacks survive a throttled table"): WebhookFunction and
CallbackBufferFunction against moto.

A DynamoDB fault is raised from botocore's ``before-call`` event on the function's own client,
that is after the SDK's retries would have run: what the handler sees is what it would see in
Lambda once the SDK gave up."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from lambda_support import create_jobs_table, load_event, load_function
from moto import mock_aws
from pixverse_jobs import config
from pixverse_jobs.callback_buffer import decode_callback, encode_callback, is_retryable, retry_delay
from pixverse_jobs.callbacks import parse_callback
from pixverse_jobs.signing import sign
from pixverse_jobs.store import JobStore

SECRET = "webhook-signing-secret-0123456789abcdef-DO-NOT-LOG"
JOB_ID = "job_0123456789abcdef0123456789abcdef"
REQUEST_ID = "pixverse-v6-text-to-video_019d5a3e-7c11-7b2a-9e0f-3c4d5e6f7a8b"
ACCOUNT = "123456789012"


@dataclass
class Aws:
    ddb: Any
    sqs: Any
    table: str
    copy_url: str
    buffer_url: str
    store: JobStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = JobStore(self.table, self.ddb)

    def drain(self, url: str) -> list[dict[str, Any]]:
        """Every message on the queue, received with its attributes and deleted."""
        messages: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=0
            ).get("Messages", [])
            if not got:
                return messages
            for m in got:
                messages.append(m)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def copy_requests(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in self.drain(self.copy_url)]

    def buffered(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in self.drain(self.buffer_url)]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        secrets = boto3.client("secretsmanager")
        table = create_jobs_table(ddb)
        copy_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
        buffer_url = sqs.create_queue(QueueName="callback-buffer")["QueueUrl"]
        secret_arn = secrets.create_secret(Name="signing", SecretString=SECRET)["ARN"]
        for name, value in {
            "JOBS_TABLE": table,
            "COPY_QUEUE_URL": copy_url,
            "CALLBACK_BUFFER_QUEUE_URL": buffer_url,
            "WEBHOOK_SECRET_ARN": secret_arn,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("PROGRESS_EVENTS", raising=False)
        yield Aws(ddb, sqs, table, copy_url, buffer_url)
    config.callback_buffer_settings.cache_clear()


@pytest.fixture
def webhook(aws: Aws) -> ModuleType:
    module: ModuleType = load_function("WebhookFunction")
    return module


@pytest.fixture
def consumer(aws: Aws) -> ModuleType:
    module: ModuleType = load_function("CallbackBufferFunction")
    return module


def _seed(aws: Aws, status: str = "QUEUED") -> None:
    aws.store.create(
        {
            "job_id": JOB_ID,
            "owner": "arn:aws:iam::123456789012:user/video-backend",
            "model": "pixverse-v6-text-to-video",
            "input": {"prompt": "A lighthouse at dusk"},
            "metadata": {},
            "webhook_mode": "sync",
            "status": status,
            "request_id": REQUEST_ID,
            "created_at": "2026-11-25T12:00:00.000Z",
            "updated_at": "2026-11-25T12:00:00.000Z",
        }
    )


def _body(status: str, request_id: str = REQUEST_ID) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_event("webhook_callback")["body"])
    body.update(request_id=request_id, status=status)
    if status != "COMPLETED":
        body["output"] = None
    return body


def _event(body: dict[str, Any] | str, *, sig: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = load_event("webhook_callback")
    signature = sig if sig is not None else sign(JOB_ID, SECRET)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhooks/pixazo/{JOB_ID}"
    event["pathParameters"] = {"job_id": JOB_ID}
    event["queryStringParameters"] = {"sig": signature}
    event["rawQueryString"] = f"sig={signature}"
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def _call(webhook: ModuleType, event: dict[str, Any], context: Any) -> tuple[int, dict[str, Any]]:
    response = webhook.handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def _client_error(code: str, operation: str = "UpdateItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (injected)"}}, operation)


class Faults:
    """Fails a client's calls of one operation (``dynamodb.UpdateItem``) while ``on``, counting them."""

    def __init__(self, client: Any, operation: str, error: Callable[[], Exception]) -> None:
        self.on = True
        self.calls = 0
        self._error = error
        client.meta.events.register(f"before-call.{operation}", self._hook)

    def _hook(self, **_: Any) -> None:
        self.calls += 1
        if self.on:
            raise self._error()


def _throttle(webhook_or_consumer: ModuleType, code: str = "ThrottlingException") -> Faults:
    return Faults(webhook_or_consumer.dynamodb, "dynamodb.UpdateItem", lambda: _client_error(code))


def _sqs_event(aws: Aws, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The Lambda SQS event for messages received from the buffer queue."""
    name = aws.buffer_url.rsplit("/", 1)[1]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def _receive_buffered(aws: Aws) -> list[dict[str, Any]]:
    """Buffered messages, received (not deleted: the consumer's answer decides) with attributes."""
    got: list[dict[str, Any]] = aws.sqs.receive_message(
        QueueUrl=aws.buffer_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    return got


def _consume(consumer: ModuleType, aws: Aws, context: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the consumer over what the buffer holds, deleting what it did not report failed (as
    the Lambda poller does); returns the messages and the function's answer."""
    messages = _receive_buffered(aws)
    answer: dict[str, Any] = consumer.handler(_sqs_event(aws, messages), context)
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            aws.sqs.delete_message(QueueUrl=aws.buffer_url, ReceiptHandle=m["ReceiptHandle"])
    return messages, answer


# ------------------------------------------------------------------ the webhook side
@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    ],
)
def test_throttled_write_is_answered_200_and_the_callback_waits_in_the_buffer(
    aws: Aws, webhook: ModuleType, lambda_context: Any, code: str
) -> None:
    _seed(aws)
    _throttle(webhook, code)

    status, body = _call(webhook, _event(_body("COMPLETED")), lambda_context)

    assert (status, body) == (200, {"job_id": JOB_ID, "status": "COMPLETED", "applied": False, "buffered": True})
    (message,) = aws.buffered()
    assert message["job_id"] == JOB_ID
    assert message["callback"]["request_id"] == REQUEST_ID
    assert message["callback"]["status"] == "COMPLETED"
    assert message["callback"]["media_urls"] == _body("COMPLETED")["output"]["media_url"]
    # nothing applied yet: the job waits, no copy is requested
    assert aws.store.get(JOB_ID)["status"] == "QUEUED"  # type: ignore[index]
    assert aws.copy_requests() == []


def test_connection_lost_after_the_sdks_retries_is_buffered(aws: Aws, webhook: ModuleType, lambda_context: Any) -> None:
    _seed(aws)
    Faults(
        webhook.dynamodb,
        "dynamodb.UpdateItem",
        lambda: EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    )

    status, body = _call(webhook, _event(_body("PROCESSING")), lambda_context)

    assert (status, body.get("buffered")) == (200, True)
    assert [m["callback"]["status"] for m in aws.buffered()] == ["PROCESSING"]


@pytest.mark.parametrize("code", ["AccessDeniedException", "ValidationException", "ResourceNotFoundException"])
def test_non_retryable_error_still_answers_500_and_buffers_nothing(
    aws: Aws, webhook: ModuleType, lambda_context: Any, code: str
) -> None:
    _seed(aws)
    _throttle(webhook, code)

    status, body = _call(webhook, _event(_body("COMPLETED")), lambda_context)

    assert (status, body["error"]["code"]) == (500, "internal")
    assert aws.buffered() == []


def test_buffer_send_failure_answers_500_so_the_gateway_retries(
    aws: Aws, webhook: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    _throttle(webhook)
    Faults(webhook.sqs, "sqs.SendMessage", lambda: _client_error("ServiceUnavailable", "SendMessage"))

    status, _ = _call(webhook, _event(_body("COMPLETED")), lambda_context)

    assert status == 500
    assert aws.buffered() == []


def test_forged_callback_is_refused_401_and_never_buffered(aws: Aws, webhook: ModuleType, lambda_context: Any) -> None:
    _seed(aws)
    writes = _throttle(webhook)

    status, body = _call(webhook, _event(_body("COMPLETED"), sig="0" * 64), lambda_context)

    assert (status, body["error"]["code"]) == (401, "callback_rejected")
    assert writes.calls == 0
    assert aws.buffered() == []


@pytest.mark.parametrize(
    "body",
    ["{not json", json.dumps({"request_id": REQUEST_ID, "status": "COMPLETED", "output": None})],
)
def test_malformed_callback_is_400_and_never_buffered(
    aws: Aws, webhook: ModuleType, lambda_context: Any, body: str
) -> None:
    _seed(aws)
    _throttle(webhook)

    status, _ = _call(webhook, _event(body), lambda_context)

    assert status == 400
    assert aws.buffered() == []


def test_webhook_without_a_buffer_queue_answers_500_as_before(
    aws: Aws, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLBACK_BUFFER_QUEUE_URL")
    webhook = load_function("WebhookFunction")
    _seed(aws)
    _throttle(webhook)

    assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 500


# ------------------------------------------------------------------ the consumer side
def test_consumer_applies_the_buffered_callback_and_requests_the_copy_once(
    aws: Aws, webhook: ModuleType, consumer: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    _throttle(webhook)
    assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 200

    messages, answer = _consume(consumer, aws, lambda_context)

    assert len(messages) == 1 and answer == {"batchItemFailures": []}
    job = aws.store.get(JOB_ID)
    assert job is not None and job["status"] == "COMPLETED"
    assert job["media_urls"] == _body("COMPLETED")["output"]["media_url"]
    assert aws.copy_requests() == [{"job_id": JOB_ID}]
    assert aws.buffered() == []


def test_duplicate_buffered_callbacks_change_nothing(
    aws: Aws, webhook: ModuleType, consumer: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    faults = _throttle(webhook)
    for _ in range(3):  # the gateway's network retries, all during the throttle
        assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 200
    faults.on = False
    _consume(consumer, aws, lambda_context)
    after_first = aws.store.get(JOB_ID)
    # and once more, as after a DLQ redrive or an at-least-once redelivery
    faults.on = True
    assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 200
    _consume(consumer, aws, lambda_context)

    assert aws.copy_requests() == [{"job_id": JOB_ID}]
    assert aws.store.get(JOB_ID) == after_first


def test_late_buffered_progress_callback_does_not_move_a_completed_job_back(
    aws: Aws, webhook: ModuleType, consumer: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    faults = _throttle(webhook)
    assert _call(webhook, _event(_body("PROCESSING")), lambda_context)[0] == 200  # buffered
    faults.on = False
    assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 200  # applied directly
    completed = aws.store.get(JOB_ID)

    _, answer = _consume(consumer, aws, lambda_context)

    assert answer == {"batchItemFailures": []}
    assert aws.store.get(JOB_ID) == completed
    assert aws.copy_requests() == [{"job_id": JOB_ID}]


def test_consumer_postpones_a_callback_the_table_still_refuses(
    aws: Aws, webhook: ModuleType, consumer: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    _throttle(webhook)
    assert _call(webhook, _event(_body("COMPLETED")), lambda_context)[0] == 200
    _throttle(consumer, "ProvisionedThroughputExceededException")
    visibility: list[dict[str, Any]] = []
    consumer.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", lambda params, **_: visibility.append(params)
    )

    messages, answer = _consume(consumer, aws, lambda_context)

    # reported failed (it stays on the queue) and postponed by the first backoff step (5 s, jittered)
    assert answer == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    assert len(visibility) == 1 and 3 <= visibility[0]["VisibilityTimeout"] <= 5
    assert visibility[0]["ReceiptHandle"] == messages[0]["ReceiptHandle"]
    assert aws.store.get(JOB_ID)["status"] == "QUEUED"  # type: ignore[index]
    assert aws.copy_requests() == []


def test_consumer_drops_a_malformed_message_and_another_requests_callback(
    aws: Aws, consumer: ModuleType, lambda_context: Any
) -> None:
    _seed(aws)
    other = parse_callback(json.dumps(_body("COMPLETED", request_id="someone-elses-request")))
    aws.sqs.send_message(QueueUrl=aws.buffer_url, MessageBody="{not json")
    aws.sqs.send_message(QueueUrl=aws.buffer_url, MessageBody=encode_callback(JOB_ID, other))
    before = aws.store.get(JOB_ID)

    messages, answer = _consume(consumer, aws, lambda_context)

    # a retry cannot change either answer: both let go, the job untouched
    assert len(messages) == 2 and answer == {"batchItemFailures": []}
    assert aws.store.get(JOB_ID) == before
    assert aws.copy_requests() == []


def test_sample_event_is_a_buffered_callback() -> None:
    (record,) = load_event("callback_buffer")["Records"]
    job_id, callback = decode_callback(record["body"])

    assert job_id == JOB_ID
    assert str(callback.status) == "COMPLETED" and callback.media_urls


# ------------------------------------------------------------------ the pieces
def test_retryable_errors_are_throttling_server_side_and_connection_failures() -> None:
    assert is_retryable(_client_error("ProvisionedThroughputExceededException"))
    assert is_retryable(EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"))
    assert is_retryable(ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"))
    assert not is_retryable(_client_error("ConditionalCheckFailedException"))
    assert not is_retryable(_client_error("AccessDeniedException"))
    assert not is_retryable(RuntimeError("a bug"))


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ("[]", "field v"),
        ('{"v": 1}', "field job_id"),
        ('{"v": 1, "job_id": "j", "callback": {"status": "COMPLETED", "media_urls": []}}', "callback.request_id"),
        ('{"v": 1, "job_id": "j", "callback": {"request_id": "r", "status": "COPYING"}}', "callback.status"),
        ('{"v": 1, "job_id": "j", "callback": {"request_id": "r", "status": "QUEUED"}}', "callback.media_urls"),
    ],
)
def test_decode_names_the_bad_field(body: str, field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        decode_callback(body)


def test_encode_decode_round_trip() -> None:
    callback = parse_callback(json.dumps(_body("COMPLETED")))

    assert decode_callback(encode_callback(JOB_ID, callback)) == (JOB_ID, callback)


def test_retry_delay_doubles_with_jitter_and_is_capped() -> None:
    for attempt, ceiling in [(1, 5), (2, 10), (3, 20), (10, 900), (1000, 900)]:
        delays = {retry_delay(attempt, 5, 900) for _ in range(50)}
        assert all(ceiling / 2 - 1 <= d <= ceiling for d in delays), (attempt, delays)


def test_buffer_settings_name_the_bad_setting() -> None:
    from pixverse_jobs.errors import ConfigurationError

    assert config.CallbackBufferSettings.from_env({}) == config.CallbackBufferSettings("", 5, 900)
    with pytest.raises(ConfigurationError, match="CALLBACK_RETRY_MAX_SECONDS"):
        config.CallbackBufferSettings.from_env(
            {"CALLBACK_RETRY_BASE_SECONDS": "60", "CALLBACK_RETRY_MAX_SECONDS": "30"}
        )
    with pytest.raises(ConfigurationError, match="CALLBACK_RETRY_BASE_SECONDS"):
        config.CallbackBufferSettings.from_env({"CALLBACK_RETRY_BASE_SECONDS": "0"})

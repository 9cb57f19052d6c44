"""The local SQS event source: batches, partial failures, retries after the visibility timeout, redrive
to the DLQ; the schedules; and the stack wiring them.

moto server runs here at LOCAL_TIME_SCALE 0.01 (TIME_SCALE): a queue's 30 s default visibility timeout
lasts 0.3 s, 200 s last 2 s."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from pixverse_local.aws.schedules import ScheduleError, Scheduler, rate_seconds
from pixverse_local.aws.sqs_event_source import SqsPoller, failed_message_ids
from pixverse_local.aws.template import ScheduleEventSpec
from pixverse_local.stack import LocalStack, LocalStackError, MotoServer

TIME_SCALE = 0.01


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = MotoServer(time_scale=TIME_SCALE)
    yield server.start()
    server.stop()


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def queues(sqs: Any) -> tuple[str, str, str]:
    """(queue url, queue arn, dlq url) with maxReceiveCount 2."""
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName=f"q-{suffix}", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq_url


def make_poller(
    sqs: Any, queues: tuple[str, str, str], invoke: Callable[[dict[str, Any]], Any], **kw: Any
) -> SqsPoller:
    url, arn, _ = queues
    options: dict[str, Any] = {"batch_size": 10, "report_batch_item_failures": True}
    options.update(kw)
    return SqsPoller(name="test", sqs_client=sqs, queue_url=url, queue_arn=arn, invoke=invoke, **options)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def poll_until_batch(poller: SqsPoller, timeout: float = 15.0) -> Any:
    """Poll until a batch is received (a long poll misses a message that turns visible during it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = poller.poll_once()
        if outcome is not None:
            return outcome
    return None


def visible_and_inflight(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


# ------------------------------------------------------------------------------------------ events
def test_event_has_lambda_sqs_record_shape(sqs: Any, queues: tuple[str, str, str]) -> None:
    url, arn, _ = queues
    sqs.send_message(
        QueueUrl=url,
        MessageBody='{"job_id": "j1"}',
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "copy"}},
    )
    events: list[dict[str, Any]] = []
    poller = make_poller(sqs, queues, events.append)

    outcome = poller.poll_once()

    assert outcome is not None and len(outcome.succeeded) == 1
    (record,) = events[0]["Records"]
    assert record["body"] == '{"job_id": "j1"}'
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"
    assert record["messageId"] and record["receiptHandle"] and record["md5OfBody"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "copy",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert visible_and_inflight(sqs, url) == 0  # deleted


# ------------------------------------------------------------------------------------------ failures
def test_batch_item_failure_is_retried_and_deleted_on_success(sqs: Any, queues: tuple[str, str, str]) -> None:
    url = queues[0]
    for body in ("ok", "flaky"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    attempts: Counter[str] = Counter()
    receive_counts: list[str] = []
    lock = threading.Lock()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            with lock:
                attempts[record["body"]] += 1
                if record["body"] == "flaky":
                    receive_counts.append(record["attributes"]["ApproximateReceiveCount"])
                    if attempts["flaky"] == 1:
                        failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    poller = make_poller(sqs, queues, invoke)
    poller.start()
    try:
        drained = wait_for(lambda: attempts["flaky"] >= 2 and visible_and_inflight(sqs, url) == 0)
    finally:
        poller.stop()

    assert drained
    assert attempts == Counter({"ok": 1, "flaky": 2})
    assert receive_counts == ["1", "2"]


def test_message_failing_max_receive_count_times_lands_in_dlq(sqs: Any, queues: tuple[str, str, str]) -> None:
    url, _, dlq_url = queues
    message_id = sqs.send_message(QueueUrl=url, MessageBody="poison")["MessageId"]
    attempts: list[str] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        attempts.extend(r["messageId"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    poller = make_poller(sqs, queues, invoke)
    poller.start()
    try:
        in_dlq = wait_for(lambda: visible_and_inflight(sqs, dlq_url) == 1)
    finally:
        poller.stop()

    assert in_dlq
    assert attempts == [message_id, message_id]  # maxReceiveCount is 2
    moved = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)["Messages"]
    assert moved[0]["Body"] == "poison"
    assert visible_and_inflight(sqs, url) == 0


def test_raised_exception_fails_the_whole_batch(sqs: Any, queues: tuple[str, str, str]) -> None:
    url = queues[0]
    sent = {sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")["MessageId"] for i in range(2)}
    calls: list[set[str]] = []

    def invoke(event: dict[str, Any]) -> None:
        calls.append({r["messageId"] for r in event["Records"]})
        if len(calls) == 1:
            raise RuntimeError("copier crashed")

    poller = make_poller(sqs, queues, invoke)

    first = poller.poll_once()
    second = poll_until_batch(poller)

    assert first is not None and set(first.failed) == sent and not first.succeeded
    assert second is not None and set(second.succeeded) == sent
    assert calls == [sent, sent]
    assert visible_and_inflight(sqs, url) == 0


def test_failures_are_ignored_without_report_batch_item_failures(sqs: Any, queues: tuple[str, str, str]) -> None:
    url = queues[0]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    poller = make_poller(
        sqs,
        queues,
        lambda e: {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in e["Records"]]},
        report_batch_item_failures=False,
    )

    outcome = poller.poll_once()

    assert outcome is not None and outcome.failed == ()
    assert visible_and_inflight(sqs, url) == 0


def _queue_with_visibility(sqs: Any, seconds: int) -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    url = sqs.create_queue(QueueName=f"vis-{suffix}", Attributes={"VisibilityTimeout": str(seconds)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, ""


def test_failed_message_comes_back_after_the_queue_visibility_timeout_not_after_one_second(sqs: Any) -> None:
    # A queue whose VisibilityTimeout is 200 s: 2 s at this scale. Locally a failure used to come back
    # after LOCAL_RETRY_DELAY_SECONDS (1 s); on AWS it waits for the visibility timeout.
    queues = _queue_with_visibility(sqs, 200)
    sqs.send_message(QueueUrl=queues[0], MessageBody="fails once")
    receive_counts: list[str] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        receive_counts.extend(r["attributes"]["ApproximateReceiveCount"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    poller = make_poller(sqs, queues, invoke)
    assert poller.poll_once() is not None
    failed_at = time.monotonic()

    time.sleep(1.3)
    early = poller.poll_once()  # a 1 s long poll: 2.3 s after the failure at most
    again = poll_until_batch(poller)
    came_back_after = time.monotonic() - failed_at

    assert early is None
    assert again is not None
    assert 200 * TIME_SCALE <= came_back_after < 200 * TIME_SCALE + 5
    assert receive_counts == ["1", "2"]


def test_visibility_timeout_the_function_set_is_kept(sqs: Any) -> None:
    # The function backs off (ChangeMessageVisibility 300 s: 3 s here) and reports the failure; the
    # poller must not shorten that (the queue's own 30 s would be 0.3 s, the old retry 1 s).
    queues = _queue_with_visibility(sqs, 30)
    sqs.send_message(QueueUrl=queues[0], MessageBody="backs off")

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        for record in event["Records"]:
            sqs.change_message_visibility(
                QueueUrl=queues[0], ReceiptHandle=record["receiptHandle"], VisibilityTimeout=300
            )
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    poller = make_poller(sqs, queues, invoke)
    assert poller.poll_once() is not None
    failed_at = time.monotonic()

    again = poll_until_batch(poller)
    came_back_after = time.monotonic() - failed_at

    assert again is not None
    assert came_back_after >= 300 * TIME_SCALE


def test_failed_batch_is_not_touched_by_the_poller(sqs: Any, queues: tuple[str, str, str]) -> None:
    sqs.send_message(QueueUrl=queues[0], MessageBody="x")
    calls: list[str] = []

    class Recording:
        """The SQS client, recording which operations the poller calls."""

        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(sqs, name)

    url, arn, _ = queues
    poller = SqsPoller(
        name="t", sqs_client=Recording(), queue_url=url, queue_arn=arn, invoke=lambda e: 1 / 0, batch_size=10
    )

    outcome = poller.poll_once()

    assert outcome is not None and len(outcome.failed) == 1
    assert calls == ["receive_message"]


@pytest.mark.parametrize("identifier", ["", None, "not-in-batch"])
def test_invalid_item_identifier_fails_the_whole_batch(identifier: Any) -> None:
    result = {"batchItemFailures": [{"itemIdentifier": identifier}]}

    assert failed_message_ids(result, ["a", "b"], report_batch_item_failures=True) == {"a", "b"}


def test_empty_batch_response_means_success() -> None:
    assert failed_message_ids({"batchItemFailures": []}, ["a"], report_batch_item_failures=True) == set()
    assert failed_message_ids(None, ["a"], report_batch_item_failures=True) == set()


def test_poller_stops_promptly(sqs: Any, queues: tuple[str, str, str]) -> None:
    poller = make_poller(sqs, queues, lambda e: None, workers=3)
    poller.start()
    time.sleep(0.2)

    started = time.monotonic()
    poller.stop()

    assert time.monotonic() - started < 3.0


# ------------------------------------------------------------------------------------------ the stack
STACK_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  GatewayApiKeySecretName:
    Type: String
    Default: test/gateway-key
Globals:
  Function:
    Environment:
      Variables:
        TABLE: !Ref Table
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Dlq:
    Type: AWS::SQS::Queue
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 600
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3}
  Api:
    Type: AWS::Serverless::HttpApi
  Enqueue:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/enqueue
      Handler: app.handler
      Environment:
        Variables:
          QUEUE_URL: !Ref Work
      Events:
        Post: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: "/things/{pk}"}}
  Store:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/store
      Handler: app.handler
      Events:
        Queue: {Type: SQS, Properties: {Queue: !GetAtt Work.Arn, BatchSize: 1}}
"""

ENQUEUE = """
import os, boto3
sqs = boto3.client("sqs")
def handler(event, context):
    sqs.send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=event["pathParameters"]["pk"])
    return {"statusCode": 202, "body": os.environ["WEBHOOK_BASE_URL"]}
"""

STORE = """
import os, boto3
table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
def handler(event, context):
    for record in event["Records"]:
        table.put_item(Item={"pk": record["body"], "source": record["eventSourceARN"]})
"""


def test_local_stack_runs_template_api_and_queue_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(STACK_TEMPLATE)
    for name, source in (("enqueue", ENQUEUE), ("store", STORE)):
        (tmp_path / "fn" / name).mkdir(parents=True)
        (tmp_path / "fn" / name / "app.py").write_text(source)
    env = {"PIXAZO_BASE_URL": "http://127.0.0.1:9", "LOCAL_API_PORT": "0"}
    before = os.environ.get("QUEUE_URL")

    with LocalStack(tmp_path / "template.yaml", stack_name="e2e", env=env) as stack:
        response = httpx.post(f"{stack.api_url}/things/t-1", timeout=10)
        ddb = boto3.resource(
            "dynamodb",
            endpoint_url=stack.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).Table(stack.resources["Table"].ref)
        stored = wait_for(lambda: "Item" in ddb.get_item(Key={"pk": "t-1"}))
        item = ddb.get_item(Key={"pk": "t-1"}).get("Item")
        ready = stack.ready_line()
        queue_url = stack.resources["Work"].ref

    assert response.status_code == 202
    assert response.text == stack.api_url  # WEBHOOK_BASE_URL is the local API
    assert stored and item is not None
    assert item["source"] == stack.resources["Work"].attributes["Arn"]
    assert ready.startswith(f"ready: api={stack.api_url} aws={stack.aws_endpoint} gateway=http://127.0.0.1:9 ")
    assert f"table=e2e-Table bucket=- topic=- bus=- queue={queue_url} dlq={stack.resources['Dlq'].ref}" in ready
    assert os.environ.get("QUEUE_URL") == before  # environment restored on stop


def test_scheduler_invokes_function_with_scheduled_event_each_interval() -> None:
    spec = ScheduleEventSpec("Reconcile", "Every", "Schedule", "rate(5 minutes)", None, True)
    events: list[dict[str, Any]] = []
    scheduler = Scheduler([(spec, events.append)], interval_seconds=0.1, stack_name="s")

    scheduler.start()
    fired = wait_for(lambda: len(events) >= 2, timeout=5)
    scheduler.stop()

    assert fired
    assert events[0]["detail-type"] == "Scheduled Event"
    assert events[0]["source"] == "aws.events"
    assert events[0]["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/s-ReconcileEvery"]
    assert events[0]["id"] != events[1]["id"]


# ------------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
    ],
)
def test_rate_expression_gives_its_period(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize(
    "expression", ["rate(1 hours)", "rate(5 hour)", "rate(0 minutes)", "rate(5 weeks)", "5 minutes"]
)
def test_invalid_rate_expression_is_refused(expression: str) -> None:
    with pytest.raises(ScheduleError, match="schedule"):
        rate_seconds(expression)


def _every_five_minutes() -> ScheduleEventSpec:
    return ScheduleEventSpec("Reconcile", "Every", "Schedule", "rate(5 minutes)", None, True)


def test_schedule_follows_its_rate_times_the_time_scale() -> None:
    spec = _every_five_minutes()

    assert Scheduler([(spec, print)]).intervals == {"Reconcile.Every": 300.0}
    assert Scheduler([(spec, print)], time_scale=0.01).intervals == {"Reconcile.Every": pytest.approx(3.0)}
    assert Scheduler([(spec, print)], interval_seconds=1.5, time_scale=0.01).intervals == {"Reconcile.Every": 1.5}


def test_scaled_schedule_fires_at_its_scaled_rate() -> None:
    events: list[float] = []
    scheduler = Scheduler([(_every_five_minutes(), lambda e: events.append(time.monotonic()))], time_scale=0.001)
    started = time.monotonic()

    scheduler.start()
    fired = wait_for(lambda: len(events) >= 2, timeout=5)
    scheduler.stop()

    assert fired
    assert events[0] - started >= 0.3 * 0.9  # one period (300 s x 0.001) before the first run
    assert events[1] - events[0] >= 0.3 * 0.9


def test_cron_schedule_is_refused_unless_an_interval_is_set() -> None:
    spec = ScheduleEventSpec("Reconcile", "Nightly", "Schedule", "cron(0 3 * * ? *)", None, True)

    with pytest.raises(ScheduleError, match="LOCAL_RECONCILE_EVERY_SECONDS"):
        Scheduler([(spec, print)])
    assert Scheduler([(spec, print)], interval_seconds=2).intervals == {"Reconcile.Nightly": 2}


@pytest.mark.parametrize("scale", ["0", "-1", "abc", "nan", "inf"])
def test_local_stack_refuses_a_bad_time_scale_naming_it(tmp_path: Path, scale: str) -> None:
    (tmp_path / "template.yaml").write_text(STACK_TEMPLATE)
    env = {"PIXAZO_BASE_URL": "http://127.0.0.1:9", "LOCAL_API_PORT": "0", "LOCAL_TIME_SCALE": scale}

    with pytest.raises(LocalStackError, match="LOCAL_TIME_SCALE must be a positive number"):
        LocalStack(tmp_path / "template.yaml", stack_name="bad", env=env).start()

"""The local SQS event source: batches, partial failures, retries, redrive to the DLQ; and the stack wiring it."""

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
from pixverse_local.poller import SqsPoller, failed_message_ids
from pixverse_local.scheduler import Scheduler
from pixverse_local.stack import LocalStack, MotoServer
from pixverse_local.template import ScheduleEventSpec


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = MotoServer()
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
    options: dict[str, Any] = {"batch_size": 10, "report_batch_item_failures": True, "retry_delay_seconds": 0}
    options.update(kw)
    return SqsPoller(name="test", sqs_client=sqs, queue_url=url, queue_arn=arn, invoke=invoke, **options)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


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
    second = poller.poll_once()

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
    assert f"table=e2e-Table bucket=- topic=- queue={queue_url} dlq={stack.resources['Dlq'].ref}" in ready
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

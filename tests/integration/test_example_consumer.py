"""examples/consumer against the local stack: its queue, queue policy and filtered subscription as
its template defines them, and its handler (Powertools idempotency on the event id) fed as Lambda's
SQS poller would: a job's final event is processed once, and a replay of it (same id) is skipped."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from lambda_support import FakeLambdaContext, sqs_event
from pixverse_local.harness import ROOT, LocalClient
from samtranslator.yaml_helper import yaml_parse

EXAMPLE = ROOT / "examples" / "consumer"


def _resources() -> dict[str, Any]:
    template: dict[str, Any] = yaml_parse((EXAMPLE / "template.yaml").read_text())
    return dict(template["Resources"])


@pytest.fixture
def consumer(client: LocalClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    resources = _resources()
    suffix = uuid.uuid4().hex[:8]
    # The idempotency table, with the template's key schema.
    table = f"consumer-idempotency-{suffix}"
    props = resources["IdempotencyTable"]["Properties"]
    client.dynamodb.create_table(
        TableName=table,
        KeySchema=props["KeySchema"],
        AttributeDefinitions=props["AttributeDefinitions"],
        BillingMode=props["BillingMode"],
    )
    # The queue, the policy that lets only the topic send, and the template's filtered, raw subscription.
    queue_url = client.sqs.create_queue(QueueName=f"consumer-{suffix}")["QueueUrl"]
    queue_arn = client.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = client.ready["topic"]
    [statement] = resources["ConsumerQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statement = {**statement, "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}
    client.sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [statement]})},
    )
    subscription = resources["EventsSubscription"]["Properties"]
    arn = client.sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps(subscription["FilterPolicy"]),
        },
    )["SubscriptionArn"]
    # The handler, as Lambda imports it, against the local AWS endpoint.
    for name, value in {
        "IDEMPOTENCY_TABLE": table,
        "AWS_ENDPOINT_URL": client.ready["aws"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "pixverse-jobs-consumer",
    }.items():
        monkeypatch.setenv(name, value)
    module = _load_handler()
    processed: list[dict[str, Any]] = []
    monkeypatch.setattr(module, "process_event", processed.append)
    try:
        yield {"module": module, "queue_url": queue_url, "processed": processed}
    finally:
        client.sns.unsubscribe(SubscriptionArn=arn)
        client.sqs.delete_queue(QueueUrl=queue_url)
        client.dynamodb.delete_table(TableName=table)


def _load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_example_consumer_app", EXAMPLE / "consumer" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _deliver(client: LocalClient, consumer: dict[str, Any], *, at_least: int, timeout: float = 30.0) -> int:
    """Feed the queue's messages to the handler as Lambda's poller would; how many it received."""
    received = 0
    deadline = time.monotonic() + timeout
    while received < at_least and time.monotonic() < deadline:
        messages = client.sqs.receive_message(
            QueueUrl=consumer["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            continue
        answer = consumer["module"].handler(
            sqs_event(messages, queue_arn="arn:aws:sqs:us-east-1:1:consumer"), FakeLambdaContext()
        )
        assert answer == {"batchItemFailures": []}
        for message in messages:
            client.sqs.delete_message(QueueUrl=consumer["queue_url"], ReceiptHandle=message["ReceiptHandle"])
        received += len(messages)
    return received


def test_the_example_consumer_processes_each_event_once_and_skips_its_replay(
    client: LocalClient, consumer: dict[str, Any]
) -> None:
    job_id = client.submit(
        {"model": "pixverse-v6-text-to-video", "input": {"prompt": f"example consumer {uuid.uuid4().hex[:6]}"}}
    ).json()["job_id"]
    assert client.wait_for(job_id)["status"] == "DELIVERED"
    assert _deliver(client, consumer, at_least=1) == 1

    [event] = consumer["processed"]
    assert (event["type"], event["subject"]) == ("pixverse.job.delivered", job_id)
    assert event["data"]["outputs"][0]["s3_uri"].startswith("s3://")

    # The same event again (a replay, same id): delivered to the queue, skipped by the handler.
    assert client.api.post(f"/jobs/{job_id}/replay").status_code == 200
    assert _deliver(client, consumer, at_least=1) == 1
    assert [e["id"] for e in consumer["processed"]] == [event["id"]]

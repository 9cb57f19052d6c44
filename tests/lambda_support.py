"""What the tests share: events from events/ (``load_event``), a fake Lambda context, handler
modules loaded as Lambda loads them (``load_function``), AWS resources created from
template.yaml's own definitions (``create_jobs_table``), and the submit queue fed to
SubmitterFunction as Lambda's SQS poller feeds it (``drain_queue``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from cfnlint.decode import cfn_yaml
from pixverse_jobs import config

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """An event from events/ (the same files `sam local invoke -e` takes)."""
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/11/25/[$LATEST]0000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@cache
def template_resources() -> dict[str, Any]:
    return dict(cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"])


def create_jobs_table(client: Any, name: str = "jobs") -> str:
    """The jobs table with the key schema, indexes and billing mode template.yaml gives it."""
    props = template_resources()["JobsTable"]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    client.create_table(**kwargs)
    return name


_SETTINGS_CACHES = (
    config.store_settings,
    config.api_settings,
    config.gateway_settings,
    config.webhook_settings,
    config.delivery_settings,
    config.queue_settings,
    config.progress_settings,
    config.reconcile_settings,
    config.callback_buffer_settings,
    config.admission_settings,
    config.submitter_settings,
    config.first_check_after_seconds,
)


def load_function(logical_id: str) -> ModuleType:
    """A fresh import of a function's handler module, from its CodeUri and Handler in
    template.yaml (every handler module is called ``app``, so each gets a unique name),
    with settings re-read from the environment."""
    for cached in _SETTINGS_CACHES:
        cached.cache_clear()
    props = template_resources()[logical_id]["Properties"]
    module_name, _, _ = str(props["Handler"]).rpartition(".")
    path = ROOT / str(props["CodeUri"]) / f"{module_name}.py"
    unique = f"_fn_{logical_id}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    # As in Lambda, the function's own modules import from its directory.
    code_dir = str(path.parent)
    before = set(sys.modules)
    sys.path.insert(0, code_dir)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(code_dir)
        for added in set(sys.modules) - before - {unique}:
            if str(getattr(sys.modules[added], "__file__", "") or "").startswith(code_dir):
                del sys.modules[added]
    return module


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:submit"
) -> dict[str, Any]:
    """The event Lambda's SQS poller builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def drain_queue(sqs: Any, queue_url: str, handler: Any, context: Any, *, rounds: int = 20) -> list[dict[str, Any]]:
    """Receive the queue's visible messages and invoke ``handler`` with them, as Lambda's poller
    does, deleting each message the handler did not report failed; until the queue has none
    visible (a delayed or failed message waits) or ``rounds`` batches. Returns the responses."""
    responses = []
    for _ in range(rounds):
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not got:
            break
        response = handler(sqs_event(got), context) or {}
        responses.append(response)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for m in got:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return responses

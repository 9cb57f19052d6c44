"""EventBridge in the local stack's moto server (pixverse_local.aws.moto_server.eventbridge_as_aws):
a rule with an event pattern delivers matching PutEvents entries to its SQS target with the
document in ``detail``, as AWS does; and where moto is kinder than AWS the local stack is not:
entries of 256 KB or more are refused, an SQS target receives only what its queue policy lets
EventBridge send for that rule, a target that cannot take an event never fails PutEvents, and a
disabled rule delivers nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pixverse_local.aws.moto_server import (
    EVENTBRIDGE_MAX_ENTRY_BYTES,
    EVENTBRIDGE_SIZE_MESSAGE,
    putevents_entry_size,
    queue_policy_lets_eventbridge_send,
)
from pixverse_local.harness import queue_policy_for_rule
from pixverse_local.stack import MotoServer

SOURCE = "urn:pixverse-jobs:local-test"
PATTERN = {"detail-type": ["pixverse.job.delivered", "pixverse.job.failed"], "detail": {"data": {"status": ["FAILED"]}}}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    moto = MotoServer()
    yield moto.start()
    moto.stop()


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class Bus:
    """A bus with one rule (PATTERN) whose target is an SQS queue; ``policy`` decides the queue's policy."""

    def __init__(self, endpoint: str, policy: str = "for-rule", state: str = "ENABLED") -> None:
        self.events, self.sqs = _client("events", endpoint), _client("sqs", endpoint)
        self.name = f"bus-{uuid.uuid4().hex[:8]}"
        self.events.create_event_bus(Name=self.name)
        self.rule_arn = self.events.put_rule(
            Name="rule", EventBusName=self.name, EventPattern=json.dumps(PATTERN), State=state
        )["RuleArn"]
        self.queue_url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        if policy == "for-rule":
            document = queue_policy_for_rule(self.queue_arn, self.rule_arn)
        elif policy == "other-rule":
            document = queue_policy_for_rule(self.queue_arn, self.rule_arn.replace("/rule", "/another-rule"))
        else:
            document = None
        if document is not None:
            self.sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(document)})
        self.events.put_targets(Rule="rule", EventBusName=self.name, Targets=[{"Id": "q", "Arn": self.queue_arn}])

    def put(self, status: str = "FAILED", detail_type: str = "pixverse.job.failed", pad: int = 0) -> dict[str, Any]:
        document = {"id": str(uuid.uuid4()), "type": detail_type, "data": {"status": status, "pad": "x" * pad}}
        answer: dict[str, Any] = self.events.put_events(
            Entries=[
                {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(document), "EventBusName": self.name}
            ]
        )
        answer["document"] = document
        return answer

    def received(self, wait: float = 0.5) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        bodies: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            bodies += [json.loads(m["Body"]) for m in messages]
            if not messages and time.monotonic() >= deadline:
                return bodies


# ---------------------------------------------------------------- what AWS does, moto does too


def test_matching_entry_reaches_the_rules_sqs_target_with_the_document_in_detail(server: str) -> None:
    bus = Bus(server)

    answer = bus.put(status="FAILED")

    assert answer["FailedEntryCount"] == 0 and answer["Entries"][0]["EventId"]
    (envelope,) = bus.received()
    assert envelope["detail"] == answer["document"]
    assert envelope["detail-type"] == "pixverse.job.failed"
    assert envelope["source"] == SOURCE
    assert envelope["id"] == answer["Entries"][0]["EventId"]


def test_entry_the_content_filter_rejects_is_not_delivered(server: str) -> None:
    bus = Bus(server)

    bus.put(status="DELIVERED", detail_type="pixverse.job.delivered")  # detail.data.status not FAILED
    bus.put(status="FAILED", detail_type="pixverse.job.progress")  # detail-type not in the pattern

    assert bus.received() == []


# ---------------------------------------------------------------- where moto was kinder than AWS


def test_sqs_target_whose_policy_does_not_allow_the_rule_receives_nothing(server: str) -> None:
    for policy in ("none", "other-rule"):
        bus = Bus(server, policy=policy)

        answer = bus.put()

        # PutEvents succeeds (delivery is asynchronous on AWS); the event never reaches the queue
        assert answer["FailedEntryCount"] == 0
        assert bus.received() == [], policy


def test_deleted_target_queue_does_not_fail_putevents(server: str) -> None:
    bus = Bus(server)
    bus.sqs.delete_queue(QueueUrl=bus.queue_url)

    answer = bus.put()

    assert answer["FailedEntryCount"] == 0 and answer["Entries"][0]["EventId"]


def test_disabled_rule_delivers_nothing(server: str) -> None:
    bus = Bus(server, state="DISABLED")

    bus.put()

    assert bus.received() == []


def test_entries_of_256_kb_or_more_are_refused_and_less_is_taken(server: str) -> None:
    bus = Bus(server)
    base = putevents_entry_size(
        {
            "Source": SOURCE,
            "DetailType": "pixverse.job.failed",
            "Detail": json.dumps(
                {"id": "0" * 36, "type": "pixverse.job.failed", "data": {"status": "FAILED", "pad": ""}}
            ),
        }
    )
    fits = EVENTBRIDGE_MAX_ENTRY_BYTES - base

    assert bus.put(pad=fits)["FailedEntryCount"] == 0
    with pytest.raises(ClientError) as refused:
        bus.put(pad=fits + 1)

    error = refused.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("ValidationException", EVENTBRIDGE_SIZE_MESSAGE)
    assert len(bus.received()) == 1


def test_entry_size_counts_time_as_14_bytes_and_text_as_utf8() -> None:
    entry = {
        "Source": "s\u00e9",
        "DetailType": "t",
        "Detail": "{}",
        "Time": 1_700_000_000,
        "Resources": ["r\U0001f600"],
    }

    assert putevents_entry_size(entry) == 14 + 3 + 1 + 2 + 5


def test_queue_policy_deny_wins_and_wildcard_actions_count() -> None:
    queue, rule = "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:events:us-east-1:123456789012:rule/b/r"
    allow = {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:*",
        "Resource": queue,
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/b/*"}},
    }
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}

    assert queue_policy_lets_eventbridge_send(json.dumps({"Statement": [allow]}), queue, rule, "123456789012")
    assert not queue_policy_lets_eventbridge_send(json.dumps({"Statement": [allow, deny]}), queue, rule, "123456789012")
    # a condition the emulator cannot evaluate does not let the Allow apply
    odd = {**allow, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
    assert not queue_policy_lets_eventbridge_send(json.dumps({"Statement": [odd]}), queue, rule, "123456789012")


# ---------------------------------------------------------------- the stack's bus, or a named one
# ``python -m pixverse_local`` in its own process (an in-process start would drop the layer's
# modules from sys.modules, as every local cold start does, under the other tests' feet), against
# the shared moto server, with no simulator: provisioning and the ready line only.

ROOT = Path(__file__).resolve().parents[2]


def _run_stack(server: str, stack_name: str, bus: str) -> tuple[str, str]:
    """(the ready line, or "" if the stack did not start; its stderr)."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server,
        "PIXAZO_BASE_URL": "http://127.0.0.1:9",
        "LOCAL_API_PORT": "0",
        "PYTHONPATH": str(ROOT / "local"),
    }
    command = [sys.executable, "-m", "pixverse_local", "--template", str(ROOT / "template.yaml")]
    command += ["--stack-name", stack_name, "--parameter-overrides", f"EventBusName={bus}"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        assert run.stdout is not None and run.stderr is not None
        ready = run.stdout.readline().strip()
        if ready:
            run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    return ready, stderr


def test_stack_creates_its_own_bus_unless_event_bus_name_names_one(server: str) -> None:
    own, named = f"bus-{uuid.uuid4().hex[:8]}", f"bus-{uuid.uuid4().hex[:8]}"

    own_ready, own_log = _run_stack(server, own, "")
    named_ready, named_log = _run_stack(server, named, "default")

    assert f" bus={own}-events " in own_ready, own_log[-2000:]
    assert _client("events", server).describe_event_bus(Name=f"{own}-events")["Name"] == f"{own}-events"
    assert " bus=default " in named_ready, named_log[-2000:]
    with pytest.raises(ClientError):  # no bus of its own when one is named
        _client("events", server).describe_event_bus(Name=f"{named}-events")


def test_stack_refuses_an_event_bus_name_that_names_no_bus(server: str) -> None:
    ready, log = _run_stack(server, f"bus-{uuid.uuid4().hex[:8]}", "no-such-bus")

    assert ready == ""
    assert "EVENT_BUS_NAME 'no-such-bus' (the EventBusName parameter) names no event bus" in log

"""The local stack's hooks on function clients: attribution by creating function, call log, faults."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from pixverse_local.aws.client_hooks import FaultInjector, FunctionClientHooks, acting_as


@pytest.fixture
def session() -> boto3.session.Session:
    return boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")


def test_calls_are_logged_for_the_function_that_created_the_client(
    tmp_path: Path, session: boto3.session.Session
) -> None:
    log = tmp_path / "calls.jsonl"
    hooks = FunctionClientHooks.from_env({"LOCAL_AWS_CALL_LOG": str(log)})
    assert hooks is not None
    hooks.install(session)
    with mock_aws():
        with acting_as("WebhookFunction"):
            function_sqs = session.client("sqs")
        stack_sqs = session.client("sqs")
        url = stack_sqs.create_queue(QueueName="q")["QueueUrl"]

        function_sqs.send_message(QueueUrl=url, MessageBody="{}")  # outside the block: still the function's
        stack_sqs.receive_message(QueueUrl=url)

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries == [
        {
            "function": "WebhookFunction",
            "service": "sqs",
            "operation": "SendMessage",
            "parameters": ["MessageBody", "QueueUrl"],
        }
    ]


def test_call_log_names_the_parameters_given_never_their_values(tmp_path: Path, session: boto3.session.Session) -> None:
    # PutObject with Tagging needs s3:PutObjectTagging too: the least-privilege test reads it here.
    log = tmp_path / "calls.jsonl"
    hooks = FunctionClientHooks.from_env({"LOCAL_AWS_CALL_LOG": str(log)})
    assert hooks is not None
    hooks.install(session)
    with mock_aws():
        session.client("s3").create_bucket(Bucket="media")
        with acting_as("MediaCopyFunction"):
            s3 = session.client("s3")
        s3.put_object(Bucket="media", Key="k", Body=b"secret body", Tagging="sha256=abc123")

    text = log.read_text()
    assert json.loads(text)["parameters"] == ["Body", "Bucket", "Key", "Tagging"]
    assert "abc123" not in text and "secret body" not in text


def test_injected_fault_raises_client_error_and_is_logged(tmp_path: Path, session: boto3.session.Session) -> None:
    log = tmp_path / "calls.jsonl"
    hooks = FunctionClientHooks.from_env({"LOCAL_AWS_CALL_LOG": str(log), "LOCAL_AWS_FAULTS": "sns.Publish=1"})
    assert hooks is not None and hooks.faults is not None
    hooks.install(session)
    with mock_aws():
        with acting_as("MediaCopyFunction"):
            sns = session.client("sns")
        topic = session.client("sns").create_topic(Name="t")["TopicArn"]

        with pytest.raises(ClientError, match="ServiceUnavailable"):
            sns.publish(TopicArn=topic, Message="x")

    assert hooks.faults.injected == {"sns.Publish": 1}
    assert json.loads(log.read_text()) == {
        "function": "MediaCopyFunction",
        "service": "sns",
        "operation": "Publish",
        "parameters": ["Message", "TopicArn"],
        "fault": True,
    }


@pytest.mark.parametrize("spec", ["sns.Publish", "sns=0.1", "sns.Publish=2", "sns.Publish=x", ":sns.Publish=0.1"])
def test_bad_fault_spec_names_the_entry(spec: str) -> None:
    with pytest.raises(ValueError, match="LOCAL_AWS_FAULTS entry"):
        FaultInjector.parse(spec)


def test_seeded_faults_repeat() -> None:
    first = FaultInjector.parse("dynamodb.UpdateItem=0.3", seed=42)
    second = FaultInjector.parse("dynamodb.UpdateItem=0.3", seed=42)

    assert [first.should_fail("dynamodb", "UpdateItem") for _ in range(50)] == [
        second.should_fail("dynamodb", "UpdateItem") for _ in range(50)
    ]
    assert 0 < first.injected["dynamodb.UpdateItem"] < 50


def test_function_scoped_fault_fails_only_that_functions_calls() -> None:
    faults = FaultInjector.parse("WebhookFunction:dynamodb.UpdateItem=1")

    with acting_as("WebhookFunction"):
        assert faults.should_fail("dynamodb", "UpdateItem")
    with acting_as("MediaCopyFunction"):
        assert not faults.should_fail("dynamodb", "UpdateItem")
    assert not faults.should_fail("dynamodb", "UpdateItem")  # outside any function
    assert faults.injected["dynamodb.UpdateItem"] == 1


def test_function_scoped_rate_wins_over_the_rate_for_every_function() -> None:
    faults = FaultInjector.parse("dynamodb.UpdateItem=1,ReconcileFunction:dynamodb.UpdateItem=0")

    with acting_as("ReconcileFunction"):
        assert not faults.should_fail("dynamodb", "UpdateItem")
    with acting_as("SubmitFunction"):
        assert faults.should_fail("dynamodb", "UpdateItem")

"""The local stack's restored AWS guarantees, time scale and service limits (pixverse_local.aws.moto_server)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from botocore.exceptions import ClientError
from lambda_support import create_jobs_table, load_event
from moto import mock_aws
from pixverse_local.aws.moto_server import (
    DYNAMODB_NESTING_MESSAGE,
    atomic_dynamodb_writes,
    attribute_depth,
    event_per_resolver,
    item_size,
)
from pixverse_local.aws.moto_server import main as fidelity_main
from pixverse_local.aws.timescale import TimeScaleError, parse_time_scale
from pixverse_local.stack import MotoServer


def test_moto_dynamodb_writes_are_serialized() -> None:
    # In-process the race rarely shows (the reliability suite measured it against moto server:
    # 328 transitions for 320 jobs); here: the writes are wrapped, and still right under contention.
    from moto.dynamodb.models import DynamoDBBackend

    atomic_dynamodb_writes()
    assert all(getattr(getattr(DynamoDBBackend, name), "_serialized", False) for name in ("put_item", "update_item"))
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        table = create_jobs_table(ddb)
        ddb.put_item(TableName=table, Item={"job_id": {"S": "j"}, "status": {"S": "QUEUED"}})
        applied: list[bool] = []
        start = threading.Barrier(16)

        def move() -> None:
            start.wait()
            try:
                ddb.update_item(
                    TableName=table,
                    Key={"job_id": {"S": "j"}},
                    UpdateExpression="SET #s = :done",
                    ConditionExpression="#s = :queued",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":done": {"S": "COMPLETED"}, ":queued": {"S": "QUEUED"}},
                )
                applied.append(True)
            except ddb.exceptions.ConditionalCheckFailedException:
                applied.append(False)

        threads = [threading.Thread(target=move) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(applied) == [False] * 15 + [True]


def test_each_resolver_keeps_its_own_event() -> None:
    event_per_resolver()
    first, second = APIGatewayHttpResolver(), APIGatewayHttpResolver()
    seen: dict[str, Any] = {}

    @first.get("/jobs/<job_id>")
    def first_route(job_id: str) -> dict[str, Any]:
        # Another container resolves its own request in between.
        other = load_event("get_job")
        other["rawPath"] = other["requestContext"]["http"]["path"] = "/jobs/job_other"
        other["pathParameters"] = {"job_id": "job_other"}
        second.resolve(other, None)
        seen["path"] = first.current_event.path
        return {}

    @second.get("/jobs/<job_id>")
    def second_route(job_id: str) -> dict[str, Any]:
        return {}

    first.resolve(load_event("get_job"), None)

    assert seen["path"] == load_event("get_job")["rawPath"]


# ------------------------------------------------------------------------------------------ moto server
# The limits and the time scale live in the moto server process the local stack starts
# (python -m pixverse_local.aws.moto_server); these tests talk to one through boto3, as the functions do.
SERVER_SCALE = 0.01


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    moto = MotoServer(time_scale=SERVER_SCALE)
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


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


# ---------------------------------------------------------------- time scale
def test_delay_seconds_and_receive_visibility_timeout_are_scaled(server: str) -> None:
    sqs = _client("sqs", server)
    url = sqs.create_queue(QueueName=f"scale-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=100)  # 1 s at 0.01

    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    time.sleep(1.2)
    received = sqs.receive_message(QueueUrl=url, VisibilityTimeout=100)["Messages"]  # 1 s again
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    time.sleep(1.2)
    again = sqs.receive_message(QueueUrl=url)["Messages"]

    assert received[0]["Body"] == again[0]["Body"] == "later"


def test_visibility_limits_are_checked_on_the_unscaled_numbers(server: str) -> None:
    sqs = _client("sqs", server)
    url = sqs.create_queue(QueueName=f"limit-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]

    with pytest.raises(ClientError) as excinfo:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43_201)

    assert "43200" in _error(excinfo)[1]


@pytest.mark.parametrize("raw", ["0", "-0.5", "fast", "nan", "inf"])
def test_bad_time_scale_is_refused_naming_local_time_scale(raw: str) -> None:
    with pytest.raises(TimeScaleError, match="LOCAL_TIME_SCALE must be a positive number"):
        parse_time_scale(raw)
    with pytest.raises(SystemExit, match="LOCAL_TIME_SCALE"):
        fidelity_main(["--time-scale", raw, "-p", "1"])


def test_time_scale_defaults_to_one() -> None:
    assert parse_time_scale(None) == parse_time_scale("") == 1.0
    assert parse_time_scale("0.01") == 0.01


# ---------------------------------------------------------------- SNS
def _topic(sns: Any) -> str:
    return str(sns.create_topic(Name=f"events-{uuid.uuid4().hex[:8]}")["TopicArn"])


def test_sns_refuses_a_message_over_256_kib_counted_in_utf8_bytes(server: str) -> None:
    sns = _client("sns", server)
    topic = _topic(sns)
    sns.publish(TopicArn=topic, Message="a" * 262_144)  # the limit itself is allowed

    with pytest.raises(ClientError) as excinfo:
        sns.publish(TopicArn=topic, Message="é" * 131_073)  # 131,073 characters, 262,146 bytes

    assert _error(excinfo) == ("InvalidParameter", "Invalid parameter: Message too long")


def test_sns_counts_message_attributes_toward_the_limit(server: str) -> None:
    sns = _client("sns", server)
    topic = _topic(sns)

    with pytest.raises(ClientError) as excinfo:
        sns.publish(
            TopicArn=topic,
            Message="a" * 262_000,
            MessageAttributes={"detail": {"DataType": "String", "StringValue": "b" * 200}},
        )

    assert _error(excinfo) == ("InvalidParameter", "Invalid parameter: Message too long")


# ---------------------------------------------------------------- SQS
def test_sqs_counts_body_bytes_and_attributes_toward_the_queue_maximum(server: str) -> None:
    sqs = _client("sqs", server)
    url = sqs.create_queue(QueueName=f"size-{uuid.uuid4().hex[:8]}", Attributes={"MaximumMessageSize": "262144"})[
        "QueueUrl"
    ]
    sqs.send_message(QueueUrl=url, MessageBody="a" * 262_144)

    with pytest.raises(ClientError) as by_bytes:
        sqs.send_message(QueueUrl=url, MessageBody="é" * 131_073)
    with pytest.raises(ClientError) as by_attributes:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="a" * 262_000,
            MessageAttributes={"detail": {"DataType": "String", "StringValue": "b" * 200}},
        )

    for excinfo in (by_bytes, by_attributes):
        code, message = _error(excinfo)
        assert code == "InvalidParameterValue"
        assert "Message must be shorter than 262144 bytes" in message


# ---------------------------------------------------------------- DynamoDB
def _table(ddb: Any) -> str:
    name = f"items-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return name


def _nested(levels: int) -> dict[str, Any]:
    """An attribute value of ``levels`` levels (the attribute itself is level 1)."""
    value: dict[str, Any] = {"S": "leaf"}
    for _ in range(levels - 1):
        value = {"M": {"n": value}}
    return value


def test_dynamodb_item_size_counts_as_dynamodb_does() -> None:
    # "DynamoDB item sizes and formats": names and values; numbers by significant digits; 3 bytes per
    # List/Map plus 1 per element.
    assert item_size({"pk": {"S": "é"}}) == 2 + 2
    assert item_size({"n": {"N": "123.4500"}}) == 1 + 4  # 12345: 5 significant digits -> 3 bytes + 1
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 2 + 2
    assert item_size({"m": {"M": {"ab": {"S": "xyz"}}}}) == 1 + 3 + 1 + 2 + 3
    assert item_size({"l": {"L": [{"S": "x"}, {"N": "7"}]}}) == 1 + 3 + (1 + 1) + (1 + 2)
    assert attribute_depth(_nested(32)) == 32


def test_dynamodb_stores_an_item_up_to_400_kb_and_refuses_one_over(server: str) -> None:
    ddb = _client("dynamodb", server)
    table = _table(ddb)
    overhead = item_size({"pk": {"S": "k"}, "v": {"S": ""}})
    # 400 KB exactly is stored (moto alone refuses anything over 405,000 of its own bytes)
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "v": {"S": "a" * (409_600 - overhead)}})

    with pytest.raises(ClientError) as excinfo:
        ddb.put_item(TableName=table, Item={"pk": {"S": "k2"}, "v": {"S": "é" * 204_800}})  # 409,600 bytes

    assert _error(excinfo) == ("ValidationException", "Item size has exceeded the maximum allowed size")
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "k2"}})


def test_dynamodb_update_that_grows_the_item_past_400_kb_is_refused_and_changes_nothing(server: str) -> None:
    ddb = _client("dynamodb", server)
    table = _table(ddb)
    ddb.put_item(
        TableName=table, Item={"pk": {"S": "k"}, "doc": {"M": {"a": {"S": "x" * 300_000}}}, "status": {"S": "OLD"}}
    )

    with pytest.raises(ClientError) as excinfo:
        # Grows a nested map (moto alone checks top-level attributes only) and sets another field.
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "k"}},
            UpdateExpression="SET doc.b = :big, #s = :new",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":big": {"S": "y" * 110_000}, ":new": {"S": "NEW"}},
        )

    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "exceeded the maximum allowed size" in message
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}})["Item"]
    assert item["status"] == {"S": "OLD"}
    assert set(item["doc"]["M"]) == {"a"}


def test_dynamodb_update_creating_an_oversized_item_leaves_no_item(server: str) -> None:
    ddb = _client("dynamodb", server)
    table = _table(ddb)

    with pytest.raises(ClientError):
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "new"}},
            UpdateExpression="SET a = :a, b = :b",
            ExpressionAttributeValues={":a": {"S": "x" * 300_000}, ":b": {"S": "y" * 110_000}},
        )

    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "new"}})


def test_dynamodb_refuses_nesting_over_32_levels(server: str) -> None:
    ddb = _client("dynamodb", server)
    table = _table(ddb)
    ddb.put_item(TableName=table, Item={"pk": {"S": "ok"}, "v": _nested(32)})

    with pytest.raises(ClientError) as put:
        ddb.put_item(TableName=table, Item={"pk": {"S": "deep"}, "v": _nested(33)})
    with pytest.raises(ClientError) as update:
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "ok"}},
            UpdateExpression="SET w = :deep",
            ExpressionAttributeValues={":deep": _nested(33)},
        )
    with pytest.raises(ClientError) as grown:
        # each value is within the limit; the item the update makes is not
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "ok"}},
            UpdateExpression="SET v.n = :v",
            ExpressionAttributeValues={":v": _nested(32)},
        )

    expected = ("ValidationException", DYNAMODB_NESTING_MESSAGE)
    assert _error(put) == _error(update) == _error(grown) == expected
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "ok"}})["Item"]["v"] == _nested(32)

"""The local stack's SQS fair queues (pixverse_local.aws.moto_server, "SQS fair queues").

A standard queue whose producers set MessageGroupId is a fair queue on AWS: a tenant (message
group) with a large backlog does not hold back the others' messages. These tests talk to a moto
server started as the local stack starts it, through boto3, as the functions and pollers do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pixverse_local.aws.moto_server import MESSAGE_GROUP_ID_MAX_LENGTH
from pixverse_local.aws.sqs_event_source import SqsPoller
from pixverse_local.stack import MotoServer

NOISY_BACKLOG = 200
QUIET_MESSAGES = 5
BATCH = 10  # a Lambda event source mapping's default batch, and ReceiveMessage's maximum


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    moto = MotoServer()
    endpoint = moto.start()
    yield boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    moto.stop()


def _queue(sqs: Any, *, fifo: bool = False) -> str:
    name = f"fair-{uuid.uuid4().hex[:8]}"
    if fifo:
        attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        return str(sqs.create_queue(QueueName=f"{name}.fifo", Attributes=attributes)["QueueUrl"])
    return str(sqs.create_queue(QueueName=name)["QueueUrl"])


def _send(sqs: Any, url: str, bodies: list[str], group: str | None) -> None:
    """Send in batches of 10, with ``group`` as every message's MessageGroupId (None: no group)."""
    for start in range(0, len(bodies), 10):
        entries: list[dict[str, Any]] = []
        for index, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
            if group is not None:
                entry["MessageGroupId"] = group
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]


def _receive(sqs: Any, url: str, count: int = BATCH) -> list[dict[str, Any]]:
    response = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=count, MessageSystemAttributeNames=["All"], WaitTimeSeconds=0
    )
    return list(response.get("Messages") or [])


def _delete(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    sqs.delete_message_batch(QueueUrl=url, Entries=entries)


def _drain(sqs: Any, url: str, *, delete: bool) -> list[list[str]]:
    """Receive 10 at a time until the queue answers empty; the bodies of each receive."""
    receives: list[list[str]] = []
    while messages := _receive(sqs, url):
        receives.append([m["Body"] for m in messages])
        if delete:
            _delete(sqs, url, messages)
    return receives


def _first_receive_holding_all(receives: list[list[str]], prefix: str, expected: int) -> int:
    """Index of the receive by which all ``expected`` bodies starting with ``prefix`` came out."""
    seen = 0
    for index, bodies in enumerate(receives):
        seen += sum(body.startswith(prefix) for body in bodies)
        if seen == expected:
            return index
    raise AssertionError(f"only {seen} of {expected} {prefix!r} messages came out")


# ---------------------------------------------------------------- fairness
def test_quiet_group_gets_through_a_noisy_backlog_in_the_first_receives(sqs: Any) -> None:
    # Given a noisy tenant's backlog of 200 and, sent after it, a quiet tenant's 5
    url = _queue(sqs)
    _send(sqs, url, [f"noisy-{i}" for i in range(NOISY_BACKLOG)], "noisy")
    _send(sqs, url, [f"quiet-{i}" for i in range(QUIET_MESSAGES)], "quiet")

    # When a consumer receives 10 at a time and deletes what it processed
    receives = _drain(sqs, url, delete=True)

    # Then the quiet tenant's messages all come out within the first 2 receives (plain moto: the
    # 21st, after the whole backlog), every receive is full while messages are left (no throttle),
    # and nothing is lost or repeated
    assert _first_receive_holding_all(receives, "quiet-", QUIET_MESSAGES) <= 1
    assert all(len(bodies) == BATCH for bodies in receives[:-1])
    delivered = [body for bodies in receives for body in bodies]
    assert sorted(delivered) == sorted([f"noisy-{i}" for i in range(NOISY_BACKLOG)] + [f"quiet-{i}" for i in range(5)])


def test_a_group_with_messages_in_flight_yields_to_the_others(sqs: Any) -> None:
    # Given a noisy tenant with 30 messages in flight (received, not deleted) and more waiting
    url = _queue(sqs)
    _send(sqs, url, [f"noisy-{i}" for i in range(60)], "noisy")
    for _ in range(3):
        assert len(_receive(sqs, url)) == BATCH
    _send(sqs, url, [f"quiet-{i}" for i in range(QUIET_MESSAGES)], "quiet")

    # When a consumer receives 5
    bodies = [m["Body"] for m in _receive(sqs, url, count=5)]

    # Then all 5 are the quiet tenant's, though the noisy one's waiting messages are older
    assert sorted(bodies) == [f"quiet-{i}" for i in range(QUIET_MESSAGES)]


def test_a_receive_takes_groups_in_turn_oldest_first_within_each(sqs: Any) -> None:
    # The emulation's exact policy (moto_server.py): fewest in flight first, then the group whose
    # next message is oldest; within a group, oldest first.
    url = _queue(sqs)
    for group in ("a", "b", "c"):
        _send(sqs, url, [f"{group}-{i}" for i in range(10)], group)

    bodies = [m["Body"] for m in _receive(sqs, url, count=9)]

    assert bodies == ["a-0", "b-0", "c-0", "a-1", "b-1", "c-1", "a-2", "b-2", "c-2"]


def test_messages_without_a_group_are_each_their_own_tenant(sqs: Any) -> None:
    # "Each message without a MessageGroupId is treated as belonging to its own distinct tenant"
    # (SQS developer guide, "How Amazon SQS fair queues work").
    url = _queue(sqs)
    _send(sqs, url, [f"noisy-{i}" for i in range(NOISY_BACKLOG)], "noisy")
    _send(sqs, url, [f"single-{i}" for i in range(QUIET_MESSAGES)], None)

    receives = _drain(sqs, url, delete=True)

    assert _first_receive_holding_all(receives, "single-", QUIET_MESSAGES) <= 1
    assert sum(len(bodies) for bodies in receives) == NOISY_BACKLOG + QUIET_MESSAGES


def test_a_queue_without_groups_still_hands_out_oldest_first(sqs: Any) -> None:
    url = _queue(sqs)
    _send(sqs, url, [f"m-{i:02d}" for i in range(25)], None)

    receives = _drain(sqs, url, delete=True)

    assert [body for bodies in receives for body in bodies] == [f"m-{i:02d}" for i in range(25)]


def test_queue_attributes_still_count_visible_and_in_flight_messages(sqs: Any) -> None:
    url = _queue(sqs)
    _send(sqs, url, [f"a-{i}" for i in range(15)], "a")
    _send(sqs, url, [f"b-{i}" for i in range(5)], "b")
    _receive(sqs, url)

    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert attributes["ApproximateNumberOfMessages"] == "10"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "10"


# ---------------------------------------------------------------- the group id itself
def test_message_group_id_comes_back_on_the_message_and_in_the_lambda_record(sqs: Any) -> None:
    url = _queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="single", MessageGroupId="caller-1")
    _send(sqs, url, ["batched"], "caller-2")
    _send(sqs, url, ["none"], None)
    events: list[dict[str, Any]] = []
    poller = SqsPoller(
        name="fair",
        sqs_client=sqs,
        queue_url=url,
        queue_arn="arn:aws:sqs:us-east-1:123456789012:fair",
        invoke=events.append,
        wait_time_seconds=0,
    )

    poller.poll_once()  # receives as the local event source mapping does, and deletes the batch

    records = {r["body"]: r["attributes"].get("MessageGroupId") for r in events[0]["Records"]}
    assert records == {"single": "caller-1", "batched": "caller-2", "none": None}


@pytest.mark.parametrize(
    "group_id",
    ["x" * (MESSAGE_GROUP_ID_MAX_LENGTH + 1), "", "caller one", "caller-é"],
    ids=["129-characters", "empty", "space", "non-ascii"],
)
def test_a_bad_message_group_id_is_refused_naming_the_field(sqs: Any, group_id: str) -> None:
    url = _queue(sqs)

    with pytest.raises(ClientError) as single:
        sqs.send_message(QueueUrl=url, MessageBody="m", MessageGroupId=group_id)
    with pytest.raises(ClientError) as batch:
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "ok", "MessageBody": "ok", "MessageGroupId": "caller"},
                {"Id": "bad", "MessageBody": "bad", "MessageGroupId": group_id},
            ],
        )

    for excinfo in (single, batch):
        error = excinfo.value.response["Error"]
        assert error["Code"] == "InvalidParameterValue"
        assert "MessageGroupId" in error["Message"]
    assert _receive(sqs, url) == []  # the batch's good entry was not sent either


def test_the_longest_allowed_message_group_id_is_accepted(sqs: Any) -> None:
    url = _queue(sqs)
    group_id = "arn:aws:iam::123456789012:role/" + "r" * (MESSAGE_GROUP_ID_MAX_LENGTH - 31)
    assert len(group_id) == MESSAGE_GROUP_ID_MAX_LENGTH

    sqs.send_message(QueueUrl=url, MessageBody="m", MessageGroupId=group_id)

    assert _receive(sqs, url)[0]["Attributes"]["MessageGroupId"] == group_id


# ---------------------------------------------------------------- FIFO untouched
def test_fifo_queue_keeps_its_group_order_and_one_receive_per_group(sqs: Any) -> None:
    url = _queue(sqs, fifo=True)
    _send(sqs, url, [f"noisy-{i:02d}" for i in range(20)], "noisy")
    _send(sqs, url, ["quiet-0", "quiet-1"], "quiet")

    first = [m["Body"] for m in _receive(sqs, url)]
    second = [m["Body"] for m in _receive(sqs, url)]
    third = _receive(sqs, url)

    # moto's FIFO delivery, as before: the oldest group's messages in order; a group with messages
    # in flight is not handed out again until they are deleted or visible again.
    assert first == [f"noisy-{i:02d}" for i in range(10)]
    assert second == ["quiet-0", "quiet-1"]
    assert third == []

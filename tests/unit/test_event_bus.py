"""Every event on EventBridge too (issue 15): EventPublisher sends each event to SNS, then puts
it on the bus with Source = its source, DetailType = its type, Detail = the CloudEvent; an entry
PutEvents refuses (HTTP 200, FailedEntryCount 1) raises, so the caller's retry publishes again;
and one shortened document fits both SNS's message size and EventBridge's entry size."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from pixverse_jobs.errors import EventNotPublished
from pixverse_jobs.events import (
    EVENTBRIDGE_MAX_ENTRY_BYTES,
    JOB_DELIVERED,
    JOB_FAILED,
    SNS_MAX_MESSAGE_BYTES,
    EventPublisher,
    build_event,
    entry_bytes,
    fit_event,
    message_bytes,
)
from size_support import EMOJI

TOPIC = "arn:aws:sns:us-east-1:123456789012:events"
BUS = "jobs-bus"
SOURCE = "urn:pixverse-jobs:test"


def _job(status: str = "FAILED", error: str = "the prompt was refused") -> dict[str, Any]:
    return {
        "job_id": "job_" + "b" * 32,
        "request_id": "pixverse-v6-text-to-video_7",
        "model": "pixverse-v6-text-to-video",
        "status": status,
        "input": {"prompt": "a lighthouse at dawn"},
        "metadata": {"order": "A-1001"},
        "outputs": [],
        "error": {"code": "generation_failed", "message": error} if status == "FAILED" else None,
        "created_at": "2026-11-25T10:00:00.000Z",
        "updated_at": "2026-11-25T10:05:00.000Z",
        "completed_at": "2026-11-25T10:05:00.000Z",
        "delivered_at": None,
    }


def _event(error: str = "the prompt was refused", source: str = SOURCE) -> dict[str, Any]:
    return build_event(JOB_FAILED, _job(error=error), source=source, time="2026-11-25T10:05:00.000Z")


class RecordingSns:
    """An SNS client that keeps what it is asked to publish, or fails when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.published: list[dict[str, Any]] = []
        self.fail = fail

    def publish(self, **kwargs: Any) -> dict[str, str]:
        if self.fail:
            raise RuntimeError("SNS unavailable")
        self.published.append(kwargs)
        return {"MessageId": "m-1"}


class StrictEventBridge:
    """An EventBridge client that counts each entry as "Calculating PutEvents event entry size"
    documents (Time 14 bytes, Source, DetailType, Detail, Resources as UTF-8) and refuses a
    request whose entries are not less than 256 KB in all, as PutEvents does."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    @staticmethod
    def size(entry: dict[str, Any]) -> int:
        size = 14 if "Time" in entry else 0
        size += sum(len(str(entry[k]).encode()) for k in ("Source", "DetailType", "Detail") if k in entry)
        return size + sum(len(r.encode()) for r in entry.get("Resources", []))

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if sum(self.size(e) for e in Entries) >= 256 * 1024:
            raise ValueError("ValidationException: Total size of the entries in the request is over the limit.")
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e-{len(self.entries)}"} for _ in Entries]}


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """A topic and a bus in moto, a rule on the bus for failed events with an SQS target, and a
    queue subscribed to the topic: both channels as a consumer sees them."""
    with mock_aws():
        sns, sqs, events = boto3.client("sns"), boto3.client("sqs"), boto3.client("events")
        topic = sns.create_topic(Name="events")["TopicArn"]
        events.create_event_bus(Name=BUS)

        def queue(name: str) -> tuple[str, str]:
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        sns_url, sns_arn = queue("from-sns")
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sns_arn, Attributes={"RawMessageDelivery": "true"})
        bus_url, bus_arn = queue("from-bus")
        events.put_rule(
            Name="failed", EventBusName=BUS, EventPattern=json.dumps({"detail-type": [JOB_FAILED], "source": [SOURCE]})
        )
        events.put_targets(Rule="failed", EventBusName=BUS, Targets=[{"Id": "q", "Arn": bus_arn}])
        yield {"sns": sns, "sqs": sqs, "events": events, "topic": topic, "sns_queue": sns_url, "bus_queue": bus_url}


def _bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


# ---------------------------------------------------------------- both channels


def test_event_goes_to_sns_and_to_the_bus_with_the_cloudevent_in_detail(aws: dict[str, Any]) -> None:
    # Given a publisher with a bus, and a rule on it for failed events
    publisher = EventPublisher(aws["topic"], aws["sns"], bus_name=BUS, events_client=aws["events"])
    event = _event()

    # When a failed event is published
    publisher.publish(event)

    # Then SNS carries the CloudEvent, and the rule's queue EventBridge's envelope around it
    (from_sns,) = _bodies(aws["sqs"], aws["sns_queue"])
    (envelope,) = _bodies(aws["sqs"], aws["bus_queue"])
    assert from_sns == event
    assert envelope["detail"] == event
    assert envelope["source"] == SOURCE
    assert envelope["detail-type"] == JOB_FAILED
    # Time is the event's own (a re-publish carries the same), not the moment of the call
    assert envelope["time"] == "2026-11-25T10:05:00Z"


def test_event_the_rule_does_not_match_reaches_sns_only(aws: dict[str, Any]) -> None:
    publisher = EventPublisher(aws["topic"], aws["sns"], bus_name=BUS, events_client=aws["events"])
    delivered = build_event(JOB_DELIVERED, _job("DELIVERED"), source=SOURCE)

    publisher.publish(delivered)

    assert [e["id"] for e in _bodies(aws["sqs"], aws["sns_queue"])] == [delivered["id"]]
    assert _bodies(aws["sqs"], aws["bus_queue"]) == []


def test_publisher_without_a_bus_publishes_to_sns_only_and_creates_no_events_client() -> None:
    # The positional form every existing caller uses keeps working: SNS alone.
    sns = RecordingSns()
    publisher = EventPublisher(TOPIC, sns)

    publisher.publish(_event())

    assert len(sns.published) == 1
    assert publisher.bus_name == ""
    assert publisher._events is None


def test_entry_is_source_detail_type_detail_and_time_on_the_named_bus() -> None:
    events = boto3.client("events", region_name="us-east-1")
    event = _event()
    sns = RecordingSns()
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]},
            {
                "Entries": [
                    {
                        "Source": SOURCE,
                        "DetailType": JOB_FAILED,
                        "Detail": sns_message(event),
                        "EventBusName": BUS,
                        "Time": datetime(2026, 11, 25, 10, 5, tzinfo=UTC),
                    }
                ]
            },
        )
        EventPublisher(TOPIC, sns, bus_name=BUS, events_client=events).publish(event)
        stub.assert_no_pending_responses()
    # One document for both: the SNS message is the entry's Detail
    assert sns.published[0]["Message"] == sns_message(event)


def sns_message(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


# ---------------------------------------------------------------- failures


def test_failed_entry_with_http_200_raises_naming_the_event_bus_and_code() -> None:
    # Given EventBridge answering 200 with the entry refused (PutEvents reports failures per
    # entry), for a reason no new attempt cures
    events = boto3.client("events", region_name="us-east-1")
    sns = RecordingSns()
    event = _event()
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}],
            },
        )

        # When the event is published, Then it raises (the caller's retry publishes again) ...
        with pytest.raises(EventNotPublished, match=rf"{event['id']}.*{BUS}.*MalformedDetail Detail is malformed"):
            EventPublisher(TOPIC, sns, bus_name=BUS, events_client=events).publish(event)
        stub.assert_no_pending_responses()

    # ... after SNS took it: SNS first, then the bus
    assert len(sns.published) == 1


def test_entry_refused_for_a_passing_reason_is_sent_again_without_a_second_sns_copy() -> None:
    events = boto3.client("events", region_name="us-east-1")
    sns, waits = RecordingSns(), []
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}]}
    with Stubber(events) as stub:
        stub.add_response("put_events", refused)
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})

        EventPublisher(TOPIC, sns, bus_name=BUS, events_client=events, sleep=waits.append).publish(_event())
        stub.assert_no_pending_responses()

    assert len(sns.published) == 1
    assert waits == [0.2]


def test_entry_refused_every_time_for_a_passing_reason_raises_after_three_attempts() -> None:
    events = boto3.client("events", region_name="us-east-1")
    waits: list[float] = []
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}
    with Stubber(events) as stub:
        for _ in range(3):
            stub.add_response("put_events", refused)

        with pytest.raises(EventNotPublished, match=r"\(3 attempts\): InternalFailure try again"):
            EventPublisher(TOPIC, RecordingSns(), bus_name=BUS, events_client=events, sleep=waits.append).publish(
                _event()
            )
        stub.assert_no_pending_responses()

    assert waits == [0.2, 0.4]


def test_putevents_error_raises_event_not_published() -> None:
    events = boto3.client("events", region_name="us-east-1")
    with Stubber(events) as stub:
        stub.add_client_error("put_events", service_error_code="AccessDeniedException", http_status_code=400)

        with pytest.raises(EventNotPublished, match="AccessDeniedException"):
            EventPublisher(TOPIC, RecordingSns(), bus_name=BUS, events_client=events).publish(_event())


def test_sns_failure_puts_nothing_on_the_bus() -> None:
    bus = StrictEventBridge()

    with pytest.raises(RuntimeError, match="SNS unavailable"):
        EventPublisher(TOPIC, RecordingSns(fail=True), bus_name=BUS, events_client=bus).publish(_event())

    assert bus.entries == []


# ---------------------------------------------------------------- size: one document fits both


def test_entry_bytes_counts_as_eventbridge_documents() -> None:
    event = _event(error="\u00e9t\u00e9 " * 100)
    bus = StrictEventBridge()

    EventPublisher(TOPIC, RecordingSns(), bus_name=BUS, events_client=bus).publish(event)

    assert entry_bytes(event) == StrictEventBridge.size(bus.entries[0])


def test_event_over_eventbridges_limit_but_within_snss_is_shortened_for_both() -> None:
    # Given a stack whose long name makes the entry (source + type + detail) the larger of the two
    source = "urn:pixverse-jobs:" + "a-very-long-stack-name-" * 5
    probe = _event(source=source)
    overhead = entry_bytes(probe) - message_bytes(probe)
    assert overhead > 1, "setup: the entry must count more than the SNS message here"
    # and an error text that puts the SNS message exactly at SNS's limit
    error = "x" * (SNS_MAX_MESSAGE_BYTES - message_bytes(probe) + len("the prompt was refused"))
    event = _event(error=error, source=source)
    assert message_bytes(event) == SNS_MAX_MESSAGE_BYTES
    assert entry_bytes(event) > EVENTBRIDGE_MAX_ENTRY_BYTES
    assert fit_event(event) is event  # SNS alone would send it whole, and EventBridge refuse it
    sns, bus = RecordingSns(), StrictEventBridge()

    # When it is published
    EventPublisher(TOPIC, sns, bus_name=BUS, events_client=bus).publish(event)

    # Then one shortened document went to both, within both limits
    (entry,) = bus.entries
    assert entry["Detail"] == sns.published[0]["Message"]
    assert StrictEventBridge.size(entry) <= EVENTBRIDGE_MAX_ENTRY_BYTES
    sent = json.loads(entry["Detail"])
    assert message_bytes(sent) <= SNS_MAX_MESSAGE_BYTES
    assert "...[truncated" in sent["data"]["error"]["message"]
    assert sent["id"] == event["id"]


def test_widest_event_fits_both_limits_with_emoji_text() -> None:
    # 100 KB of 4-byte characters: 300 KB as the escaped JSON carries it
    event = _event(error=EMOJI * 25 * 1024, source="urn:pixverse-jobs:" + "s" * 200)
    sns, bus = RecordingSns(), StrictEventBridge()

    EventPublisher(TOPIC, sns, bus_name=BUS, events_client=bus).publish(event)

    fitted = json.loads(bus.entries[0]["Detail"])
    assert message_bytes(fitted) <= SNS_MAX_MESSAGE_BYTES
    assert entry_bytes(fitted) <= EVENTBRIDGE_MAX_ENTRY_BYTES
    assert fitted == fit_event(event, max_entry_bytes=EVENTBRIDGE_MAX_ENTRY_BYTES)  # deterministic


def test_eventbridge_example_wraps_the_delivered_example_as_a_rule_target_receives_it() -> None:
    # events/eventbridge_delivered.json: what an SQS target of a rule on the bus receives
    examples = Path(__file__).resolve().parents[2] / "events"
    envelope = json.loads((examples / "eventbridge_delivered.json").read_text())
    cloudevent = json.loads((examples / "event_delivered.json").read_text())

    assert envelope["detail"] == cloudevent
    assert (envelope["source"], envelope["detail-type"]) == (cloudevent["source"], cloudevent["type"])
    assert envelope["id"] != cloudevent["id"]  # EventBridge's own id: consumers deduplicate on detail.id

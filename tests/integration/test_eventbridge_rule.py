"""Every final event on EventBridge too, end to end on the local stack (issue 15): a consumer's
rule on the stack's bus (the ready line's ``bus=``), with a content filter on ``detail-type`` and
``detail.data.status`` and an SQS target whose queue policy lets that rule send, receives each
final event it matches with the CloudEvent in ``detail``, the very document (same ``id``) the
SNS topic carries; an event the filter rejects does not arrive."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED, event_id
from pixverse_local.harness import BusInbox, EventInbox, LocalClient
from pixverse_local.stack import DEFAULT_STACK_NAME

# What a consumer that cares about finished and failed jobs, but not the gateway's own errors, asks for.
PATTERN = {
    "source": [{"prefix": "urn:pixverse-jobs"}],
    "detail-type": [JOB_DELIVERED, JOB_FAILED],
    "detail": {"data": {"status": ["DELIVERED", "FAILED"]}},
}


@pytest.fixture
def bus_inbox(client: LocalClient) -> Iterator[BusInbox]:
    box = BusInbox(client, PATTERN)
    yield box
    box.close()


def _job(directive: str = "") -> dict[str, Any]:
    prompt = f"A harbour at night {uuid.uuid4().hex[:8]} {directive}".strip()
    return {"model": "pixverse-v6-text-to-video", "input": {"prompt": prompt}, "metadata": {"test": "event-bus"}}


def test_ready_line_names_the_stacks_own_bus_and_it_exists(client: LocalClient) -> None:
    bus = client.ready["bus"]

    assert bus == f"{DEFAULT_STACK_NAME}-events"
    assert client.events.describe_event_bus(Name=bus)["Name"] == bus


def test_rule_with_sqs_target_receives_each_final_event_it_matches_with_the_cloudevent_in_detail(
    client: LocalClient, inbox: EventInbox, bus_inbox: BusInbox
) -> None:
    # Given a rule for delivered and failed jobs, and three jobs: delivered, failed, and one the
    # gateway errors (ERROR: a pixverse.job.failed event the rule's status filter rejects)
    ids = {name: client.submit(_job(directive)).json()["job_id"] for name, directive in
           (("delivered", ""), ("failed", "[sim:fail]"), ("errored", "[sim:error]"))}  # fmt: skip

    # When they end
    jobs = {name: client.wait_for(job_id) for name, job_id in ids.items()}
    assert {name: job["status"] for name, job in jobs.items()} == {
        "delivered": "DELIVERED",
        "failed": "FAILED",
        "errored": "ERROR",
    }
    from_sns = {name: inbox.for_job(job_id, wait=3.0) for name, job_id in ids.items()}
    assert all(len(events) == 1 for events in from_sns.values()), from_sns  # every event was published
    from_bus = {name: bus_inbox.for_job(job_id, wait=2.0) for name, job_id in ids.items()}

    # Then the rule's queue received the two it matches, each once, EventBridge's envelope around
    # the very CloudEvent SNS carries (same id), and nothing for the job the filter rejects
    assert from_bus["errored"] == []
    for name, event_type in (("delivered", JOB_DELIVERED), ("failed", JOB_FAILED)):
        (envelope,) = from_bus[name]
        (sns_event,) = from_sns[name]
        sns_event.pop("_sns_attributes")
        assert envelope["detail"] == sns_event
        assert envelope["detail"]["id"] == event_id(ids[name], event_type)
        assert envelope["detail-type"] == event_type
        assert envelope["source"] == sns_event["source"]
    assert (
        from_bus["delivered"][0]["detail"]["data"]["outputs"][0]["s3_uri"] == jobs["delivered"]["outputs"][0]["s3_uri"]
    )

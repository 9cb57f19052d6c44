"""Events fit SNS's 256 KB whatever the job holds (issue 13, 2.7): the gateway's error text is
capped when a callback is parsed, and an event too large for SNS is shortened (largest free
text first, with a marker) and published, never refused or dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pixverse_jobs.callbacks import MAX_ERROR_CHARS, parse_callback
from pixverse_jobs.events import (
    JOB_FAILED,
    SNS_MAX_MESSAGE_BYTES,
    EventPublisher,
    build_event,
    fit_event,
    message_bytes,
    truncate_text,
)
from pixverse_jobs.views import job_view
from size_support import EMOJI, widest_input, widest_metadata, widest_model

MARKER = re.compile(r"\.\.\.\[truncated (\d+) bytes\]$")
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "events" / "pixverse-job-event.schema.json").read_text())


class StrictSns:
    """An SNS client that refuses what SNS refuses: a message whose body and attributes
    (names, data types, values) pass 262,144 bytes."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        size = len(kwargs["Message"].encode()) + sum(
            len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
            for name, value in kwargs.get("MessageAttributes", {}).items()
        )
        if size > SNS_MAX_MESSAGE_BYTES:
            raise ValueError(f"InvalidParameter: message of {size} bytes is too long")
        self.published.append({**kwargs, "size": size})
        return {"MessageId": "m-1"}


def _failed_job(error: str, char: str = EMOJI) -> dict[str, Any]:
    """The job as events carry it (``job_view`` of its record, so it has every public field)."""
    model = widest_model(char)
    return job_view(
        {
            "job_id": "job_" + "a" * 32,
            "request_id": "pixverse-v6-image-to-video_1",
            "model": model.id,
            "status": "FAILED",
            "input": widest_input(model, char),
            "metadata": widest_metadata(char),
            "webhook_mode": "terminal",
            "submit_outcome": "accepted",
            "submit_attempts": 1,
            "last_submit_error": None,
            "outputs": [],
            "error": {"code": "generation_failed", "message": error},
            "created_at": "2026-11-25T10:00:00Z",
            "updated_at": "2026-11-25T10:05:00Z",
            "completed_at": "2026-11-25T10:05:00Z",
            "delivered_at": None,
        }
    )


# 100 KB of UTF-8 each: 300 KB as the event's (ASCII-escaped) JSON carries it.
@pytest.mark.parametrize("error", ["\u00e9" * 50 * 1024, EMOJI * 25 * 1024], ids=["latin", "emoji"])
def test_widest_job_with_a_100kb_error_publishes_one_event_under_sns_limit(error: str) -> None:
    # Given a FAILED job with the widest input the catalog accepts and a 100 KB error text
    event = build_event(JOB_FAILED, _failed_job(error), source="urn:pixverse-jobs:test")
    sns = StrictSns()

    # When it is published
    EventPublisher("arn:aws:sns:us-east-1:123456789012:events", sns).publish(event)

    # Then exactly one event went out, within SNS's limit, its error marked as truncated
    assert len(sns.published) == 1
    assert sns.published[0]["size"] <= SNS_MAX_MESSAGE_BYTES
    sent = json.loads(sns.published[0]["Message"])
    assert MARKER.search(sent["data"]["error"]["message"])
    assert sent["id"] == event["id"] and sent["data"]["job_id"] == event["data"]["job_id"]
    jsonschema.validate(sent, SCHEMA)


def test_event_that_fits_is_sent_unchanged() -> None:
    event = build_event(JOB_FAILED, _failed_job("the prompt was refused"), source="urn:pixverse-jobs:test")
    sns = StrictSns()

    EventPublisher("arn:aws:sns:us-east-1:123456789012:events", sns).publish(event)

    assert json.loads(sns.published[0]["Message"]) == event


def test_shortening_takes_the_largest_text_first_and_is_deterministic() -> None:
    event = build_event(JOB_FAILED, _failed_job("short reason"), source="urn:pixverse-jobs:test")
    limit = message_bytes(event) - 10_000

    fitted = fit_event(event, limit)

    assert message_bytes(fitted) <= limit
    assert fitted == fit_event(event, limit)  # a re-publish sends the very same document
    assert fitted["data"]["error"]["message"] == "short reason"  # the small field is left alone
    shortened = [k for k, v in fitted["data"]["input"].items() if v != event["data"]["input"][k]]
    assert len(shortened) == 1 and MARKER.search(fitted["data"]["input"][shortened[0]])
    # The original is not modified, and no character (nor surrogate pair) is split
    assert not MARKER.search(event["data"]["input"][shortened[0]])
    json.dumps(fitted, ensure_ascii=False).encode("utf-8")


def test_marker_counts_the_utf8_bytes_cut() -> None:
    text = EMOJI * 3000

    capped = truncate_text(text, 100)

    assert len(capped) == 100
    kept = capped[: MARKER.search(capped).start()]  # type: ignore[union-attr]
    assert int(MARKER.search(capped)[1]) == len(text.encode()) - len(kept.encode())  # type: ignore[index]


def test_callback_error_text_is_capped_when_parsed() -> None:
    body = json.dumps({"request_id": "r-1", "status": "FAILED", "error": "e" * 60_000})

    error = parse_callback(body).error

    assert error is not None and len(error) == MAX_ERROR_CHARS and MARKER.search(error)


def test_short_callback_error_is_kept_whole() -> None:
    body = json.dumps({"request_id": "r-1", "status": "FAILED", "error": "content policy"})

    assert parse_callback(body).error == "content policy"

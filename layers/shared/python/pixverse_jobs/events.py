"""Job events: CloudEvents 1.0 JSON documents published to the SNS topic.

The id is derived from the job id and the type, so a retried publish reuses it and a
consumer can deduplicate; SNS message attributes ``type``, ``model`` and ``status`` allow
subscription filter policies.

An event must fit SNS's message size (``SNS_MAX_MESSAGE_BYTES``): one that does not is refused
at publish, and the job's delivery would be re-driven forever. ``EventPublisher`` measures each
message as SNS does and, if it is too large, shortens the event's largest free-text fields
(the error message, the input's and metadata's strings) with a ``TRUNCATION_MARKER``: the event
is always sent, never dropped."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3

from pixverse_jobs.clock import utc_now_iso
from pixverse_jobs.observability import logger
from pixverse_jobs.states import TERMINAL, JobStatus
from pixverse_jobs.views import job_view

JOB_DELIVERED = "pixverse.job.delivered"
JOB_FAILED = "pixverse.job.failed"
# A job cancelled by its caller or its deadline_seconds: its one final event.
JOB_CANCELLED = "pixverse.job.cancelled"
# Optional (PROGRESS_EVENTS): one per status a sync-mode callback moved the job to.
JOB_PROGRESS = "pixverse.job.progress"

# Namespace of event ids: uuid5(namespace, "<job_id>/<type>").
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a44-8f0e-4f55-9a57-5c1f3d0b7e21")


def event_id(job_id: str, event_type: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{job_id}/{event_type}"))


def build_event(event_type: str, job: dict[str, Any], *, source: str, time: str | None = None) -> dict[str, Any]:
    """The CloudEvents document for a job (``job`` as ``views.job_view`` shows it); ``time`` is
    when it happened (default: now)."""
    return {
        "specversion": "1.0",
        "id": event_id(job["job_id"], event_type),
        "source": source,
        "type": event_type,
        "subject": job["job_id"],
        "time": time or utc_now_iso(),
        "datacontenttype": "application/json",
        "data": job,
    }


def final_event(job: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The final event of an ended job, built from its record alone: its id from the job id and
    type, its time the terminal transition's (not the publish's), so a re-publish after a crash,
    and a replay, send the same event."""
    status = JobStatus(job["status"])
    if status is JobStatus.DELIVERED:
        event_type = JOB_DELIVERED
    elif status is JobStatus.CANCELLED:
        event_type = JOB_CANCELLED
    elif status in TERMINAL:
        event_type = JOB_FAILED
    else:
        raise ValueError(f"job {job['job_id']} has not ended ({status}): it has no final event")
    occurred = job.get("delivered_at") or job.get("updated_at")
    return build_event(event_type, job_view(job), source=source, time=str(occurred) if occurred else None)


def progress_event_id(job_id: str, status: str) -> str:
    """Stable per job and status: a progress event is about one status change, and there is at
    most one change into each status, so a consumer can deduplicate on the id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{job_id}/{JOB_PROGRESS}/{status}"))


def build_progress_event(job: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The ``pixverse.job.progress`` CloudEvent for a job that just moved to ``job["status"]``."""
    event = build_event(JOB_PROGRESS, job, source=source)
    event["id"] = progress_event_id(job["job_id"], str(job["status"]))
    return event


# SNS refuses a message whose body and attributes (names, data types and values) together pass
# the topic's MaximumMessageSize, 262,144 bytes by default (SNS developer guide, "Publishing large
# messages": https://docs.aws.amazon.com/sns/latest/dg/large-message-payloads.html; Publish API,
# MessageAttributeValue).
SNS_MAX_MESSAGE_BYTES = 262_144
TRUNCATION_MARKER = "...[truncated {} bytes]"


class EventTooLarge(ValueError):
    """The event does not fit SNS's limit even with every free-text field shortened."""


def truncate_text(text: str, max_chars: int) -> str:
    """``text`` if it has at most ``max_chars`` characters; else its start and a marker saying
    how many UTF-8 bytes were cut, ``max_chars`` characters in all (or just the marker, if
    ``max_chars`` is shorter than it)."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(TRUNCATION_MARKER.format(len(text.encode()))))
    return _with_marker(text, keep)


def _with_marker(text: str, keep: int) -> str:
    cut = len(text[keep:].encode("utf-8", "surrogatepass"))
    return text[:keep] + TRUNCATION_MARKER.format(cut)


def _escaped_width(char: str) -> int:
    """Bytes ``char`` takes in json.dumps's (ASCII-escaped) output."""
    code = ord(char)
    if code > 0xFFFF:
        return 12  # a surrogate pair, \\udXXX\\udXXX
    if code > 0x7E or (code < 0x20 and char not in "\n\r\t\b\f"):
        return 6  # \\uXXXX
    return 2 if char in '"\\\n\r\t\b\f' else 1


def _shortened(text: str, max_width: int) -> str:
    """``text`` cut so that it and the marker take at most ``max_width`` bytes as JSON escapes
    them (never splitting a character or its escape)."""
    room = max_width - len(TRUNCATION_MARKER.format(len(text.encode("utf-8", "surrogatepass"))))
    keep = 0
    for char in text:
        room -= _escaped_width(char)
        if room < 0:
            break
        keep += 1
    return _with_marker(text, keep)


class EventPublisher:
    def __init__(self, topic_arn: str, client: Any = None, *, max_bytes: int = SNS_MAX_MESSAGE_BYTES) -> None:
        self._topic_arn = topic_arn
        self._client = client or boto3.client("sns")
        self._max_bytes = max_bytes

    def publish(self, event: dict[str, Any]) -> None:
        """Publish ``event``, shortened to fit SNS's size limit if need be (fit_event)."""
        attributes = _attributes(event)
        fitted = fit_event(event, self._max_bytes)
        if fitted is not event:
            logger.warning(
                "event shortened to fit SNS's message size",
                extra={"event_id": event["id"], "bytes": message_bytes(event), "max_bytes": self._max_bytes},
            )
        self._client.publish(
            TopicArn=self._topic_arn,
            Message=_message(fitted),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )


def _message(event: dict[str, Any]) -> str:
    # ASCII-escaped on purpose: SNS message text may not hold every code point (U+FFFE and
    # U+FFFF, for one), which the escapes avoid; the truncation below counts this form.
    return json.dumps(event, separators=(",", ":"))


def _attributes(event: dict[str, Any]) -> dict[str, str]:
    data = event["data"]
    attributes = {
        "type": event["type"],
        "model": str(data.get("model") or ""),
        "status": str(data.get("status") or ""),
    }
    return {k: v for k, v in attributes.items() if v}


def message_bytes(event: dict[str, Any]) -> int:
    """The size SNS counts for ``event`` as EventPublisher sends it: the message's UTF-8 bytes
    plus every attribute's name, data type and value."""
    attributes = sum(len(k.encode()) + len(b"String") + len(v.encode()) for k, v in _attributes(event).items())
    return len(_message(event).encode()) + attributes


def fit_event(event: dict[str, Any], max_bytes: int = SNS_MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """``event`` itself if it fits ``max_bytes`` as SNS counts it; else a copy whose largest
    free-text fields are shortened, largest first, with a TRUNCATION_MARKER, until it fits.

    Deterministic, so a re-published event is the same document. Raises EventTooLarge if the
    rest of the event (its outputs, say) is too large on its own."""
    excess = message_bytes(event) - max_bytes
    if excess <= 0:
        return event
    fitted = copy.deepcopy(event)
    while excess > 0:
        candidates = sorted(_free_text(fitted["data"]), key=lambda c: -len(json.dumps(c[0][c[1]])))
        if not candidates:
            raise EventTooLarge(f"event {event['id']} is {excess} bytes over SNS's limit with every text shortened")
        holder, key = candidates[0]
        width = len(json.dumps(holder[key])) - 2
        shortened = _shortened(holder[key], width - excess)
        if len(shortened) >= len(holder[key]):
            raise EventTooLarge(f"event {event['id']} is {excess} bytes over SNS's limit with every text shortened")
        holder[key] = shortened
        excess = message_bytes(fitted) - max_bytes
    return fitted


def _free_text(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(holder, key) of each free-text field of a job view that may be shortened and is not
    already only a marker: the error message, and the string values of input and metadata."""
    error = data.get("error")
    places: list[tuple[dict[str, Any], str]] = []
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        places.append((error, "message"))
    for name in ("input", "metadata"):
        holder = data.get(name)
        if isinstance(holder, dict):
            places.extend((holder, key) for key, value in holder.items() if isinstance(value, str))
    for holder, key in places:
        if len(json.dumps(holder[key])) - 2 > len(TRUNCATION_MARKER.format(10**9)):
            yield holder, key

"""Job events: CloudEvents 1.0 JSON documents published to the SNS topic and to an EventBridge bus.

The id is derived from the job id and the type, so a retried publish reuses it and a
consumer can deduplicate; SNS message attributes ``type``, ``model`` and ``status`` allow
subscription filter policies. On EventBridge the same document is the entry's ``Detail``, with
``Source`` = its ``source`` and ``DetailType`` = its ``type``, so rules filter on
``detail-type`` and on any field of ``detail`` (``detail.data.status``, ``detail.data.model``).

An event must fit SNS's message size (``SNS_MAX_MESSAGE_BYTES``) and EventBridge's entry size
(``EVENTBRIDGE_MAX_ENTRY_BYTES``): one that does not is refused at publish, and the job's
delivery would be re-driven forever. ``EventPublisher`` measures each as the service does and,
if either is too large, shortens the event's largest free-text fields (the error message, the
input's and metadata's strings) with a ``TRUNCATION_MARKER`` until it fits both: one shortened
document goes to both, and the event is always sent, never dropped.

Order and failures. ``EventPublisher.publish`` publishes to SNS, then puts the event on the bus,
and returns only when both took it. SNS first: it is the older contract, and its subscribers'
latency stays as it was. If SNS fails nothing was sent. An entry the bus refuses for a passing
reason (``ThrottlingException``, ``InternalFailure``) is sent again, up to ``BUS_ATTEMPTS`` in all,
without a second SNS copy. If the bus still fails (the call raises, or PutEvents answers HTTP 200
with ``FailedEntryCount`` 1 and the entry's ``ErrorCode``), the event is on SNS but not on the bus,
and ``EventNotPublished`` is raised: the caller does not record the
event as published, so its retry publishes again to both. SNS subscribers may then see the event
twice, with the same id; both channels are at least once and consumers deduplicate on ``id``."""

from __future__ import annotations

import contextlib
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pixverse_jobs.clock import from_iso, utc_now_iso
from pixverse_jobs.errors import EventNotPublished
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
# EventBridge: "The total entry size must be less than 256KB", the entry's size counted as
# "Calculating PutEvents event entry size" documents it: Time (if given) 14 bytes, Source,
# DetailType and Detail (and each Resources entry) their UTF-8 bytes
# (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html). Less than
# 262,144 bytes is at most 262,143. Over it, PutEvents refuses the whole request (ValidationException).
EVENTBRIDGE_MAX_ENTRY_BYTES = 262_143
EVENTBRIDGE_TIME_BYTES = 14
TRUNCATION_MARKER = "...[truncated {} bytes]"
# Entry error codes a new attempt may cure ("Amazon EventBridge PutEvents": retry the failed
# entries; InternalFailure and ThrottlingException are the transient ones). The publisher retries
# only the entry, so that SNS subscribers do not get a duplicate for a passing bus error.
RETRYABLE_ENTRY_ERRORS = frozenset({"InternalFailure", "ThrottlingException"})
BUS_ATTEMPTS = 3
BUS_RETRY_SECONDS = 0.2  # doubled after each attempt


class EventTooLarge(ValueError):
    """The event does not fit SNS's (or EventBridge's) limit even with every free-text field shortened."""


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
    """The one publisher of job events: each goes to the SNS topic and, when a bus is named, to
    the EventBridge bus (see the module's docstring for the order and what a failure means).

    ``topic_arn`` and ``client`` (SNS) are positional as they always were; ``bus_name`` is the
    bus's name or ARN (empty: SNS only), ``events_client`` an EventBridge client (created here
    when a bus is named and none is given)."""

    def __init__(
        self,
        topic_arn: str,
        client: Any = None,
        *,
        max_bytes: int = SNS_MAX_MESSAGE_BYTES,
        bus_name: str = "",
        events_client: Any = None,
        max_entry_bytes: int = EVENTBRIDGE_MAX_ENTRY_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._topic_arn = topic_arn
        self._client = client or boto3.client("sns")
        self._max_bytes = max_bytes
        self._bus_name = bus_name
        self._events = (events_client or boto3.client("events")) if bus_name else None
        self._max_entry_bytes = max_entry_bytes
        self._sleep = sleep

    @property
    def bus_name(self) -> str:
        return self._bus_name

    def publish(self, event: dict[str, Any]) -> None:
        """Publish ``event`` to SNS, then to the bus, shortened to fit both limits if need be
        (fit_event). Raises EventNotPublished if the bus did not take it (it is on SNS then)."""
        attributes = _attributes(event)
        max_entry_bytes = self._max_entry_bytes if self._events is not None else None
        fitted = fit_event(event, self._max_bytes, max_entry_bytes=max_entry_bytes)
        if fitted is not event:
            logger.warning(
                "event shortened to fit SNS's message size and EventBridge's entry size",
                extra={
                    "event_id": event["id"],
                    "bytes": message_bytes(event),
                    "entry_bytes": entry_bytes(event),
                    "max_bytes": self._max_bytes,
                    "max_entry_bytes": max_entry_bytes,
                },
            )
        self._client.publish(
            TopicArn=self._topic_arn,
            Message=_message(fitted),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
        if self._events is not None:
            self._put_on_bus(fitted)

    def _put_on_bus(self, event: dict[str, Any]) -> None:
        """One PutEvents entry; an entry refused for a passing reason is sent again (up to
        BUS_ATTEMPTS in all), any other refusal (HTTP 200, FailedEntryCount 1) raises like a
        failed call, so that the caller's retry sends the event again."""
        delay = BUS_RETRY_SECONDS
        for attempt in range(1, BUS_ATTEMPTS + 1):
            try:
                self._put_entry(event)
                return
            except _EntryRefused as refused:
                if refused.code not in RETRYABLE_ENTRY_ERRORS or attempt == BUS_ATTEMPTS:
                    raise EventNotPublished(
                        f"event {event['id']} is on SNS but EventBridge bus {self._bus_name} refused its entry "
                        f"({attempt} attempts): {refused.code} {refused.message}".rstrip()
                    ) from None
                logger.warning(
                    "EventBridge refused the entry; sending it again",
                    extra={"event_id": event["id"], "code": refused.code, "attempt": attempt, "retry_in": delay},
                )
                self._sleep(delay)
                delay *= 2

    def _put_entry(self, event: dict[str, Any]) -> None:
        try:
            answer = self._events.put_events(Entries=[bus_entry(event, self._bus_name)])  # type: ignore[union-attr]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "unknown")
            raise EventNotPublished(
                f"event {event['id']} is on SNS but EventBridge bus {self._bus_name} refused PutEvents: {code}"
            ) from exc
        except BotoCoreError as exc:
            raise EventNotPublished(
                f"event {event['id']} is on SNS but EventBridge bus {self._bus_name} could not be reached: {exc}"
            ) from exc
        entries = answer.get("Entries") or [{}]
        if answer.get("FailedEntryCount") or entries[0].get("ErrorCode") or not entries[0].get("EventId"):
            raise _EntryRefused(
                str(entries[0].get("ErrorCode") or "no EventId"), str(entries[0].get("ErrorMessage") or "")
            )


class _EntryRefused(Exception):
    """PutEvents answered, but with the entry's ErrorCode instead of its EventId."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


def bus_entry(event: dict[str, Any], bus_name: str) -> dict[str, Any]:
    """The PutEvents entry for ``event``: Source = its source, DetailType = its type, Detail =
    the document itself, Time = when it happened (so a re-publish carries the same time)."""
    entry: dict[str, Any] = {
        "Source": event["source"],
        "DetailType": event["type"],
        "Detail": _message(event),
        "EventBusName": bus_name,
    }
    # Without a readable time EventBridge stamps the time of the call.
    with contextlib.suppress(KeyError, ValueError):
        entry["Time"] = from_iso(str(event["time"]))
    return entry


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


def entry_bytes(event: dict[str, Any]) -> int:
    """The size EventBridge counts for the PutEvents entry of ``event`` (bus_entry): Time 14
    bytes, Source, DetailType and Detail their UTF-8 bytes ("Calculating PutEvents event entry
    size"). Time is counted whether or not the event's time parses: an upper bound."""
    return (
        EVENTBRIDGE_TIME_BYTES
        + len(str(event["source"]).encode())
        + len(str(event["type"]).encode())
        + len(_message(event).encode())
    )


def _excess(event: dict[str, Any], max_bytes: int, max_entry_bytes: int | None) -> int:
    """Bytes ``event`` is over the tighter of the two limits (0 or less: it fits both)."""
    excess = message_bytes(event) - max_bytes
    if max_entry_bytes is not None:
        excess = max(excess, entry_bytes(event) - max_entry_bytes)
    return excess


def fit_event(
    event: dict[str, Any], max_bytes: int = SNS_MAX_MESSAGE_BYTES, *, max_entry_bytes: int | None = None
) -> dict[str, Any]:
    """``event`` itself if it fits ``max_bytes`` as SNS counts it and, when given,
    ``max_entry_bytes`` as EventBridge counts its entry; else a copy whose largest free-text
    fields are shortened, largest first, with a TRUNCATION_MARKER, until it fits both.

    Deterministic, so a re-published event is the same document. Raises EventTooLarge if the
    rest of the event (its outputs, say) is too large on its own."""
    excess = _excess(event, max_bytes, max_entry_bytes)
    if excess <= 0:
        return event
    fitted = copy.deepcopy(event)
    while excess > 0:
        candidates = sorted(_free_text(fitted["data"]), key=lambda c: -len(json.dumps(c[0][c[1]])))
        if not candidates:
            raise EventTooLarge(f"event {event['id']} is {excess} bytes over its limit with every text shortened")
        holder, key = candidates[0]
        width = len(json.dumps(holder[key])) - 2
        shortened = _shortened(holder[key], width - excess)
        if len(shortened) >= len(holder[key]):
            raise EventTooLarge(f"event {event['id']} is {excess} bytes over its limit with every text shortened")
        holder[key] = shortened
        excess = _excess(fitted, max_bytes, max_entry_bytes)
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

"""Job events: CloudEvents 1.0 JSON documents published to the SNS topic.

The id is derived from the job id and the type, so a retried publish reuses it and a
consumer can deduplicate; SNS message attributes ``type``, ``model`` and ``status`` allow
subscription filter policies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3

from pixverse_jobs.clock import utc_now_iso

JOB_DELIVERED = "pixverse.job.delivered"
JOB_FAILED = "pixverse.job.failed"
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


def progress_event_id(job_id: str, status: str) -> str:
    """Stable per job and status: a progress event is about one status change, and there is at
    most one change into each status, so a consumer can deduplicate on the id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{job_id}/{JOB_PROGRESS}/{status}"))


def build_progress_event(job: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The ``pixverse.job.progress`` CloudEvent for a job that just moved to ``job["status"]``."""
    event = build_event(JOB_PROGRESS, job, source=source)
    event["id"] = progress_event_id(job["job_id"], str(job["status"]))
    return event


class EventPublisher:
    def __init__(self, topic_arn: str, client: Any = None) -> None:
        self._topic_arn = topic_arn
        self._client = client or boto3.client("sns")

    def publish(self, event: dict[str, Any]) -> None:
        data = event["data"]
        attributes = {
            "type": event["type"],
            "model": str(data.get("model") or ""),
            "status": str(data.get("status") or ""),
        }
        self._client.publish(
            TopicArn=self._topic_arn,
            Message=json.dumps(event, separators=(",", ":")),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
        )

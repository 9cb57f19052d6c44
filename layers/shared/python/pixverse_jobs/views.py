"""The public shape of a job: what GET /jobs/{job_id} returns and events carry as ``data``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pixverse_jobs.clock import to_iso
from pixverse_jobs.states import CANCELLED_FROM, OUTCOME_UNKNOWN_CODE, SUBMIT_ERROR, JobStatus, SubmitOutcome
from pixverse_jobs.store import Job

PUBLIC_FIELDS = (
    "job_id",
    "request_id",
    "model",
    "status",
    "submit_outcome",
    "submit_attempts",
    "last_submit_error",
    "input",
    "metadata",
    "webhook_mode",
    "outputs",
    "error",
    "created_at",
    "updated_at",
    "completed_at",
    "delivered_at",
    "deadline_seconds",
    "deadline_at",
)
# The job attribute of its deadline (epoch seconds; cancel.DEADLINE_AT), shown as ISO 8601.
_DEADLINE_AT = "deadline_at"


def job_view(job: Job) -> dict[str, Any]:
    """The job without internal attributes (owner, leases, TTL, outbox flags)."""
    view = {name: job.get(name) for name in PUBLIC_FIELDS}
    view["submit_outcome"] = str(submit_outcome(job))
    view["submit_attempts"] = int(job.get("submit_attempts") or 0)
    view["input"] = view["input"] or {}
    view["metadata"] = view["metadata"] or {}
    view["outputs"] = [dict(o) for o in (job.get("outputs") or [])]
    deadline_at = job.get(_DEADLINE_AT)
    view["deadline_at"] = None if deadline_at is None else to_iso(datetime.fromtimestamp(float(deadline_at), UTC))
    if view["deadline_seconds"] is not None:
        view["deadline_seconds"] = int(view["deadline_seconds"])
    return view


def submit_outcome(job: Mapping[str, Any]) -> SubmitOutcome:
    """What is known of the job's submit, from its record: a SUBMITTING job reads the same to
    the reconciler whether it is pending or unknown (both wait for the callback), but a caller
    told "unknown" knows the gateway may have accepted, and billed, the job: not to resubmit.
    An ACCEPTED job is "waiting": not sent yet, or the gateway said "not now" (last_submit_error).
    A job cancelled while it waited was never sent ("not_sent"); one cancelled while its submit was
    on its way may have been accepted ("unknown") until the answer or a callback brings its
    request_id."""
    status = job.get("status")
    if status == JobStatus.ACCEPTED and not job.get("request_id"):
        return SubmitOutcome.WAITING
    if status == JobStatus.CANCELLED and not job.get("request_id"):
        if job.get(CANCELLED_FROM) == JobStatus.ACCEPTED:
            return SubmitOutcome.NOT_SENT
        return SubmitOutcome.UNKNOWN
    if job.get("request_id") or status not in (JobStatus.SUBMITTING, JobStatus.SUBMIT_FAILED):
        return SubmitOutcome.ACCEPTED  # only the gateway's answer or callback moves a job on
    if status == JobStatus.SUBMIT_FAILED:
        error = job.get("error") or {}
        if isinstance(error, Mapping) and error.get("code") == OUTCOME_UNKNOWN_CODE:
            return SubmitOutcome.UNKNOWN
        return SubmitOutcome.REFUSED
    if job.get(SUBMIT_ERROR):
        return SubmitOutcome.UNKNOWN
    return SubmitOutcome.PENDING

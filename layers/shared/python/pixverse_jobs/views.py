"""The public shape of a job: what GET /jobs/{job_id} returns and events carry as ``data``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pixverse_jobs.states import OUTCOME_UNKNOWN_CODE, SUBMIT_ERROR, JobStatus, SubmitOutcome
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
)


def job_view(job: Job) -> dict[str, Any]:
    """The job without internal attributes (owner, leases, TTL, outbox flags)."""
    view = {name: job.get(name) for name in PUBLIC_FIELDS}
    view["submit_outcome"] = str(submit_outcome(job))
    view["submit_attempts"] = int(job.get("submit_attempts") or 0)
    view["input"] = view["input"] or {}
    view["metadata"] = view["metadata"] or {}
    view["outputs"] = [dict(o) for o in (job.get("outputs") or [])]
    return view


def submit_outcome(job: Mapping[str, Any]) -> SubmitOutcome:
    """What is known of the job's submit, from its record: a SUBMITTING job reads the same to
    the reconciler whether it is pending or unknown (both wait for the callback), but a caller
    told "unknown" knows the gateway may have accepted, and billed, the job: not to resubmit.
    An ACCEPTED job is "waiting": not sent yet, or the gateway said "not now" (last_submit_error)."""
    status = job.get("status")
    if status == JobStatus.ACCEPTED and not job.get("request_id"):
        return SubmitOutcome.WAITING
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

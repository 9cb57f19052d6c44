"""The public shape of a job: what GET /jobs/{job_id} returns and events carry as ``data``."""

from __future__ import annotations

from typing import Any

from pixverse_jobs.store import Job

PUBLIC_FIELDS = (
    "job_id",
    "request_id",
    "model",
    "status",
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
    view["input"] = view["input"] or {}
    view["metadata"] = view["metadata"] or {}
    view["outputs"] = [dict(o) for o in (job.get("outputs") or [])]
    return view

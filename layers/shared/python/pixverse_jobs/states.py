"""The job state machine: which status may follow which. Every path (submit, webhook,
reconciler, copier) moves a job only through ``JobStore.advance``, whose conditional write
is built from ``sources_of`` here, so duplicates and reordering cannot move a job backwards."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    SUBMITTING = "SUBMITTING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    COPYING = "COPYING"
    DELIVERED = "DELIVERED"
    SUBMIT_FAILED = "SUBMIT_FAILED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    DELIVERY_FAILED = "DELIVERY_FAILED"


S = JobStatus

TERMINAL: frozenset[JobStatus] = frozenset({S.DELIVERED, S.SUBMIT_FAILED, S.FAILED, S.ERROR, S.DELIVERY_FAILED})
FAILURES: frozenset[JobStatus] = frozenset({S.SUBMIT_FAILED, S.FAILED, S.ERROR, S.DELIVERY_FAILED})

# status -> statuses it may move to. QUEUED -> QUEUED and PROCESSING -> PROCESSING are the
# sync-mode progress callbacks (they refresh updated_at); nothing ever moves backwards.
_NEXT: dict[JobStatus, frozenset[JobStatus]] = {
    S.SUBMITTING: frozenset({S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, S.ERROR, S.SUBMIT_FAILED}),
    S.QUEUED: frozenset({S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, S.ERROR}),
    S.PROCESSING: frozenset({S.PROCESSING, S.COMPLETED, S.FAILED, S.ERROR}),
    S.COMPLETED: frozenset({S.COPYING, S.DELIVERY_FAILED}),
    # COPYING -> COPYING: a copier takes over a copy whose lease expired (its owner crashed).
    S.COPYING: frozenset({S.COPYING, S.DELIVERED, S.DELIVERY_FAILED}),
    S.DELIVERED: frozenset(),
    S.SUBMIT_FAILED: frozenset(),
    S.FAILED: frozenset(),
    S.ERROR: frozenset(),
    S.DELIVERY_FAILED: frozenset(),
}

# The gateway's own statuses (callbacks and the status endpoint) and what they mean for a job.
GATEWAY_STATUSES: dict[str, JobStatus] = {
    "QUEUED": S.QUEUED,
    "PROCESSING": S.PROCESSING,
    "COMPLETED": S.COMPLETED,
    "FAILED": S.FAILED,
    "ERROR": S.ERROR,
}

# Gateway outcomes after which the copier has work: copy media, or publish the failed event.
NEEDS_DELIVERY: frozenset[JobStatus] = frozenset({S.COMPLETED, S.FAILED, S.ERROR})


def can_move(current: JobStatus, target: JobStatus) -> bool:
    """Whether a job in ``current`` may move to ``target``."""
    return target in _NEXT[current]


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which ``target`` may be reached (the condition of the write)."""
    return frozenset(src for src, nxt in _NEXT.items() if target in nxt)


def is_terminal(status: JobStatus) -> bool:
    return status in TERMINAL


# A SUBMITTING job without a request_id whose submit was sent but never answered in time holds
# the reason here (``{"code", "message"}``): the gateway may have accepted it. Only a callback
# (it carries the request_id) moves such a job on; the reconciler ends it at MAX_JOB_AGE_SECONDS
# as SUBMIT_FAILED with OUTCOME_UNKNOWN_CODE.
SUBMIT_ERROR = "submit_error"
OUTCOME_UNKNOWN_CODE = "submit_outcome_unknown"


class SubmitOutcome(StrEnum):
    """What is known of a job's submit to the gateway (the view's ``submit_outcome``)."""

    PENDING = "pending"  # being sent now (or its invocation died before recording an answer)
    ACCEPTED = "accepted"  # the gateway's request_id is known
    UNKNOWN = "unknown"  # sent, but no answer came in time: the callback may still bring it
    REFUSED = "refused"  # the gateway refused it, or it was never sent: SUBMIT_FAILED

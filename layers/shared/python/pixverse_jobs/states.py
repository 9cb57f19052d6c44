"""The job state machine: which status may follow which. Every path (submit, submitter, webhook,
reconciler, copier) moves a job only through ``JobStore.advance``, whose conditional write
is built from ``sources_of`` here, so duplicates and reordering cannot move a job backwards.

ACCEPTED is admission's waiting room: POST /jobs records a job there and answers at once; the
submitter claims it (ACCEPTED -> SUBMITTING, a conditional write) before it calls the gateway, so
two messages for one job can never submit it twice. SUBMITTING -> ACCEPTED is the one move back,
and only the submitter makes it: the gateway answered "not now" (429, 402, a 5xx) to the claimed
submit, so it surely did not accept the job, which waits for its next turn. No callback can
make that move (ACCEPTED is not a gateway status), and the write requires that no request_id
was stored.

CANCELLED ends a job from any status that has not ended (``POST /jobs/{job_id}/cancel``, or its
``deadline_seconds`` passing). Nothing leaves CANCELLED, so a later callback, submit answer or copy
changes nothing; the gateway has no cancel, so a job it accepted may still be billed."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
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
    CANCELLED = "CANCELLED"


S = JobStatus

TERMINAL: frozenset[JobStatus] = frozenset(
    {S.DELIVERED, S.SUBMIT_FAILED, S.FAILED, S.ERROR, S.DELIVERY_FAILED, S.CANCELLED}
)
FAILURES: frozenset[JobStatus] = frozenset({S.SUBMIT_FAILED, S.FAILED, S.ERROR, S.DELIVERY_FAILED})

# status -> statuses it may move to. QUEUED -> QUEUED and PROCESSING -> PROCESSING are the
# sync-mode progress callbacks (they refresh updated_at); nothing ever moves backwards.
_NEXT: dict[JobStatus, frozenset[JobStatus]] = {
    # SUBMIT_FAILED: the gateway never will (400, model not found), or it did not have room
    # within MAX_JOB_AGE_SECONDS. The gateway's statuses: a signed callback for a job waiting
    # after a 5xx proves the gateway accepted that submit after all; the job takes it (its
    # request_id with it), and its next turn finds it no longer ACCEPTED, so it is not sent again.
    S.ACCEPTED: frozenset({S.SUBMITTING, S.SUBMIT_FAILED, S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, S.ERROR}),
    S.SUBMITTING: frozenset({S.ACCEPTED, S.QUEUED, S.PROCESSING, S.COMPLETED, S.FAILED, S.ERROR, S.SUBMIT_FAILED}),
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
    S.CANCELLED: frozenset(),
}
# Every status that has not ended may be cancelled.
for _status in S:
    if _status not in TERMINAL:
        _NEXT[_status] = _NEXT[_status] | {S.CANCELLED}

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

    WAITING = "waiting"  # ACCEPTED: not sent yet, or the gateway said "not now"; its turn comes
    PENDING = "pending"  # being sent now (or its invocation died before recording an answer)
    ACCEPTED = "accepted"  # the gateway's request_id is known
    UNKNOWN = "unknown"  # sent, but no answer came in time: the callback may still bring it
    REFUSED = "refused"  # the gateway refused it, or it was never sent: SUBMIT_FAILED
    NOT_SENT = "not_sent"  # cancelled before it was sent: nothing was billed


# The error of a job that waited ACCEPTED past MAX_JOB_AGE_SECONDS: the gateway never took it, so
# it was never billed. Written by the submitter (the job's message came back) or the reconciler.
NOT_SUBMITTED_CODE = "not_submitted"


def not_submitted_error(last_submit_error: Any, max_age_seconds: int) -> dict[str, str]:
    """The ``error`` of a job that was never submitted, naming the gateway's last "not now"."""
    reason = f"the gateway did not take the job within {max_age_seconds / 3600:g} hours"
    if isinstance(last_submit_error, Mapping) and last_submit_error:
        reason += f" (its last answer: {last_submit_error.get('code')}: {last_submit_error.get('message')})"
    return {"code": NOT_SUBMITTED_CODE, "message": reason}


# The error codes of a CANCELLED job: cancelled by its caller, or its deadline_seconds passed.
CANCELLED_CODE = "cancelled"
DEADLINE_EXCEEDED_CODE = "deadline_exceeded"
# The status a CANCELLED job was cancelled from (shown as ``error.cancelled_from``).
CANCELLED_FROM = "cancelled_from"

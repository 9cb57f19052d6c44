"""Ending a job that has not ended: its caller cancels it (``POST /jobs/{job_id}/cancel``), or its
``deadline_seconds`` passes (the deadline function, with the reconciler behind it).

A cancel is one conditional write to CANCELLED from the status the job was read in, so it can
never overwrite an outcome that came meanwhile (the write is refused and read again). The job's
one ``pixverse.job.cancelled`` event is then the copier's to publish, like every final event
(the copy queue; if that send fails, the reconciler asks the copier: an ended job whose event is
not out stays in the unfinished index, and the cancel brings its next look near).

The gateway has no cancel: a job it accepted goes on there and may be billed. Its callbacks are
refused by the state machine (nothing leaves CANCELLED), so it changes nothing and copies nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pixverse_jobs.clock import epoch_seconds
from pixverse_jobs.observability import logger
from pixverse_jobs.queue import CopyQueue, DeadlineQueue
from pixverse_jobs.states import (
    CANCELLED_CODE,
    CANCELLED_FROM,
    DEADLINE_EXCEEDED_CODE,
    JobStatus,
    is_terminal,
)
from pixverse_jobs.store import CHECK_AT, COPY_LEASE, COPY_RETRY_AT, COPY_RETRY_MESSAGE, Job, JobStore

# The job attribute holding a job's deadline (epoch seconds), from its deadline_seconds.
DEADLINE_AT = "deadline_at"
# How long past a job's deadline the reconciler looks at it (its check_at), in case the deadline
# message was lost: the deadline function comes first, within seconds.
DEADLINE_GRACE_SECONDS = 30
# Reads and writes a cancel makes before giving up on a job whose status keeps changing under it.
CANCEL_ATTEMPTS = 5
# How soon after a cancel the reconciler looks at the job, in case the copier was never asked to
# publish its event (the copy queue's send failed): one reconciler run away at most.
ANNOUNCE_CHECK_SECONDS = 60
# A message that comes at most this early waits for the deadline inside the invocation (if its time
# allows) rather than going round the queue again. SQS delays are whole seconds and the deadline
# message's is rounded down, so its last hop arrives up to a second early and waits the rest here:
# the cancel is neither early nor a second late.
INLINE_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Cancellation:
    """What a cancel found: the job after it, and whether this call ended it."""

    job: Job
    cancelled: bool


class Canceller:
    def __init__(self, store: JobStore, copy_queue: CopyQueue) -> None:
        self._store = store
        self._copy_queue = copy_queue

    def cancel(self, job: Job, *, code: str = CANCELLED_CODE, message: str | None = None) -> Cancellation:
        """End ``job`` (as read) CANCELLED unless it has ended; ``code`` is the error's code
        (``cancelled`` or ``deadline_exceeded``). Returns the job as it then stands."""
        job_id = str(job["job_id"])
        for _ in range(CANCEL_ATTEMPTS):
            status = JobStatus(job["status"])
            if is_terminal(status):
                return Cancellation(job, cancelled=False)
            reason = message or _reason(code, job)
            transition = self._store.advance(
                job_id,
                JobStatus.CANCELLED,
                attributes={
                    "error": {"code": code, "message": reason},
                    CANCELLED_FROM: str(status),
                    CHECK_AT: epoch_seconds() + ANNOUNCE_CHECK_SECONDS,
                },
                # A copy in hand or waiting for its retry stops here: its DELIVERED write will be
                # refused, and its copier removes what it wrote.
                remove=[COPY_LEASE, COPY_RETRY_AT, COPY_RETRY_MESSAGE],
                from_statuses=[status],
            )
            if transition.applied:
                logger.info("job cancelled", extra={"job_id": job_id, "code": code, "from": str(status)})
                self._announce(job_id)
                return Cancellation(transition.job, cancelled=True)
            job = transition.job  # it moved meanwhile: look again
        # A job whose status moved five times during one cancel is moving fast; its caller may ask again.
        logger.warning("job kept changing; not cancelled", extra={"job_id": job_id})
        return Cancellation(job, cancelled=False)

    def _announce(self, job_id: str) -> None:
        try:
            self._copy_queue.request_delivery(job_id)
        except Exception:
            logger.exception("could not ask for the cancelled event; the reconciler will", extra={"job_id": job_id})


def _reason(code: str, job: Job) -> str:
    if code == DEADLINE_EXCEEDED_CODE:
        return f"the job did not end within its deadline_seconds ({job.get('deadline_seconds')})"
    if job.get("request_id"):
        return "cancelled by its caller; the gateway has no cancel, so the generation may still be billed"
    if job.get("status") == JobStatus.SUBMITTING:
        return "cancelled by its caller while its submit was on its way; the gateway may still bill it"
    return "cancelled by its caller before it was sent to the gateway; nothing was billed"


class DeadlineOutcome(StrEnum):
    CANCELLED = "cancelled"  # the deadline passed and this ended the job
    ENDED = "ended"  # the job had ended (or is unknown): nothing to do
    NOT_YET = "not_yet"  # the deadline is still ahead: the message was sent again, delayed


class DeadlineWatch:
    """The deadline function's work for one message: end the job if its deadline has passed, or
    send the message again for the time left (a deadline past SQS's 15-minute delay)."""

    def __init__(
        self,
        store: JobStore,
        canceller: Canceller,
        queue: DeadlineQueue,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._canceller = canceller
        self._queue = queue
        self._clock = clock
        self._sleep = sleep

    def on_message(self, job_id: str, *, wait_budget: float = 0.0) -> DeadlineOutcome:
        """``wait_budget``: the seconds this invocation may spend waiting for a deadline that is
        near (at most INLINE_WAIT_SECONDS)."""
        job = self._store.get(job_id)
        if job is None or is_terminal(JobStatus(job["status"])) or job.get(DEADLINE_AT) is None:
            return DeadlineOutcome.ENDED
        present = self._clock()
        deadline_at = float(job[DEADLINE_AT])
        ahead = deadline_at - present
        if 0 < ahead <= min(wait_budget, INLINE_WAIT_SECONDS):
            self._sleep(ahead)
            present = self._clock()
            job = self._store.get(job_id) or job
        if deadline_at - present > 0:
            delay = self._queue.watch(job_id, deadline_at, now=present)
            logger.info("deadline not reached; watching again", extra={"job_id": job_id, "delay": delay})
            return DeadlineOutcome.NOT_YET
        late = round(present - deadline_at, 3)
        ending = self._canceller.cancel(job, code=DEADLINE_EXCEEDED_CODE)
        if not ending.cancelled:
            return DeadlineOutcome.ENDED
        logger.info("deadline exceeded: job cancelled", extra={"job_id": job_id, "late_seconds": late})
        return DeadlineOutcome.CANCELLED

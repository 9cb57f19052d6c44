"""The reconciler: brings to an end the jobs whose callback never came.

The gateway's doc warns that persistent webhook failures may stop further deliveries, so no job
may depend on its callback alone. On a schedule, the reconciler reads the jobs that have not
ended (and been announced) and whose next look is due, from the sparse ``unfinished_by_check``
index (never a scan): each job carries ``check_at``, when it next needs a look, set at its
creation (created_at + RECONCILE_AFTER_SECONDS), pushed forward by every look that leaves it
unfinished and by a callback that shows it alive. So a run reads the most overdue jobs first, and
a job the gateway is still working on is not polled again until its backoff (``_poll_interval``)
has passed. For each job, by its status (``Reconciler._looks``, the one place a status is added):

* QUEUED / PROCESSING (or SUBMITTING with a request_id): polls GET
  /v2/requests/status/{request_id}. A status the job already has moves only its next look (one
  small conditional write); anything new is applied with ``CallbackProcessor`` -- the very path a
  callback takes, one conditional write through the state machine, so a late callback and the
  reconciler can never both act -- with the job's next look in that same write;
* SUBMITTING without a request_id: its submit's outcome is unknown (sent, no answer in time). The
  gateway can be asked only by request_id, so its callback alone can move it on; it ends
  SUBMIT_FAILED (``submit_outcome_unknown``) only past MAX_JOB_AGE_SECONDS, never sooner, and
  its next look is then;
* COMPLETED / COPYING whose copy is not in hand (no live lease, no retry scheduled), or ended
  but not announced: asks the copier again (it copies at most once and publishes at most once);
  a copy waiting for its retry is left to the message that carries it (one request in flight),
  and looked at again when that lease or retry has run out;
* ACCEPTED (admission: waiting for the submitter): queued again if POST could not queue it
  (``enqueue_pending``) or if it has not been touched for ACCEPTED_RESEND_SECONDS (its message
  may have gone to the dead-letter queue); past MAX_JOB_AGE_SECONDS it ends SUBMIT_FAILED
  (``not_submitted``): it was never accepted, so nothing was billed. A second message for a job
  is harmless: the submitter claims before it submits;
* a job past its own deadline (``deadline_seconds``) ends CANCELLED (``deadline_exceeded``): the
  deadline function does that within seconds of the deadline, so the reconciler only catches a
  lost deadline message; a job with a deadline is looked at no later than just past it;
* anything older than MAX_JOB_AGE_SECONDS ends in a terminal state with the reason ``timed_out``
  (no job's next look is later than that moment).

Every job it ends goes through the copy queue, so the copier stays the only publisher of the
job's one final event. A run works through every job due when it started, the 17 keys of the
index read in parallel and merged by ``check_at``, with RECONCILE_CONCURRENCY looks in flight,
for as long as its time allows: no batch limit. A gateway 429 pauses the polls (for its
Retry-After, else for the rest of the run) but not the run: the jobs met meanwhile are left due
for later, except those past their maximum age, which are timed out (that needs no gateway), so
a rate limit never freezes the age timeouts.

One run at a time: a run first takes a lease in the jobs table (``lease#reconciler``, expiring
a little after the function's timeout) and gives it back at its end; a run that finds it held
exits at once. Reserved concurrency would do the same, but Lambda refuses to reserve any in an
account whose quota is small (it keeps 100 executions unreserved).

The time budget is checked where the time goes: a worker starts a job only if the worst case of
one job (a gateway poll at its connect + read timeouts, and the writes) still fits before the
reserve kept to report; the run stops reading jobs then, and returns before the reserve even if
a poll overran, counting the jobs it left to the next run (``deferred``, ``in_flight``)."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from pixverse_jobs.callbacks import CallbackProcessor, parse_callback
from pixverse_jobs.cancel import DEADLINE_AT, DEADLINE_GRACE_SECONDS, Canceller
from pixverse_jobs.clock import epoch_seconds, from_iso, to_iso
from pixverse_jobs.config import ReconcileSettings
from pixverse_jobs.errors import CallbackRejected, GatewayError, GatewayRateLimited
from pixverse_jobs.gateway import DEFAULT_TIMEOUT, GatewayClient
from pixverse_jobs.observability import logger
from pixverse_jobs.queue import CopyQueue, SubmitQueue
from pixverse_jobs.states import (
    DEADLINE_EXCEEDED_CODE,
    NEEDS_DELIVERY,
    OUTCOME_UNKNOWN_CODE,
    SUBMIT_ERROR,
    TERMINAL,
    JobStatus,
    not_submitted_error,
)
from pixverse_jobs.store import CHECK_AT, COPY_LEASE, COPY_RETRY_AT, ENQUEUE_PENDING, Job, JobStore

# The lease that keeps one run at a time, and how long it outlives the run's own deadline: Lambda
# stops a run at its timeout, so a run that dies holding it frees it soon after.
RUN_LEASE = "reconciler"
LEASE_MARGIN_SECONDS = 10
MAX_RUN_SECONDS = 900  # Lambda's longest timeout: the lease of a run without a deadline
# Time kept back at the end of a run to log its report, give the lease back and flush metrics.
RESERVE_SECONDS = 10.0
# The most one job may take: a gateway poll at the client's connect and read timeouts (3 s +
# 10 s), then its conditional write and copy request (2 s).
JOB_SECONDS = (DEFAULT_TIMEOUT.connect or 0.0) + (DEFAULT_TIMEOUT.read or 0.0) + 2.0
# How long after a copy's retry was due its message may still be on its way (Lambda's SQS poller
# picks it up within seconds; a backlog can hold it longer) before the reconciler asks again.
RETRY_GRACE_SECONDS = 60
# An ACCEPTED job untouched this long may have lost its submit message (the submitter re-sends it
# at each try, so a job that waits its turn in a backlog is the only other kind): queue it again.
ACCEPTED_RESEND_SECONDS = 3600
# A job still running at the gateway is polled again after a quarter of its age, never sooner than
# RECONCILE_AFTER_SECONDS and, past that, never later than an hour: with the defaults a job whose
# callbacks are lost for good is polled about 30 times in its 24 hours, where a poll every
# 5-minute run made it 288.
POLL_BACKOFF_RATIO = 0.25
MAX_POLL_INTERVAL_SECONDS = 3600
# A 429 without Retry-After pauses the polls for the rest of the run; Retry-After 0 for a second.
MIN_RATE_LIMIT_PAUSE_SECONDS = 1.0
# Jobs read ahead per worker: enough that no worker waits for the next read, few enough that a
# run out of time has read little it cannot start.
READ_AHEAD_PER_WORKER = 2
_WAIT_SLICE_SECONDS = 0.05


class Action(StrEnum):
    """What the reconciler did with one job."""

    POLLED_OUTCOME = "polled_outcome"  # the gateway had an outcome its callback never brought
    POLLED_PROGRESS = "polled_progress"  # the job moved on (QUEUED -> PROCESSING), no outcome yet
    POLLED_UNCHANGED = "polled_unchanged"
    SUBMIT_FAILED = "submit_failed"  # SUBMITTING without a request_id past MAX_JOB_AGE_SECONDS
    TIMED_OUT = "timed_out"  # past MAX_JOB_AGE_SECONDS
    DELIVERY_REQUESTED = "delivery_requested"  # asked the copier again
    SKIPPED = "skipped"  # nothing to do yet (copy in hand, or polling paused by a 429)
    POLL_FAILED = "poll_failed"
    RESUBMIT_QUEUED = "resubmit_queued"  # an ACCEPTED job whose submit message was missing, queued again
    NOT_SUBMITTED = "not_submitted"  # ACCEPTED past MAX_JOB_AGE_SECONDS: SUBMIT_FAILED
    DEADLINE_EXCEEDED = "deadline_exceeded"  # past its deadline_seconds: CANCELLED


@dataclass(frozen=True)
class Look:
    """What one look at a job did, and when the job next needs one.

    ``next_look`` is in epoch seconds; None leaves the job's ``check_at`` as it is (the job stays
    due, e.g. its poll was paused by a 429, or it has left the index). ``recorded`` says the
    look's own conditional write already carried it, so no second write is needed."""

    action: Action
    next_look: int | None = None
    recorded: bool = False


@dataclass(frozen=True)
class Moment:
    """A job at the time of its look: now, its age, and when it reaches MAX_JOB_AGE_SECONDS."""

    now: datetime
    epoch: int
    age: float
    deadline: int  # epoch seconds after which the job is older than the maximum age
    cancel_at: int | None = None  # the job's own deadline (deadline_seconds), epoch seconds


@dataclass
class RunReport:
    """Counts of one reconciler run, by action."""

    examined: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    rate_limited: bool = False
    lease_held: bool = False  # another run held the lease: this one did nothing
    out_of_time: bool = False  # the budget ran out before every candidate was looked at
    deferred: int = 0  # jobs read but not started for lack of time: the next run takes them
    in_flight: int = 0  # jobs still being worked on when the run had to return

    def count(self, action: Action) -> None:
        self.actions[str(action)] = self.actions.get(str(action), 0) + 1

    @property
    def reconciled(self) -> int:
        """Jobs the reconciler moved or re-drove: each one a callback that did not do its job."""
        moved = (
            Action.POLLED_OUTCOME,
            Action.SUBMIT_FAILED,
            Action.TIMED_OUT,
            Action.DELIVERY_REQUESTED,
            Action.RESUBMIT_QUEUED,
            Action.NOT_SUBMITTED,
            Action.DEADLINE_EXCEEDED,
        )
        return sum(self.actions.get(str(a), 0) for a in moved)


LookAt = Callable[[Job, Moment], Look]


class Reconciler:
    def __init__(
        self,
        store: JobStore,
        gateway: GatewayClient,
        processor: CallbackProcessor,
        queue: CopyQueue,
        settings: ReconcileSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        reserve_seconds: float = RESERVE_SECONDS,
        job_seconds: float = JOB_SECONDS,
        submit_queue: SubmitQueue | None = None,
    ) -> None:
        self._submit_queue = submit_queue
        self._store = store
        self._gateway = gateway
        self._processor = processor
        self._queue = queue
        self._settings = settings
        self._now = now
        self._monotonic = monotonic
        self._reserve = reserve_seconds
        self._job_seconds = job_seconds
        self._rate_limited = threading.Event()
        self._pause_lock = threading.Lock()
        self._paused_until = -math.inf  # monotonic seconds: no gateway poll before then
        # What a look does, by the job's status: the one place a new status is added.
        self._looks: dict[JobStatus, LookAt] = {
            JobStatus.ACCEPTED: self._look_at_accepted,
            JobStatus.SUBMITTING: self._look_at_submitting,
            JobStatus.QUEUED: self._look_at_gateway,
            JobStatus.PROCESSING: self._look_at_gateway,
            JobStatus.COMPLETED: self._look_at_copy,
            JobStatus.COPYING: self._look_at_copy,
            **dict.fromkeys(TERMINAL, self._look_at_ended),
        }

    def run(self, *, time_left: Callable[[], float] = lambda: float("inf"), run_id: str = "") -> RunReport:
        """One pass over the unfinished jobs whose next look is due, most overdue first, unless
        another run holds the lease. Returns before ``time_left()`` (seconds) falls under the
        reserve, leaving the jobs it could not start to the next run. ``run_id`` names this run
        as the lease's holder (the Lambda request id)."""
        report = RunReport()
        holder = run_id or uuid.uuid4().hex
        lease_seconds = math.ceil(min(time_left(), MAX_RUN_SECONDS)) + LEASE_MARGIN_SECONDS
        if not self._store.acquire_run_lease(RUN_LEASE, holder, seconds=lease_seconds):
            report.lease_held = True
            logger.warning("another reconciler run holds the lease; this run exits")
            return report
        try:
            self._pass(report, time_left)
        finally:
            try:
                self._store.release_run_lease(RUN_LEASE, holder)
            except Exception:
                # It expires on its own a little after this run's deadline.
                logger.warning("could not give the reconciler lease back", exc_info=True)
        if report.out_of_time:
            logger.warning(
                "reconciler out of time; the next run continues",
                extra={"deferred": report.deferred, "in_flight": report.in_flight},
            )
        logger.info(
            "reconciler run", extra={"examined": report.examined, "deferred": report.deferred, **report.actions}
        )
        return report

    def _pass(self, report: RunReport, time_left: Callable[[], float]) -> None:
        """Every job due when the run starts, through a pool of RECONCILE_CONCURRENCY workers fed
        from the index as fast as they take jobs (a job becoming due during the run waits for
        the next one, so a run cannot chase its own pushes)."""
        due_by = int(self._now().timestamp())
        self._rate_limited.clear()
        with self._pause_lock:
            self._paused_until = -math.inf
        work = _Work(
            self._settings.concurrency,
            lambda: time_left() >= self._reserve + self._job_seconds,
            lambda job: self._reconcile_safely(job, self._now()),
        )
        pool = ThreadPoolExecutor(max_workers=self._settings.concurrency, thread_name_prefix="reconcile")
        candidates = self._store.iter_due(due_by=due_by)
        try:
            for job in candidates:
                if not work.take_slot():
                    report.out_of_time = True
                    break
                pool.submit(work.handle, job)
            work.wait(lambda: time_left() > self._reserve)
        finally:
            candidates.close()  # stops the reads ahead
            # Jobs not started yet are left to the next run; a poll still running (it overran
            # JOB_SECONDS) ends on its own, and its write is conditional like every other.
            pool.shutdown(wait=not work.busy(), cancel_futures=True)
        work.report_into(report)
        report.rate_limited = self._rate_limited.is_set()

    def _reconcile_safely(self, job: Job, now: datetime) -> Action:
        # Every line about the job names it, the state machine's too ("callback applied"). The
        # worker threads share one logger: append_keys would set one job_id for all of them (and
        # the handler), where thread-safe keys belong to this thread alone.
        logger.thread_safe_append_keys(job_id=job.get("job_id"))
        try:
            return self.reconcile(job, now)
        except Exception:
            # One job's trouble must not stop the others; it stays due and is looked at again.
            logger.exception("reconciling a job failed")
            return Action.POLL_FAILED
        finally:
            logger.thread_safe_remove_keys(["job_id"])

    def reconcile(self, job: Job, now: datetime) -> Action:
        """Bring one unfinished job forward, and set when it next needs a look; returns what was
        done."""
        created = from_iso(str(job["created_at"]))
        cancel_at = job.get(DEADLINE_AT)
        moment = Moment(
            now=now,
            epoch=int(now.timestamp()),
            age=(now - created).total_seconds(),
            deadline=int(created.timestamp()) + self._settings.max_age_seconds,
            # Whole seconds, rounded up: the reconciler never ends a job before its deadline.
            cancel_at=None if cancel_at is None else math.ceil(float(cancel_at)),
        )
        status = JobStatus(job["status"])
        if moment.cancel_at is not None and moment.epoch >= moment.cancel_at and status not in TERMINAL:
            # Its deadline message was lost (or is late): end it now; the cancel brings its next look.
            if Canceller(self._store, self._queue).cancel(job, code=DEADLINE_EXCEEDED_CODE).cancelled:
                return Action.DEADLINE_EXCEEDED
            job = self._store.get(str(job["job_id"])) or job
        look_at = self._looks.get(JobStatus(job["status"]), self._look_at_unknown)
        look = look_at(job, moment)
        if look.next_look is not None and not look.recorded:
            self._store.push_check_at(str(job["job_id"]), look.next_look)
        return look.action

    # ------------------------------------------------------------------ when next
    def _next_look(self, moment: Moment, seconds: float) -> int:
        """``seconds`` from now, but no later than just past the job's maximum age (its timeout
        must not wait for a look), unless that has passed already."""
        at = moment.epoch + max(1, math.ceil(seconds))
        if moment.deadline >= moment.epoch:
            at = min(at, moment.deadline + 1)
        if moment.cancel_at is not None and moment.cancel_at >= moment.epoch:
            at = min(at, moment.cancel_at + DEADLINE_GRACE_SECONDS)
        return at

    def _poll_interval(self, moment: Moment) -> float:
        """How long a job still running at the gateway waits for its next poll: a quarter of its
        age (a job an hour old is not expected to finish in the next minute), at least
        RECONCILE_AFTER_SECONDS, and once that is passed at most MAX_POLL_INTERVAL_SECONDS."""
        grown = min(moment.age * POLL_BACKOFF_RATIO, MAX_POLL_INTERVAL_SECONDS)
        return max(float(self._settings.after_seconds), grown)

    # ------------------------------------------------------------------ looks, by status
    def _look_at_submitting(self, job: Job, moment: Moment) -> Look:
        if job.get("request_id"):
            return self._look_at_gateway(job, moment)
        return self._resolve_submitting(job, moment)

    def _look_at_gateway(self, job: Job, moment: Moment) -> Look:
        """A job the gateway has: poll it; past the maximum age, time it out unless the poll
        brought its outcome. The timeout applies even while a 429 pauses polling: a rate limit
        must not freeze the timeouts (they need no gateway call)."""
        polled = self._poll(job, moment)
        if polled.action is Action.POLLED_OUTCOME or moment.age <= self._settings.max_age_seconds:
            return polled
        timed_out = self._time_out(
            str(job["job_id"]), JobStatus.ERROR, [JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.PROCESSING], moment
        )
        return timed_out if timed_out.action is Action.TIMED_OUT else polled

    def _look_at_copy(self, job: Job, moment: Moment) -> Look:
        job_id = str(job["job_id"])
        if moment.age > self._settings.max_age_seconds:
            return self._time_out(job_id, JobStatus.DELIVERY_FAILED, [JobStatus.COMPLETED, JobStatus.COPYING], moment)
        if job["status"] == JobStatus.COPYING:
            in_hand_until = _copy_in_hand_until(job, epoch_seconds())
            if in_hand_until is not None:
                # A copier holds it, or its retry's message is on the way: look again when that
                # has run out.
                return Look(Action.SKIPPED, self._next_look(moment, in_hand_until + 1 - moment.epoch))
        return self._request_delivery(job_id, moment)

    def _look_at_ended(self, job: Job, moment: Moment) -> Look:
        # Ended, but its event is not out yet (the copier crashed before its outbox flag).
        return self._request_delivery(str(job["job_id"]), moment)

    def _look_at_unknown(self, job: Job, moment: Moment) -> Look:
        logger.warning("no reconciler look for this status", extra={"job_id": job["job_id"], "status": job["status"]})
        return Look(Action.SKIPPED, self._next_look(moment, self._settings.after_seconds))

    def _look_at_accepted(self, job: Job, moment: Moment) -> Look:
        """A job waiting for the submitter (admission): end it past the maximum age (never
        accepted, so never billed), or queue it again when its message is missing (one untouched
        for ACCEPTED_RESEND_SECONDS: a job waiting its turn in a backlog needs nothing)."""
        job_id = str(job["job_id"])
        if moment.age > self._settings.max_age_seconds:
            error = not_submitted_error(job.get("last_submit_error"), self._settings.max_age_seconds)
            next_look = self._next_look(moment, self._settings.after_seconds)
            transition = self._store.advance(
                job_id,
                JobStatus.SUBMIT_FAILED,
                attributes={"error": error, CHECK_AT: next_look},
                from_statuses=[JobStatus.ACCEPTED],
            )
            if not transition.applied:
                return Look(Action.SKIPPED)
            self._queue.request_delivery(job_id)
            return Look(Action.NOT_SUBMITTED, next_look, recorded=True)
        # Looked at again after RECONCILE_AFTER_SECONDS, not after ACCEPTED_RESEND_SECONDS: once the
        # submitter sends it, this look is the first the job gets at the gateway (a push of
        # check_at at acceptance would cost every job a delete and a put on its unfinished key).
        next_look = self._next_look(moment, self._settings.after_seconds)
        idle = (moment.now - from_iso(str(job.get("updated_at") or job["created_at"]))).total_seconds()
        if self._submit_queue is None or (ENQUEUE_PENDING not in job and idle < ACCEPTED_RESEND_SECONDS):
            return Look(Action.SKIPPED, next_look)
        self._submit_queue.enqueue(job_id, str(job.get("owner") or ""))
        # Touched, so the next runs wait another ACCEPTED_RESEND_SECONDS; only while still waiting.
        self._store.annotate(
            job_id,
            attributes={"updated_at": to_iso(moment.now), CHECK_AT: next_look},
            remove=[ENQUEUE_PENDING],
            condition="#status = :accepted",
            names={"#status": "status"},
            values={":accepted": str(JobStatus.ACCEPTED)},
        )
        logger.warning("ACCEPTED job queued again for the submitter", extra={"job_id": job_id})
        return Look(Action.RESUBMIT_QUEUED, next_look, recorded=True)

    # ------------------------------------------------------------------ what a look does
    def _resolve_submitting(self, job: Job, moment: Moment) -> Look:
        """A SUBMITTING job without a request_id: the gateway got the submit but its answer never
        came (``submit_error``), or the invocation died mid-call. Either way it may have been
        accepted and billed, and its callback, which carries the request_id, is the only news of
        it that can come: ending the job earlier would refuse that callback and lose a paid
        video. So it waits until MAX_JOB_AGE_SECONDS, as every job may, and is not looked at
        again before then."""
        if moment.age <= self._settings.max_age_seconds:
            return Look(Action.SKIPPED, moment.deadline + 1)
        submit_error = job.get(SUBMIT_ERROR) or {}
        hours = self._settings.max_age_seconds / 3600
        cause = (
            f"the gateway did not answer the submit in time ({submit_error.get('message', 'no detail')})"
            if submit_error
            else "the submit was interrupted before the gateway answered"
        )
        reason = (
            f"{cause}, and no callback brought its request_id within {hours:g} hours; "
            "the gateway may still have accepted (and billed) it"
        )
        next_look = self._next_look(moment, self._settings.after_seconds)
        transition = self._store.advance(
            str(job["job_id"]),
            JobStatus.SUBMIT_FAILED,
            attributes={"error": {"code": OUTCOME_UNKNOWN_CODE, "message": reason}, CHECK_AT: next_look},
            from_statuses=[JobStatus.SUBMITTING],
            extra_condition="attribute_not_exists(request_id)",
        )
        if not transition.applied:
            return Look(Action.SKIPPED, next_look)  # the submit or a callback got there first
        logger.warning("SUBMITTING job ended: outcome unknown past the maximum age", extra={"job_id": job["job_id"]})
        self._queue.request_delivery(str(job["job_id"]))
        return Look(Action.SUBMIT_FAILED, next_look, recorded=True)

    def _poll(self, job: Job, moment: Moment) -> Look:
        if self._paused():
            return Look(Action.SKIPPED)  # stays due: the next run, or this one after the pause
        job_id = str(job["job_id"])
        backoff = self._next_look(moment, self._poll_interval(moment))
        try:
            body = self._gateway.status(str(job["request_id"]))
        except GatewayRateLimited as exc:
            self._pause(exc.retry_after)
            return Look(Action.SKIPPED)
        except GatewayError as exc:
            logger.warning(
                "gateway status poll failed", extra={"job_id": job_id, "code": exc.code, "gateway_status": exc.status}
            )
            return Look(Action.POLL_FAILED, backoff)
        try:
            callback = parse_callback(json.dumps(body))
            if callback.status == job["status"] and callback.status not in NEEDS_DELIVERY:
                # Nothing new: only the next look moves, by one small conditional write (in
                # reconcile()), not the callback path's whole-item write and read-back.
                return Look(Action.POLLED_UNCHANGED, backoff)
            # An outcome hands the job to the copier: look again if it has not delivered by then.
            next_look = (
                self._next_look(moment, self._settings.after_seconds) if callback.status in NEEDS_DELIVERY else backoff
            )
            outcome = self._processor.process(job_id, callback, check_at=next_look)
        except CallbackRejected as exc:
            logger.warning("gateway status not applicable", extra={"job_id": job_id, "reason": exc.message})
            return Look(Action.POLL_FAILED, backoff)
        if not outcome.changed:
            # A refused write (a callback moved the job meanwhile) carried no next look.
            return Look(Action.POLLED_UNCHANGED, next_look, recorded=outcome.applied)
        logger.info("job moved by the gateway's status", extra={"job_id": job_id, "status": str(outcome.status)})
        action = Action.POLLED_OUTCOME if outcome.status in NEEDS_DELIVERY else Action.POLLED_PROGRESS
        return Look(action, next_look, recorded=True)

    def _paused(self) -> bool:
        with self._pause_lock:
            return self._monotonic() < self._paused_until

    def _pause(self, retry_after: float | None) -> None:
        """Honour a 429: no poll before its Retry-After has passed (without one, for the rest of
        the run). Polls already in flight finish; the jobs met meanwhile stay due."""
        pause = math.inf if retry_after is None else max(retry_after, MIN_RATE_LIMIT_PAUSE_SECONDS)
        with self._pause_lock:
            self._paused_until = max(self._paused_until, self._monotonic() + pause)
        if not self._rate_limited.is_set():
            self._rate_limited.set()
            logger.warning(
                "gateway rate limit: polling paused",
                extra={"retry_after": retry_after, "until": "the next run" if retry_after is None else "retry_after"},
            )

    def _time_out(self, job_id: str, target: JobStatus, sources: list[JobStatus], moment: Moment) -> Look:
        hours = self._settings.max_age_seconds / 3600
        next_look = self._next_look(moment, self._settings.after_seconds)
        transition = self._store.advance(
            job_id,
            target,
            attributes={
                "error": {"code": "timed_out", "message": f"the job did not finish within {hours:g} hours"},
                CHECK_AT: next_look,
            },
            from_statuses=sources,
        )
        if not transition.applied:
            return Look(Action.SKIPPED)
        logger.warning("job timed out", extra={"job_id": job_id, "status": str(target)})
        self._queue.request_delivery(job_id)
        return Look(Action.TIMED_OUT, next_look, recorded=True)

    def _request_delivery(self, job_id: str, moment: Moment) -> Look:
        self._queue.request_delivery(job_id)
        return Look(Action.DELIVERY_REQUESTED, self._next_look(moment, self._settings.after_seconds))


class _Work:
    """The jobs of one run between the index and the workers: a slot per job read (at most
    READ_AHEAD_PER_WORKER per worker, so the run reads only what it can soon work on), and the
    counts the report gives."""

    def __init__(self, concurrency: int, has_time: Callable[[], bool], look: Callable[[Job], Action]) -> None:
        self._has_time = has_time
        self._look = look
        self._slots = threading.Semaphore(concurrency * READ_AHEAD_PER_WORKER)
        self._progress = threading.Condition()
        self._read = self._started = self._finished = self._done = 0
        self._actions: dict[str, int] = {}

    def take_slot(self) -> bool:
        """Wait for room for one more job; False once there is no time left to start one."""
        while True:
            if not self._has_time():
                return False
            if self._slots.acquire(timeout=_WAIT_SLICE_SECONDS):
                with self._progress:
                    self._read += 1
                return True

    def handle(self, job: Job) -> None:
        """A worker's turn at one job."""
        try:
            # Checked by the worker, when the job would start: the time the job itself may take
            # must fit, not merely the time to hand it over.
            if not self._has_time():
                return  # counted as deferred: never started
            with self._progress:
                self._started += 1
            action = self._look(job)
            with self._progress:
                self._finished += 1
                self._actions[str(action)] = self._actions.get(str(action), 0) + 1
        finally:
            self._slots.release()
            with self._progress:
                self._done += 1
                self._progress.notify_all()

    def wait(self, may_wait: Callable[[], bool]) -> None:
        """Until every job read is done, or ``may_wait()`` says the run must return."""
        with self._progress:
            while self._done < self._read and may_wait():
                self._progress.wait(timeout=_WAIT_SLICE_SECONDS)

    def busy(self) -> bool:
        with self._progress:
            return self._done < self._read

    def report_into(self, report: RunReport) -> None:
        with self._progress:
            report.actions = dict(self._actions)
            report.examined = self._finished
            report.in_flight = self._started - self._finished
            report.deferred = self._read - self._started
        report.out_of_time = report.out_of_time or report.deferred > 0 or report.in_flight > 0


def _copy_in_hand_until(job: Job, now: int) -> int | None:
    """Until when (epoch seconds) a copier holds the job's copy (a live lease) or a failed copy's
    message will bring its retry (a grace period after it was due), or None if neither: asking
    again meanwhile would start a second copy request, and a message with a fresh receive count."""
    until = []
    lease = job.get(COPY_LEASE)
    if lease is not None and int(lease) > now:
        until.append(int(lease))
    retry_at = job.get(COPY_RETRY_AT)
    if retry_at is not None and int(retry_at) + RETRY_GRACE_SECONDS > now:
        until.append(int(retry_at) + RETRY_GRACE_SECONDS)
    return max(until) if until else None

"""The reconciler: brings to an end the jobs whose callback never came.

The gateway's doc warns that persistent webhook failures may stop further deliveries, so no job
may depend on its callback alone. On a schedule, the reconciler reads the jobs that have not
ended (and been announced) and are older than RECONCILE_AFTER_SECONDS, from the sparse
``unfinished`` index (never a scan), and for each:

* QUEUED / PROCESSING: polls GET /v2/requests/status/{request_id} and applies the answer with
  ``CallbackProcessor`` -- the very path a callback takes, one conditional write through the
  state machine, so a late callback and the reconciler can never both act;
* SUBMITTING without a request_id: its submit's outcome is unknown (sent, no answer in time). The
  gateway can be asked only by request_id, so its callback alone can move it on; it ends
  SUBMIT_FAILED (``submit_outcome_unknown``) only past MAX_JOB_AGE_SECONDS, never sooner;
* COMPLETED / COPYING whose copy is not in hand (no live lease, no retry scheduled), or ended
  but not announced: asks the copier again (it copies at most once and publishes at most once);
  a copy waiting for its retry is left to the message that carries it (one request in flight);
* ACCEPTED (admission: waiting for the submitter): queued again if POST could not queue it
  (``enqueue_pending``) or if it has not been touched for ACCEPTED_RESEND_SECONDS (its message
  may have gone to the dead-letter queue); past MAX_JOB_AGE_SECONDS it ends SUBMIT_FAILED
  (``not_submitted``): it was never accepted, so nothing was billed. A second message for a job
  is harmless: the submitter claims before it submits;
* anything older than MAX_JOB_AGE_SECONDS ends in a terminal state with the reason ``timed_out``.

Every job it ends goes through the copy queue, so the copier stays the only publisher of the
job's one final event. Gateway polls run with bounded concurrency; a 429 stops the polling for
the rest of the run (the next run resumes), so the reconciler never adds to a rate limit.

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
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pixverse_jobs.callbacks import CallbackProcessor, parse_callback
from pixverse_jobs.clock import epoch_seconds, from_iso, to_iso
from pixverse_jobs.config import ReconcileSettings
from pixverse_jobs.errors import CallbackRejected, GatewayError, GatewayRateLimited
from pixverse_jobs.gateway import DEFAULT_TIMEOUT, GatewayClient
from pixverse_jobs.observability import logger
from pixverse_jobs.queue import CopyQueue, SubmitQueue
from pixverse_jobs.states import FAILURES, NEEDS_DELIVERY, OUTCOME_UNKNOWN_CODE, SUBMIT_ERROR, JobStatus
from pixverse_jobs.store import COPY_LEASE, COPY_RETRY_AT, Job, JobStore

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
ENQUEUE_PENDING = "enqueue_pending"  # jobs.ENQUEUE_PENDING (jobs imports what the reconciler must not)
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
        )
        return sum(self.actions.get(str(a), 0) for a in moved)


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
        self._reserve = reserve_seconds
        self._job_seconds = job_seconds
        self._rate_limited = threading.Event()

    def run(self, *, time_left: Callable[[], float] = lambda: float("inf"), run_id: str = "") -> RunReport:
        """One pass over the unfinished jobs older than RECONCILE_AFTER_SECONDS, oldest first,
        unless another run holds the lease. Returns before ``time_left()`` (seconds) falls
        under the reserve, leaving the jobs it could not start to the next run. ``run_id``
        names this run as the lease's holder (the Lambda request id)."""
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
        now = self._now()
        cutoff = to_iso(now - timedelta(seconds=self._settings.after_seconds))
        self._rate_limited.clear()
        lock = threading.Lock()
        counts = {"started": 0, "finished": 0}
        actions: dict[str, int] = {}

        def has_time_for_a_job() -> bool:
            return time_left() >= self._reserve + self._job_seconds

        def handle(job: Job) -> None:
            # Checked by the worker, when the job would start: the time the job itself may take
            # must fit, not merely the time to hand it over.
            if not has_time_for_a_job():
                return  # counted as deferred: never started
            with lock:
                counts["started"] += 1
            action = self._reconcile_safely(job, now)
            with lock:
                counts["finished"] += 1
                actions[str(action)] = actions.get(str(action), 0) + 1

        pool = ThreadPoolExecutor(max_workers=self._settings.concurrency, thread_name_prefix="reconcile")
        futures: list[Future[None]] = []
        pending: set[Future[None]] = set()
        try:
            for job in self._candidates(cutoff):
                if not has_time_for_a_job():
                    report.out_of_time = True
                    break
                futures.append(pool.submit(handle, job))
            pending = set(futures)
            while pending and time_left() > self._reserve:
                _, pending = wait(pending, timeout=_WAIT_SLICE_SECONDS, return_when=FIRST_COMPLETED)
        finally:
            # Jobs not started yet are left to the next run; a poll still running (it overran
            # JOB_SECONDS) ends on its own, and its write is conditional like every other.
            pool.shutdown(wait=not pending, cancel_futures=True)
        with lock:
            report.actions = dict(actions)
            report.examined = counts["finished"]
            report.in_flight = counts["started"] - counts["finished"]
            report.deferred = len(futures) - counts["started"]
        report.out_of_time = report.out_of_time or report.deferred > 0 or report.in_flight > 0
        report.rate_limited = self._rate_limited.is_set()

    def _candidates(self, cutoff: str) -> Iterable[Job]:
        """Up to the batch size of unfinished jobs created before ``cutoff``, oldest first across
        every shard of the unfinished index, each read whole (the index holds keys only)."""
        return self._store.iter_unfinished(created_before=cutoff, limit=self._settings.batch_size)

    def _reconcile_safely(self, job: Job, now: datetime) -> Action:
        try:
            return self.reconcile(job, now)
        except Exception:
            # One job's trouble must not stop the others; it is looked at again next run.
            logger.exception("reconciling a job failed", extra={"job_id": job.get("job_id")})
            return Action.POLL_FAILED

    def reconcile(self, job: Job, now: datetime) -> Action:
        """Bring one unfinished job forward; returns what was done."""
        job_id = str(job["job_id"])
        status = JobStatus(job["status"])
        age = (now - from_iso(str(job["created_at"]))).total_seconds()
        if status is JobStatus.ACCEPTED:
            return self._resolve_accepted(job, age, now)
        if status is JobStatus.SUBMITTING and not job.get("request_id"):
            return self._resolve_submitting(job, age)
        if status in (JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.PROCESSING):
            action = self._poll(job)
            if action is Action.POLLED_OUTCOME:
                return action
            # A job past its age ends even while the gateway's 429 pauses polling: a rate limit
            # must not freeze the timeouts (they need no gateway call).
            if age > self._settings.max_age_seconds:
                return self._time_out(
                    job_id, JobStatus.ERROR, [JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.PROCESSING]
                )
            return action
        if status in (JobStatus.COMPLETED, JobStatus.COPYING):
            if age > self._settings.max_age_seconds:
                return self._time_out(job_id, JobStatus.DELIVERY_FAILED, [JobStatus.COMPLETED, JobStatus.COPYING])
            if status is JobStatus.COPYING and _copy_in_hand(job, epoch_seconds()):
                return Action.SKIPPED  # a copier holds it, or its retry's message is on the way
            return self._request_delivery(job_id)
        if status is JobStatus.DELIVERED or status in FAILURES:
            # Ended, but its event is not out yet (the copier crashed before its outbox flag).
            return self._request_delivery(job_id)
        return Action.SKIPPED

    def _resolve_accepted(self, job: Job, age: float, now: datetime) -> Action:
        """A job waiting for the submitter: end it past the maximum age (never accepted, so never
        billed), or queue it again when its message is missing."""
        job_id = str(job["job_id"])
        if age > self._settings.max_age_seconds:
            hours = self._settings.max_age_seconds / 3600
            last = job.get("last_submit_error") or {}
            reason = f"the gateway did not take the job within {hours:g} hours"
            if last:
                reason += f" (its last answer: {last.get('code')}: {last.get('message')})"
            transition = self._store.advance(
                job_id,
                JobStatus.SUBMIT_FAILED,
                attributes={"error": {"code": "not_submitted", "message": reason}},
                from_statuses=[JobStatus.ACCEPTED],
            )
            if not transition.applied:
                return Action.SKIPPED
            self._queue.request_delivery(job_id)
            return Action.NOT_SUBMITTED
        idle = (now - from_iso(str(job.get("updated_at") or job["created_at"]))).total_seconds()
        if self._submit_queue is None or (ENQUEUE_PENDING not in job and idle < ACCEPTED_RESEND_SECONDS):
            return Action.SKIPPED
        self._submit_queue.enqueue(job_id, str(job.get("owner") or ""))
        # Touched, so the next runs wait another ACCEPTED_RESEND_SECONDS; only while still waiting.
        self._store.annotate(
            job_id,
            attributes={"updated_at": to_iso(now)},
            remove=[ENQUEUE_PENDING],
            condition="#status = :accepted",
            names={"#status": "status"},
            values={":accepted": str(JobStatus.ACCEPTED)},
        )
        logger.warning("ACCEPTED job queued again for the submitter", extra={"job_id": job_id})
        return Action.RESUBMIT_QUEUED

    def _resolve_submitting(self, job: Job, age: float) -> Action:
        """A SUBMITTING job without a request_id: the gateway got the submit but its answer never
        came (``submit_error``), or the invocation died mid-call. Either way it may have been
        accepted and billed, and its callback, which carries the request_id, is the only news of
        it that can come: ending the job earlier would refuse that callback and lose a paid
        video. So it waits until MAX_JOB_AGE_SECONDS, as every job may."""
        if age <= self._settings.max_age_seconds:
            return Action.SKIPPED
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
        transition = self._store.advance(
            str(job["job_id"]),
            JobStatus.SUBMIT_FAILED,
            attributes={"error": {"code": OUTCOME_UNKNOWN_CODE, "message": reason}},
            from_statuses=[JobStatus.SUBMITTING],
            extra_condition="attribute_not_exists(request_id)",
        )
        if not transition.applied:
            return Action.SKIPPED  # the submit or a callback got there first
        logger.warning("SUBMITTING job ended: outcome unknown past the maximum age", extra={"job_id": job["job_id"]})
        self._queue.request_delivery(str(job["job_id"]))
        return Action.SUBMIT_FAILED

    def _poll(self, job: Job) -> Action:
        if self._rate_limited.is_set():
            return Action.SKIPPED
        job_id = str(job["job_id"])
        try:
            body = self._gateway.status(str(job["request_id"]))
        except GatewayRateLimited:
            self._rate_limited.set()
            logger.warning("gateway rate limit: polling paused until the next run")
            return Action.SKIPPED
        except GatewayError as exc:
            logger.warning(
                "gateway status poll failed", extra={"job_id": job_id, "code": exc.code, "gateway_status": exc.status}
            )
            return Action.POLL_FAILED
        try:
            callback = parse_callback(json.dumps(body))
            outcome = self._processor.process(job_id, callback)
        except CallbackRejected as exc:
            logger.warning("gateway status not applicable", extra={"job_id": job_id, "reason": exc.message})
            return Action.POLL_FAILED
        if not outcome.changed:
            return Action.POLLED_UNCHANGED
        logger.info("job moved by the gateway's status", extra={"job_id": job_id, "status": str(outcome.status)})
        return Action.POLLED_OUTCOME if outcome.status in NEEDS_DELIVERY else Action.POLLED_PROGRESS

    def _time_out(self, job_id: str, target: JobStatus, sources: list[JobStatus]) -> Action:
        hours = self._settings.max_age_seconds / 3600
        transition = self._store.advance(
            job_id,
            target,
            attributes={"error": {"code": "timed_out", "message": f"the job did not finish within {hours:g} hours"}},
            from_statuses=sources,
        )
        if not transition.applied:
            return Action.SKIPPED
        logger.warning("job timed out", extra={"job_id": job_id, "status": str(target)})
        self._queue.request_delivery(job_id)
        return Action.TIMED_OUT

    def _request_delivery(self, job_id: str) -> Action:
        self._queue.request_delivery(job_id)
        return Action.DELIVERY_REQUESTED


def _copy_in_hand(job: Job, now: int) -> bool:
    """Whether a copier holds the job's copy (a live lease) or a failed copy's message will
    bring its retry (until a grace period after it was due): asking again would start a second
    copy request, and a message with a fresh receive count."""
    lease = job.get(COPY_LEASE)
    if lease is not None and int(lease) > now:
        return True
    retry_at = job.get(COPY_RETRY_AT)
    return retry_at is not None and int(retry_at) + RETRY_GRACE_SECONDS > now

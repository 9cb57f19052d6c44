"""The submitter: sends ACCEPTED jobs from the submit queue to the gateway, at the gateway's pace.

POST /jobs only records a job (ACCEPTED) and queues it (``jobs.JobService``); this module is the
queue's consumer, and the only code that calls the gateway's submit. For each message:

1. **Claim before submit.** The job moves ACCEPTED -> SUBMITTING in one conditional write that
   also stores a fresh claim token. Two messages for one job (SQS delivers at least once; the
   reconciler may queue a job again) race for that write, and only the winner calls the gateway:
   a job is never submitted twice. A job not ACCEPTED is skipped.
2. **Submit**, with the signed webhook URL, under the invocation's deadline, one gateway call
   (the client's own retries are off here: each "not now" is this module's to handle).
3. **What the answer means.**
   - accepted: the request_id is stored (retried: the one write that must not be lost);
   - sent but unanswered (timeout, dropped connection): the gateway may have accepted and will
     bill it, so it is never sent again; it stays SUBMITTING with the reason, for its callback;
   - "never" (400: the gateway's validation, or model not found): SUBMIT_FAILED, and the copier
     publishes its failed event;
   - "not now" (429, 402 insufficient balance, 401/403 our key, a 5xx, unreachable before
     sending): the gateway surely did not accept it. Back to ACCEPTED (conditional on the claim
     and on no request_id), queued again after Retry-After or a jittered doubling backoff, and
     counted (``GatewayNotNow``, which the stack alarms on). It waits within MAX_JOB_AGE_SECONDS;
     past it, it ends SUBMIT_FAILED (``not_submitted``) with its failed event.

**Pace.** The gateway publishes no limit, so each container learns one (``AdaptivePace``): submits
are spaced at a rate that grows a little with each acceptance and halves at each 429, and a 429's
Retry-After (or the pace's own interval) pauses the container. A message waits for the pace in
the invocation (up to MAX_INLINE_WAIT_SECONDS, within the invocation's time); only a longer wait
(a long Retry-After) queues it again with that delay.

**In-flight cap** (``GATEWAY_MAX_IN_FLIGHT``, 0 = none): the most jobs at the gateway at once.
Each submit first takes one of N slot records (``GatewaySlots``); a slot whose holder has left the
gateway (ended, or back to ACCEPTED) is taken over, so a lost release never shrinks the cap."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from pixverse_jobs.clock import epoch_seconds, from_iso, utc_now_iso
from pixverse_jobs.config import SubmitterSettings
from pixverse_jobs.deadline import Deadline
from pixverse_jobs.errors import GatewayError, GatewayRateLimited, GatewayRejected, ModelNotFound
from pixverse_jobs.gateway import GatewayClient
from pixverse_jobs.inputs import InputImages, redact_presigned
from pixverse_jobs.jobs import WEBHOOK_BASE
from pixverse_jobs.observability import count_by, logger, metrics
from pixverse_jobs.queue import MAX_DELAY_SECONDS, CopyQueue, SubmitMessage, SubmitQueue
from pixverse_jobs.signing import webhook_url
from pixverse_jobs.states import SUBMIT_ERROR, JobStatus, not_submitted_error
from pixverse_jobs.store import Job, JobStore

# The claim token of the submit in progress, and what the gateway said "not now" with last.
SUBMIT_CLAIM = "submit_claim"
SUBMIT_ATTEMPTS = "submit_attempts"
LAST_SUBMIT_ERROR = "last_submit_error"
MAX_ERROR_MESSAGE_CHARS = 500
METRIC_NOT_NOW = "GatewayNotNow"
METRIC_NOT_NOW_BY_REASON = "GatewayNotNowByReason"

# The longest one submit may take: the gateway client's connect and read timeouts, with room.
SUBMIT_CALL_SECONDS = 15.0
# Time kept back at the end of an invocation for the writes after a submit and the report.
RESERVE_SECONDS = 5.0
# A container sleeps for its pace up to this long (and never past what the invocation can hold)
# before a submit; a longer wait re-queues the message with that delay instead. Sleeping is the
# cheap side: a paced backlog stays untouched in the queue (the event source's MaximumConcurrency
# keeps its pollers from taking more), where re-sending every message each few seconds would cost
# three SQS calls per message per turn (a 2,000-job backlog measured: the local SQS saturated and
# the drain fell to 3 jobs/s). Two containers asleep cost about $0.03 an hour.
MAX_INLINE_WAIT_SECONDS = 30.0
# The writes that record what the gateway did: retried beyond the SDK's own retries.
RECORD_ATTEMPTS = 4
RECORD_RETRY_DELAY_SECONDS = 0.1


class Outcome(StrEnum):
    """What the submitter did with one message."""

    SUBMITTED = "submitted"  # accepted by the gateway; its request_id is stored
    UNKNOWN = "unknown"  # sent, no answer in time: never sent again, waits for its callback
    REFUSED = "refused"  # the gateway said never (400): SUBMIT_FAILED, failed event
    DEFERRED = "deferred"  # the gateway said not now: ACCEPTED again, queued after a backoff
    PACED = "paced"  # not sent (this container's pace, or the in-flight cap): queued again
    EXPIRED = "expired"  # waited past MAX_JOB_AGE_SECONDS: SUBMIT_FAILED, failed event
    SKIPPED = "skipped"  # no such job, or not ACCEPTED (claimed by another message, or ended)


# The metric each outcome counts (SubmitterFunction adds one per message).
OUTCOME_METRICS: dict[Outcome, str] = {
    Outcome.SUBMITTED: "JobsSubmitted",
    Outcome.UNKNOWN: "SubmitOutcomeUnknown",
    Outcome.REFUSED: "JobsRefusedByGateway",
    Outcome.DEFERRED: "SubmitsDeferred",
    Outcome.PACED: "SubmitsPaced",
    Outcome.EXPIRED: "JobsNeverSubmitted",
    Outcome.SKIPPED: "SubmitMessagesSkipped",
}


class AdaptivePace:
    """Submits per second for one container, learned from the gateway's answers, as TCP finds a
    link's capacity: until the first 429 the rate grows by a quarter with each acceptance (slow
    start, so a fresh container reaches the gateway's pace in a few seconds); after it, additive
    increase on acceptance and a cut to 0.7 at each 429 (AIMD, with CUBIC's factor: halving
    left a concurrency-limited gateway half idle). A 429 also pauses sending for its
    Retry-After, or else for the new interval."""

    INCREASE = 0.25  # submits/s added per acceptance, once the first 429 has been seen
    SLOW_START_GROWTH = 1.25  # the rate's factor per acceptance before it
    DECREASE = 0.7  # the rate's factor at a 429
    MIN_RATE = 0.1

    def __init__(self, initial: float, maximum: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(self.MIN_RATE, min(initial, maximum))
        self._max = maximum
        self._clock = clock
        self._next = clock()
        self._slow_start = True

    def wait(self) -> float:
        """Seconds until the next submit may go."""
        return max(0.0, self._next - self._clock())

    def take(self) -> None:
        """Count a submit going now: the next may go one interval later."""
        self._next = max(self._next, self._clock()) + 1.0 / self.rate

    def accepted(self) -> None:
        grown = self.rate * self.SLOW_START_GROWTH if self._slow_start else self.rate + self.INCREASE
        self.rate = min(self._max, grown)

    def busy(self, retry_after: float | None) -> None:
        """The gateway said 429: cut the rate and pause."""
        self._slow_start = False
        self.rate = max(self.MIN_RATE, self.rate * self.DECREASE)
        pause = retry_after if retry_after is not None else 1.0 / self.rate
        self._next = max(self._next, self._clock() + pause)


class GatewaySlots:
    """At most ``capacity`` jobs at the gateway at once: slot records ``slot#NNNN`` in the jobs
    table, each holding one job id. A slot is free when it holds nothing, or a job no longer at
    the gateway (ended, or waiting again): a slot never freed (a crash, a lost write) is found
    and taken over the next time the slots look full, so the cap cannot leak away.

    The slots are ``capacity`` different keys: at the gateway's pace (capacity / generation time,
    a few jobs per second) no key comes near DynamoDB's 1,000 writes/s."""

    PREFIX = "slot#"
    PROBES = 3

    def __init__(self, store: JobStore, capacity: int) -> None:
        self._store = store
        self._capacity = capacity

    def _key(self, n: int) -> str:
        return f"{self.PREFIX}{n:04d}"

    def acquire(self, job_id: str) -> str | None:
        """Take a slot for ``job_id`` and return its key; None when every slot holds a job
        still at the gateway."""
        for n in random.sample(range(self._capacity), min(self.PROBES, self._capacity)):
            if self._store.take_slot(self._key(n), job_id, replacing=None):
                return self._key(n)
        keys = [self._key(n) for n in range(self._capacity)]
        slots = self._store.batch_get(keys)
        held = {key: str(slots[key]["holder"]) for key in keys if (slots.get(key) or {}).get("holder")}
        for key in keys:
            if key not in held and self._store.take_slot(key, job_id, replacing=None):
                return key
        jobs = self._store.batch_get(set(held.values()))
        at_gateway = {JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.PROCESSING}
        for key, holder in held.items():
            job = jobs.get(holder)
            gone = holder == job_id or job is None or JobStatus(job["status"]) not in at_gateway
            if gone and self._store.take_slot(key, job_id, replacing=holder):
                logger.info("gateway slot taken over from a job no longer at the gateway", extra={"slot": key})
                return key
        return None

    def release(self, key: str, job_id: str) -> None:
        """Give back the slot ``key`` (best effort: a slot left behind is taken over)."""
        try:
            self._store.release_slot(key, job_id)
        except Exception:
            logger.warning("could not release a gateway slot; it is taken over later", exc_info=True)


class Submitter:
    def __init__(
        self,
        store: JobStore,
        gateway: GatewayClient,
        webhook_secret: Callable[[], str],
        submit_queue: SubmitQueue,
        copy_queue: CopyQueue,
        settings: SubmitterSettings,
        *,
        webhook_base_url: str = "",
        pace: AdaptivePace | None = None,
        sleep: Callable[[float], None] = time.sleep,
        inputs: InputImages | None = None,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._webhook_secret = webhook_secret
        self._submit_queue = submit_queue
        self._copy_queue = copy_queue
        self._settings = settings
        self._webhook_base_url = webhook_base_url
        self.pace = pace or AdaptivePace(settings.initial_rate, settings.max_rate)
        self._slots = GatewaySlots(store, settings.max_in_flight) if settings.max_in_flight else None
        self._sleep = sleep
        self._inputs = inputs

    def handle(self, message: SubmitMessage, *, time_left: Callable[[], float] = lambda: float("inf")) -> Outcome:
        """Bring one submit message's job to the gateway, or back to the queue. Raises only when
        the message must come back as it is (its re-queue failed, or the job could not be read)."""
        job = self._store.get(message.job_id)
        if job is None or job.get("status") != JobStatus.ACCEPTED:
            return Outcome.SKIPPED
        logger.append_keys(job_id=message.job_id)
        age = epoch_seconds() - from_iso(str(job["created_at"])).timestamp()
        if age > self._settings.max_age_seconds:
            return self._expire(job)
        can_hold = min(MAX_INLINE_WAIT_SECONDS, time_left() - RESERVE_SECONDS - SUBMIT_CALL_SECONDS)
        wait = self.pace.wait()
        if wait > can_hold:
            return self._requeue_paced(message, wait)
        slot = self._slots.acquire(message.job_id) if self._slots is not None else None
        if self._slots is not None and slot is None:
            # Every slot holds a job at the gateway: try again after a backoff's first step.
            return self._requeue_paced(message, self._settings.retry_base_seconds)
        if wait > 0:
            self._sleep(wait)
        claim = uuid.uuid4().hex
        attempts = int(job.get(SUBMIT_ATTEMPTS) or 0) + 1
        claimed = self._store.advance(
            message.job_id,
            JobStatus.SUBMITTING,
            attributes={SUBMIT_CLAIM: claim, SUBMIT_ATTEMPTS: attempts, "submit_started_at": utc_now_iso()},
            from_statuses=[JobStatus.ACCEPTED],
        )
        if not claimed.applied:
            self._release_slot(slot, message.job_id)
            return Outcome.SKIPPED  # another message's submitter won the claim
        self.pace.take()
        return self._submit(claimed.job, claim, attempts, slot, time_left)

    def _submit(self, job: Job, claim: str, attempts: int, slot: str | None, time_left: Callable[[], float]) -> Outcome:
        job_id = str(job["job_id"])
        base = str(job.get(WEBHOOK_BASE) or self._webhook_base_url)
        deadline = Deadline.after(max(0.0, min(SUBMIT_CALL_SECONDS, time_left() - RESERVE_SECONDS)))
        params = job.get("input") or {}
        try:
            callback = webhook_url(base, job_id, self._webhook_secret())
            if self._inputs is not None:
                # An s3:// image_url becomes a presigned GET, made now (it lives an hour from here)
                # and held only in this call: the job record keeps the s3:// URI.
                params = self._inputs.presigned_input(params)
            accepted = self._gateway.submit(
                str(job["model"]),
                params,
                webhook_url=callback,
                webhook_mode=str(job.get("webhook_mode") or "terminal"),
                deadline=deadline,
            )
        except GatewayError as exc:
            # The gateway's text, bounded and without the presigned URL it may quote: it is stored
            # on the job and shown in its events.
            error = {"code": exc.code, "message": redact_presigned(exc.message)[:MAX_ERROR_MESSAGE_CHARS]}
            if exc.accepted_possible:
                self._outcome_unknown(job_id, error)
                return Outcome.UNKNOWN
            self._release_slot(slot, job_id)
            if isinstance(exc, (GatewayRejected, ModelNotFound)):
                self._refuse(job_id, claim, error)
                return Outcome.REFUSED
            if isinstance(exc, GatewayRateLimited):
                self.pace.busy(exc.retry_after)
            self._not_now(job, claim, attempts, error, getattr(exc, "retry_after", None))
            return Outcome.DEFERRED
        except Exception:
            # Not the gateway's answer (the signing secret could not be read, say): nothing was
            # sent, so the job may wait again. If this write fails too, the job reads as an
            # interrupted submit, which waits for a callback that cannot come, to MAX_JOB_AGE.
            self._release_slot(slot, job_id)
            self._back_to_accepted(job_id, claim, attempts, {"code": "internal", "message": "submit not sent"})
            raise
        self.pace.accepted()
        logger.append_keys(request_id=accepted.request_id)
        self._record_acceptance(job_id, accepted.request_id)
        logger.info("job submitted", extra={"attempts": attempts})
        return Outcome.SUBMITTED

    # ------------------------------------------------------------------ outcomes
    def _record_acceptance(self, job_id: str, request_id: str) -> None:
        """Store the request_id of a job the gateway accepted (and will bill). If every attempt
        fails, the id is in the error log and the gateway's callback stores it."""

        def accept() -> Job:
            transition = self._store.advance(
                job_id,
                JobStatus.QUEUED,
                request_id=request_id,
                from_statuses=[JobStatus.SUBMITTING],
                remove=[SUBMIT_CLAIM],
            )
            if not transition.applied:
                # A callback outran us and already moved the job: keep its status, add the id.
                transition = self._store.set_request_id(job_id, request_id)
            return transition.job

        _retried(accept, "the gateway accepted the job but its request_id could not be stored", request_id)

    def _outcome_unknown(self, job_id: str, error: dict[str, str]) -> None:
        """Sent, but no answer came in time: the gateway may have accepted (and will bill) it.
        Never sent again; the reason is recorded and its callback moves it on (best effort:
        without the record the job reads the same to the reconciler)."""
        logger.warning("gateway answer not in time; submit outcome unknown", extra={"reason": error["message"]})
        try:
            self._store.annotate(
                job_id,
                attributes={SUBMIT_ERROR: error},
                condition="#status = :submitting AND attribute_not_exists(request_id)",
                names={"#status": "status"},
                values={":submitting": str(JobStatus.SUBMITTING)},
            )
        except Exception:
            logger.exception("the unknown submit outcome could not be recorded")

    def _refuse(self, job_id: str, claim: str, error: dict[str, str]) -> None:
        """The gateway will never take this job (its own validation, or the model is unknown to
        it): SUBMIT_FAILED, and the copier publishes the failed event."""
        logger.warning("gateway refused the job", extra={"code": error["code"]})

        def refuse() -> Job:
            return self._store.advance(
                job_id,
                JobStatus.SUBMIT_FAILED,
                attributes={"error": error},
                from_statuses=[JobStatus.SUBMITTING],
                remove=[SUBMIT_CLAIM],
                extra_condition="#claim = :claim",
                extra_values={":claim": claim},
                extra_names={"#claim": SUBMIT_CLAIM},
            ).job

        _retried(refuse, "the gateway refused the job but SUBMIT_FAILED could not be recorded", "")
        self._announce(job_id)

    def _not_now(self, job: Job, claim: str, attempts: int, error: dict[str, str], retry_after: float | None) -> None:
        """The gateway did not take the job this time and surely did not accept it: it waits
        again, ACCEPTED, and comes back after Retry-After or the backoff of its attempts."""
        job_id = str(job["job_id"])
        # The alarm's metric (service dimension only), and the same by reason for the dashboard.
        metrics.add_metric(name=METRIC_NOT_NOW, unit=MetricUnit.Count, value=1)
        count_by(METRIC_NOT_NOW_BY_REASON, reason=error["code"])
        self._back_to_accepted(job_id, claim, attempts, error)
        if error["code"] == GatewayRateLimited.code and retry_after is None:
            # A 429 is about the gateway's load, not this job: the pace (halved just now) already
            # spaces the next submits, so the job comes back soon and waits its turn there. A
            # doubling per-job backoff would push back the jobs a quiet caller got 429 for.
            delay = max(1, round(1.0 / self.pace.rate + random.uniform(0, 1)))  # noqa: S311
        else:
            delay = self.backoff(attempts, retry_after)
        logger.warning(
            "gateway said not now; the job waits",
            extra={"code": error["code"], "attempts": attempts, "retry_in": delay},
        )
        self._submit_queue.enqueue(job_id, str(job["owner"]), delay_seconds=delay)

    def _back_to_accepted(self, job_id: str, claim: str, attempts: int, error: dict[str, str]) -> None:
        def release() -> Job:
            return self._store.advance(
                job_id,
                JobStatus.ACCEPTED,
                attributes={LAST_SUBMIT_ERROR: {**error, "at": utc_now_iso()}, SUBMIT_ATTEMPTS: attempts},
                from_statuses=[JobStatus.SUBMITTING],
                remove=[SUBMIT_CLAIM],
                extra_condition="#claim = :claim AND attribute_not_exists(request_id)",
                extra_values={":claim": claim},
                extra_names={"#claim": SUBMIT_CLAIM},
            ).job

        _retried(release, "the gateway did not take the job but it could not be put back to wait", "")

    def _expire(self, job: Job) -> Outcome:
        """ACCEPTED past MAX_JOB_AGE_SECONDS: the gateway never had room for it. Nothing was
        accepted (an ACCEPTED job has no request_id), so it ends SUBMIT_FAILED with its event."""
        job_id = str(job["job_id"])
        transition = self._store.advance(
            job_id,
            JobStatus.SUBMIT_FAILED,
            attributes={"error": not_submitted_error(job.get(LAST_SUBMIT_ERROR), self._settings.max_age_seconds)},
            from_statuses=[JobStatus.ACCEPTED],
        )
        if not transition.applied:
            return Outcome.SKIPPED
        logger.warning("job never submitted: past the maximum age", extra={"attempts": job.get(SUBMIT_ATTEMPTS, 0)})
        self._announce(job_id)
        return Outcome.EXPIRED

    def _announce(self, job_id: str) -> None:
        """Ask the copier to publish the job's failed event; if that fails, the reconciler asks
        again (an ended job not yet announced stays in the unfinished index)."""
        try:
            self._copy_queue.request_delivery(job_id)
        except Exception:
            logger.exception("could not ask for the failed event; the reconciler will")

    def _requeue_paced(self, message: SubmitMessage, wait: float) -> Outcome:
        delay = min(MAX_DELAY_SECONDS, max(1, round(wait + random.uniform(0, 1))))  # noqa: S311
        self._submit_queue.enqueue(message.job_id, message.owner, delay_seconds=delay, deferrals=message.deferrals + 1)
        return Outcome.PACED

    def _release_slot(self, slot: str | None, job_id: str) -> None:
        if self._slots is not None and slot is not None:
            self._slots.release(slot, job_id)

    def backoff(self, attempts: int, retry_after: float | None) -> int:
        """Seconds before a job the gateway said "not now" to comes back: its Retry-After when
        given, else base * 2^(attempts-1) capped, jittered down to half ("equal jitter"), at most
        SQS's 900 s delay."""
        if retry_after is not None:
            return int(min(MAX_DELAY_SECONDS, max(1.0, retry_after)))
        step = min(self._settings.retry_max_seconds, self._settings.retry_base_seconds * 2 ** min(attempts - 1, 20))
        return int(min(MAX_DELAY_SECONDS, max(1.0, step / 2 + random.uniform(0, step / 2))))  # noqa: S311


def _retried(write: Callable[[], Any], failure: str, request_id: str) -> Any:
    """``write``, tried RECORD_ATTEMPTS times with a doubling pause: for the writes that record
    what the gateway did with a submit, which nothing else could record later."""
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            return write()
        except Exception:
            if attempt == RECORD_ATTEMPTS:
                logger.exception(failure, extra={"request_id": request_id} if request_id else None)
                raise
            logger.warning("recording the submit's outcome failed; retrying", extra={"attempt": attempt})
            time.sleep(RECORD_RETRY_DELAY_SECONDS * 2 ** (attempt - 1))
    raise AssertionError("unreachable")

"""Delivery: copy a finished job's media into S3 and publish exactly one final event.

Order of writes, each conditional:
1. COMPLETED -> COPYING with a lease, so a duplicate message cannot copy at the same time
   while a crashed copier's job can be taken over once its lease expires;
2. the copy itself, media URL by media URL (objects appear only when complete); each copied
   object is noted on the record (``copied_outputs``) so a retry copies only what is missing;
3. COPYING -> DELIVERED with the outputs;
4. publish the event, then set the outbox flag (``event_published_at``). A crash between 3
   and 4 re-publishes on the message's retry without copying again; the event is built from
   the terminal record only (its id from the job id and type, its time the terminal
   transition's), so every publish of a job's event is the same document.
FAILED / ERROR jobs skip 1-3 and publish ``pixverse.job.failed``; a CANCELLED job publishes
``pixverse.job.cancelled`` (``pixverse_jobs.cancel``). A job cancelled while it was being copied
refuses the DELIVERED write; its copier removes the objects it wrote and publishes the cancelled
event instead.

Where a job that cannot be copied ends: a permanent error (refused URL or address, 404/410,
wrong type, too large, not a video container) ends it DELIVERY_FAILED at once, its ``error.code``
the error's own (``media_not_video`` when the bytes are not an MP4 with a video track, else
``delivery_failed``), and any object already copied for its other media is removed. A transient one is first retried
inside the invocation (``MediaCopier``), then by the queue: the message returns (partial batch
failure) and is received again, up to the queue's maxReceiveCount, after which SQS moves it to
the dead-letter queue. The copier itself turns the *last* attempt's transient failure into
DELIVERY_FAILED plus one ``pixverse.job.failed`` event (``attempt >= max_attempts``: the larger
of the message's ApproximateReceiveCount and the attempts the job record counts, against
COPY_MAX_RECEIVE_COUNT, which template.yaml sets from the same parameter as the queue's
maxReceiveCount). It is done here rather than by a consumer
of the dead-letter queue because the move to the DLQ runs no code of ours: nothing would end the
job and publish its event; the copier on its last attempt knows the job, the reason and that no
retry follows. The message is then reported successful, so the DLQ holds only messages whose
last attempt could not even record the failure (a crash or timeout of that invocation, or
DynamoDB / SNS being down); redriving them is safe, because ``deliver`` is idempotent.

Backoff, and one copy request in flight per job. A failed message would come back only after
the queue's visibility timeout (90 minutes), while the reconciler, finding the job COPYING
without a lease, would send a fresh message (receive count 1) every run: a full download every
5 minutes that never reaches the last attempt. Instead a transient failure records on the job
when its retry is due (``copy_retry_at``, from ``CopyBackoff``) and which message carries it
(``copy_retry_message``), and raises ``CopyRetryScheduled``; the handler then sets that
message's visibility to the same delay (ChangeMessageVisibility). Until then the reconciler
leaves the job alone and a duplicate message is dropped (the claim refuses it). Attempts are
counted on the job (``copy_attempts``, set by the claim), so a duplicate or a re-driven message
(receive count 1) continues the count instead of restarting it: the last attempt comes after
at most ``max_attempts`` copies and ``CopyBackoff.bound(max_attempts)`` seconds of waiting.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pixverse_jobs.clock import epoch_seconds, utc_now_iso
from pixverse_jobs.errors import PermanentDeliveryError, TransientDeliveryError
from pixverse_jobs.events import EventPublisher, final_event
from pixverse_jobs.media import MediaCopier, extension_for
from pixverse_jobs.observability import logger
from pixverse_jobs.states import TERMINAL, JobStatus
from pixverse_jobs.store import (
    COPY_ATTEMPTS,
    COPY_LEASE,
    COPY_RETRY_AT,
    COPY_RETRY_MESSAGE,
    PUBLISH_LEASE,
    QUOTA_KEY,
    Job,
    JobStore,
)

# Who publishes a job's final event: the write that ends the job takes it; any other delivery
# must take it with a conditional write first. Long enough for one SNS publish and its retries.
PUBLISH_LEASE_SECONDS = 120
COPIED_ATTRIBUTE = "copied_outputs"
DELIVERY_FAILED_CODE = "delivery_failed"


# What a copy that ends (or ends the job) removes: its lease, its partial progress and its retry.
_COPY_STATE = [COPY_LEASE, COPIED_ATTRIBUTE, COPY_RETRY_AT, COPY_RETRY_MESSAGE]


@dataclass(frozen=True)
class CopyBackoff:
    """How long a failed copy's message stays away before the next attempt: after the n-th
    failed attempt, a random point in the upper half of ``base_seconds * 2^(n-1)`` capped at
    ``max_seconds`` ("equal jitter"): copies of many jobs failing together spread out, and each
    delay is at least half its step, so the total wait is bounded above and below."""

    base_seconds: int = 30
    max_seconds: int = 900

    def ceiling(self, failed: int) -> int:
        """The longest delay after the ``failed``-th failed attempt."""
        step: int = self.base_seconds * 2 ** max(0, min(failed, 64) - 1)
        return min(self.max_seconds, step)

    def delay(self, failed: int, rand: Callable[[], float] = random.random) -> int:
        """Whole seconds (SQS visibility is set in seconds) to wait after the ``failed``-th
        failed attempt."""
        top = self.ceiling(failed)
        return max(1, math.ceil(top / 2 + rand() * top / 2))

    def bound(self, attempts: int) -> int:
        """The most the waits between ``attempts`` attempts add up to."""
        return sum(self.ceiling(n) for n in range(1, attempts))


# How soon a copy whose objects are in S3 but whose DELIVERED write failed is tried again.
RECORD_RETRY_SECONDS = 5


class CopyRetryScheduled(TransientDeliveryError):
    """The copy failed transiently and its next attempt is due in ``retry_in`` seconds: the
    message that carried it must come back then (ChangeMessageVisibility), not after the
    queue's visibility timeout."""

    def __init__(self, message: str, *, retry_in: int, attempt: int) -> None:
        super().__init__(message)
        self.retry_in = retry_in
        self.attempt = attempt


@dataclass(frozen=True)
class DeliveryOutcome:
    status: JobStatus
    published: bool
    model: str | None = None
    copied_bytes: int = 0  # bytes this call copied into S3 (0 when it copied nothing)
    copy_seconds: float = 0.0


class DeliveryService:
    def __init__(
        self,
        store: JobStore,
        copier: MediaCopier,
        publisher: EventPublisher,
        *,
        bucket: str,
        key_prefix: str,
        event_source: str,
        lease_seconds: int = 900,
        max_attempts: int = 5,
        backoff: CopyBackoff | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._copier = copier
        self._publisher = publisher
        self._bucket = bucket
        self._prefix = key_prefix.strip("/")
        self._source = event_source
        self._lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._backoff = backoff or CopyBackoff()
        self._jitter = jitter

    def deliver(
        self, job_id: str, *, attempt: int = 1, deadline: float | None = None, message_id: str | None = None
    ) -> DeliveryOutcome:
        """Bring a job that reached a gateway outcome to its end, idempotently.

        ``attempt`` is this message's receive count; the job's own count of copy attempts wins
        when it is higher. On the last attempt (``max_attempts``) a transient copy failure ends
        the job DELIVERY_FAILED instead of raising. ``deadline`` (``time.monotonic()``) is when a
        copy must stop to leave time to record the outcome. ``message_id`` names the queue
        message: while a failed copy waits for its retry, only that message may copy again.
        Raises CopyRetryScheduled (a TransientDeliveryError) when the copy should be retried
        after its ``retry_in`` seconds, TransientDeliveryError for other retryable failures."""
        job = self._store.get(job_id)
        if job is None:
            logger.warning("copy requested for an unknown job; dropped", extra={"job_id": job_id})
            return DeliveryOutcome(status=JobStatus.ERROR, published=False)
        status = JobStatus(job["status"])
        model = str(job.get("model") or "") or None
        copied_bytes, copy_seconds = 0, 0.0
        holds_publication = False
        if status in (JobStatus.COMPLETED, JobStatus.COPYING):
            started = time.monotonic()
            job, holds_publication = self._copy(job, attempt=attempt, deadline=deadline, message_id=message_id)
            status = JobStatus(job["status"])
            if status is JobStatus.DELIVERED:
                copy_seconds = time.monotonic() - started
                copied_bytes = sum(int(o.get("size") or 0) for o in job.get("outputs") or [])
        if status is JobStatus.CANCELLED and job.get(COPIED_ATTRIBUTE):
            # Cancelled between two attempts of a copy: the objects its earlier attempts wrote go too.
            self._remove_copies(job_id, list(job[COPIED_ATTRIBUTE]))
            with contextlib.suppress(Exception):
                self._store.annotate(job_id, remove=[COPIED_ATTRIBUTE])
        if status in TERMINAL:
            return DeliveryOutcome(
                status=status,
                published=self._publish_once(job, holds_publication=holds_publication),
                model=model,
                copied_bytes=copied_bytes,
                copy_seconds=copy_seconds,
            )
        logger.info("nothing to deliver yet", extra={"job_id": job_id, "status": str(status)})
        return DeliveryOutcome(status=status, published=False, model=model)

    def object_key(self, job: Job, index: int, url: str) -> str:
        ext = extension_for(str(job.get("media_type") or ""), url)
        return f"{self._prefix}/{job['model']}/{job['job_id']}/{index}.{ext}"

    def _copy(self, job: Job, *, attempt: int, deadline: float | None, message_id: str | None) -> tuple[Job, bool]:
        """Copy and end the job; the job after it, and whether this call ended it (and so holds
        its publication: the ending write takes the publish lease with it, at no extra cost)."""
        job_id = job["job_id"]
        now = epoch_seconds()
        counted = job.get(COPY_ATTEMPTS)
        # The job's count, not the message's alone: a re-driven or duplicate message starts at 1.
        attempt = max(attempt, int(counted or 0) + 1)
        values: dict[str, Any] = {":lease_now": now}
        # Claimed only if the lease is free, no retry is pending for another message, and no
        # other attempt was counted since the job was read (so each attempt counts once).
        retry_gate = f"attribute_not_exists({COPY_RETRY_AT}) OR {COPY_RETRY_AT} <= :lease_now"
        if message_id:
            retry_gate += f" OR {COPY_RETRY_MESSAGE} = :message"
            values[":message"] = message_id
        if counted is None:
            counted_gate = f"attribute_not_exists({COPY_ATTEMPTS})"
        else:
            counted_gate = f"{COPY_ATTEMPTS} = :counted"
            values[":counted"] = int(counted)
        claim = self._store.advance(
            job_id,
            JobStatus.COPYING,
            attributes={COPY_LEASE: now + self._lease_seconds, COPY_ATTEMPTS: attempt},
            remove=[COPY_RETRY_AT, COPY_RETRY_MESSAGE],
            extra_condition=(
                f"(attribute_not_exists({COPY_LEASE}) OR {COPY_LEASE} < :lease_now) "
                f"AND ({retry_gate}) AND ({counted_gate})"
            ),
            extra_values=values,
        )
        if not claim.applied:
            retry_at = claim.job.get(COPY_RETRY_AT)
            if claim.job.get("status") == JobStatus.COPYING and retry_at is not None and int(retry_at) > now:
                # Its own message brings the retry; this one would start a second copy early.
                logger.info(
                    "copy retry already scheduled; duplicate request dropped",
                    extra={"job_id": job_id, "retry_at": int(retry_at)},
                )
            else:
                logger.info("copy already in hand elsewhere", extra={"job_id": job_id, "status": claim.job["status"]})
            return claim.job, False
        job = claim.job
        try:
            outputs = self._copy_media(job, deadline)
        except PermanentDeliveryError as exc:
            logger.warning("media copy failed permanently", extra={"job_id": job_id, "reason": str(exc)})
            return self._fail(job_id, str(exc), code=exc.code), True
        except TransientDeliveryError as exc:
            if attempt >= self._max_attempts:
                logger.error(
                    "media copy failed on the last attempt",
                    extra={"job_id": job_id, "attempt": attempt, "reason": str(exc)},
                )
                return self._fail(job_id, f"media copy failed after {attempt} attempts: {exc}"), True
            raise self._schedule_retry(job_id, attempt, message_id, str(exc)) from exc
        except Exception as exc:
            if attempt >= self._max_attempts:
                # A bug must not leave the job COPYING forever once no retry follows.
                logger.exception("media copy failed unexpectedly on the last attempt", extra={"job_id": job_id})
                return self._fail(job_id, f"media copy failed after {attempt} attempts: internal error"), True
            # Backed off like any failure: a bug that fails every copy must not loop either.
            logger.exception("media copy failed unexpectedly", extra={"job_id": job_id, "attempt": attempt})
            raise self._schedule_retry(job_id, attempt, message_id, f"internal error: {type(exc).__name__}") from exc
        try:
            delivered = self._store.advance(
                job_id,
                JobStatus.DELIVERED,
                attributes={
                    "outputs": outputs,
                    "delivered_at": utc_now_iso(),
                    PUBLISH_LEASE: epoch_seconds() + PUBLISH_LEASE_SECONDS,
                },
                remove=_COPY_STATE,
                from_statuses=[JobStatus.COPYING],
            )
        except Exception as exc:
            # The objects are in S3 but the job does not say so: keep what was copied and give the
            # lease back, so the message's retry finishes at once instead of finding the job "in
            # hand elsewhere" for the lease's 15 minutes.
            logger.warning("DELIVERED write failed; the message will be retried", extra={"job_id": job_id})
            with contextlib.suppress(Exception):
                self._store.annotate(
                    job_id,
                    attributes={COPIED_ATTRIBUTE: outputs},
                    remove=[COPY_LEASE],
                    condition="#st = :copying",
                    names={"#st": "status"},
                    values={":copying": str(JobStatus.COPYING)},
                )
            # Back soon: the copy is done, only the write is missing; SQS would otherwise hold the
            # message for the queue's visibility timeout (90 minutes on AWS).
            raise CopyRetryScheduled(
                f"recording the delivery failed: {type(exc).__name__}", retry_in=RECORD_RETRY_SECONDS, attempt=attempt
            ) from exc
        if not delivered.applied and delivered.job.get("status") == JobStatus.CANCELLED:
            self._remove_copies(job_id, outputs)
        return delivered.job, delivered.applied

    def _remove_copies(
        self, job_id: str, outputs: list[dict[str, Any]], *, reason: str = "job cancelled during its copy"
    ) -> None:
        """The job was cancelled while its media was copied, or one of its media was refused: the
        objects belong to no delivered job, so they go (best effort: the bucket's lifecycle rule
        ends any left behind)."""
        for output in outputs:
            try:
                self._copier.remove(bucket=self._bucket, key=str(output["key"]))
            except Exception:
                extra = {"job_id": job_id, "key": output.get("key")}
                logger.warning("copy of a cancelled job not removed", extra=extra)
        logger.info(
            "copies of an undelivered job removed", extra={"job_id": job_id, "objects": len(outputs), "reason": reason}
        )

    def _copy_media(self, job: Job, deadline: float | None) -> list[dict[str, Any]]:
        """Copy every media URL not copied by an earlier attempt; the outputs, in URL order."""
        job_id = job["job_id"]
        metadata = {
            "job_id": job_id,
            "request_id": str(job.get("request_id", "")),
            "model": str(job["model"]),
        }
        urls = list(job.get("media_urls") or [])
        if not urls:
            raise PermanentDeliveryError("the completed job has no media URL")
        done = {str(o.get("key")): dict(o) for o in job.get(COPIED_ATTRIBUTE) or []}
        outputs: list[dict[str, Any]] = []
        for index, url in enumerate(urls):
            key = self.object_key(job, index, url)
            if key in done:
                outputs.append(done[key])
                continue
            try:
                copied = self._copier.copy(
                    url,
                    bucket=self._bucket,
                    key=key,
                    media_type=job.get("media_type"),
                    metadata=metadata,
                    deadline=deadline,
                )
            except PermanentDeliveryError:
                # The job ends DELIVERY_FAILED: objects already copied for its other media would
                # belong to no delivered job and no event would name them.
                if outputs:
                    self._remove_copies(job_id, outputs, reason="a later media item was refused")
                raise
            outputs.append(copied.as_output())
            logger.info(
                "media copied",
                extra={"job_id": job_id, "index": index, "key": key, "size": copied.size, "sha256": copied.sha256},
            )
            if index + 1 < len(urls):
                self._store.annotate(
                    job_id,
                    attributes={COPIED_ATTRIBUTE: outputs},
                    condition="#st = :copying",
                    names={"#st": "status"},
                    values={":copying": str(JobStatus.COPYING)},
                )
        return outputs

    def _fail(self, job_id: str, message: str, *, code: str = DELIVERY_FAILED_CODE) -> Job:
        return self._store.advance(
            job_id,
            JobStatus.DELIVERY_FAILED,
            attributes={
                "error": {"code": code, "message": message},
                PUBLISH_LEASE: epoch_seconds() + PUBLISH_LEASE_SECONDS,
            },
            remove=_COPY_STATE,
        ).job

    def _schedule_retry(self, job_id: str, attempt: int, message_id: str | None, reason: str) -> CopyRetryScheduled:
        """Give the lease back and record when the next attempt is due and which message brings
        it; the error for the caller to raise, naming the delay to set on that message."""
        retry_in = self._backoff.delay(attempt, self._jitter)
        retry: dict[str, Any] = {COPY_RETRY_AT: epoch_seconds() + retry_in}
        if message_id:
            retry[COPY_RETRY_MESSAGE] = message_id
        self._store.annotate(
            job_id,
            attributes=retry,
            remove=[COPY_LEASE] if message_id else [COPY_LEASE, COPY_RETRY_MESSAGE],
            condition="#st = :copying",
            names={"#st": "status"},
            values={":copying": str(JobStatus.COPYING)},
        )
        logger.warning(
            "media copy failed; retry scheduled",
            extra={
                "job_id": job_id,
                "attempt": attempt,
                "max_attempts": self._max_attempts,
                "retry_in": retry_in,
                "reason": reason,
            },
        )
        return CopyRetryScheduled(reason, retry_in=retry_in, attempt=attempt)

    def _publish_once(self, job: Job, *, holds_publication: bool = False) -> bool:
        """Publish the job's final event unless it is out already or another delivery is
        publishing it. The publish lease makes the check and the publish one decision: without
        it, a message retry and a reconciler re-drive reading the job at the same moment would
        both publish. A publisher that dies after publishing leaves the lease to expire, and the
        next delivery re-publishes the same event (same id): at least once, never lost."""
        if job.get("event_published_at"):
            return False
        job_id = job["job_id"]
        if not holds_publication and not self._store.annotate(
            job_id,
            attributes={PUBLISH_LEASE: epoch_seconds() + PUBLISH_LEASE_SECONDS},
            condition=f"attribute_not_exists(event_published_at) AND "
            f"(attribute_not_exists({PUBLISH_LEASE}) OR {PUBLISH_LEASE} < :now)",
            values={":now": epoch_seconds()},
        ):
            logger.info("event already published or being published", extra={"job_id": job_id})
            return False
        event = final_event(job, source=self._source)
        event_type = event["type"]
        try:
            self._publisher.publish(event)
        except Exception:
            # Let the message's retry publish at once rather than after the lease.
            with contextlib.suppress(Exception):
                self._store.annotate(job_id, remove=[PUBLISH_LEASE])
            raise
        self._store.mark_event_published(job["job_id"], event["id"], quota=job.get(QUOTA_KEY))
        logger.info("event published", extra={"job_id": job["job_id"], "type": event_type, "event_id": event["id"]})
        return True

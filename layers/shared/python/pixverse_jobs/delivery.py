"""Delivery: copy a finished job's media into S3 and publish exactly one final event.

Order of writes, each conditional:
1. COMPLETED -> COPYING with a lease, so a duplicate message cannot copy at the same time
   while a crashed copier's job can be taken over once its lease expires;
2. the copy itself (objects appear only when complete);
3. COPYING -> DELIVERED with the outputs;
4. publish the event, then set the outbox flag (``event_published_at``). A crash between 3
   and 4 re-publishes on the message's retry without copying again, with the same event id.
FAILED / ERROR jobs skip 1-3 and publish ``pixverse.job.failed``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixverse_jobs.clock import epoch_seconds, utc_now_iso
from pixverse_jobs.errors import PermanentDeliveryError, TransientDeliveryError
from pixverse_jobs.events import JOB_DELIVERED, JOB_FAILED, EventPublisher, build_event
from pixverse_jobs.media import MediaCopier, extension_for
from pixverse_jobs.observability import logger
from pixverse_jobs.states import FAILURES, JobStatus
from pixverse_jobs.store import Job, JobStore
from pixverse_jobs.views import job_view

LEASE_ATTRIBUTE = "copy_lease_until"


@dataclass(frozen=True)
class DeliveryOutcome:
    status: JobStatus
    published: bool


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
    ) -> None:
        self._store = store
        self._copier = copier
        self._publisher = publisher
        self._bucket = bucket
        self._prefix = key_prefix.strip("/")
        self._source = event_source
        self._lease_seconds = lease_seconds

    def deliver(self, job_id: str) -> DeliveryOutcome:
        """Bring a job that reached a gateway outcome to its end, idempotently."""
        job = self._store.get(job_id)
        if job is None:
            logger.warning("copy requested for an unknown job; dropped", extra={"job_id": job_id})
            return DeliveryOutcome(status=JobStatus.ERROR, published=False)
        status = JobStatus(job["status"])
        if status in (JobStatus.COMPLETED, JobStatus.COPYING):
            job = self._copy(job)
            status = JobStatus(job["status"])
        if status is JobStatus.DELIVERED or status in FAILURES:
            return DeliveryOutcome(status=status, published=self._publish_once(job))
        logger.info("nothing to deliver yet", extra={"job_id": job_id, "status": str(status)})
        return DeliveryOutcome(status=status, published=False)

    def object_key(self, job: Job, index: int, url: str) -> str:
        ext = extension_for(str(job.get("media_type") or ""), url)
        return f"{self._prefix}/{job['model']}/{job['job_id']}/{index}.{ext}"

    def _copy(self, job: Job) -> Job:
        job_id = job["job_id"]
        now = epoch_seconds()
        claim = self._store.advance(
            job_id,
            JobStatus.COPYING,
            attributes={LEASE_ATTRIBUTE: now + self._lease_seconds},
            extra_condition=f"attribute_not_exists({LEASE_ATTRIBUTE}) OR {LEASE_ATTRIBUTE} < :lease_now",
            extra_values={":lease_now": now},
        )
        if not claim.applied:
            logger.info("copy already in hand elsewhere", extra={"job_id": job_id, "status": claim.job["status"]})
            return claim.job
        job = claim.job
        content_type = str(job.get("media_type") or "application/octet-stream")
        metadata = {
            "job_id": job_id,
            "request_id": str(job.get("request_id", "")),
            "model": str(job["model"]),
        }
        outputs: list[dict[str, Any]] = []
        try:
            for index, url in enumerate(job.get("media_urls") or []):
                copied = self._copier.copy(
                    url,
                    bucket=self._bucket,
                    key=self.object_key(job, index, url),
                    content_type=content_type,
                    metadata=metadata,
                )
                outputs.append(copied.as_output())
        except PermanentDeliveryError as exc:
            logger.warning("media copy failed permanently", extra={"job_id": job_id, "reason": str(exc)})
            return self._store.advance(
                job_id,
                JobStatus.DELIVERY_FAILED,
                attributes={"error": {"code": "delivery_failed", "message": str(exc)}},
                remove=[LEASE_ATTRIBUTE],
            ).job
        except TransientDeliveryError:
            # Give the lease back so the message's retry can copy at once.
            self._store.annotate(
                job_id,
                remove=[LEASE_ATTRIBUTE],
                condition="#st = :copying",
                names={"#st": "status"},
                values={":copying": str(JobStatus.COPYING)},
            )
            raise
        return self._store.advance(
            job_id,
            JobStatus.DELIVERED,
            attributes={"outputs": outputs, "delivered_at": utc_now_iso()},
            remove=[LEASE_ATTRIBUTE],
            from_statuses=[JobStatus.COPYING],
        ).job

    def _publish_once(self, job: Job) -> bool:
        if job.get("event_published_at"):
            return False
        event_type = JOB_DELIVERED if job["status"] == JobStatus.DELIVERED else JOB_FAILED
        event = build_event(event_type, job_view(job), source=self._source)
        self._publisher.publish(event)
        self._store.mark_event_published(job["job_id"], event["id"])
        logger.info("event published", extra={"job_id": job["job_id"], "type": event_type, "event_id": event["id"]})
        return True

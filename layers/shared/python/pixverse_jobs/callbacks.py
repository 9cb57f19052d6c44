"""Gateway callbacks: parse, then one conditional write through the state machine.

Duplicates, late and out-of-order callbacks are refused by the write's condition and change
nothing. The write that moves a job to a gateway outcome (COMPLETED, FAILED, ERROR) is the
only one that enqueues its delivery, so concurrent duplicates cannot enqueue twice."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pixverse_jobs.clock import utc_now_iso
from pixverse_jobs.errors import CallbackRejected
from pixverse_jobs.observability import logger
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.states import GATEWAY_STATUSES, NEEDS_DELIVERY, JobStatus
from pixverse_jobs.store import JobStore

MAX_CALLBACK_BYTES = 64 * 1024
ENQUEUE_FAILED_FLAG = "delivery_enqueue_failed"


@dataclass(frozen=True)
class Callback:
    request_id: str
    status: JobStatus
    model_id: str | None
    error: str | None
    media_urls: tuple[str, ...]
    media_type: str | None


@dataclass(frozen=True)
class CallbackOutcome:
    applied: bool
    status: JobStatus


def parse_callback(body: bytes | str) -> Callback:
    """A gateway callback (the status response's shape); CallbackRejected if malformed."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_CALLBACK_BYTES:
        raise CallbackRejected(f"callback body exceeds {MAX_CALLBACK_BYTES} bytes", status_code=413)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CallbackRejected("callback body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise CallbackRejected("callback body must be a JSON object")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise CallbackRejected("callback has no request_id")
    status = GATEWAY_STATUSES.get(str(data.get("status")))
    if status is None:
        raise CallbackRejected(f"callback status must be one of {', '.join(GATEWAY_STATUSES)}")
    output = data.get("output") or {}
    if not isinstance(output, dict):
        raise CallbackRejected("callback output must be an object or null")
    urls = output.get("media_url") or []
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise CallbackRejected("callback output.media_url must be an array of URLs")
    if status is JobStatus.COMPLETED and not urls:
        raise CallbackRejected("COMPLETED callback has no output.media_url")
    error = data.get("error")
    model_id = data.get("model_id")
    media_type = output.get("media_type")
    return Callback(
        request_id=request_id,
        status=status,
        model_id=model_id if isinstance(model_id, str) else None,
        error=str(error) if error is not None else None,
        media_urls=tuple(urls),
        media_type=media_type if isinstance(media_type, str) else None,
    )


class CallbackProcessor:
    def __init__(self, store: JobStore, queue: CopyQueue) -> None:
        self._store = store
        self._queue = queue

    def process(self, job_id: str, callback: Callback) -> CallbackOutcome:
        """Apply one callback to the job ``job_id`` (from the signed URL)."""
        target = callback.status
        attributes: dict[str, Any] = {"gateway_status": str(target)}
        if target in NEEDS_DELIVERY:
            attributes["completed_at"] = utc_now_iso()
        if target is JobStatus.COMPLETED:
            attributes["media_urls"] = list(callback.media_urls)
            attributes["media_type"] = callback.media_type or "application/octet-stream"
        elif target in (JobStatus.FAILED, JobStatus.ERROR):
            code = "generation_failed" if target is JobStatus.FAILED else "gateway_error"
            attributes["error"] = {"code": code, "message": callback.error or "the gateway gave no reason"}
        transition = self._store.advance(job_id, target, request_id=callback.request_id, attributes=attributes)
        job = transition.job
        if not transition.applied:
            stored_request = job.get("request_id")
            if stored_request and stored_request != callback.request_id:
                raise CallbackRejected("callback request_id does not match the job", status_code=409)
            current = JobStatus(job["status"])
            if current is target and target in NEEDS_DELIVERY and job.get(ENQUEUE_FAILED_FLAG):
                self._retry_enqueue(job_id)
            logger.info("callback changed nothing", extra={"callback_status": str(target), "status": str(current)})
            return CallbackOutcome(applied=False, status=current)
        if target in NEEDS_DELIVERY:
            self._enqueue(job_id)
        return CallbackOutcome(applied=True, status=target)

    def _enqueue(self, job_id: str) -> None:
        try:
            self._queue.request_delivery(job_id)
        except Exception:
            # Remember it so that the gateway's retry of this callback enqueues again.
            self._store.annotate(job_id, attributes={ENQUEUE_FAILED_FLAG: True})
            raise

    def _retry_enqueue(self, job_id: str) -> None:
        # The conditional removal decides which of several retries enqueues.
        if self._store.annotate(
            job_id, remove=[ENQUEUE_FAILED_FLAG], condition=f"attribute_exists({ENQUEUE_FAILED_FLAG})"
        ):
            self._enqueue(job_id)

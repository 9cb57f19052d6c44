"""Gateway callbacks: authenticate, parse, then one conditional write through the state machine.

The gateway's callbacks are unsigned, may be delivered more than once, and in sync mode come on
every poll cycle and in any order. What makes that harmless:

* the signed URL (``signing``) is checked before the body is read;
* each callback is one ``JobStore.advance``, whose condition comes from ``states``: a duplicate,
  late or out-of-order callback is refused by the database and changes nothing;
* the write that moves a job to a gateway outcome (COMPLETED, FAILED, ERROR) is the only one that
  enqueues its delivery, so concurrent duplicates cannot enqueue twice.

Why not the Powertools idempotency utility: the conditional write already *is* the idempotency,
atomic in the table that holds the job. The utility would add a second write (and a read) per
callback, and its key cannot be right for this traffic: keyed on request_id it would swallow the
real changes that share one (QUEUED -> PROCESSING -> COMPLETED); keyed on the payload it would
not catch sync-mode repeats (their ``updated_at`` differs); and it answers concurrent copies with
"already in progress" errors, which the gateway would retry, where the conditional write answers
each of them 200 at once."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from pixverse_jobs.clock import epoch_seconds, utc_now_iso
from pixverse_jobs.errors import CallbackRejected
from pixverse_jobs.events import EventPublisher, build_progress_event, truncate_text
from pixverse_jobs.inputs import redact_presigned
from pixverse_jobs.nesting import MAX_DEPTH, deeper_than
from pixverse_jobs.observability import count_by, logger, metrics
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.signing import SignatureVerifier
from pixverse_jobs.states import GATEWAY_STATUSES, NEEDS_DELIVERY, JobStatus
from pixverse_jobs.store import CHECK_AT, UNFINISHED, Job, JobStore
from pixverse_jobs.views import job_view

MAX_CALLBACK_BYTES = 64 * 1024
# The gateway's error text is stored, listed and published in the job's event: kept to this many
# characters (with a truncation marker), not the callback's 64 KB.
MAX_ERROR_CHARS = 2000
ENQUEUE_FAILED_FLAG = "delivery_enqueue_failed"
# Statuses in which a callback shows the job alive at the gateway (its generation goes on), so the
# reconciler need not look at it for a while; an outcome leaves the index within seconds instead.
_ALIVE = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})

# EMF metric names (namespace POWERTOOLS_METRICS_NAMESPACE).
METRIC_CALLBACKS = "Callbacks"  # dimension status: every authenticated, well-formed callback
METRIC_DUPLICATE = "CallbacksDuplicate"  # refused by the state machine: duplicate or late
METRIC_REJECTED = "CallbacksRejected"  # 4xx: bad signature, malformed, another request's
METRIC_ENQUEUE_FAILED = "CallbackEnqueueFailed"  # the copy request could not be sent (answered 500)
METRIC_BUFFERED = "CallbacksBuffered"  # write failed for a passing reason: kept on the buffer queue
METRIC_PROGRESS_PUBLISHED = "ProgressEventsPublished"
METRIC_PROGRESS_FAILED = "ProgressEventsFailed"


@dataclass(frozen=True)
class Callback:
    """A parsed gateway callback (the shape of the gateway's status response)."""

    request_id: str
    status: JobStatus
    model_id: str | None
    error: str | None
    media_urls: tuple[str, ...]
    media_type: str | None


@dataclass(frozen=True)
class CallbackOutcome:
    """What a callback did: ``applied`` if its write went through (a sync-mode repeat of the
    same status applies too, refreshing updated_at), ``changed`` if that moved the job to
    another status; ``status`` is the job's status afterwards."""

    applied: bool
    changed: bool
    status: JobStatus
    # Not applied yet: the write failed for a passing reason and the callback waits on the buffer
    # queue (``callback_buffer``); ``status`` is then the callback's, not the job's.
    buffered: bool = False


class CallbackHolder(Protocol):
    """Where a verified callback waits when its write failed for a passing reason
    (``pixverse_jobs.callback_buffer.CallbackBuffer``)."""

    def retryable(self, exc: BaseException) -> bool:
        """Whether the write failure ``exc`` may pass, so the callback is worth keeping."""
        ...

    def hold(self, job_id: str, callback: Callback) -> str:
        """Store the callback durably; raises if it could not."""
        ...


def callback_body(body: str | None, *, base64_encoded: bool) -> bytes:
    """The raw bytes of an HTTP API event's body; 413 if too large, 400 if not decodable."""
    text = body or ""
    # Checked before decoding, so an oversize body costs no decoding (base64 is 4/3 larger).
    limit = MAX_CALLBACK_BYTES * 4 // 3 + 4 if base64_encoded else MAX_CALLBACK_BYTES
    if len(text) > limit:
        raise CallbackRejected(f"callback body exceeds {MAX_CALLBACK_BYTES} bytes", status_code=413)
    if not base64_encoded:
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CallbackRejected("callback body is not valid base64") from exc


def parse_callback(body: bytes | str) -> Callback:
    """A gateway callback (the status response's shape); CallbackRejected if malformed."""
    # Lone surrogates survive as bytes that strict UTF-8 (below) refuses, as it refuses a BOM.
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_CALLBACK_BYTES:
        raise CallbackRejected(f"callback body exceeds {MAX_CALLBACK_BYTES} bytes", status_code=413)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError; RecursionError: absurd nesting
        raise CallbackRejected("callback body is not valid JSON") from exc
    if deeper_than(data):  # Python 3.12+ parses nesting its own code cannot walk
        raise CallbackRejected(f"callback body is nested too deeply (at most {MAX_DEPTH} levels)")
    if not isinstance(data, dict):
        raise CallbackRejected("callback body must be a JSON object")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise CallbackRejected("callback has no request_id")
    raw_status = data.get("status")
    status = GATEWAY_STATUSES.get(raw_status) if isinstance(raw_status, str) else None
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
        # Without the presigned URL of an s3:// image input, should the gateway quote it.
        error=truncate_text(redact_presigned(str(error)), MAX_ERROR_CHARS) if error is not None else None,
        media_urls=tuple(urls),
        media_type=media_type if isinstance(media_type, str) else None,
    )


class ProgressEvents:
    """Optional ``pixverse.job.progress`` events (PROGRESS_EVENTS=true). Best effort, at most
    once: the status change is already committed when the event goes out, so a failed publish
    is logged and counted but does not fail the callback (a retry of it would change nothing
    and so publish nothing either)."""

    def __init__(self, publisher: EventPublisher, source: str) -> None:
        self._publisher = publisher
        self._source = source

    def announce(self, job: Job) -> None:
        """Publish the event for the status ``job`` just moved to."""
        try:
            self._publisher.publish(build_progress_event(job_view(job), source=self._source))
        except Exception:
            logger.warning("progress event not published", exc_info=True)
            metrics.add_metric(name=METRIC_PROGRESS_FAILED, unit=MetricUnit.Count, value=1)
            return
        metrics.add_metric(name=METRIC_PROGRESS_PUBLISHED, unit=MetricUnit.Count, value=1)


class CallbackProcessor:
    """Applies a parsed callback to its job: one conditional write, plus one enqueue on the
    transition to a gateway outcome, plus (optionally) one progress event on a status change.

    The job's webhook mode (WEBHOOK_MODE or its own ``webhook_mode``) changes nothing here: the
    gateway sends QUEUED / PROCESSING callbacks only to sync-mode jobs, and whichever job gets
    one, the same state machine decides, so an unexpected one can do no harm either."""

    def __init__(self, store: JobStore, queue: CopyQueue, progress: ProgressEvents | None = None) -> None:
        self._store = store
        self._queue = queue
        self._progress = progress

    def process(self, job_id: str, callback: Callback, *, check_at: int | None = None) -> CallbackOutcome:
        """Apply one callback to the job ``job_id`` (from the signed URL).

        Raises CallbackRejected (409) if the job belongs to another gateway request, JobNotFound
        if there is no such job. A job whose request_id is not stored yet (the callback outran
        the submit function's write) takes the callback's: the URL's signature already ties the
        callback to this job, and the submit's own write then finds the same id.

        ``check_at`` (epoch seconds) is the job's next look by the reconciler, written in the same
        conditional write: the reconciler passes it when it applies a status it polled. Without
        it, a QUEUED / PROCESSING callback (the job is alive) pushes the next look to
        RECONCILE_AFTER_SECONDS from now, but only when it is less than half that away
        (``_keep_alive``)."""
        target = callback.status
        attributes: dict[str, Any] = {"gateway_status": str(target)}
        if check_at is not None:
            attributes[CHECK_AT] = check_at
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
        current = JobStatus(job["status"])
        if not transition.applied:
            stored_request = job.get("request_id")
            if stored_request and stored_request != callback.request_id:
                raise CallbackRejected("callback request_id does not match the job", status_code=409)
            if current is target and target in NEEDS_DELIVERY and job.get(ENQUEUE_FAILED_FLAG):
                self._retry_enqueue(job_id)
            logger.info("callback changed nothing", extra={"callback_status": str(target), "status": str(current)})
            return CallbackOutcome(applied=False, changed=False, status=current)
        changed = transition.changed_status
        logger.info(
            "callback applied",
            extra={"status": str(target), "previous_status": str(transition.previous_status), "changed": changed},
        )
        if target in NEEDS_DELIVERY:
            self._enqueue(job_id)
        elif changed and self._progress is not None:
            self._progress.announce(job)
        if check_at is None and target in _ALIVE:
            self._keep_alive(job_id, job)
        return CallbackOutcome(applied=True, changed=changed, status=target)

    def _keep_alive(self, job_id: str, job: Job) -> None:
        """Push the reconciler's next look at a job the gateway just showed alive, if it was due
        within half of RECONCILE_AFTER_SECONDS.

        Why not on every callback: the next look is the unfinished index's sort key, so moving
        it is a delete and a put there, and in sync mode a job gets a callback about every 15 s.
        Written on each, that is two index writes per callback on one of the index's 16 keys;
        written only when due soon, a job generating for less than half of
        RECONCILE_AFTER_SECONDS (7.5 min by default) adds nothing, a longer one one UpdateItem
        (the job's own key) and two index writes per such half. A failure here is logged, not
        raised: the status write is done, and the worst outcome is one needless poll."""
        after = self._store.first_check_after_seconds
        now = epoch_seconds()
        due = job.get(CHECK_AT)
        if UNFINISHED not in job or (due is not None and int(due) >= now + after // 2):
            return
        try:
            self._store.push_check_at(job_id, now + after)
        except Exception:
            logger.warning("could not push the reconciler's next look", exc_info=True)

    def _enqueue(self, job_id: str) -> None:
        try:
            self._queue.request_delivery(job_id)
        except Exception:
            metrics.add_metric(name=METRIC_ENQUEUE_FAILED, unit=MetricUnit.Count, value=1)
            # Remember it so that the gateway's retry of this callback (it gets a 500) enqueues
            # again; the duplicate path below is the only other way a copy request is sent.
            self._store.annotate(job_id, attributes={ENQUEUE_FAILED_FLAG: True})
            raise
        logger.info("copy requested")

    def _retry_enqueue(self, job_id: str) -> None:
        # The conditional removal decides which of several retries enqueues.
        if self._store.annotate(
            job_id, remove=[ENQUEUE_FAILED_FLAG], condition=f"attribute_exists({ENQUEUE_FAILED_FLAG})"
        ):
            logger.info("copy request sent again after an earlier failure")
            self._enqueue(job_id)


class CallbackReceiver:
    """The webhook's logic without the Lambda event: verify, then parse, then apply.

    Every refusal is a CallbackRejected that changes nothing: 401 (missing or wrong ``sig``,
    before the body is read), 413 / 400 (oversize, malformed), 409 (another request's payload).
    Neither the signature nor the secret is ever logged or echoed."""

    def __init__(
        self, verifier: SignatureVerifier, processor: CallbackProcessor, buffer: CallbackHolder | None = None
    ) -> None:
        self._verifier = verifier
        self._processor = processor
        self._buffer = buffer

    def authenticate(self, job_id: str, signature: str | None) -> None:
        """Raise CallbackRejected(401) unless ``signature`` is the job's URL signature."""
        if not self._verifier.verify(job_id, signature):
            logger.warning("callback refused: missing or invalid signature", extra={"sig_present": bool(signature)})
            metrics.add_metric(name=METRIC_REJECTED, unit=MetricUnit.Count, value=1)
            raise CallbackRejected("missing or invalid signature", status_code=401)

    def receive(self, job_id: str, body: str | None, *, base64_encoded: bool = False) -> CallbackOutcome:
        """Parse and apply an authenticated callback for ``job_id`` (``body`` as the HTTP API
        event carries it)."""
        try:
            callback = parse_callback(callback_body(body, base64_encoded=base64_encoded))
            logger.append_keys(request_id=callback.request_id)
            count_by(METRIC_CALLBACKS, status=str(callback.status))
            try:
                outcome = self._processor.process(job_id, callback)
            except Exception as exc:
                # Only after the signature and the parse, and never for a refusal (CallbackRejected,
                # JobNotFound): those are not retryable, so they are answered as before.
                buffer = self._buffer
                if buffer is None or not buffer.retryable(exc):
                    raise
                return self._hold(buffer, job_id, callback, exc)
        except CallbackRejected as exc:
            logger.warning("callback refused", extra={"reason": exc.message, "http_status": exc.status_code})
            metrics.add_metric(name=METRIC_REJECTED, unit=MetricUnit.Count, value=1)
            raise
        if not outcome.applied:
            metrics.add_metric(name=METRIC_DUPLICATE, unit=MetricUnit.Count, value=1)
        return outcome

    @staticmethod
    def _hold(buffer: CallbackHolder, job_id: str, callback: Callback, cause: Exception) -> CallbackOutcome:
        # If the buffer cannot take it either, its error propagates and the webhook answers 5xx
        # as it did before the buffer: the gateway retries, nothing is lost.
        message_id = buffer.hold(job_id, callback)
        logger.warning(
            "callback buffered: the job's write failed for a passing reason",
            extra={"error": type(cause).__name__, "detail": str(cause)[:300], "message_id": message_id},
        )
        metrics.add_metric(name=METRIC_BUFFERED, unit=MetricUnit.Count, value=1)
        return CallbackOutcome(applied=False, changed=False, status=callback.status, buffered=True)

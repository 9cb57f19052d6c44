"""MediaCopyFunction: copy-queue messages -> streaming copy into S3 -> one SNS event per job.

Partial batch failures: a message whose copy failed transiently returns to the queue, after the
backoff the delivery service chose (its visibility is set to that delay; Lambda leaves a message
reported as failed on the queue, and it reappears when its visibility timeout ends:
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). Its
ApproximateReceiveCount, or the job's own count if higher, tells the delivery service which
attempt this is; on the last one (COPY_MAX_RECEIVE_COUNT, the queue's maxReceiveCount) the job
ends DELIVERY_FAILED with its failed event instead of the message silently moving to the
dead-letter queue (see ``pixverse_jobs.delivery``)."""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pixverse_jobs import config
from pixverse_jobs.delivery import CopyBackoff, CopyRetryScheduled, DeliveryService
from pixverse_jobs.events import EventPublisher
from pixverse_jobs.media import MediaCopier
from pixverse_jobs.observability import count_by, logger, metrics
from pixverse_jobs.queue import MessageVisibility, job_id_from_message
from pixverse_jobs.store import JobStore

# Time kept back from the function's timeout to abort an upload and record the outcome.
CLEANUP_RESERVE_SECONDS = 30.0

_settings = config.delivery_settings()

# S3 calls retry throttling (SlowDown), 5xx and connection resets themselves, per call, so a
# throttled part does not restart a multi-GiB download.
_s3 = boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=8))

service = DeliveryService(
    JobStore(config.store_settings().table_name, boto3.client("dynamodb")),
    MediaCopier(_settings.allowed_media_hosts, s3_client=_s3, max_bytes=_settings.max_media_bytes),
    EventPublisher(_settings.topic_arn, boto3.client("sns"), bus_name=_settings.bus_name),
    bucket=_settings.bucket,
    key_prefix=_settings.key_prefix,
    event_source=_settings.event_source,
    max_attempts=_settings.max_receive_count,
    backoff=CopyBackoff(_settings.copy_retry_base_seconds, _settings.copy_retry_max_seconds),
)
visibility = MessageVisibility()

# A failed record is reported, not raised, even when it is the whole batch (BatchSize 1):
# the queue's redrive policy, not a function error, decides its fate.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def receive_count(record: SQSRecord) -> int:
    """Which receive of its message this is (1 for the first)."""
    raw = record.attributes.approximate_receive_count
    if raw and str(raw).isdigit():
        return int(raw)
    # Without it the last attempt cannot be recognised; assume a first one so nothing fails early.
    logger.warning("copy message without ApproximateReceiveCount", extra={"message_id": record.message_id})
    return 1


def copy_deadline(lambda_context: LambdaContext | None) -> float | None:
    """The ``time.monotonic()`` by which a copy must stop, leaving time to clean up."""
    if lambda_context is None:
        return None
    remaining = lambda_context.get_remaining_time_in_millis() / 1000
    return time.monotonic() + remaining - min(CLEANUP_RESERVE_SECONDS, remaining / 10)


def postpone(record: SQSRecord, seconds: int) -> None:
    """Bring the failed message back after ``seconds``, not after the queue's visibility timeout.
    If that fails, the message comes back late, but the job says when its retry was due and the
    reconciler asks again once it has passed."""
    try:
        visibility.postpone(record.queue_url, record.receipt_handle, seconds)
    except Exception:
        logger.warning(
            "could not set the failed message's visibility; the reconciler re-drives the job instead",
            extra={"message_id": record.message_id, "retry_in": seconds},
            exc_info=True,
        )


def deliver_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    try:
        job_id = job_id_from_message(record.body)
    except ValueError:
        # Retrying a message that names no job cannot help: log it and let it go.
        logger.error("malformed copy message dropped", extra={"message_id": record.message_id})
        return
    logger.append_keys(job_id=job_id)
    try:
        outcome = service.deliver(
            job_id,
            attempt=receive_count(record),
            deadline=copy_deadline(lambda_context),
            message_id=record.message_id,
        )
    except CopyRetryScheduled as exc:
        postpone(record, exc.retry_in)
        raise
    if outcome.published:
        # JobsDelivered, JobsFailed, JobsError, JobsSubmitFailed, JobsDeliveryFailed, by model.
        count_by(f"Jobs{outcome.status.title().replace('_', '')}", model=outcome.model or "unknown")
    if outcome.copied_bytes:
        metrics.add_metric(name="CopyBytes", unit=MetricUnit.Bytes, value=outcome.copied_bytes)
        metrics.add_metric(name="CopySeconds", unit=MetricUnit.Seconds, value=round(outcome.copy_seconds, 3))


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event,
        record_handler=deliver_record,
        processor=processor,
        context=context,
    )

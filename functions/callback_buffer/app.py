"""CallbackBufferFunction: callback-buffer messages -> the same ``CallbackProcessor`` as the
webhook, later.

Each message is a callback the webhook verified and parsed but could not write (a throttled
table, DynamoDB's 500/503, a lost connection: ``pixverse_jobs.callback_buffer``). Applying it
is the webhook's own path, one conditional write keyed by the job and its request_id, so a
duplicate, a late or an out-of-order callback changes nothing, and the copy request is sent
once, on the write that moves the job to its outcome.

Partial batch failures: a message whose table is still throttled is reported failed and comes
back after a backoff (its visibility set to base * 2^(n-1), capped, with jitter), not after the
queue's visibility timeout; Lambda leaves a message reported as failed on the queue
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). After the
queue's maxReceiveCount it moves to the dead-letter queue, whose alarm calls for a redrive
(harmless: applying twice changes nothing). A message that is not a buffered callback, or whose
callback the processor refuses (another request's, no such job), is logged and let go: a retry
cannot change the answer. The event source's MaximumConcurrency keeps this function from adding
much load to a table that is throttled already."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.callback_buffer import decode_callback, is_retryable, retry_delay
from pixverse_jobs.callbacks import CallbackProcessor, ProgressEvents
from pixverse_jobs.errors import CallbackRejected, JobNotFound
from pixverse_jobs.events import EventPublisher
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.queue import CopyQueue, MessageVisibility
from pixverse_jobs.store import JobStore

METRIC_APPLIED = "BufferedCallbacksApplied"  # written (or found already applied): done
METRIC_DEFERRED = "BufferedCallbacksDeferred"  # the table still refused: back after a backoff
METRIC_DROPPED = "BufferedCallbacksDropped"  # malformed message or a refusal no retry changes

_progress_settings = config.progress_settings()
_buffer_settings = config.callback_buffer_settings()

# One client per service per container; tests reach them here to count the calls they make.
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
sns = boto3.client("sns") if _progress_settings.enabled else None

callbacks = CallbackProcessor(
    JobStore(config.store_settings().table_name, dynamodb),
    CopyQueue(config.queue_settings().copy_queue_url, sqs),
    ProgressEvents(
        EventPublisher(_progress_settings.topic_arn, sns, bus_name=_progress_settings.bus_name),
        _progress_settings.event_source,
    )
    if sns is not None
    else None,
)
visibility = MessageVisibility(sqs)

# A failed record is reported, not raised, even when it is the whole batch: the queue's redrive
# policy, not a function error, decides its fate.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def receive_count(record: SQSRecord) -> int:
    """Which receive of its message this is (1 for the first; 1 if SQS did not say)."""
    raw = record.attributes.approximate_receive_count
    return int(raw) if raw and str(raw).isdigit() else 1


def postpone(record: SQSRecord, seconds: int) -> None:
    """Bring the message back after ``seconds``; if that fails it comes back after the queue's
    visibility timeout instead, which is only later."""
    try:
        visibility.postpone(record.queue_url, record.receipt_handle, seconds)
    except Exception:
        logger.warning(
            "could not set the buffered callback's visibility",
            extra={"message_id": record.message_id, "retry_in": seconds},
            exc_info=True,
        )


def apply_record(record: SQSRecord) -> None:
    """Apply one buffered callback; raises (the record is reported failed) if it must come back."""
    try:
        job_id, callback = decode_callback(record.body)
    except ValueError as exc:
        logger.error("malformed buffered callback dropped", extra={"message_id": record.message_id, "reason": str(exc)})
        metrics.add_metric(name=METRIC_DROPPED, unit=MetricUnit.Count, value=1)
        return
    logger.append_keys(job_id=job_id, request_id=callback.request_id)
    try:
        outcome = callbacks.process(job_id, callback)
    except (CallbackRejected, JobNotFound) as exc:
        logger.warning("buffered callback refused, dropped", extra={"reason": str(exc)})
        metrics.add_metric(name=METRIC_DROPPED, unit=MetricUnit.Count, value=1)
        return
    except Exception as exc:
        if is_retryable(exc):
            delay = retry_delay(
                receive_count(record), _buffer_settings.retry_base_seconds, _buffer_settings.retry_max_seconds
            )
            logger.warning(
                "buffered callback deferred: the table still refuses the write",
                extra={"error": type(exc).__name__, "retry_in": delay, "receive_count": receive_count(record)},
            )
            metrics.add_metric(name=METRIC_DEFERRED, unit=MetricUnit.Count, value=1)
            postpone(record, delay)
        raise
    logger.info(
        "buffered callback applied",
        extra={"applied": outcome.applied, "changed": outcome.changed, "status": str(outcome.status)},
    )
    metrics.add_metric(name=METRIC_APPLIED, unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=apply_record, processor=processor, context=context)

"""DeadlineFunction: deadline-queue messages -> a job past its ``deadline_seconds`` ends CANCELLED
(``deadline_exceeded``), within seconds of its deadline (``pixverse_jobs.cancel``).

Each message was delayed until its job's deadline (a deadline past SQS's 15-minute delay is sent
again for the time left). A message whose job could not be read or written raises: Lambda leaves
it on the queue, it comes back after the visibility timeout, and after maxReceiveCount it goes to
the dead-letter queue. The reconciler ends a job whose deadline passed all the same, at its next
run, so a lost message delays a cancel but never loses it."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.cancel import Canceller, DeadlineOutcome, DeadlineWatch
from pixverse_jobs.errors import ConfigurationError
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.queue import CopyQueue, DeadlineQueue, job_id_from_message
from pixverse_jobs.store import JobStore

_settings = config.ending_settings()
if not _settings.deadline_queue_url:
    raise ConfigurationError(f"environment variable {config.DEADLINE_QUEUE_URL} is required but not set")
sqs = boto3.client("sqs")
_store = JobStore(config.store_settings().table_name, boto3.client("dynamodb"))
watch = DeadlineWatch(
    _store,
    Canceller(_store, CopyQueue(_settings.copy_queue_url, sqs)),
    DeadlineQueue(_settings.deadline_queue_url, sqs),
)

# Kept back from the invocation's time when a record waits for its deadline.
RESERVE_SECONDS = 8.0

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deadline_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    try:
        job_id = job_id_from_message(record.body)
    except ValueError:
        logger.error("malformed deadline message dropped", extra={"message_id": record.message_id})
        return
    # A deadline seconds away is waited for here, leaving time for the rest of the batch.
    budget = lambda_context.get_remaining_time_in_millis() / 1000 - RESERVE_SECONDS
    outcome = watch.on_message(job_id, wait_budget=budget)
    if outcome is DeadlineOutcome.CANCELLED:
        metrics.add_metric(name="JobsDeadlineExceeded", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=deadline_record, processor=processor, context=context)

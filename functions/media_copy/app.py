"""MediaCopyFunction: copy-queue messages -> streaming copy into S3 -> one SNS event per job.

Partial batch failures: a message whose copy failed transiently returns to the queue and,
after the queue's maxReceiveCount, goes to the dead-letter queue."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.delivery import DeliveryService
from pixverse_jobs.events import EventPublisher
from pixverse_jobs.media import MediaCopier
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.queue import job_id_from_message
from pixverse_jobs.store import JobStore

_settings = config.delivery_settings()

service = DeliveryService(
    JobStore(config.store_settings().table_name, boto3.client("dynamodb")),
    MediaCopier(_settings.allowed_media_hosts, s3_client=boto3.client("s3")),
    EventPublisher(_settings.topic_arn, boto3.client("sns")),
    bucket=_settings.bucket,
    key_prefix=_settings.key_prefix,
    event_source=_settings.event_source,
)

# A failed record is reported, not raised, even when it is the whole batch (BatchSize 1):
# the queue's redrive policy, not a function error, decides its fate.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_record(record: SQSRecord) -> None:
    try:
        job_id = job_id_from_message(record.body)
    except ValueError:
        # Retrying a message that names no job cannot help: log it and let it go.
        logger.error("malformed copy message dropped", extra={"message_id": record.message_id})
        return
    logger.append_keys(job_id=job_id)
    outcome = service.deliver(job_id)
    if outcome.published:
        metrics.add_metric(name=f"Jobs{outcome.status.title().replace('_', '')}", unit="Count", value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event,
        record_handler=deliver_record,
        processor=processor,
        context=context,
    )

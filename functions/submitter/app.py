"""SubmitterFunction: submit-queue messages -> the gateway, at its pace (``pixverse_jobs.admission``).

POST /jobs records a job ACCEPTED and queues it; this function claims each job (a conditional
write, so a job is never submitted twice), submits it, and records what the gateway said. A job
the gateway answers "not now" is queued again with a delay; one that would wait for this
container's pace is re-queued rather than slept on. The event source's MaximumConcurrency
(``SubmitMaxConcurrency``) bounds how many containers pace the gateway at once.

Partial batch failures: a record raises only when its message must come back as it is (the job
could not be read, a re-queue failed); Lambda leaves it on the queue for the visibility timeout,
and after the queue's maxReceiveCount it goes to the dead-letter queue, whose alarm calls for a
redrive (harmless: a job not ACCEPTED is skipped)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.admission import OUTCOME_METRICS, Outcome, Submitter
from pixverse_jobs.downloads import PRESIGN_CONFIG
from pixverse_jobs.gateway import GatewayClient, RetryPolicy
from pixverse_jobs.inputs import InputImages
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.queue import CopyQueue, SubmitMessage, SubmitQueue
from pixverse_jobs.secrets import SecretReader
from pixverse_jobs.store import JobStore

_gateway_settings = config.gateway_settings()
_webhook_settings = config.webhook_settings()
_settings = config.submitter_settings()
_input_settings = config.input_settings()

# One client per service per container; tests reach them here to count the calls they make.
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
_secrets = SecretReader(boto3.client("secretsmanager"))

submitter = Submitter(
    JobStore(config.store_settings().table_name, dynamodb),
    # One gateway call per submit: a "not now" goes back to the queue, not into a retry loop here.
    GatewayClient(
        _gateway_settings.base_url,
        lambda: _secrets.get(_gateway_settings.api_key_secret),
        retry=RetryPolicy(attempts=1),
    ),
    lambda: _secrets.get(_webhook_settings.secret_arn),
    SubmitQueue(_settings.submit_queue_url, sqs),
    CopyQueue(config.queue_settings().copy_queue_url, sqs),
    _settings,
    webhook_base_url=_webhook_settings.base_url,
    # Presigns s3:// image inputs for the gateway: no S3 call, but S3 authorizes the URL against
    # this function's role (s3:GetObject on the input buckets and the uploads).
    inputs=InputImages(
        _input_settings.input_buckets, _input_settings.upload_bucket, boto3.client("s3", config=PRESIGN_CONFIG)
    ),
)

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def submit_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    """One message (Powertools passes the invocation's context, for the time it has left)."""
    try:
        message = SubmitMessage.parse(record.body)
    except ValueError as exc:
        logger.error("malformed submit message dropped", extra={"message_id": record.message_id, "reason": str(exc)})
        metrics.add_metric(name="SubmitMessagesDropped", unit=MetricUnit.Count, value=1)
        return
    outcome = submitter.handle(message, time_left=lambda: lambda_context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric(name=OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
    if outcome is not Outcome.PACED:
        logger.info("submit message handled", extra={"job_id": message.job_id, "outcome": str(outcome)})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=submit_record, processor=processor, context=context)

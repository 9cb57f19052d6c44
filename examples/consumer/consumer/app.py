"""An example consumer of pixverse-jobs events (SNS -> SQS, raw delivery: each message body is one
CloudEvent). Each event is handled once: SNS and SQS deliver at least once, and a replay
(``POST /jobs/{job_id}/replay``) sends an event again with the same ``id``, so the handler
deduplicates on it with Powertools' idempotency utility (a DynamoDB record per id, 7 days).

Replace ``process_event`` with your own work. A record that raises is reported as a batch item
failure and comes back (then to the dead-letter queue after 5 receives); its idempotency record is
removed, so the retry runs it again."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
# The CloudEvent's id is the key: the same for a retried publish and for a replay.
idempotency = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=7 * 24 * 3600)
processor = BatchProcessor(event_type=EventType.SQS)


def process_event(event: dict[str, Any]) -> None:
    """Your work, once per event. Here: log where the videos are, or why the job ended without."""
    job = event["data"]
    if event["type"] == "pixverse.job.delivered":
        videos = [output["s3_uri"] for output in job["outputs"]]
        logger.info("video ready", extra={"job_id": job["job_id"], "videos": videos})
    else:
        reason = {"status": job["status"], "error": job["error"]}
        logger.info("job ended without a video", extra={"job_id": job["job_id"], **reason})


@idempotent_function(data_keyword_argument="event", persistence_store=persistence, config=idempotency)
def handle_event(event: dict[str, Any]) -> dict[str, str]:
    process_event(event)
    return {"id": event["id"], "type": event["type"]}


def record_handler(record: SQSRecord) -> None:
    handle_event(event=json.loads(record.body))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

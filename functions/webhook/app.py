"""WebhookFunction: POST /webhooks/pixazo/{job_id}?sig=HEX, the gateway's callbacks.

Verify, then act: a missing or wrong signature is a 401 before the body is parsed."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.callbacks import CallbackProcessor, parse_callback
from pixverse_jobs.errors import CallbackRejected
from pixverse_jobs.http_errors import json_response, register_error_handlers
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.secrets import SecretReader
from pixverse_jobs.signing import verify
from pixverse_jobs.store import JobStore

_webhook_settings = config.webhook_settings()
_secrets = SecretReader(boto3.client("secretsmanager"))

processor = CallbackProcessor(
    JobStore(config.store_settings().table_name, boto3.client("dynamodb")),
    CopyQueue(config.queue_settings().copy_queue_url, boto3.client("sqs")),
)

app = APIGatewayHttpResolver()
register_error_handlers(app)


@app.post("/webhooks/pixazo/<job_id>")
def receive_callback(job_id: str) -> Response[str]:
    signature = app.current_event.get_query_string_value("sig")
    if not verify(job_id, signature, [_secrets.get(_webhook_settings.secret_arn)]):
        metrics.add_metric(name="CallbacksRejected", unit="Count", value=1)
        raise CallbackRejected("missing or invalid signature", status_code=401)
    logger.append_keys(job_id=job_id)
    callback = parse_callback(app.current_event.decoded_body or "")
    logger.append_keys(request_id=callback.request_id)
    outcome = processor.process(job_id, callback)
    metrics.add_metric(name=f"Callbacks{callback.status.title()}", unit="Count", value=1)
    if not outcome.applied:
        metrics.add_metric(name="DuplicateCallbacksDropped", unit="Count", value=1)
    return json_response(200, {"job_id": job_id, "status": str(outcome.status), "applied": outcome.applied})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

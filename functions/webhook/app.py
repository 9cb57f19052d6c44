"""WebhookFunction: POST /webhooks/pixazo/{job_id}?sig=HEX, the gateway's callbacks (any other
method on the path: 405 with ``Allow: POST``).

Verify, then act: a missing or wrong signature is a 401 before the body is read. The rest is
``callbacks.CallbackReceiver``: one conditional write per callback, one copy request on the
transition to a gateway outcome, answered in milliseconds. A callback whose write fails for a
passing reason (a throttled table, DynamoDB's 500/503, a lost connection) is kept on the callback
buffer queue and answered 200 once SQS stored it (``pixverse_jobs.callback_buffer``);
CallbackBufferFunction applies it later.

Cold start: this module imports neither httpx nor pydantic (the webhook never calls out over
HTTP) nor the Powertools event handler (API Gateway routes one route here, so there is nothing to
route; ``pixverse_jobs.proxy`` shapes the answers), and it creates an SNS client only when
progress events are enabled."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.callback_buffer import CallbackBuffer
from pixverse_jobs.callbacks import CallbackProcessor, CallbackReceiver, ProgressEvents
from pixverse_jobs.errors import CallbackRejected, JobNotFound
from pixverse_jobs.events import EventPublisher
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.proxy import (
    callback_answer,
    error_body,
    internal_answer,
    method_not_allowed_answer,
    not_found_answer,
    proxy_response,
)
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.secrets import SecretReader
from pixverse_jobs.signing import SignatureVerifier
from pixverse_jobs.store import JobStore

_progress_settings = config.progress_settings()
_buffer_queue_url = config.callback_buffer_settings().queue_url

# One client per service per container; tests reach them here to count the calls they make.
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
secretsmanager = boto3.client("secretsmanager")
sns = boto3.client("sns") if _progress_settings.enabled else None

receiver = CallbackReceiver(
    SignatureVerifier(SecretReader(secretsmanager), config.webhook_settings().secret_arn),
    CallbackProcessor(
        JobStore(config.store_settings().table_name, dynamodb),
        CopyQueue(config.queue_settings().copy_queue_url, sqs),
        ProgressEvents(
            EventPublisher(_progress_settings.topic_arn, sns, bus_name=_progress_settings.bus_name),
            _progress_settings.event_source,
        )
        if sns is not None
        else None,
    ),
    # The same SQS client as the copy requests: no second client on the cold start.
    CallbackBuffer(_buffer_queue_url, sqs) if _buffer_queue_url else None,
)


# The one method of the webhook path. template.yaml routes every other one here too (ANY), so that
# the gateway, or whoever probes the URL, gets a 405 with Allow rather than API Gateway's 404.
CALLBACK_METHOD = "POST"


def receive_callback(event: dict[str, Any]) -> dict[str, Any]:
    """``POST /webhooks/pixazo/{job_id}``; any other method on the path is a 405 with ``Allow``,
    answered before the signature is checked, with no AWS call."""
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
    if method != CALLBACK_METHOD:
        return proxy_response(*method_not_allowed_answer(method, [CALLBACK_METHOD]))
    job_id = str((event.get("pathParameters") or {}).get("job_id") or "")
    if not job_id:
        return proxy_response(404, error_body("not_found", "no such route"))
    logger.append_keys(job_id=job_id)
    try:
        receiver.authenticate(job_id, (event.get("queryStringParameters") or {}).get("sig"))
        outcome = receiver.receive(job_id, event.get("body"), base64_encoded=bool(event.get("isBase64Encoded")))
    except CallbackRejected as exc:
        return proxy_response(*callback_answer(exc))
    except JobNotFound as exc:
        return proxy_response(*not_found_answer(exc))
    except Exception:
        # The gateway retries a 5xx; the sig is in the query string, which is never logged.
        logger.exception("unhandled error")
        return proxy_response(*internal_answer("webhook"))
    if outcome.buffered:
        # 200, not 202: the gateway's doc asks for "200 OK"; the callback is stored, not applied.
        body = {"job_id": job_id, "status": str(outcome.status), "applied": False, "buffered": True}
        return proxy_response(200, body)
    return proxy_response(200, {"job_id": job_id, "status": str(outcome.status), "applied": outcome.applied})


# log_event=False explicitly, whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event's query string
# carries the sig, which must never reach a log. clear_state: a warm container must not carry the
# previous callback's job_id / request_id into the next one's logs.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return receive_callback(event)

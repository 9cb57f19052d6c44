"""The callback buffer: a verified callback whose table write failed for a passing reason waits
on an SQS queue (CallbackBufferQueue) instead of being answered 500.

Why: in sync mode the gateway calls back every ~15 s per job, and a throttled table (or index)
fails the write. A 5xx makes the gateway retry, and its doc warns that persistent failures may
stop deliveries (/work/shared/pixazo-pixverse-api.txt). So the webhook answers 2xx once the
callback is stored durably on the queue (SendMessage succeeded), and CallbackBufferFunction
applies it later through the same ``CallbackProcessor``: one conditional write keyed by the
job and its request_id, so a buffered duplicate, or one that arrives after a later status, is
refused by the database and changes nothing.

What is buffered: only callbacks already authenticated (signed URL) and parsed; a forged or
malformed callback is refused before it gets here, and a 409 (another request's callback) or a
missing job is never retryable."""

from __future__ import annotations

import json
import random
from typing import Any

import boto3
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from pixverse_jobs.callbacks import Callback
from pixverse_jobs.states import GATEWAY_STATUSES, JobStatus

# DynamoDB error codes that say "not now" rather than "never": throttling of the table or an
# index (ProvisionedThroughputExceededException; ThrottlingException for on-demand tables and
# control-plane limits), the account's request limit, and the service's own 500 / 503
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html:
# "you can retry the request" for each of these). The SDK has retried them already (standard or
# legacy retry mode); what reaches us is a failure after its retries.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)

# Message format version: a consumer refuses a body it does not know rather than misapply it.
MESSAGE_VERSION = 1


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a store failure that a later attempt may get past: one of
    RETRYABLE_ERROR_CODES, or the endpoint unreachable / the connection lost after the SDK's
    retries. A read timeout may hide a write that went through: re-applying it is harmless
    (the conditional write refuses a second application)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) in RETRYABLE_ERROR_CODES
    return isinstance(exc, (BotocoreConnectionError, HTTPClientError))


def encode_callback(job_id: str, callback: Callback) -> str:
    """The buffer message body for ``callback`` (already verified and parsed) for ``job_id``."""
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "job_id": job_id,
            "callback": {
                "request_id": callback.request_id,
                "status": str(callback.status),
                "model_id": callback.model_id,
                "error": callback.error,
                "media_urls": list(callback.media_urls),
                "media_type": callback.media_type,
            },
        },
        separators=(",", ":"),
    )


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"buffered callback field callback.{name} must be a string or null")
    return value


def decode_callback(body: str) -> tuple[str, Callback]:
    """The job id and callback of a buffer message body; ValueError naming the field if it is
    not one this module wrote."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError("buffered callback is not valid JSON") from exc
    if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION:
        raise ValueError(f"buffered callback field v must be {MESSAGE_VERSION}")
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("buffered callback field job_id is missing")
    raw = data.get("callback")
    if not isinstance(raw, dict):
        raise ValueError("buffered callback field callback must be an object")
    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("buffered callback field callback.request_id is missing")
    try:
        status = JobStatus(str(raw.get("status")))
    except ValueError as exc:
        raise ValueError("buffered callback field callback.status is not a job status") from exc
    if status not in GATEWAY_STATUSES.values():
        raise ValueError("buffered callback field callback.status is not a gateway status")
    urls = raw.get("media_urls")
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise ValueError("buffered callback field callback.media_urls must be an array of URLs")
    return job_id, Callback(
        request_id=request_id,
        status=status,
        model_id=_optional_text(raw, "model_id"),
        error=_optional_text(raw, "error"),
        media_urls=tuple(urls),
        media_type=_optional_text(raw, "media_type"),
    )


class CallbackBuffer:
    """Sends verified callbacks to the buffer queue. ``hold`` returns only once SQS has stored
    the message (SendMessage answered); any failure is raised, so the webhook answers 5xx and
    the gateway retries: nothing is lost either way."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._url = queue_url
        self._client = client or boto3.client("sqs")

    def retryable(self, exc: BaseException) -> bool:
        """See ``is_retryable``."""
        return is_retryable(exc)

    def hold(self, job_id: str, callback: Callback) -> str:
        """Store ``callback`` for a later attempt; returns the SQS message id."""
        answer = self._client.send_message(QueueUrl=self._url, MessageBody=encode_callback(job_id, callback))
        return str(answer.get("MessageId", ""))


def retry_delay(attempt: int, base_seconds: int, max_seconds: int) -> int:
    """Seconds before the ``attempt``-th failed application (1 for the first) is tried again:
    base * 2^(attempt-1), capped at max, with "equal jitter" (half fixed, half random) so that
    the callbacks buffered during one throttle do not all come back in the same second
    (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)."""
    ceiling = min(max_seconds, base_seconds * (1 << min(max(attempt, 1) - 1, 20)))
    half = ceiling / 2
    return max(1, round(half + random.uniform(0, half)))  # noqa: S311 - jitter, not security

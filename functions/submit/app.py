"""SubmitFunction: POST /jobs, GET /jobs/{job_id}, GET /jobs, POST /jobs/{job_id}/cancel,
POST /jobs/{job_id}/replay and POST /uploads (HTTP API, payload 2.0); any other method on those
paths (template.yaml's ANY routes) is a 405 with Allow (``http_errors``).

POST /jobs admits: it records the job ACCEPTED, queues it for SubmitterFunction and answers 202
at once; it never calls the gateway, so its answer does not depend on the gateway's load.

The Powertools resolver routes; the catalog (``pixverse_jobs.catalog`` through
``parse_submit_request`` and ``parse_list_query``) validates, reporting every bad field at once
with the allowed values. The resolver's own pydantic validation is off on purpose: it was a second
check of the same envelope whose every refusal the catalog answered again, and it added 40 ms of
pydantic to each cold start (bench/results.md). The OpenAPI document is generated from
scripts/api_contract.py, whose routes a test keeps equal to these."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pixverse_jobs import config
from pixverse_jobs.cancel import Canceller
from pixverse_jobs.deadline import Deadline, invocation_deadline
from pixverse_jobs.downloads import PRESIGN_CONFIG, DownloadLinker
from pixverse_jobs.errors import JobStateConflict
from pixverse_jobs.events import EventPublisher, final_event
from pixverse_jobs.http_errors import json_body_limits, json_response, register_error_handlers
from pixverse_jobs.inputs import InputImages, Uploads
from pixverse_jobs.jobs import JobService, caller_of, parse_list_query, parse_submit_request
from pixverse_jobs.observability import count_by, logger, metrics
from pixverse_jobs.queue import CopyQueue, DeadlineQueue, SubmitQueue
from pixverse_jobs.request_size import submit_body_limit
from pixverse_jobs.states import JobStatus, is_terminal
from pixverse_jobs.store import JobStore
from pixverse_jobs.views import job_view

# Whatever the catalog accepts, escaped as widely as JSON allows (148 KiB today; 64 KiB refused a
# valid request of emoji prompts). API Gateway's HTTP API takes up to 10 MB
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html).
MAX_BODY_BYTES = submit_body_limit()
# The SubmitIntegration's TimeoutInMillis in template.yaml: API Gateway answers 503 after it,
# whatever the function does (HTTP APIs allow at most 30 s, "Maximum integration timeout",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html).
API_INTEGRATION_TIMEOUT_SECONDS = 29.0
# Kept back from the invocation's time: answering.
ANSWER_RESERVE_SECONDS = 2.5

_store_settings = config.store_settings()
_webhook_settings = config.webhook_settings()
_admission_settings = config.admission_settings()
_ending_settings = config.ending_settings()
# Short timeouts: POST /jobs reads an s3:// image's head and first bytes within the API's 29 s.
_s3 = boto3.client(
    "s3",
    config=PRESIGN_CONFIG.merge(
        Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
    ),
)
_downloads = DownloadLinker(config.api_settings().download_url_expiry_seconds, _s3)

# s3:// image inputs (checked at POST /jobs) and POST /uploads' presigned PUTs, on the same SigV4
# client as the download links: S3 authorizes every presigned URL against this function's role.
_input_settings = config.input_settings()
_inputs = InputImages(_input_settings.input_buckets, _input_settings.upload_bucket, _s3)
_uploads = Uploads(_input_settings.upload_bucket, _s3)

_store = JobStore(_store_settings.table_name, boto3.client("dynamodb"))
_sqs = boto3.client("sqs")
service = JobService(
    _store,
    SubmitQueue(_admission_settings.submit_queue_url, _sqs),
    default_webhook_mode=_webhook_settings.default_mode,
    max_jobs_per_caller=_admission_settings.max_jobs_per_caller,
    deadline_queue=DeadlineQueue(_admission_settings.deadline_queue_url, _sqs),
)
canceller = Canceller(_store, CopyQueue(_ending_settings.copy_queue_url, _sqs))


@cache
def _events() -> EventPublisher:
    """Made on the first replay: the other routes never publish, so a cold start does not pay for
    the SNS client."""
    settings = _ending_settings.publishing()
    return EventPublisher(
        settings.topic_arn, boto3.client("sns"), bus_name=settings.bus_name, events_client=boto3.client("events")
    )


app = APIGatewayHttpResolver()
register_error_handlers(app)


def _caller() -> str:
    caller = caller_of(app.current_event.request_context.raw_event)
    if caller is None:
        # The API's authorizer always sets one; its absence is a deployment error.
        raise RuntimeError("request carries no authenticated caller")
    return caller


def _webhook_base_url() -> str:
    if _webhook_settings.base_url:
        return _webhook_settings.base_url
    return f"https://{app.current_event.request_context.domain_name}"


def _deadline() -> Deadline:
    """When the submit must be over: before Lambda's timeout and the API's, less the reserve."""
    return invocation_deadline(
        app.lambda_context.get_remaining_time_in_millis(),
        reserve_seconds=ANSWER_RESERVE_SECONDS,
        api_started_epoch_ms=app.current_event.request_context.time_epoch,
        api_timeout_seconds=API_INTEGRATION_TIMEOUT_SECONDS,
    )


@app.post("/jobs")
def submit_job() -> Response[str]:
    deadline = _deadline()
    # json_body_limits has refused a body that is not JSON; the catalog refuses one that is not an object.
    body = app.current_event.json_body if app.current_event.body else None
    request = parse_submit_request(body, max_deadline_seconds=_admission_settings.max_age_seconds)
    owner = _caller()
    # An s3:// image_url: the object must be the caller's to use and an accepted image (400 naming it).
    _inputs.check(request.input, owner=owner)
    job = service.submit(
        request,
        owner=owner,
        webhook_base_url=_webhook_base_url(),
        idempotency_key=app.current_event.headers.get("idempotency-key"),
        deadline=deadline,
    )
    count_by("JobsAccepted", model=request.model)
    return json_response(202, job_view(job), headers={"Location": f"/jobs/{job['job_id']}"})


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    job = service.get(job_id, owner=_caller())
    view = job_view(job)
    if job["status"] == JobStatus.DELIVERED:
        view["outputs"] = _downloads.with_links(view["outputs"])
    return json_response(200, view)


@app.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response[str]:
    """End the caller's job CANCELLED unless it has ended (409 already_ended). The gateway has no
    cancel: a job it accepted may still be billed (the view's submit_outcome says whether it was)."""
    job = service.get(job_id, owner=_caller())
    ending = canceller.cancel(job)
    if not ending.cancelled:
        status = str(ending.job["status"])
        if is_terminal(JobStatus(status)):
            raise JobStateConflict("already_ended", f"job {job_id} has already ended ({status})", job_status=status)
        raise JobStateConflict(
            "busy", f"job {job_id} changed while it was being cancelled; ask again", job_status=status
        )
    count_by("JobsCancelled", model=str(job["model"]))
    return json_response(200, job_view(ending.job))


@app.post("/jobs/<job_id>/replay")
def replay_job(job_id: str) -> Response[str]:
    """Publish the caller's ended job's final event again, the same event (same id, same
    document), for a consumer that lost it; 409 not_ended for a job that has not ended."""
    job = service.get(job_id, owner=_caller())
    status = str(job["status"])
    if not is_terminal(JobStatus(status)):
        message = f"job {job_id} has not ended ({status}): it has no final event yet"
        raise JobStateConflict("not_ended", message, job_status=status)
    event = final_event(job, source=_ending_settings.event_source)
    _events().publish(event)
    logger.info("final event replayed", extra={"job_id": job_id, "event_id": event["id"], "type": event["type"]})
    answer = {"job_id": job_id, "event_id": event["id"], "event_type": event["type"], "status": status}
    return json_response(200, answer)


@app.get("/jobs")
def list_jobs() -> Response[str]:
    owner = _caller()
    query = parse_list_query(app.current_event.query_string_parameters or {}, owner=owner)
    jobs, token = service.list_jobs(query, owner=owner)
    return json_response(200, {"jobs": [job_view(j) for j in jobs], "next_token": token})


@app.post("/uploads")
def create_upload() -> Response[str]:
    """A presigned PUT for one input image, under the caller's upload prefix (``pixverse_jobs.inputs``)."""
    body = app.current_event.json_body if app.current_event.body else None
    return json_response(201, _uploads.create(body, owner=_caller()))


# GET too: its routes read no body, and a body sent with one is a client's mistake to refuse (400 /
# 413, as before the routes took other methods), not to ignore. Other methods answer 405 whatever their body.
@json_body_limits(MAX_BODY_BYTES, methods=frozenset({"POST", "GET"}))
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""SubmitFunction: POST /jobs, GET /jobs/{job_id} and GET /jobs (HTTP API, payload 2.0).

The Powertools resolver validates each request against the shapes in ``schemas`` (and serves
them as the OpenAPI document, see scripts/openapi.py); the catalog then checks the model's
parameters. Any validation failure is answered by the catalog's validator, so a caller always
gets every bad field at once in one format."""

from __future__ import annotations

import json
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixverse_jobs import config
from pixverse_jobs.downloads import PRESIGN_CONFIG, DownloadLinker
from pixverse_jobs.errors import FieldError, RequestRejected
from pixverse_jobs.gateway import GatewayClient
from pixverse_jobs.http_errors import json_body_limits, json_response, register_error_handlers, rejection_response
from pixverse_jobs.jobs import JobService, caller_of, parse_list_query, parse_submit_request
from pixverse_jobs.observability import count_by, logger, metrics
from pixverse_jobs.secrets import SecretReader
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore
from pixverse_jobs.views import job_view
from schemas import ErrorResponse, JobPage, JobView, Status, SubmitJobBody

MAX_BODY_BYTES = 64 * 1024

_store_settings = config.store_settings()
_gateway_settings = config.gateway_settings()
_webhook_settings = config.webhook_settings()
_secrets = SecretReader(boto3.client("secretsmanager"))
_downloads = DownloadLinker(
    config.api_settings().download_url_expiry_seconds, boto3.client("s3", config=PRESIGN_CONFIG)
)

service = JobService(
    JobStore(_store_settings.table_name, boto3.client("dynamodb")),
    GatewayClient(_gateway_settings.base_url, lambda: _secrets.get(_gateway_settings.api_key_secret)),
    lambda: _secrets.get(_webhook_settings.secret_arn),
    default_webhook_mode=_webhook_settings.default_mode,
)

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)

JOB_ID_PATTERN = r"^job_[0-9a-f]{32}$"


def _ok(status: int, description: str, model: type[Any]) -> dict[int, OpenAPIResponse]:
    return {status: {"description": description, "content": {"application/json": {"model": model}}}}


def _errors(*statuses: int) -> dict[int, OpenAPIResponse]:
    return {
        status: {"description": description, "content": {"application/json": {"model": ErrorResponse}}}
        for status, description in (
            (400, "validation_error: every bad field named, with the allowed values or range"),
            (402, "insufficient_balance: the gateway's wallet is empty"),
            (404, "not_found: no such job for this caller"),
            (409, "idempotency_conflict: the Idempotency-Key was used with another body, or is in progress"),
            (413, "payload_too_large"),
            (429, "rate_limited: the gateway's rate limit; retry after Retry-After seconds"),
            (502, "gateway_error / gateway_auth_error"),
            (503, "gateway_unavailable"),
        )
        if status in statuses
    }


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


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[str]:
    """Answer a request the resolver refused with the catalog's complete error list."""
    event = app.current_event
    try:
        if event.http_method == "POST":
            try:
                body = json.loads(event.decoded_body or "")
            except ValueError as error:
                raise RequestRejected(f"request body is not valid JSON: {error.args[0]}") from error
            parse_submit_request(body)
        elif event.path == "/jobs":
            parse_list_query(event.query_string_parameters or {}, owner=_caller())
    except RequestRejected as rejected:
        return rejection_response(rejected)
    details = [FieldError(str(e["loc"][-1]) if e.get("loc") else "request", str(e["msg"])) for e in exc.errors()]
    return rejection_response(RequestRejected("request is invalid", details))


@app.post(
    "/jobs",
    summary="Submit a video generation job",
    description="Validates the request against the model's documented parameters, records the job, and submits "
    "it to the gateway with a signed webhook URL. Answers 202 with the job (status QUEUED).",
    response_description="The job, accepted by the gateway",
    responses={**_ok(202, "The job", JobView), **_errors(400, 402, 409, 413, 429, 502, 503)},
    tags=["jobs"],
)
def submit_job(
    body: Annotated[SubmitJobBody, Body(embed=False)],
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Same key and body: the same job, nothing new sent to the gateway; another body: 409. "
            "Kept 24 hours."
        ),
    ] = None,
) -> Response[str]:
    # The caller's JSON as sent (not the validated model), so the gateway gets the exact types.
    request = parse_submit_request(app.current_event.json_body)
    job = service.submit(
        request,
        owner=_caller(),
        webhook_base_url=_webhook_base_url(),
        idempotency_key=idempotency_key,
    )
    count_by("JobsSubmitted", model=request.model)
    return json_response(202, job_view(job), headers={"Location": f"/jobs/{job['job_id']}"})


@app.get(
    "/jobs/<job_id>",
    summary="Get a job",
    description="The caller's job; once DELIVERED, each output carries a short-lived presigned download_url.",
    responses={**_ok(200, "The job", JobView), **_errors(404)},
    tags=["jobs"],
)
def get_job(job_id: Annotated[str, Path(description="The job id POST /jobs returned.")]) -> Response[str]:
    job = service.get(job_id, owner=_caller())
    view = job_view(job)
    if job["status"] == JobStatus.DELIVERED:
        view["outputs"] = _downloads.with_links(view["outputs"])
    return json_response(200, view)


@app.get(
    "/jobs",
    summary="List the caller's jobs",
    description="Newest first, through the by_owner index. With status, a page may hold fewer than limit jobs "
    "while next_token is still set.",
    responses={**_ok(200, "A page of jobs", JobPage), **_errors(400)},
    tags=["jobs"],
)
def list_jobs(
    status: Annotated[Status | None, Query(description="Only jobs in this status.")] = None,
    limit: Annotated[str | None, Query(description="Page size, 1 to 100 (default 20).")] = None,
    next_token: Annotated[str | None, Query(description="The next_token of the previous page.")] = None,
) -> Response[str]:
    owner = _caller()
    query = parse_list_query(app.current_event.query_string_parameters or {}, owner=owner)
    jobs, token = service.list_jobs(query, owner=owner)
    return json_response(200, {"jobs": [job_view(j) for j in jobs], "next_token": token})


@json_body_limits(MAX_BODY_BYTES)
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

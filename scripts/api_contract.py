"""The HTTP API's contract, for its documents only: the request and response shapes (pydantic)
and a documentation-only Powertools resolver holding every route, with its parameters and
answers. scripts/openapi.py builds functions/submit/openapi.json and the event schema from it.

Nothing here runs in Lambda. The submit function (functions/submit/app.py) routes with a plain
resolver and validates with the catalog (``pixverse_jobs.catalog``), which reports every bad field
at once; pydantic would only have checked the same envelope a second time, for 40 ms of every
cold start. The webhook function answers its one route without a resolver. tests/unit/
test_openapi.py keeps the document honest: its routes are the submit function's and template.yaml's,
the doc examples fit the per-model schemas, and inputs the catalog refuses fail them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pixverse_jobs.callbacks import MAX_CALLBACK_BYTES
from pixverse_jobs.catalog import MODELS
from pixverse_jobs.config import WEBHOOK_MODES
from pixverse_jobs.inputs import (
    ACCEPTED_IMAGE_TYPES,
    INPUT_URL_EXPIRY_SECONDS,
    MAX_INPUT_IMAGE_BYTES,
    UPLOAD_KEY_PREFIX,
    UPLOAD_URL_EXPIRY_SECONDS,
)
from pixverse_jobs.jobs import (
    DEFAULT_MAX_DEADLINE_SECONDS,
    DEFAULT_PAGE_SIZE,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_METADATA_BYTES,
    MAX_PAGE_SIZE,
)
from pixverse_jobs.states import GATEWAY_STATUSES, JobStatus, SubmitOutcome
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

# The enums the document shows, derived from the code so that they cannot drift from it.
if TYPE_CHECKING:  # mypy cannot follow a Literal computed at run time
    ModelId: TypeAlias = str
    ImageType: TypeAlias = str
    Status: TypeAlias = str
    SubmitOutcomeName: TypeAlias = str
    GatewayStatus: TypeAlias = str
    WebhookMode: TypeAlias = str
else:
    ModelId = Literal[tuple(MODELS)]
    ImageType = Literal[ACCEPTED_IMAGE_TYPES]
    Status = Literal[tuple(JobStatus)]
    SubmitOutcomeName = Literal[tuple(SubmitOutcome)]
    GatewayStatus = Literal[tuple(GATEWAY_STATUSES)]
    WebhookMode = Literal[WEBHOOK_MODES]


class SubmitJobBody(BaseModel):
    """POST /jobs body."""

    model_config = ConfigDict(strict=True, extra="forbid", title="SubmitJobRequest")

    model: ModelId = Field(description="The gateway's model id.")
    input: dict[str, Any] = Field(
        description="The model's parameters, forwarded to the gateway exactly as given "
        "(see components.schemas.<model>Input for each model's parameters). Integer parameters take JSON "
        "integers: 5, not 5.0."
    )
    webhook_mode: WebhookMode | None = Field(
        default=None, description="terminal: one callback at the end; sync: a callback per status change."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Your own data, echoed in the job and its events: at most {MAX_METADATA_BYTES} bytes as "
        "compact JSON with non-ASCII escaped, no empty keys, nesting at most 31 levels, numbers that DynamoDB "
        "stores (at most 38 digits, magnitude 1e-130 to 1e126). The schema shows a shape that always fits.",
        # What the schema can say of those rules: a flat object small enough for the byte limit
        # even when every character is escaped (8 keys of 8 and values of 8 characters, 12 bytes each).
        json_schema_extra={
            "maxProperties": 8,
            "propertyNames": {"minLength": 1, "maxLength": 8},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": 8},
                    {"type": "integer", "minimum": -(10**37), "maximum": 10**37},
                    {"type": "boolean"},
                    {"type": "null"},
                ]
            },
        },
    )
    deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=DEFAULT_MAX_DEADLINE_SECONDS,
        description="Optional: a job not ended this many seconds after it was accepted ends CANCELLED "
        "(error code deadline_exceeded) with its pixverse.job.cancelled event, within seconds of the deadline. "
        f"1 to the stack's MaxJobAgeSeconds ({DEFAULT_MAX_DEADLINE_SECONDS} by default, which the schema shows). "
        "A JSON integer: 600, not 600.0. The gateway has no cancel: a job it accepted may still be billed.",
    )


class JobOutput(BaseModel):
    bucket: str
    key: str
    s3_uri: str
    size: int
    media_type: str
    sha256: str
    duration_seconds: float | None = Field(
        default=None,
        description="The video's length in seconds, as its MP4 container (mvhd) states it; read while copying.",
    )
    width: int | None = Field(default=None, description="The video track's width in pixels (tkhd).")
    height: int | None = Field(default=None, description="The video track's height in pixels (tkhd).")
    codec: str | None = Field(
        default=None, description="The video track's sample entry (stsd) fourcc: avc1, hvc1, hev1, av01, vp09..."
    )
    download_url: str | None = Field(default=None, description="Presigned GET URL (GET /jobs/{job_id} only).")


class JobError(BaseModel):
    code: str = Field(
        description="Why the job ended as it did, e.g. delivery_failed, or media_not_video when the media the "
        "gateway served is not a video container (an HTML page, say), whatever Content-Type it was declared with."
    )
    message: str


class SubmitRefusal(BaseModel):
    code: str
    message: str
    at: str = Field(description="When the gateway said it (ISO 8601, UTC).")


class JobView(BaseModel):
    """A job as GET /jobs/{job_id} returns it."""

    model_config = ConfigDict(title="Job")

    job_id: str
    request_id: str | None
    model: ModelId
    status: Status
    submit_outcome: SubmitOutcomeName = Field(
        description="What is known of the submit to the gateway. waiting: ACCEPTED, not sent yet (its turn "
        'comes at the gateway\'s pace) or the gateway answered "not now" (see last_submit_error). '
        "accepted: the gateway took it (request_id set). pending: being sent. unknown: sent, but the "
        "gateway's answer did not come in time; it may have "
        "accepted (and will bill) the job, so do not submit it again: the job stays SUBMITTING, its callback "
        "moves it on, and if none comes it ends SUBMIT_FAILED (submit_outcome_unknown) at the maximum job "
        "age. refused: the gateway refused it, or it was never sent (SUBMIT_FAILED: not_submitted when the "
        "gateway had no room for it within the maximum job age). not_sent: CANCELLED before it was sent to the "
        "gateway, so nothing was billed."
    )
    submit_attempts: int = Field(
        ge=0, description='Times the job was sent to the gateway (each "not now" answer adds one).'
    )
    last_submit_error: SubmitRefusal | None = Field(
        description='The gateway\'s last "not now" (rate_limited, insufficient_balance, gateway_auth_error, '
        "gateway_unavailable) while the job waits; null if it has had none."
    )
    input: dict[str, Any]
    metadata: dict[str, Any]
    webhook_mode: WebhookMode | None
    outputs: list[JobOutput]
    error: JobError | None
    created_at: str
    updated_at: str | None
    completed_at: str | None
    delivered_at: str | None
    deadline_seconds: int | None = Field(description="The request's deadline_seconds; null without one.")
    deadline_at: str | None = Field(
        description="When the job ends CANCELLED (deadline_exceeded) if it has not ended (ISO 8601, UTC); null "
        "without a deadline."
    )


class ReplayAnswer(BaseModel):
    """POST /jobs/{job_id}/replay: the event sent again."""

    job_id: str
    event_id: str = Field(description="The event's id: the same as when it was first published.")
    event_type: str = Field(description="pixverse.job.delivered, pixverse.job.failed or pixverse.job.cancelled.")
    status: Status


class JobPage(BaseModel):
    """GET /jobs: the caller's jobs, newest first."""

    jobs: list[JobView]
    next_token: str | None = Field(description="Pass back as next_token for the next page; null on the last page.")


class CallbackOutput(BaseModel):
    media_url: list[Annotated[str, Field(min_length=1)]] = Field(
        description="The finished media, copied into the bucket."
    )
    media_type: str | None = None


# What pixverse_jobs.callbacks.parse_callback refuses with a 400 and no schema keyword of the fields
# alone says: a COMPLETED callback carries at least one media URL (schemathesis sent one without).
_COMPLETED_HAS_MEDIA: JsonDict = {
    "if": {"properties": {"status": {"const": "COMPLETED"}}, "required": ["status"]},
    "then": {
        "required": ["output"],
        "properties": {
            "output": {"type": "object", "required": ["media_url"], "properties": {"media_url": {"minItems": 1}}}
        },
    },
}


class GatewayCallback(BaseModel):
    """The gateway's callback: the shape of its GET /v2/requests/status/{request_id} answer."""

    model_config = ConfigDict(extra="allow", title="GatewayCallback", json_schema_extra=_COMPLETED_HAS_MEDIA)

    request_id: str = Field(min_length=1, description="Must be the job's request_id, or the callback is refused (409).")
    status: GatewayStatus
    model_id: str | None = None
    error: str | None = None
    output: CallbackOutput | None = Field(
        default=None, description="Required with COMPLETED, with at least one media_url."
    )
    created_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None


class CallbackAnswer(BaseModel):
    job_id: str
    status: Status = Field(description="The job's status after this callback.")
    applied: bool = Field(description="false: a duplicate, late or out-of-order callback that changed nothing.")


# ------------------------------------------------------------------ images from S3 and uploads
class UploadBody(BaseModel):
    """POST /uploads body."""

    model_config = ConfigDict(strict=True, extra="forbid", title="CreateUploadRequest")

    content_type: ImageType = Field(description="The image's type; the PUT must send it as Content-Type.")
    size: int = Field(
        ge=1,
        le=MAX_INPUT_IMAGE_BYTES,
        description="The image's exact size in bytes, a JSON integer (3604, not 3604.0); the PUT must send "
        "it as Content-Length.",
    )


class UploadHeaders(BaseModel):
    model_config = ConfigDict(title="UploadHeaders", populate_by_name=True)

    content_type: ImageType = Field(alias="Content-Type")
    content_length: str = Field(alias="Content-Length", pattern="^[1-9][0-9]*$")


class Upload(BaseModel):
    """POST /uploads answer."""

    model_config = ConfigDict(title="Upload")

    upload_url: str = Field(
        description="Presigned S3 PUT URL, valid until expires_at. Content-Type and Content-Length are signed "
        "headers: a PUT with any other type or size is refused by S3 (403 SignatureDoesNotMatch)."
    )
    headers: UploadHeaders = Field(description="The headers the PUT must carry, exactly.")
    image_url: str = Field(
        pattern="^s3://",
        description="Pass as input.image_url of an image-to-video job (only by the same caller). The object "
        f"expires from the bucket after the stack's UploadExpirationDays (under {UPLOAD_KEY_PREFIX}/).",
    )
    expires_at: str = Field(description="When upload_url stops working (ISO 8601, UTC).")


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str = Field(
        description="validation_error, not_found, method_not_allowed, idempotency_conflict, payload_too_large, "
        "quota_exceeded, already_ended, not_ended, busy, callback_rejected, internal"
    )
    message: str
    details: list[ErrorDetail]
    job_status: Status | None = Field(
        default=None, description="already_ended, not_ended and busy only: the job's status."
    )


class ErrorResponse(BaseModel):
    model_config = ConfigDict(title="Error")

    error: ErrorBody


# ------------------------------------------------------------------ the routes, as documented
ERRORS = {
    400: "validation_error: every bad field named, with the allowed values or range",
    404: "not_found: no such job for this caller",
    409: "idempotency_conflict: the Idempotency-Key was used with another body, or is in progress",
    413: "payload_too_large",
    429: "quota_exceeded: the caller has as many unfinished jobs as the stack's MaxJobsPerCaller allows; "
    "retry after Retry-After seconds, or when one of them ends",
    500: "internal: an unexpected error (logged, and counted as the HandledErrors metric)",
    503: "service_unavailable: API Gateway's integration timeout (the job may be recorded: retry with the "
    "same Idempotency-Key)",
}
CANCEL_ERRORS = {
    **ERRORS,
    409: "already_ended: the job has ended (job_status says how); busy: its status changed during the cancel, ask "
    "again",
}
REPLAY_ERRORS = {**ERRORS, 409: "not_ended: the job has not ended, so it has no final event yet"}
# The webhook's answers: its refusals are callback_rejected, whatever the status.
WEBHOOK_ERRORS = {
    400: "callback_rejected: the body is not a callback (not JSON, no request_id, unknown status, ...)",
    401: "callback_rejected: the sig is missing or wrong",
    404: "not_found: no job with this id",
    409: "callback_rejected: the callback's request_id is another gateway request's",
    413: "payload_too_large",
    500: "internal: the callback could not be applied; the gateway retries it",
}


def _other_methods(*allowed: str) -> str:
    """The sentence each operation's description ends with: a 405 belongs to no documented
    operation (it answers the methods the document does not list), so it is said in words."""
    methods = ", ".join(sorted(allowed))
    return (
        f" Any other method on this path answers 405 method_not_allowed (the error body) with the header "
        f"Allow: {methods}."
    )


def _ok(status: int, description: str, model: type[Any]) -> dict[int, OpenAPIResponse]:
    return {status: {"description": description, "content": {"application/json": {"model": model}}}}


def _errors(*statuses: int, described: dict[int, str] = ERRORS) -> dict[int, OpenAPIResponse]:
    return {
        status: {"description": described[status], "content": {"application/json": {"model": ErrorResponse}}}
        for status in statuses
    }


def _documentation_only() -> Response[str]:
    raise NotImplementedError("documentation only: functions/submit/app.py answers this route")


def doc_resolver() -> APIGatewayHttpResolver:
    """A resolver with the submit function's routes, typed for the OpenAPI document."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.post(
        "/jobs",
        summary="Submit a video generation job",
        description="Validates the request against the model's documented parameters, records the job and "
        "queues it; answers 202 at once with the job, status ACCEPTED (submit_outcome waiting), whatever the "
        "gateway's load. The stack's submitter then sends it to the gateway at the gateway's pace, fair "
        'between callers: it never sends a job twice, and a gateway "not now" (429, 402, 5xx) keeps the '
        "job waiting rather than failing it; a gateway refusal (400) ends it SUBMIT_FAILED with a failed "
        "event. Follow it with GET /jobs/{job_id} or the events. With the stack's per-caller cap "
        "(MaxJobsPerCaller), a caller at its cap of unfinished jobs is answered 429 quota_exceeded."
        + _other_methods("GET", "POST"),
        response_description="The job, recorded and waiting for the gateway",
        responses={**_ok(202, "The job", JobView), **_errors(400, 409, 413, 429, 500, 503)},
        tags=["jobs"],
    )
    def submit_job(
        body: Annotated[SubmitJobBody, Body(embed=False)],
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=255,
                pattern=f"^{IDEMPOTENCY_KEY_PATTERN.pattern}$",
                description="Same key and body: the same job, nothing new sent to the gateway; another body: 409. "
                "Kept 24 hours. 1-255 printable ASCII characters, no spaces.",
            ),
        ] = None,
    ) -> Response[str]:
        return _documentation_only()

    @app.get(
        "/jobs/<job_id>",
        summary="Get a job",
        description="The caller's job; once DELIVERED, each output carries a short-lived presigned download_url."
        + _other_methods("GET"),
        responses={**_ok(200, "The job", JobView), **_errors(404, 500)},
        tags=["jobs"],
    )
    def get_job(job_id: Annotated[str, Path(description="The job id POST /jobs returned.")]) -> Response[str]:
        return _documentation_only()

    @app.get(
        "/jobs",
        summary="List the caller's jobs",
        description="Newest first, through the by_owner_shard index. With status, a page may hold fewer than "
        "limit jobs while next_token is still set." + _other_methods("GET", "POST"),
        responses={**_ok(200, "A page of jobs", JobPage), **_errors(400, 500)},
        tags=["jobs"],
    )
    def list_jobs(
        status: Annotated[Status | None, Query(description="Only jobs in this status.")] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_PAGE_SIZE,
                description=f"Page size, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}); a page also stops "
                "before its jobs pass 5 MiB, with next_token set.",
            ),
        ] = None,
        next_token: Annotated[str | None, Query(description="The next_token of the previous page.")] = None,
    ) -> Response[str]:
        return _documentation_only()

    @app.post(
        "/jobs/<job_id>/cancel",
        summary="Cancel a job",
        description="Ends the caller's job CANCELLED (error code cancelled) unless it has ended, and publishes one "
        "pixverse.job.cancelled event. The gateway has no cancel: a job it accepted (submit_outcome accepted, or "
        "unknown) goes on there and may still be billed; its later callbacks change nothing and nothing is "
        "copied. A job cancelled before it was sent (submit_outcome not_sent) cost nothing." + _other_methods("POST"),
        responses={**_ok(200, "The job, CANCELLED", JobView), **_errors(404, 409, 500, described=CANCEL_ERRORS)},
        tags=["jobs"],
    )
    def cancel_job(job_id: Annotated[str, Path(description="The job id POST /jobs returned.")]) -> Response[str]:
        return _documentation_only()

    @app.post(
        "/jobs/<job_id>/replay",
        summary="Publish an ended job's final event again",
        description="Re-publishes the caller's ended job's final event (delivered, failed or cancelled) to the "
        "stack's events, the same event with the same id, for a consumer that lost it (consumers deduplicate "
        "on the id)." + _other_methods("POST"),
        responses={
            **_ok(200, "The event was published again", ReplayAnswer),
            **_errors(404, 409, 500, described=REPLAY_ERRORS),
        },
        tags=["jobs"],
    )
    def replay_job(job_id: Annotated[str, Path(description="The job id POST /jobs returned.")]) -> Response[str]:
        return _documentation_only()

    @app.post(
        "/webhooks/pixazo/<job_id>",
        summary="Receive a gateway callback",
        description="The signed URL each job is submitted with. Verifies sig before reading the body, then "
        "applies the callback with one conditional write: duplicates, late and out-of-order callbacks change "
        f"nothing and answer 200. Bodies over {MAX_CALLBACK_BYTES} bytes answer 413; a callback whose request_id "
        "is another job's answers 409. Error codes: callback_rejected, not_found, payload_too_large, internal."
        + _other_methods("POST")
        + " It is answered before the sig is checked.",
        responses={
            **_ok(200, "The callback was received (applied or not)", CallbackAnswer),
            **_errors(400, 401, 404, 409, 413, 500, described=WEBHOOK_ERRORS),
        },
        tags=["webhook"],
    )
    def receive_callback(
        job_id: Annotated[str, Path(description="The job the URL was signed for.")],
        sig: Annotated[str, Query(description="HMAC-SHA256 of job_id under the stack's signing secret, hex.")],
        body: Annotated[GatewayCallback, Body(embed=False)],
    ) -> Response[str]:
        return _documentation_only()

    @app.post(
        "/uploads",
        summary="Upload an input image",
        description="A presigned S3 PUT for one JPEG, PNG or WebP image of at most "
        f"{MAX_INPUT_IMAGE_BYTES} bytes, valid {UPLOAD_URL_EXPIRY_SECONDS} seconds. PUT the bytes to upload_url "
        "with the headers given, then submit an image-to-video job with input.image_url = image_url. POST /jobs "
        "checks the object (it must exist, be the caller's own upload, start with a JPEG, PNG or WebP signature "
        "and be within the size) and answers 400 naming input.image_url otherwise; the gateway receives a "
        f"presigned GET valid {INPUT_URL_EXPIRY_SECONDS} seconds, while the job keeps the s3:// URI."
        + _other_methods("POST"),
        response_description="Where and how to PUT the image",
        responses={**_ok(201, "The upload", Upload), **_errors(400, 413, 500)},
        tags=["uploads"],
    )
    def create_upload(body: Annotated[UploadBody, Body(embed=False)]) -> Response[str]:
        return _documentation_only()

    return app

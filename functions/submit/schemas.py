"""The submit API's request and response shapes, for the Powertools resolver's validation and
the OpenAPI document. Only this function uses pydantic: the webhook stays free of it.

The envelope is checked here (strict: no coercion, no unknown fields); the model's own
parameters are checked by the catalog (``pixverse_jobs.catalog``), which also produces the
error details, so every bad field is reported at once in one format."""

from __future__ import annotations

from typing import Any, Literal

from pixverse_jobs.catalog import MODELS
from pixverse_jobs.jobs import MAX_METADATA_BYTES
from pixverse_jobs.states import JobStatus
from pydantic import BaseModel, ConfigDict, Field

ModelId = Literal[
    "pixverse-v6-text-to-video",
    "pixverse-v6-image-to-video",
    "pixverse-c1-text-to-video",
    "pixverse-c1-image-to-video",
    "pixverse",
    "pixverse-i2v",
]
assert set(ModelId.__args__) == set(MODELS), "ModelId must list the catalog's models"  # type: ignore[attr-defined]

Status = Literal[
    "SUBMITTING",
    "QUEUED",
    "PROCESSING",
    "COMPLETED",
    "COPYING",
    "DELIVERED",
    "SUBMIT_FAILED",
    "FAILED",
    "ERROR",
    "DELIVERY_FAILED",
]
assert set(Status.__args__) == set(JobStatus), "Status must list every JobStatus"  # type: ignore[attr-defined]


class SubmitJobBody(BaseModel):
    """POST /jobs body."""

    model_config = ConfigDict(strict=True, extra="forbid", title="SubmitJobRequest")

    model: ModelId = Field(description="The gateway's model id.")
    input: dict[str, Any] = Field(
        description="The model's parameters, forwarded to the gateway exactly as given "
        "(see components.schemas.<model>Input for each model's parameters)."
    )
    webhook_mode: Literal["terminal", "sync"] | None = Field(
        default=None, description="terminal: one callback at the end; sync: a callback per status change."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Your own data, echoed in the job and its events (at most {MAX_METADATA_BYTES} bytes as JSON).",
    )


class JobOutput(BaseModel):
    bucket: str
    key: str
    s3_uri: str
    size: int
    media_type: str
    sha256: str
    download_url: str | None = Field(default=None, description="Presigned GET URL (GET /jobs/{job_id} only).")


class JobError(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    """A job as GET /jobs/{job_id} returns it."""

    model_config = ConfigDict(title="Job")

    job_id: str
    request_id: str | None
    model: ModelId
    status: Status
    input: dict[str, Any]
    metadata: dict[str, Any]
    webhook_mode: Literal["terminal", "sync"] | None
    outputs: list[JobOutput]
    error: JobError | None
    created_at: str
    updated_at: str | None
    completed_at: str | None
    delivered_at: str | None


class JobPage(BaseModel):
    """GET /jobs: the caller's jobs, newest first."""

    jobs: list[JobView]
    next_token: str | None = Field(description="Pass back as next_token for the next page; null on the last page.")


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str = Field(
        description="validation_error, not_found, idempotency_conflict, payload_too_large, insufficient_balance, "
        "rate_limited, gateway_error, gateway_auth_error, gateway_unavailable, internal"
    )
    message: str
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    model_config = ConfigDict(title="Error")

    error: ErrorBody

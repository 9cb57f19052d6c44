"""Domain exceptions, in one module. Adapters translate library errors into these
(``raise ... from exc``); the HTTP status mapping lives in ``http_errors``."""

from __future__ import annotations

from dataclasses import dataclass


class PixverseJobsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(PixverseJobsError):
    """A setting is missing or invalid; raised at start, names the setting."""


class SecretReadFailed(PixverseJobsError):
    """Secrets Manager did not answer with the secret (throttled, denied, unreachable). Names the
    secret and the error code, never a value."""


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request: a dotted path (``input.duration``) and why it is bad."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RequestRejected(PixverseJobsError):
    """The caller's request is malformed or invalid (HTTP 400 / 413)."""

    def __init__(self, message: str, details: list[FieldError] | None = None, *, too_large: bool = False):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.too_large = too_large


class JobNotFound(PixverseJobsError):
    """No job with this id (or not one the caller may see)."""

    def __init__(self, job_id: str):
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class IdempotencyConflict(PixverseJobsError):
    """An Idempotency-Key reused with another body, or whose first request is still running."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class QuotaExceeded(PixverseJobsError):
    """The caller has as many unfinished jobs as MAX_JOBS_PER_CALLER allows: 429 quota_exceeded."""

    retry_after_seconds = 30

    def __init__(self, cap: int):
        super().__init__(
            f"you have {cap} unfinished jobs, the most this stack allows a caller (MaxJobsPerCaller); "
            "submit again when one of them has ended"
        )
        self.message = str(self)
        self.cap = cap


class JobStateConflict(PixverseJobsError):
    """The job's status does not allow the action (409): ``already_ended`` (cancel of an ended
    job), ``not_ended`` (replay of a job with no final event yet)."""

    def __init__(self, code: str, message: str, *, job_status: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_status = job_status


class JobAlreadyExists(PixverseJobsError):
    """A job id collided on create: never overwrite a record."""


class JobRecordFailed(PixverseJobsError):
    """The job could not be recorded, so nothing was sent to the gateway (answered 500)."""


class CallbackRejected(PixverseJobsError):
    """A callback that must change nothing: unsigned, malformed or for another request."""

    def __init__(self, message: str, *, status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.status_code = status_code


# ----------------------------------------------------------------- gateway
class GatewayError(PixverseJobsError):
    """The gateway refused or failed a call. ``accepted_possible`` tells whether the gateway may
    nevertheless have accepted (and will bill) a submit, so it must not be resubmitted blindly."""

    code = "gateway_error"
    http_status = 502
    accepted_possible = False

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class GatewayRejected(GatewayError):
    """400 from the gateway: its own validation refused the parameters."""

    code = "validation_error"
    http_status = 400


class ModelNotFound(GatewayError):
    """400 "Model not found": the model is unknown to or disabled on the gateway."""

    code = "model_not_found"
    http_status = 400


class GatewayAuthError(GatewayError):
    """401/403: our gateway key is wrong or lacks access. Never the caller's fault."""

    code = "gateway_auth_error"
    http_status = 502


class InsufficientBalance(GatewayError):
    """402: the gateway wallet is empty."""

    code = "insufficient_balance"
    http_status = 402


class GatewayRateLimited(GatewayError):
    """429 from the gateway; ``retry_after`` in seconds when it said so."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class GatewayUnavailable(GatewayError):
    """5xx or the gateway could not be reached before the request was sent."""

    code = "gateway_unavailable"
    http_status = 503


class GatewayOutcomeUnknown(GatewayError):
    """The request was sent but no answer came in time (read timeout, the invocation's deadline,
    dropped connection): the gateway may have accepted it, so it is never resubmitted. The job is
    answered 202 SUBMITTING with its outcome unknown; its callback moves it on."""

    code = "gateway_unavailable"
    http_status = 503
    accepted_possible = True


# ----------------------------------------------------------------- delivery
class DeliveryError(PixverseJobsError):
    """Copying media failed. ``code`` is the job's ``error.code`` when this failure ends it."""

    permanent = False
    code = "delivery_failed"


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (disallowed host, 404/410, wrong type, too large)."""

    permanent = True


class TransientDeliveryError(DeliveryError):
    """A retry may succeed (reset connection, timeout, 5xx, S3 throttling)."""


class MediaAddressRefused(PermanentDeliveryError):
    """A media URL (or a redirect) leads to a host or address the copier must never reach:
    not in ALLOWED_MEDIA_HOSTS, plain http off loopback, or a non-public address. Raised
    before any request is sent there."""


class MediaNotVideo(PermanentDeliveryError):
    """The media is not a video container (its first box is not ``ftyp``, it has no ``moov`` with a
    video track, or it is cut short): an HTML error page served as ``video/mp4``, say. Ends the job
    DELIVERY_FAILED with ``error.code`` ``media_not_video``, whatever Content-Type was declared."""

    code = "media_not_video"


class MediaDownloadInterrupted(TransientDeliveryError):
    """A media download broke off or the server answered a passing error (5xx, 408, 429):
    the copier retries it within the invocation (resuming with a Range request when it can)
    before the message's own retry. ``retry_after`` is the server's Retry-After, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# ----------------------------------------------------------------- events (EventBridge)
class EventNotPublished(PixverseJobsError):
    """The EventBridge bus did not take an event (the call failed, or PutEvents answered 200 with
    the entry's ErrorCode). The event may already be on SNS; the caller's retry publishes it
    again to both, with the same id. Names the event and the bus, never the document."""

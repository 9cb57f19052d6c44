"""Configuration: every environment name in one place, read and validated once per container.

The settings are NamedTuples, immutable like frozen dataclasses at a fifth of their cost to
define: eight frozen dataclasses were 4 ms of every function's cold start (bench/results.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import NamedTuple

from pixverse_jobs.errors import ConfigurationError

# Environment names. template.yaml sets them in AWS; the local stack sets the same ones.
JOBS_TABLE = "JOBS_TABLE"
MEDIA_BUCKET = "MEDIA_BUCKET"
MEDIA_KEY_PREFIX = "MEDIA_KEY_PREFIX"
EVENTS_TOPIC_ARN = "EVENTS_TOPIC_ARN"
# The EventBridge bus every event also goes to (its name, or its ARN).
EVENT_BUS_NAME = "EVENT_BUS_NAME"
EVENT_SOURCE = "EVENT_SOURCE"
COPY_QUEUE_URL = "COPY_QUEUE_URL"
SUBMIT_QUEUE_URL = "SUBMIT_QUEUE_URL"
DEADLINE_QUEUE_URL = "DEADLINE_QUEUE_URL"
SUBMIT_RETRY_BASE_SECONDS = "SUBMIT_RETRY_BASE_SECONDS"
SUBMIT_RETRY_MAX_SECONDS = "SUBMIT_RETRY_MAX_SECONDS"
SUBMIT_INITIAL_RATE = "SUBMIT_INITIAL_RATE"
SUBMIT_MAX_RATE = "SUBMIT_MAX_RATE"
GATEWAY_MAX_IN_FLIGHT = "GATEWAY_MAX_IN_FLIGHT"
MAX_JOBS_PER_CALLER = "MAX_JOBS_PER_CALLER"
PIXAZO_BASE_URL = "PIXAZO_BASE_URL"
PIXAZO_API_KEY_SECRET = "PIXAZO_API_KEY_SECRET"
WEBHOOK_SECRET_ARN = "WEBHOOK_SECRET_ARN"
WEBHOOK_BASE_URL = "WEBHOOK_BASE_URL"
WEBHOOK_MODE = "WEBHOOK_MODE"
ALLOWED_MEDIA_HOSTS = "ALLOWED_MEDIA_HOSTS"
DOWNLOAD_URL_EXPIRY_SECONDS = "DOWNLOAD_URL_EXPIRY_SECONDS"
MAX_MEDIA_BYTES = "MAX_MEDIA_BYTES"
COPY_MAX_RECEIVE_COUNT = "COPY_MAX_RECEIVE_COUNT"
COPY_RETRY_BASE_SECONDS = "COPY_RETRY_BASE_SECONDS"
COPY_RETRY_MAX_SECONDS = "COPY_RETRY_MAX_SECONDS"
PROGRESS_EVENTS = "PROGRESS_EVENTS"
RECONCILE_AFTER_SECONDS = "RECONCILE_AFTER_SECONDS"
MAX_JOB_AGE_SECONDS = "MAX_JOB_AGE_SECONDS"
RECONCILE_CONCURRENCY = "RECONCILE_CONCURRENCY"
CALLBACK_BUFFER_QUEUE_URL = "CALLBACK_BUFFER_QUEUE_URL"
CALLBACK_RETRY_BASE_SECONDS = "CALLBACK_RETRY_BASE_SECONDS"
CALLBACK_RETRY_MAX_SECONDS = "CALLBACK_RETRY_MAX_SECONDS"
INPUT_BUCKETS = "INPUT_BUCKETS"
UPLOAD_BUCKET = "UPLOAD_BUCKET"

WEBHOOK_MODES = ("terminal", "sync")


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is required but not set")
    return value


def _optional(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _whole_number(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _optional(env, name, str(default))
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ConfigurationError(f"{name} must be a whole number from {minimum} to {maximum}, got {raw!r}")
    return int(raw)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = _optional(env, name, "false").lower()
    if raw not in ("true", "false"):
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


class StoreSettings(NamedTuple):
    table_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StoreSettings:
        return cls(table_name=_required(env, JOBS_TABLE))


class ApiSettings(NamedTuple):
    download_url_expiry_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        return cls(download_url_expiry_seconds=_whole_number(env, DOWNLOAD_URL_EXPIRY_SECONDS, 900, 60, 3600))


class GatewaySettings(NamedTuple):
    base_url: str
    api_key_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewaySettings:
        base_url = _required(env, PIXAZO_BASE_URL).rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{PIXAZO_BASE_URL} must be an http(s) URL, got {base_url!r}")
        return cls(base_url=base_url, api_key_secret=_required(env, PIXAZO_API_KEY_SECRET))


class WebhookSettings(NamedTuple):
    secret_arn: str
    base_url: str  # empty: derived from the API request that submits the job
    default_mode: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        mode = _optional(env, WEBHOOK_MODE, "terminal")
        if mode not in WEBHOOK_MODES:
            raise ConfigurationError(f"{WEBHOOK_MODE} must be one of {', '.join(WEBHOOK_MODES)}, got {mode!r}")
        return cls(
            secret_arn=_required(env, WEBHOOK_SECRET_ARN),
            base_url=env.get(WEBHOOK_BASE_URL, "").strip().rstrip("/"),
            default_mode=mode,
        )


class DeliverySettings(NamedTuple):
    bucket: str
    key_prefix: str
    topic_arn: str
    event_source: str
    allowed_media_hosts: tuple[str, ...]
    max_media_bytes: int
    # The copy queue's maxReceiveCount: the copier fails the job on the last receive instead of
    # leaving it COPYING when the message moves to the dead-letter queue.
    max_receive_count: int
    # The backoff between copy attempts (seconds): the n-th failed attempt's message comes back
    # after base * 2^(n-1), capped at max, with jitter (see ``pixverse_jobs.delivery.CopyBackoff``).
    copy_retry_base_seconds: int = 30
    copy_retry_max_seconds: int = 900
    # The EventBridge bus the final events also go to (EVENT_BUS_NAME, required).
    bus_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeliverySettings:
        hosts = tuple(h.strip().lower() for h in _required(env, ALLOWED_MEDIA_HOSTS).split(",") if h.strip())
        if not hosts:
            raise ConfigurationError(f"{ALLOWED_MEDIA_HOSTS} names no host")
        retry_base = _whole_number(env, COPY_RETRY_BASE_SECONDS, 30, 1, 3600)
        # SQS holds a received message invisible for at most 12 hours in all, counted from the
        # receive (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html);
        # the copier may have used up to its 900 s timeout before it asks for the delay.
        retry_max = _whole_number(env, COPY_RETRY_MAX_SECONDS, 900, 1, 43200 - 900)
        if retry_max < retry_base:
            raise ConfigurationError(
                f"{COPY_RETRY_MAX_SECONDS} ({retry_max}) must not be less than {COPY_RETRY_BASE_SECONDS} ({retry_base})"
            )
        return cls(
            bucket=_required(env, MEDIA_BUCKET),
            key_prefix=_optional(env, MEDIA_KEY_PREFIX, "videos").strip("/"),
            topic_arn=_required(env, EVENTS_TOPIC_ARN),
            event_source=_optional(env, EVENT_SOURCE, "urn:pixverse-jobs"),
            allowed_media_hosts=hosts,
            max_media_bytes=_whole_number(env, MAX_MEDIA_BYTES, 5 * 1024**3, 1, 10_000 * 8 * 1024**2),
            max_receive_count=_whole_number(env, COPY_MAX_RECEIVE_COUNT, 5, 1, 1000),
            copy_retry_base_seconds=retry_base,
            copy_retry_max_seconds=retry_max,
            bus_name=_required(env, EVENT_BUS_NAME),
        )


class ProgressSettings(NamedTuple):
    """Optional pixverse.job.progress events from the webhook receiver (sync mode)."""

    enabled: bool
    topic_arn: str
    event_source: str
    bus_name: str = ""  # EVENT_BUS_NAME, required when enabled

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProgressSettings:
        enabled = _flag(env, PROGRESS_EVENTS)
        return cls(
            enabled=enabled,
            topic_arn=_required(env, EVENTS_TOPIC_ARN) if enabled else env.get(EVENTS_TOPIC_ARN, "").strip(),
            event_source=_optional(env, EVENT_SOURCE, "urn:pixverse-jobs"),
            bus_name=_required(env, EVENT_BUS_NAME) if enabled else env.get(EVENT_BUS_NAME, "").strip(),
        )


class ReconcileSettings(NamedTuple):
    """When the reconciler looks at a job, and how hard it may poll the gateway."""

    after_seconds: int  # a job's first look comes this long after its creation (its check_at)
    max_age_seconds: int  # a job this old ends in a terminal state, whatever the gateway says
    # Gateway status polls in flight. 100 polls/s at the gateway's 100-300 ms per poll, plus the
    # look's conditional write (~10 ms), is 100 x 0.31 = 31 in flight at the slow end (Little's
    # law); 48 leaves half as much again for a slow tail, and gives ~150 polls/s at 300 ms.
    concurrency: int = 48

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ReconcileSettings:
        settings = cls(
            after_seconds=_reconcile_after_seconds(env),
            max_age_seconds=_whole_number(env, MAX_JOB_AGE_SECONDS, 86400, 60, 30 * 86400),
            concurrency=_whole_number(env, RECONCILE_CONCURRENCY, 48, 1, 256),
        )
        if settings.max_age_seconds <= settings.after_seconds:
            raise ConfigurationError(
                f"{MAX_JOB_AGE_SECONDS} ({settings.max_age_seconds}) must be greater than "
                f"{RECONCILE_AFTER_SECONDS} ({settings.after_seconds})"
            )
        return settings


def _reconcile_after_seconds(env: Mapping[str, str]) -> int:
    return _whole_number(env, RECONCILE_AFTER_SECONDS, 900, 1, 7 * 86400)


class QueueSettings(NamedTuple):
    copy_queue_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QueueSettings:
        return cls(copy_queue_url=_required(env, COPY_QUEUE_URL))


class AdmissionSettings(NamedTuple):
    """Admission (POST /jobs records the job ACCEPTED and queues it; the submitter feeds the
    gateway): the submit queue, the per-caller cap POST enforces (0: none), the deadline queue
    (a job with ``deadline_seconds``) and the longest deadline a job may ask for (the stack's
    maximum job age, after which the reconciler ends it anyway)."""

    submit_queue_url: str
    max_age_seconds: int
    max_jobs_per_caller: int = 0
    # Only SubmitFunction sends deadline messages; the reconciler reads these settings too.
    deadline_queue_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AdmissionSettings:
        return cls(
            submit_queue_url=_required(env, SUBMIT_QUEUE_URL),
            deadline_queue_url=env.get(DEADLINE_QUEUE_URL, "").strip(),
            max_age_seconds=_whole_number(env, MAX_JOB_AGE_SECONDS, 86400, 60, 30 * 86400),
            max_jobs_per_caller=_whole_number(env, MAX_JOBS_PER_CALLER, 0, 0, 1_000_000),
        )


class EndingSettings(NamedTuple):
    """What ends a job outside the gateway's outcomes (cancel, a deadline) and what re-publishes
    an ended job's event (replay): the copy queue, whose copier publishes the one final event of
    a job it ends, and the topic, bus and source of the events a replay sends again (SubmitFunction
    only: the deadline function publishes nothing, so these are not required here)."""

    copy_queue_url: str
    topic_arn: str
    event_source: str
    deadline_queue_url: str
    bus_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EndingSettings:
        return cls(
            copy_queue_url=_required(env, COPY_QUEUE_URL),
            topic_arn=env.get(EVENTS_TOPIC_ARN, "").strip(),
            event_source=_optional(env, EVENT_SOURCE, "urn:pixverse-jobs"),
            deadline_queue_url=env.get(DEADLINE_QUEUE_URL, "").strip(),
            bus_name=env.get(EVENT_BUS_NAME, "").strip(),
        )

    def publishing(self) -> EndingSettings:
        """These settings, checked for a replay: it needs the topic and the bus."""
        for name, value in ((EVENTS_TOPIC_ARN, self.topic_arn), (EVENT_BUS_NAME, self.bus_name)):
            if not value:
                raise ConfigurationError(f"environment variable {name} is required but not set")
        return self


class SubmitterSettings(NamedTuple):
    """How the submitter paces the gateway, which publishes no limit (``pixverse_jobs.admission``).

    ``initial_rate`` / ``max_rate``: submits per second per submitter container, where the
    adaptive pace starts and the most it grows to. ``retry_*``: the backoff of a job the gateway
    answered "not now" (without a Retry-After). ``max_in_flight``: the most jobs at the gateway
    at once (SUBMITTING, QUEUED, PROCESSING), 0 for no cap."""

    submit_queue_url: str
    max_age_seconds: int
    retry_base_seconds: int = 5
    retry_max_seconds: int = 300
    initial_rate: float = 2.0
    max_rate: float = 50.0
    max_in_flight: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SubmitterSettings:
        retry_base = _whole_number(env, SUBMIT_RETRY_BASE_SECONDS, 5, 1, 900)
        # A re-sent message waits at most 15 minutes (SQS DelaySeconds,
        # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
        retry_max = _whole_number(env, SUBMIT_RETRY_MAX_SECONDS, 300, 1, 900)
        if retry_max < retry_base:
            raise ConfigurationError(
                f"{SUBMIT_RETRY_MAX_SECONDS} ({retry_max}) must not be less than "
                f"{SUBMIT_RETRY_BASE_SECONDS} ({retry_base})"
            )
        max_rate = _whole_number(env, SUBMIT_MAX_RATE, 50, 1, 1000)
        initial = min(_whole_number(env, SUBMIT_INITIAL_RATE, 2, 1, 1000), max_rate)
        return cls(
            submit_queue_url=_required(env, SUBMIT_QUEUE_URL),
            max_age_seconds=_whole_number(env, MAX_JOB_AGE_SECONDS, 86400, 60, 30 * 86400),
            retry_base_seconds=retry_base,
            retry_max_seconds=retry_max,
            initial_rate=float(initial),
            max_rate=float(max_rate),
            max_in_flight=_whole_number(env, GATEWAY_MAX_IN_FLIGHT, 0, 0, 1000),
        )


class CallbackBufferSettings(NamedTuple):
    """The callback buffer (SQS): where the webhook keeps a callback its table write could not
    take, and how long the consumer waits before it tries a still-throttled table again."""

    queue_url: str  # empty: no buffer, a throttled callback is answered 500 as before
    retry_base_seconds: int = 5
    retry_max_seconds: int = 900

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CallbackBufferSettings:
        retry_base = _whole_number(env, CALLBACK_RETRY_BASE_SECONDS, 5, 1, 3600)
        # A received message stays invisible at most 12 hours from its receive
        # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html).
        retry_max = _whole_number(env, CALLBACK_RETRY_MAX_SECONDS, 900, 1, 43200 - 60)
        if retry_max < retry_base:
            raise ConfigurationError(
                f"{CALLBACK_RETRY_MAX_SECONDS} ({retry_max}) must not be less than "
                f"{CALLBACK_RETRY_BASE_SECONDS} ({retry_base})"
            )
        return cls(
            queue_url=env.get(CALLBACK_BUFFER_QUEUE_URL, "").strip(),
            retry_base_seconds=retry_base,
            retry_max_seconds=retry_max,
        )


class InputSettings(NamedTuple):
    """Where ``s3://`` image inputs may come from (``pixverse_jobs.inputs``): the buckets of the
    InputBuckets parameter, and the bucket whose ``uploads/`` prefix holds POST /uploads' objects."""

    input_buckets: tuple[str, ...]
    upload_bucket: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InputSettings:
        from pixverse_jobs.inputs import BUCKET_NAME  # no botocore import for the functions that never read it

        buckets = tuple(b.strip() for b in env.get(INPUT_BUCKETS, "").split(",") if b.strip())
        for bucket in buckets:
            if not BUCKET_NAME.fullmatch(bucket):
                raise ConfigurationError(f"{INPUT_BUCKETS} names {bucket!r}, which is not an S3 bucket name")
        return cls(input_buckets=buckets, upload_bucket=_required(env, UPLOAD_BUCKET))


@cache
def input_settings() -> InputSettings:
    return InputSettings.from_env(os.environ)


@cache
def store_settings() -> StoreSettings:
    return StoreSettings.from_env(os.environ)


@cache
def api_settings() -> ApiSettings:
    return ApiSettings.from_env(os.environ)


@cache
def gateway_settings() -> GatewaySettings:
    return GatewaySettings.from_env(os.environ)


@cache
def webhook_settings() -> WebhookSettings:
    return WebhookSettings.from_env(os.environ)


@cache
def delivery_settings() -> DeliverySettings:
    return DeliverySettings.from_env(os.environ)


@cache
def queue_settings() -> QueueSettings:
    return QueueSettings.from_env(os.environ)


@cache
def progress_settings() -> ProgressSettings:
    return ProgressSettings.from_env(os.environ)


@cache
def reconcile_settings() -> ReconcileSettings:
    return ReconcileSettings.from_env(os.environ)


@cache
def admission_settings() -> AdmissionSettings:
    return AdmissionSettings.from_env(os.environ)


@cache
def ending_settings() -> EndingSettings:
    return EndingSettings.from_env(os.environ)


@cache
def submitter_settings() -> SubmitterSettings:
    return SubmitterSettings.from_env(os.environ)


@cache
def first_check_after_seconds() -> int:
    """RECONCILE_AFTER_SECONDS for the functions that write a job's ``check_at`` (the store, at
    creation and when a callback shows the job alive): every function reads it (template.yaml's
    Globals), not only the reconciler, so that a job's first look honours the stack parameter."""
    return _reconcile_after_seconds(os.environ)


@cache
def callback_buffer_settings() -> CallbackBufferSettings:
    return CallbackBufferSettings.from_env(os.environ)

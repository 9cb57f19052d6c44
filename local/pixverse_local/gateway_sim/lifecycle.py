"""Accepted requests and their lifecycle ("Status Flow" in the doc): QUEUED, then PROCESSING, then
COMPLETED (or FAILED / ERROR by directive), on a timer; and ``GET /v2/requests/status/{id}``
("Retrieving Results"), whose payload is also the callback body.

A request is QUEUED for ``queue_seconds``, PROCESSING for ``processing_seconds``, then final. One
lifecycle thread ticks every few milliseconds, moves each active request along and hands due callbacks
(one per poll interval in sync mode, the final one in both modes) to the webhook sender.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from pixverse_local.gateway_sim.admission import AdmissionBook
from pixverse_local.gateway_sim.directives import Directives, Outcome, parse_directives
from pixverse_local.gateway_sim.faults import FAULT_BODIES, FAULT_STATS, Fault, FaultBook, answer_fault
from pixverse_local.gateway_sim.httpio import API_KEY_HEADER, BadRequest, JsonHandler
from pixverse_local.gateway_sim.images import DOC_EXAMPLE_IMAGE_HOSTS, ImageFetch, fetch_image
from pixverse_local.gateway_sim.params import MODEL_PARAMETERS, validate_parameters

if TYPE_CHECKING:
    from pixverse_local.gateway_sim.server import GatewaySimulator

__all__ = [
    "ERROR_MESSAGE",
    "FAILED_MESSAGE",
    "MEDIA_TYPE",
    "STATUS_PATH_RE",
    "GatewayState",
    "Lifecycle",
    "Request",
    "get_status",
    "media_urls",
    "utc_now",
]

logger = logging.getLogger(__name__)

MEDIA_TYPE: Final = "video/mp4"
STATUS_PATH_RE: Final = re.compile(r"^/v2/requests/status/([^/]+)$")

FAILED_MESSAGE: Final = "Generation failed: content policy"
ERROR_MESSAGE: Final = "Internal error: generation worker crashed"

STAT_NAMES: Final = (
    "submits_received",
    "submits_accepted",
    "submits_throttled",  # answered 429: the admission limit's or an injected fault's
    "status_polls",
    "media_gets",
    "callbacks_attempted",
    "submit_faults",
    "poll_faults",
    "media_faults",
)

# ``POST /_sim/requests`` (``Lifecycle.seed``): the statuses a seeded request may stand at, and how
# many one call may seed.
SEEDABLE_STATUSES: Final = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "ERROR")
MAX_SEEDED: Final = 100_000

# A callback the lifecycle hands to the webhook sender: the request, its payload, how many copies.
SendCallback = Callable[["Request", dict[str, Any], int], None]


def utc_now() -> str:
    """Now as the gateway writes timestamps: ISO 8601, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uuid7() -> str:
    # The gateway's ids look like UUIDv7 (time-ordered); Python 3.11 has no uuid7().
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


@dataclass
class Request:
    """One accepted request: what was asked, where it stands, and what happened to its callbacks/media."""

    request_id: str
    model: str
    body: dict[str, Any]
    webhook_url: str | None
    webhook_mode: str
    directives: Directives
    media_size: int | None  # None: the clip's own size
    submitted_at: str
    submitted_mono: float
    next_sync_mono: float
    status: str = "QUEUED"
    error: str | None = None
    updated_at: str = ""
    completed_at: str | None = None
    cuts_remaining: int = 0
    media_gets: int = 0
    media_requests: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    outbox: deque[tuple[dict[str, Any], int]] = field(default_factory=deque)
    delivering: bool = False
    cancelled: bool = False
    # What became of the body's image_url (images.py); a failed fetch ends the request FAILED.
    image: ImageFetch | None = None


def media_urls(record: Request, media_host: str) -> list[str]:
    """The ``output.media_url`` list of a completed request (served by ``media.serve_media``)."""
    if record.directives.media_url is not None:
        return [record.directives.media_url]
    return [f"http://{media_host}/media/{record.request_id}/{n}.mp4" for n in range(record.directives.media_count)]


class GatewayState:
    """Everything the simulated gateway holds, behind one lock: requests, injected faults, counters."""

    def __init__(self, admission: AdmissionBook | None = None) -> None:
        """Start empty (with ``admission``'s limit, if given); ``media_host`` is set once the server listens."""
        self.lock = threading.Lock()
        self.requests: dict[str, Request] = {}
        # Not final yet (QUEUED or PROCESSING): the lifecycle thread moves these along, and their
        # number is what the admission limit counts.
        self.active: dict[str, Request] = {}
        self.faults = FaultBook()
        self.admission = admission or AdmissionBook()
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.stop = threading.Event()
        self.media_host = ""  # host:port that media URLs point at

    def bump(self, stat: str) -> None:
        """Count one more ``stat``."""
        with self.lock:
            self.stats[stat] += 1

    def take_fault(self, target: str = "submit_status") -> Fault | None:
        """The next injected fault for ``target`` requests (a key of FAULT_TARGETS), counted, or None."""
        with self.lock:
            return self.take_fault_locked(target)

    def take_fault_locked(self, target: str) -> Fault | None:
        """``take_fault`` for a caller that holds the lock."""
        fault = self.faults.take(target)
        if fault is not None:
            self.stats[FAULT_STATS[target]] += 1
        return fault

    def stats_view(self) -> dict[str, int]:
        """A copy of the counters, with the requests in flight now and at the peak."""
        with self.lock:
            return {
                **self.stats,
                "in_flight": len(self.active),
                "peak_in_flight": self.admission.peak_in_flight,
            }

    def reset(self) -> None:
        """Forget every request (cancelling their pending callbacks), fault and counter."""
        with self.lock:
            for record in self.requests.values():
                record.cancelled = True
            self.requests.clear()
            self.active.clear()
            self.faults.clear()
            self.stats = dict.fromkeys(STAT_NAMES, 0)
            self.admission.reset_counters()
        logger.info("simulator reset")


class Lifecycle:
    """Accepts requests and moves them from QUEUED through PROCESSING to their outcome on a timer."""

    def __init__(
        self,
        state: GatewayState,
        *,
        queue_seconds: float,
        processing_seconds: float,
        poll_interval_seconds: float,
        media_size: int | None,
        send: SendCallback,
        clock: Callable[[], float] = time.monotonic,
        presumed_image_hosts: frozenset[str] = DOC_EXAMPLE_IMAGE_HOSTS,
    ) -> None:
        """Keep the timings; ``send`` takes the callbacks that fall due; ``clock`` (monotonic seconds)
        is what the timings are measured on, so a test can move time itself."""
        self._state = state
        self._clock = clock
        self._queue_seconds = queue_seconds
        self._processing_seconds = processing_seconds
        self._poll_interval = poll_interval_seconds
        self._default_media_size = media_size
        self._send = send
        self._tick = max(0.005, min(0.02, poll_interval_seconds / 4))
        self._presumed_image_hosts = presumed_image_hosts

    def accept(
        self,
        model: str,
        body: dict[str, Any],
        webhook_url: str | None,
        webhook_mode: str,
        job_id: str | None = None,
    ) -> Request:
        """Validate a submit body, admit it, record the request and start its clock; ``BadRequest``
        naming a field, or ``AtCapacity`` when the admission limit is reached (checked under the lock
        that records the request, so concurrent submits cannot pass it together)."""
        problems = validate_parameters(model, body)
        if problems:
            raise BadRequest("; ".join(problems))
        try:
            directives = parse_directives(body["prompt"])
        except ValueError as exc:
            raise BadRequest(f"prompt: {exc}") from exc
        # Fetched now, before the request is admitted: bounded (images.py), and outside the lock.
        image = fetch_image(body["image_url"], self._presumed_image_hosts) if "image_url" in body else None
        now_iso = utc_now()
        now = self._clock()
        record = Request(
            request_id=f"{model}_{_uuid7()}",
            model=model,
            body=body,
            webhook_url=webhook_url,
            webhook_mode=webhook_mode,
            directives=directives,
            media_size=(directives.media_size if directives.media_size is not None else self._default_media_size),
            submitted_at=now_iso,
            submitted_mono=now,
            next_sync_mono=now + self._poll_interval,
            updated_at=now_iso,
            cuts_remaining=directives.cut,
            image=image,
        )
        state = self._state
        with state.lock:
            state.admission.admit(len(state.active), job_id)
            state.requests[record.request_id] = record
            state.active[record.request_id] = record
            state.stats["submits_accepted"] += 1
        logger.info(
            "request accepted",
            extra={
                "request_id": record.request_id,
                "webhook_mode": webhook_mode,
                "webhook": bool(webhook_url),
            },
        )
        return record

    def seed(self, model: str, status: str, count: int) -> list[str]:
        """Record ``count`` requests of ``model`` that stand at ``status`` and stay there (no
        lifecycle, no callbacks): a backlog for the status endpoint alone, such as a reconciler
        benchmark needs, without submitting each job. ``BadRequest`` naming a bad field."""
        if model not in MODEL_PARAMETERS:
            raise BadRequest(f"model: unknown model {model!r}")
        if status not in SEEDABLE_STATUSES:
            raise BadRequest(f"status: must be one of {', '.join(SEEDABLE_STATUSES)}")
        if type(count) is not int or not 1 <= count <= MAX_SEEDED:
            raise BadRequest(f"count: must be an integer from 1 to {MAX_SEEDED}")
        outcome: Outcome = "FAILED" if status == "FAILED" else "ERROR" if status == "ERROR" else "COMPLETED"
        now_iso, now = utc_now(), time.monotonic()
        records = []
        for _ in range(count):
            record = Request(
                request_id=f"{model}_{_uuid7()}",
                model=model,
                body={"prompt": "seeded"},
                webhook_url=None,
                webhook_mode="terminal",
                directives=Directives(outcome=outcome),
                media_size=self._default_media_size,
                submitted_at=now_iso,
                submitted_mono=now,
                next_sync_mono=now,
                status=status,
                updated_at=now_iso,
            )
            if status in ("COMPLETED", "FAILED", "ERROR"):
                _finish(record)
            records.append(record)
        with self._state.lock:
            for record in records:
                self._state.requests[record.request_id] = record
        return [record.request_id for record in records]

    def run(self) -> None:
        """The lifecycle thread: tick until the simulator stops."""
        while not self._state.stop.wait(self._tick):
            try:
                self.advance(self._clock())
            except Exception:
                logger.exception("lifecycle tick failed")

    def advance(self, now: float) -> None:
        """Move every active request to where it stands at ``now`` and send the callbacks due."""
        state = self._state
        due: list[tuple[Request, dict[str, Any], int]] = []
        with state.lock:
            for record in list(state.active.values()):
                elapsed = now - record.submitted_mono
                sends = record.webhook_url is not None and not record.directives.no_callback
                queue_seconds, total_seconds = self._queue_seconds, self._queue_seconds + self._processing_seconds
                if record.directives.seconds is not None:  # [sim:seconds=N]: N from submit to outcome
                    total_seconds = record.directives.seconds
                    queue_seconds = min(queue_seconds, total_seconds / 4)
                if elapsed >= total_seconds:
                    _finish(record)
                    del state.active[record.request_id]
                    if sends:
                        due.append((record, self.payload(record), record.directives.duplicates))
                    continue
                status = "PROCESSING" if elapsed >= queue_seconds else "QUEUED"
                if status != record.status:
                    record.status = status
                    record.updated_at = utc_now()
                if sends and record.webhook_mode == "sync" and now >= record.next_sync_mono:
                    due.append((record, self.payload(record), 1))
                    while record.next_sync_mono <= now:
                        record.next_sync_mono += self._poll_interval
        for record, payload, copies in due:
            self._send(record, payload, copies)

    def payload(self, record: Request) -> dict[str, Any]:
        """The status response / callback body, shaped as the doc shows it."""
        output = None
        if record.status == "COMPLETED":
            output = {"media_url": media_urls(record, self._state.media_host), "media_type": MEDIA_TYPE}
        return {
            "request_id": record.request_id,
            "status": record.status,
            "model_id": record.model,
            "error": record.error,
            "output": output,
            "created_at": record.submitted_at,
            "updated_at": record.updated_at,
            "completed_at": record.completed_at,
        }

    def status_payload(self, request_id: str) -> dict[str, Any] | None:
        """What ``GET /v2/requests/status/{request_id}`` answers, or None for an unknown id."""
        with self._state.lock:
            record = self._state.requests.get(request_id)
            return None if record is None else self.payload(record)


def _finish(record: Request) -> None:
    outcome = record.directives.outcome
    record.status = outcome
    record.error = {"COMPLETED": None, "FAILED": FAILED_MESSAGE, "ERROR": ERROR_MESSAGE}[outcome]
    if record.image is not None and record.image.error is not None and outcome != "ERROR":
        # The input the doc requires was not there: the request's own failure (no URL in it).
        record.status, record.error = "FAILED", record.image.error
    record.updated_at = record.completed_at = utc_now()
    logger.info("request finished", extra={"request_id": record.request_id, "status": outcome})


def get_status(handler: JsonHandler, sim: GatewaySimulator, request_id: str) -> None:
    """``GET /v2/requests/status/{request_id}``: an injected poll fault, the key check, then the payload."""
    state = sim.state
    state.bump("status_polls")
    fault = state.take_fault("poll_status")
    if fault is not None:
        if not fault.answers_normally:
            answer_fault(handler, fault, state.stop)
            return
        state.stop.wait(fault.delay_seconds)
    if not sim.check_key(handler.headers.get(API_KEY_HEADER)):
        handler.send_json(401, FAULT_BODIES[401])
        return
    payload = sim.lifecycle.status_payload(request_id)
    if payload is None:
        handler.not_found(f"Request '{request_id}' not found")
        return
    handler.send_json(200, payload)

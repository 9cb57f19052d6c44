"""A local stand-in for the Pixazo gateway's PixVerse models, faithful to ``pixazo-pixverse-api.txt``.

What it does, in the doc's terms:

* ``POST /{model}/v1/{model}-request`` for the six PixVerse models, authenticated by the
  ``Ocp-Apim-Subscription-Key`` header, each body validated against that model's parameter table,
  answering ``202 {"request_id", "status": "QUEUED", "polling_url"}``.
* ``X-Webhook-URL`` / ``X-Webhook-Mode`` callbacks (``terminal``: one POST at the final status;
  ``sync``: one POST per poll cycle plus the final one), retried on failure, duplicates on request.
* ``GET /v2/requests/status/{request_id}`` with the same payload shape as the callbacks.
* ``GET /media/{request_id}/{n}.mp4``: deterministic pseudo-random bytes (see ``simulator_media``),
  streamed in chunks so multi-GiB items never sit in memory; single byte ranges are honoured.

Test hooks: directives in the prompt (``[sim:fail]``, ``[sim:error]``, ``[sim:dup=N]``,
``[sim:no-callback]``, ``[sim:size=BYTES]``, ``[sim:media=N]``, ``[sim:cut=N]``) and a control API under
``/_sim/`` (request records, injected faults, counters, reset), answered to loopback clients only.

Injected faults (``POST /_sim/faults``) answer the next ``count`` requests of one kind with an error
status, optionally after a delay: ``{"submit_status": CODE}`` for model submits, ``{"poll_status":
CODE}`` for ``GET /v2/requests/status/{id}`` and ``{"media_get_status": CODE}`` for media GETs (any
request's). Status 202 (submit) or 200 (poll) with ``delay_seconds`` answers normally but late, which
is a timeout for a caller that does not wait that long.

Media delivery hooks (directives too): ``[sim:media-url=URL]`` puts ``URL`` in the output instead of the
simulator's own media; ``[sim:redirect=URL]`` answers every media GET with a 302 to ``URL``;
``[sim:hops=N]`` makes the media URL redirect N times (on the simulator itself) before serving;
``[sim:media-status=CODE]`` answers media GETs with that HTTP status; ``[sim:content-type=TYPE]`` serves
media with that Content-Type (the callback still says video/mp4); ``[sim:no-ranges]`` serves media without
``Accept-Ranges`` and ignores Range headers. Every media GET is recorded (``media_requests``).

Run standalone with ``python -m pixverse_local.gateway_sim --port 8090 --api-key KEY``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import queue
import re
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from pixverse_local.gateway_sim.media import iter_media_chunks, media_sha256

__all__ = ["MODEL_IDS", "GatewaySimulator", "main", "media_sha256"]

logger = logging.getLogger(__name__)

API_KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"
WEBHOOK_URL_HEADER: Final = "X-Webhook-URL"
WEBHOOK_MODE_HEADER: Final = "X-Webhook-Mode"
API_KEY_ENV: Final = "PIXAZO_API_KEY"

MEDIA_TYPE: Final = "video/mp4"
FAILED_MESSAGE: Final = "Generation failed: content policy"
ERROR_MESSAGE: Final = "Internal error: generation worker crashed"

# Callback retry schedule: the first attempt, then three more after these pauses.
CALLBACK_RETRY_DELAYS: Final[tuple[float, ...]] = (0.2, 0.5, 1.0)

_MAX_BODY_BYTES: Final = 1024 * 1024
_DELIVERY_WORKERS: Final = 8
_STOP_DEADLINE_SECONDS: Final = 1.5
# How long stop() waits for a callback already on the wire (it cannot be interrupted, only abandoned).
_STOP_CALLBACK_GRACE_SECONDS: Final = 0.3
_HANDLER_IDLE_TIMEOUT_SECONDS: Final = 60.0


# --- model parameter tables (from the doc, independent of pixverse_jobs) -------------------------

ParamKind = Literal["string", "integer", "boolean"]


@dataclass(frozen=True)
class _Param:
    kind: ParamKind
    required: bool = False
    choices: tuple[str | int, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    http_url: bool = False
    non_empty: bool = False


_V6_ASPECT_RATIOS: Final = ("16:9", "4:3", "1:1", "3:4", "9:16", "2:3", "3:2", "21:9")
_STYLES: Final = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
_THINKING_TYPES: Final = ("enabled", "disabled", "auto")
_PROMPT: Final = _Param("string", required=True, non_empty=True)
_IMAGE_URL: Final = _Param("string", required=True, http_url=True)
_V6_DURATION: Final = _Param("integer", minimum=1, maximum=15)

_TEXT_TO_VIDEO_V6_C1: Final[Mapping[str, _Param]] = {
    "prompt": _PROMPT,
    "negative_prompt": _Param("string"),
    "aspect_ratio": _Param("string", choices=_V6_ASPECT_RATIOS),
    "resolution": _Param("string", choices=("360p", "540p", "720p", "1080p")),
    "duration": _V6_DURATION,
    "style": _Param("string", choices=_STYLES),
    "seed": _Param("integer"),
    "generate_audio_switch": _Param("boolean"),
    "generate_multi_clip_switch": _Param("boolean"),
    "thinking_type": _Param("string", choices=_THINKING_TYPES),
}

MODEL_PARAMETERS: Final[Mapping[str, Mapping[str, _Param]]] = {
    "pixverse-v6-text-to-video": _TEXT_TO_VIDEO_V6_C1,
    "pixverse-v6-image-to-video": {
        "prompt": _PROMPT,
        # The parameter table lists 480p, the pricing table 540p: both are accepted on purpose.
        "resolution": _Param("string", choices=("360p", "480p", "540p", "720p", "1080p")),
        "duration": _V6_DURATION,
        "negative_prompt": _Param("string"),
        "image_url": _IMAGE_URL,
        "style": _Param("string", choices=_STYLES),
        "seed": _Param("integer"),
        "generate_audio_switch": _Param("boolean"),
        "generate_multi_clip_switch": _Param("boolean"),
        "thinking_type": _Param("string", choices=_THINKING_TYPES),
    },
    "pixverse-c1-text-to-video": _TEXT_TO_VIDEO_V6_C1,
    "pixverse-c1-image-to-video": {
        "prompt": _PROMPT,
        "image_url": _IMAGE_URL,
        "resolution": _Param("string", choices=("360p", "540p", "720p", "1080p")),
        "duration": _V6_DURATION,
        "seed": _Param("integer"),
        "generate_audio_switch": _Param("boolean"),
    },
    # V5.6 text to video: aspect_ratio, resolution and duration are required, duration from a set.
    "pixverse": {
        "prompt": _PROMPT,
        "aspect_ratio": _Param("string", required=True, choices=("16:9", "9:16", "1:1", "4:3", "3:4")),
        "resolution": _Param("string", required=True, choices=("720p", "1080p", "2160p")),
        "duration": _Param("integer", required=True, choices=(3, 5, 7, 10)),
        "negative_prompt": _Param("string"),
    },
    # V5.6 image to video: duration is a *string*.
    "pixverse-i2v": {
        "prompt": _PROMPT,
        "resolution": _Param("string", required=True, choices=("720p", "1080p")),
        "duration": _Param("string", required=True, choices=("5", "10")),
        "negative_prompt": _Param("string"),
        "image_url": _IMAGE_URL,
    },
}
MODEL_IDS: Final[tuple[str, ...]] = tuple(MODEL_PARAMETERS)

_KIND_NAMES: Final[Mapping[ParamKind, str]] = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean",
}


def _has_kind(value: object, kind: ParamKind) -> bool:
    # bool is a subclass of int in Python, but true/false is not a JSON integer.
    if kind == "integer":
        return type(value) is int
    if kind == "boolean":
        return type(value) is bool
    return type(value) is str


def validate_parameters(model: str, body: Mapping[str, Any]) -> list[str]:
    """Check ``body`` against ``model``'s parameter table; return ``"<field>: <why>"`` problems, in order."""
    table = MODEL_PARAMETERS[model]
    problems = [f"{name}: unknown parameter" for name in body if name not in table]
    for name, param in table.items():
        if name not in body:
            if param.required:
                problems.append(f"{name}: is required")
            continue
        value = body[name]
        if not _has_kind(value, param.kind):
            problems.append(f"{name}: must be {_KIND_NAMES[param.kind]}")
            continue
        if param.choices is not None and value not in param.choices:
            allowed = ", ".join(json.dumps(choice) for choice in param.choices)
            problems.append(f"{name}: must be one of {allowed}")
        if param.minimum is not None and param.maximum is not None and not (param.minimum <= value <= param.maximum):
            problems.append(f"{name}: must be between {param.minimum} and {param.maximum}")
        if param.non_empty and not value.strip():
            problems.append(f"{name}: must not be empty")
        if param.http_url and not _is_http_url(value):
            problems.append(f"{name}: must be an http or https URL")
    return problems


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# --- prompt directives ----------------------------------------------------------------------------

_DIRECTIVE_RE: Final = re.compile(r"\[sim:([a-z-]+)(?:=([^\]]*))?\]")
_DIRECTIVE_LIMITS: Final[Mapping[str, tuple[int, int]]] = {
    "dup": (1, 50),
    "size": (0, 1 << 42),
    "media": (1, 32),
    "cut": (0, 1000),
    "hops": (0, 10),
    "media-status": (400, 599),
}
_URL_DIRECTIVES: Final = ("media-url", "redirect")
_CONTENT_TYPE_RE: Final = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")

Outcome = Literal["COMPLETED", "FAILED", "ERROR"]


@dataclass(frozen=True)
class Directives:
    """How a request should behave, parsed from ``[sim:...]`` markers in its prompt."""

    outcome: Outcome = "COMPLETED"
    duplicates: int = 1
    no_callback: bool = False
    media_size: int | None = None
    media_count: int = 1
    cut: int = 0
    media_url: str | None = None
    redirect: str | None = None
    hops: int = 0
    media_status: int | None = None
    content_type: str | None = None
    ranges: bool = True


def parse_directives(prompt: str) -> Directives:
    """Parse the ``[sim:...]`` directives of ``prompt``; raise ``ValueError`` naming a bad one."""
    outcome: Outcome = "COMPLETED"
    numbers: dict[str, int] = {}
    texts: dict[str, str] = {}
    no_callback = False
    ranges = True
    for match in _DIRECTIVE_RE.finditer(prompt):
        name, raw = match.group(1), match.group(2)
        if name in ("fail", "error", "no-callback", "no-ranges"):
            if raw is not None:
                raise ValueError(f"directive {match.group(0)} takes no value")
            if name == "no-callback":
                no_callback = True
            elif name == "no-ranges":
                ranges = False
            else:
                outcome = "FAILED" if name == "fail" else "ERROR"
        elif name in _URL_DIRECTIVES:
            if raw is None or not _is_http_url(raw):
                raise ValueError(f"directive {match.group(0)} needs an http(s) URL")
            texts[name] = raw
        elif name == "content-type":
            if raw is None or not _CONTENT_TYPE_RE.match(raw.lower()):
                raise ValueError(f"directive {match.group(0)} needs a media type such as text/html")
            texts[name] = raw.lower()
        elif name in _DIRECTIVE_LIMITS:
            low, high = _DIRECTIVE_LIMITS[name]
            if raw is None or not raw.isdigit() or not low <= int(raw) <= high:
                raise ValueError(f"directive {match.group(0)} needs an integer between {low} and {high}")
            numbers[name] = int(raw)
        else:
            raise ValueError(f"unknown directive {match.group(0)}")
    return Directives(
        outcome=outcome,
        duplicates=numbers.get("dup", 1),
        no_callback=no_callback,
        media_size=numbers.get("size"),
        media_count=numbers.get("media", 1),
        cut=numbers.get("cut", 0),
        media_url=texts.get("media-url"),
        redirect=texts.get("redirect"),
        hops=numbers.get("hops", 0),
        media_status=numbers.get("media-status"),
        content_type=texts.get("content-type"),
        ranges=ranges,
    )


# --- error bodies ---------------------------------------------------------------------------------

_FAULT_BODIES: Final[Mapping[int, Mapping[str, str]]] = {
    400: {"error": "Bad Request", "message": "The request could not be processed."},
    401: {
        "error": "Unauthorized",
        "message": "Access denied due to missing or invalid subscription key.",
    },
    # Exactly as the doc shows it.
    402: {"error": "Insufficient Balance", "message": "Your wallet does not have enough balance."},
    403: {"error": "Forbidden", "message": "This subscription is not allowed to use this model."},
    429: {"error": "Too Many Requests", "message": "Rate limit exceeded. Try again later."},
    500: {"error": "Internal Server Error", "message": "An unexpected error occurred."},
}
FAULT_STATUSES: Final = frozenset({202, *_FAULT_BODIES})
# Which requests a fault answers, by its key in POST /_sim/faults; the statuses each may take. A
# "success" status (202 submit, 200 poll) with a delay answers normally, only late.
FAULT_TARGETS: Final[Mapping[str, frozenset[int]]] = {
    "submit_status": FAULT_STATUSES,
    "poll_status": frozenset({200, 400, 401, 403, 429, 500, 502, 503, 504}),
    "media_get_status": frozenset({408, 429, 500, 502, 503, 504}),
}
_GATEWAY_ERROR_BODIES: Final[Mapping[int, Mapping[str, str]]] = {
    **_FAULT_BODIES,
    408: {"error": "Request Timeout", "message": "The server timed out waiting for the request."},
    502: {"error": "Bad Gateway", "message": "The upstream service answered badly."},
    503: {"error": "Service Unavailable", "message": "The service is temporarily unavailable."},
    504: {"error": "Gateway Timeout", "message": "The upstream service did not answer in time."},
}

_SUBMIT_PATH_RE: Final = re.compile(r"^/([^/]+)/v1/([^/]+)-request$")
_STATUS_PATH_RE: Final = re.compile(r"^/v2/requests/status/([^/]+)$")
_MEDIA_PATH_RE: Final = re.compile(r"^/media/([^/]+)/(\d+)\.mp4$")
_SIM_REQUEST_PATH_RE: Final = re.compile(r"^/_sim/requests/([^/]+)$")
_RANGE_RE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


def _utc_now() -> str:
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


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- state ----------------------------------------------------------------------------------------


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: int | None
    delay_seconds: float
    target: str = "submit_status"  # a key of FAULT_TARGETS: which requests it answers

    def describe(self) -> dict[str, Any]:
        return {
            self.target: self.status,
            "remaining": self.remaining,
            "retry_after": self.retry_after,
            "delay_seconds": self.delay_seconds,
        }

    @property
    def answers_normally(self) -> bool:
        """A delay-only fault: the request is served as usual, only late."""
        return self.status in (200, 202)


@dataclass
class _Request:
    request_id: str
    model: str
    body: dict[str, Any]
    webhook_url: str | None
    webhook_mode: str
    directives: Directives
    media_size: int
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


@dataclass(frozen=True)
class _MediaPlan:
    """The answer to one media request: a redirect, an error status, or (a range of) the bytes."""

    redirect: str | None = None
    status: int | None = None
    size: int = 0
    cut: bool = False
    content_type: str = MEDIA_TYPE
    ranges: bool = True
    fault: _Fault | None = None  # an injected media fault answers instead of the bytes


_STAT_NAMES: Final = (
    "submits_received",
    "submits_accepted",
    "status_polls",
    "media_gets",
    "callbacks_attempted",
    "submit_faults",
    "poll_faults",
    "media_faults",
)
_FAULT_STATS: Final[Mapping[str, str]] = {
    "submit_status": "submit_faults",
    "poll_status": "poll_faults",
    "media_get_status": "media_faults",
}


class _BadRequest(Exception):
    """A submit rejected with 400 and ``{"error": "Bad Request", "message": ...}``."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops bursts of connects, which then wait a 1 s SYN retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: GatewaySimulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open client connection, waking handler threads blocked on them."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


# --- the simulator --------------------------------------------------------------------------------


class GatewaySimulator:
    """An in-process HTTP server that behaves like the Pixazo gateway for the PixVerse models."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str,
        allow_http_webhooks_on_loopback: bool = False,
        queue_seconds: float = 0.2,
        processing_seconds: float = 0.6,
        poll_interval_seconds: float = 0.2,
        media_size: int = 1024 * 1024,
        callback_timeout_seconds: float = 5.0,
    ) -> None:
        """Configure the simulator; nothing listens until ``start()``."""
        if not api_key:
            raise ValueError("api_key must not be empty")
        if min(queue_seconds, processing_seconds) < 0 or poll_interval_seconds <= 0:
            raise ValueError("timings must be >= 0 and poll_interval_seconds > 0")
        if media_size < 0 or callback_timeout_seconds <= 0:
            raise ValueError("media_size must be >= 0 and callback_timeout_seconds > 0")
        self._bind_host = host
        self._port = port
        self._api_key = api_key.encode()
        self._allow_http_loopback = allow_http_webhooks_on_loopback
        self._queue_seconds = queue_seconds
        self._processing_seconds = processing_seconds
        self._poll_interval = poll_interval_seconds
        self._default_media_size = media_size
        self._callback_timeout = callback_timeout_seconds
        self._tick = max(0.005, min(0.02, poll_interval_seconds / 4))

        self._lock = threading.Lock()
        self._requests: dict[str, _Request] = {}
        self._active: dict[str, _Request] = {}
        self._faults: deque[_Fault] = deque()
        self._stats: dict[str, int] = dict.fromkeys(_STAT_NAMES, 0)

        self._stop_event = threading.Event()
        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._server: _Server | None = None
        self._client: httpx.Client | None = None
        self._threads: list[threading.Thread] = []
        self._delivery_queue: queue.Queue[_Request | None] = queue.Queue()
        self._url = ""
        self._media_host = ""

    # -- lifecycle --

    def start(self) -> str:
        """Start the HTTP server, the lifecycle worker and the callback senders; return the base URL."""
        with self._lifecycle_lock:
            if self._started:
                raise RuntimeError("GatewaySimulator can only be started once")
            self._started = True
        server_class = _Server6 if ":" in self._bind_host else _Server
        self._server = server_class((self._bind_host, self._port), self)
        port = int(self._server.server_address[1])
        connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._bind_host, self._bind_host)  # noqa: S104
        host_part = f"[{connect_host}]" if ":" in connect_host else connect_host
        self._media_host = f"{host_part}:{port}"
        self._url = f"http://{self._media_host}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(self._callback_timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            trust_env=False,
            headers={"User-Agent": "pixazo-gateway-simulator"},
        )
        server = self._server
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-http", daemon=True),
            threading.Thread(target=self._lifecycle_loop, name="sim-lifecycle", daemon=True),
        ]
        self._threads += [
            threading.Thread(target=self._delivery_loop, name=f"sim-callbacks-{index}", daemon=True)
            for index in range(_DELIVERY_WORKERS)
        ]
        for thread in self._threads:
            thread.start()
        logger.info("gateway simulator listening", extra={"url": self._url})
        return self._url

    def stop(self) -> None:
        """Stop serving, abandon pending callbacks and join the threads; returns within about a second.

        A callback already waiting on a slow receiver gets a short grace, then its (daemon) thread is left
        to end on its own: it makes no further attempt once the simulator is stopped.
        """
        with self._lifecycle_lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
        self._stop_event.set()
        deadline = time.monotonic() + _STOP_DEADLINE_SECONDS
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
        for _ in range(_DELIVERY_WORKERS):
            self._delivery_queue.put(None)
        service_threads, delivery_threads = self._threads[:2], self._threads[2:]
        for thread in service_threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        grace_deadline = min(deadline, time.monotonic() + _STOP_CALLBACK_GRACE_SECONDS)
        for thread in delivery_threads:
            thread.join(timeout=max(0.0, grace_deadline - time.monotonic()))
        lingering = [thread.name for thread in self._threads if thread.is_alive()]
        if lingering:
            # Only a callback blocked in a slow receiver can linger; it is a daemon and gives up alone.
            logger.debug("simulator threads still finishing", extra={"threads": lingering})
        if self._client is not None:
            self._client.close()
        logger.info("gateway simulator stopped")

    def __enter__(self) -> GatewaySimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the gateway, e.g. ``http://127.0.0.1:PORT`` (empty before ``start()``)."""
        return self._url

    @property
    def media_host(self) -> str:
        """``host:port`` that media URLs point at (for an allowed-media-hosts setting)."""
        return self._media_host

    # -- submit --

    def _take_fault(self, target: str = "submit_status") -> _Fault | None:
        """The next injected fault for ``target`` requests (a key of FAULT_TARGETS), counted, or None."""
        with self._lock:
            return self._take_fault_locked(target)

    def _take_fault_locked(self, target: str) -> _Fault | None:
        fault = next((queued for queued in self._faults if queued.target == target), None)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.remove(fault)
        self._stats[_FAULT_STATS[target]] += 1
        return _Fault(fault.status, 1, fault.retry_after, fault.delay_seconds, target)

    def _check_key(self, supplied: str | None) -> bool:
        return supplied is not None and hmac.compare_digest(supplied.encode(), self._api_key)

    def _webhook_settings(self, url: str | None, mode: str | None) -> tuple[str | None, str]:
        webhook_mode = (mode or "terminal").strip().lower()
        if webhook_mode not in ("terminal", "sync"):
            raise _BadRequest(f"{WEBHOOK_MODE_HEADER}: must be 'terminal' or 'sync'")
        if url is None:
            return None, webhook_mode
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme == "http":
            if not (self._allow_http_loopback and parts.hostname and _is_loopback_host(parts.hostname)):
                raise _BadRequest(f"{WEBHOOK_URL_HEADER}: plain http:// URLs are rejected; use https://")
        elif parts.scheme != "https" or not parts.hostname:
            raise _BadRequest(f"{WEBHOOK_URL_HEADER}: must be an absolute https:// URL")
        return url, webhook_mode

    def _accept(self, model: str, body: dict[str, Any], webhook_url: str | None, webhook_mode: str) -> _Request:
        problems = validate_parameters(model, body)
        if problems:
            raise _BadRequest("; ".join(problems))
        try:
            directives = parse_directives(body["prompt"])
        except ValueError as exc:
            raise _BadRequest(f"prompt: {exc}") from exc
        now_iso = _utc_now()
        now = time.monotonic()
        record = _Request(
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
        )
        with self._lock:
            self._requests[record.request_id] = record
            self._active[record.request_id] = record
            self._stats["submits_accepted"] += 1
        logger.info(
            "request accepted",
            extra={
                "request_id": record.request_id,
                "webhook_mode": webhook_mode,
                "webhook": bool(webhook_url),
            },
        )
        return record

    # -- lifecycle worker --

    def _lifecycle_loop(self) -> None:
        while not self._stop_event.wait(self._tick):
            try:
                self._advance(time.monotonic())
            except Exception:
                logger.exception("lifecycle tick failed")

    def _advance(self, now: float) -> None:
        due: list[tuple[_Request, dict[str, Any], int]] = []
        with self._lock:
            for record in list(self._active.values()):
                elapsed = now - record.submitted_mono
                sends = record.webhook_url is not None and not record.directives.no_callback
                if elapsed >= self._queue_seconds + self._processing_seconds:
                    self._finish(record)
                    del self._active[record.request_id]
                    if sends:
                        due.append((record, self._payload(record), record.directives.duplicates))
                    continue
                status = "PROCESSING" if elapsed >= self._queue_seconds else "QUEUED"
                if status != record.status:
                    record.status = status
                    record.updated_at = _utc_now()
                if sends and record.webhook_mode == "sync" and now >= record.next_sync_mono:
                    due.append((record, self._payload(record), 1))
                    while record.next_sync_mono <= now:
                        record.next_sync_mono += self._poll_interval
        for record, payload, copies in due:
            self._enqueue_callback(record, payload, copies)

    def _finish(self, record: _Request) -> None:
        outcome = record.directives.outcome
        record.status = outcome
        record.error = {"COMPLETED": None, "FAILED": FAILED_MESSAGE, "ERROR": ERROR_MESSAGE}[outcome]
        record.updated_at = record.completed_at = _utc_now()
        logger.info("request finished", extra={"request_id": record.request_id, "status": outcome})

    def _media_urls(self, record: _Request) -> list[str]:
        if record.directives.media_url is not None:
            return [record.directives.media_url]
        return [
            f"http://{self._media_host}/media/{record.request_id}/{n}.mp4" for n in range(record.directives.media_count)
        ]

    def _payload(self, record: _Request) -> dict[str, Any]:
        """The status response / callback body, shaped as the doc shows it."""
        output = None
        if record.status == "COMPLETED":
            output = {"media_url": self._media_urls(record), "media_type": MEDIA_TYPE}
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

    # -- callbacks --

    def _enqueue_callback(self, record: _Request, payload: dict[str, Any], copies: int) -> None:
        # One sender at a time per request keeps sync updates in order; the pool bounds the threads.
        with self._lock:
            record.outbox.append((payload, copies))
            if record.delivering:
                return
            record.delivering = True
        self._delivery_queue.put(record)

    def _delivery_loop(self) -> None:
        while True:
            record = self._delivery_queue.get()
            if record is None:
                return
            while True:
                with self._lock:
                    if record.cancelled or self._stop_event.is_set() or not record.outbox:
                        record.outbox.clear()
                        record.delivering = False
                        break
                    payload, copies = record.outbox.popleft()
                try:
                    self._deliver(record, payload, copies)
                except Exception:
                    logger.exception("callback delivery failed", extra={"request_id": record.request_id})

    def _deliver(self, record: _Request, payload: dict[str, Any], copies: int) -> None:
        body = json.dumps(payload).encode()
        if copies == 1:
            self._deliver_copy(record, body, payload["status"], 0, None)
            return
        # Duplicates arrive together, as network retries at the gateway would make them.
        barrier = threading.Barrier(copies)
        threads = [
            threading.Thread(
                target=self._deliver_copy,
                args=(record, body, payload["status"], index, barrier),
                name=f"sim-callback-dup-{index}",
                daemon=True,
            )
            for index in range(copies)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive() and not self._stop_event.is_set():
                thread.join(timeout=0.1)

    def _deliver_copy(
        self,
        record: _Request,
        body: bytes,
        status: str,
        copy: int,
        barrier: threading.Barrier | None,
    ) -> None:
        if barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=2.0)
        url = cast(str, record.webhook_url)
        for attempt, pause in enumerate((0.0, *CALLBACK_RETRY_DELAYS), start=1):
            if (pause and self._stop_event.wait(pause)) or self._stop_event.is_set() or record.cancelled:
                return
            code: int | None = None
            error: str | None = None
            try:
                response = cast(httpx.Client, self._client).post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
                code = response.status_code
            except Exception as exc:  # network errors, and whatever a client closed by stop() raises
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._stats["callbacks_attempted"] += 1
                record.callbacks.append(
                    {
                        "at": _utc_now(),
                        "status": status,
                        "copy": copy,
                        "attempt": attempt,
                        "status_code": code,
                        "error": error,
                    }
                )
            if code is not None and 200 <= code < 300:
                return
            logger.info(
                "callback attempt failed",
                extra={"request_id": record.request_id, "attempt": attempt, "code": code, "error": error},
            )
        logger.warning("callback given up", extra={"request_id": record.request_id, "status": status})

    # -- views for the handler --

    def _bump(self, stat: str) -> None:
        with self._lock:
            self._stats[stat] += 1

    def _status_payload(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._requests.get(request_id)
            return None if record is None else self._payload(record)

    def _record_view(self, record: _Request) -> dict[str, Any]:
        """A JSON-ready copy of ``record``; call with the lock held. Media hashes are filled in later."""
        media: list[dict[str, Any]] = []
        if record.status == "COMPLETED":
            media = [{"url": url, "size": record.media_size, "sha256": None} for url in self._media_urls(record)]
        directives = record.directives
        return {
            "request_id": record.request_id,
            "model": record.model,
            "body": record.body,
            "webhook_url": record.webhook_url,
            "webhook_mode": record.webhook_mode,
            "status": record.status,
            "error": record.error,
            "directives": {
                "outcome": directives.outcome,
                "dup": directives.duplicates,
                "no_callback": directives.no_callback,
                "size": record.media_size,
                "media": directives.media_count,
                "cut": directives.cut,
                "media_url": directives.media_url,
                "redirect": directives.redirect,
                "hops": directives.hops,
                "media_status": directives.media_status,
                "content_type": directives.content_type,
                "ranges": directives.ranges,
            },
            "callbacks": [dict(attempt) for attempt in record.callbacks],
            "media": media,
            "media_gets": record.media_gets,
            "media_requests": [dict(item) for item in record.media_requests],
            "submitted_at": record.submitted_at,
            "updated_at": record.updated_at,
            "completed_at": record.completed_at,
        }

    def _records(self, request_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if request_id is None:
                views = [self._record_view(record) for record in self._requests.values()]
            else:
                record = self._requests.get(request_id)
                views = [] if record is None else [self._record_view(record)]
        # Hashing happens outside the lock: a multi-GiB item takes a moment (the result is cached).
        for view in views:
            for n, item in enumerate(view["media"]):
                item["sha256"] = media_sha256(view["request_id"], n, item["size"])
        return views

    def _media_plan(
        self, request_id: str, n: int, *, hop: int, byte_range: str | None, head: bool
    ) -> _MediaPlan | None:
        """How to answer a media GET (or HEAD), or None when the item does not exist (yet). A GET
        is recorded; one that serves bytes counts in ``media_gets`` and may be cut."""
        with self._lock:
            record = self._requests.get(request_id)
            if record is None or record.status != "COMPLETED" or n >= record.directives.media_count:
                return None
            directives = record.directives
            fault = None if head else self._take_fault_locked("media_get_status")
            if not head:
                entry: dict[str, Any] = {"n": n, "hop": hop, "range": byte_range, "at": _utc_now()}
                if fault is not None:
                    entry["fault"] = fault.status
                record.media_requests.append(entry)
            if fault is not None:
                return _MediaPlan(fault=fault)
            if directives.redirect is not None:
                return _MediaPlan(redirect=directives.redirect)
            if hop < directives.hops:
                return _MediaPlan(redirect=f"/media/{request_id}/{n}.mp4?hop={hop + 1}")
            if directives.media_status is not None:
                return _MediaPlan(status=directives.media_status)
            cut = False
            if not head:
                record.media_gets += 1
                cut = record.cuts_remaining > 0
                if cut:
                    record.cuts_remaining -= 1
            return _MediaPlan(
                size=record.media_size,
                cut=cut,
                content_type=directives.content_type or MEDIA_TYPE,
                ranges=directives.ranges,
            )

    def _add_fault(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        targets = [name for name in FAULT_TARGETS if name in spec]
        if len(targets) > 1:
            raise _BadRequest(f"faults: give one of {', '.join(FAULT_TARGETS)}, not several")
        target = targets[0] if targets else "submit_status"
        allowed = FAULT_TARGETS[target]
        status = spec.get(target)
        count = spec.get("count", 1)
        retry_after = spec.get("retry_after")
        delay = spec.get("delay_seconds", 0)
        if type(status) is not int or status not in allowed:
            raise _BadRequest(f"{target}: must be one of {sorted(allowed)}")
        if type(count) is not int or count < 1:
            raise _BadRequest("count: must be an integer >= 1")
        if retry_after is not None and (type(retry_after) is not int or retry_after < 0):
            raise _BadRequest("retry_after: must be an integer >= 0")
        if type(delay) not in (int, float) or not 0 <= delay <= 300:
            raise _BadRequest("delay_seconds: must be a number between 0 and 300")
        fault = _Fault(status, count, retry_after, float(delay), target)
        with self._lock:
            self._faults.append(fault)
            return {"faults": [queued.describe() for queued in self._faults]}

    def _clear_faults(self) -> dict[str, Any]:
        with self._lock:
            self._faults.clear()
        return {"faults": []}

    def _fault_list(self) -> dict[str, Any]:
        with self._lock:
            return {"faults": [fault.describe() for fault in self._faults]}

    def _stats_view(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def _reset(self) -> None:
        with self._lock:
            for record in self._requests.values():
                record.cancelled = True
            self._requests.clear()
            self._active.clear()
            self._faults.clear()
            self._stats = dict.fromkeys(_STAT_NAMES, 0)
        logger.info("simulator reset")


# --- HTTP handler ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PixazoGatewaySimulator/1.0"
    timeout = _HANDLER_IDLE_TIMEOUT_SECONDS
    # Headers and body go out in separate writes; Nagle + delayed ACK would stall each answer ~40 ms.
    disable_nagle_algorithm = True

    @property
    def _sim(self) -> GatewaySimulator:
        return cast(_Server, self.server).simulator

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).track(self.connection, open_=True)

    def finish(self) -> None:
        cast(_Server, self.server).track(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s", format % args)

    # -- plumbing --

    def _path(self) -> str:
        return unquote(urlsplit(self.path).path)

    def _send_json(self, status: int, payload: object, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error_body(self, status: int, error: str, message: str) -> None:
        self._send_json(status, {"error": error, "message": message})

    def _not_found(self, message: str = "Resource not found") -> None:
        self._send_error_body(404, "Not Found", message)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 400 when it cannot be read."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send_error_body(400, "Bad Request", "body: chunked transfer encoding is not supported")
            return None
        raw_length = self.headers.get("Content-Length", "0")
        if not raw_length.isdigit():
            self.close_connection = True
            self._send_error_body(400, "Bad Request", "body: invalid Content-Length")
            return None
        length = int(raw_length)
        if length > _MAX_BODY_BYTES:
            self.close_connection = True
            self._send_error_body(400, "Bad Request", f"body: larger than {_MAX_BODY_BYTES} bytes")
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self, route: Callable[[], None]) -> None:
        try:
            route()
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            self.close_connection = True
            logger.debug("client went away", extra={"error": repr(exc)})
        except Exception:
            logger.exception("simulator handler failed", extra={"path": self.path})
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_error_body(500, "Internal Server Error", "simulator failure")

    def do_GET(self) -> None:
        """Status, media and control reads."""
        self._dispatch(self._route_get)

    def do_HEAD(self) -> None:
        """Media metadata without the body."""
        self._dispatch(self._route_get)

    def do_POST(self) -> None:
        """Submits and control writes."""
        self._dispatch(self._route_post)

    def do_DELETE(self) -> None:
        """Control: clear faults."""
        self._dispatch(self._route_delete)

    # -- routes --

    def _route_get(self) -> None:
        path = self._path()
        if match := _STATUS_PATH_RE.match(path):
            self._get_status(match.group(1))
        elif match := _MEDIA_PATH_RE.match(path):
            self._get_media(match.group(1), int(match.group(2)))
        elif path.startswith("/_sim/"):
            self._control_get(path)
        else:
            self._not_found()

    def _route_post(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = self._path()
        if match := _SUBMIT_PATH_RE.match(path):
            self._submit(match.group(1), match.group(2), body)
        elif path.startswith("/_sim/"):
            self._control_post(path, body)
        else:
            self._not_found()

    def _route_delete(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = self._path()
        if path == "/_sim/faults" and self._loopback_client():
            self._send_json(200, self._sim._clear_faults())
        elif path.startswith("/_sim/"):
            self._control_denied_or_missing()
        else:
            self._not_found()

    def _submit(self, model: str, operation: str, raw_body: bytes) -> None:
        sim = self._sim
        if model != operation:
            self._not_found()
            return
        sim._bump("submits_received")
        fault = sim._take_fault()
        if fault is not None and fault.status != 202:
            self._answer_fault(fault)
            return
        if not sim._check_key(self.headers.get(API_KEY_HEADER)):
            self._send_json(401, _FAULT_BODIES[401])
            return
        if model not in MODEL_PARAMETERS:
            self._send_error_body(400, "Model not found", f"Model '{model}' not found or is disabled")
            return
        try:
            webhook_url, webhook_mode = sim._webhook_settings(
                self.headers.get(WEBHOOK_URL_HEADER), self.headers.get(WEBHOOK_MODE_HEADER)
            )
            body = _parse_json_object(raw_body)
            record = sim._accept(model, body, webhook_url, webhook_mode)
        except _BadRequest as exc:
            self._send_error_body(400, "Bad Request", str(exc))
            return
        if fault is not None and fault.delay_seconds:
            # Accepted and recorded, but the answer comes late: the caller's timeout fires first.
            sim._stop_event.wait(fault.delay_seconds)
        self._send_json(
            202,
            {
                "request_id": record.request_id,
                "status": "QUEUED",
                "polling_url": f"{sim.url}/v2/requests/status/{record.request_id}",
            },
        )

    def _answer_fault(self, fault: _Fault) -> None:
        if fault.delay_seconds:
            self._sim._stop_event.wait(fault.delay_seconds)
        headers = {}
        if fault.status in (429, 503) and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        self._send_json(fault.status, _GATEWAY_ERROR_BODIES[fault.status], headers)

    def _get_status(self, request_id: str) -> None:
        sim = self._sim
        sim._bump("status_polls")
        fault = sim._take_fault("poll_status")
        if fault is not None:
            if not fault.answers_normally:
                self._answer_fault(fault)
                return
            sim._stop_event.wait(fault.delay_seconds)
        if not sim._check_key(self.headers.get(API_KEY_HEADER)):
            self._send_json(401, _FAULT_BODIES[401])
            return
        payload = sim._status_payload(request_id)
        if payload is None:
            self._not_found(f"Request '{request_id}' not found")
            return
        self._send_json(200, payload)

    def _get_media(self, request_id: str, n: int) -> None:
        sim = self._sim
        head = self.command == "HEAD"
        if not head:
            sim._bump("media_gets")
        hop_text = dict(parse_qsl(urlsplit(self.path).query)).get("hop", "0")
        plan = sim._media_plan(
            request_id,
            n,
            hop=int(hop_text) if hop_text.isdigit() else 0,
            byte_range=self.headers.get("Range"),
            head=head,
        )
        if plan is None:
            self._not_found("Media not found")
            return
        if plan.redirect is not None:
            self.send_response(302)
            self.send_header("Location", plan.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if plan.fault is not None:
            self._answer_fault(plan.fault)
            return
        if plan.status is not None:
            self._send_error_body(plan.status, "Media Error", f"media answered {plan.status} on request")
            return
        size, cut = plan.size, plan.cut
        byte_range = self._byte_range(size) if plan.ranges else (0, size, False)
        if byte_range is None:
            return
        start, end, partial = byte_range
        length = end - start
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", plan.content_type)
        self.send_header("Content-Length", str(length))
        if plan.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        stop_at = start + length // 2 if cut else end
        for chunk in iter_media_chunks(request_id, n, size, start, stop_at):
            self.wfile.write(chunk)
        if cut:
            # Content-Length promised the whole body: closing now is a connection cut half-way.
            self.close_connection = True
            logger.info("media connection cut", extra={"request_id": request_id, "n": n})

    def _byte_range(self, size: int) -> tuple[int, int, bool] | None:
        """``(start, end, partial)`` for the Range header; None after answering 416."""
        header = self.headers.get("Range")
        if not header:
            return 0, size, False
        match = _RANGE_RE.match(header.strip())
        if match is None or (not match.group(1) and not match.group(2)):
            return 0, size, False  # unsupported forms (several ranges) get the whole item
        first, last = match.group(1), match.group(2)
        if first:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
        else:
            start, end = max(0, size - int(last)), size
        if start >= size or start >= end:
            self._send_json(
                416,
                {"error": "Range Not Satisfiable", "message": "range"},
                {"Content-Range": f"bytes */{size}"},
            )
            return None
        return start, end, True

    # -- control API --

    def _loopback_client(self) -> bool:
        return _is_loopback_host(str(self.client_address[0]))

    def _control_denied_or_missing(self) -> None:
        if not self._loopback_client():
            self._send_error_body(403, "Forbidden", "the control API answers loopback clients only")
        else:
            self._not_found()

    def _control_get(self, path: str) -> None:
        sim = self._sim
        if not self._loopback_client():
            self._control_denied_or_missing()
        elif path == "/_sim/requests":
            self._send_json(200, sim._records())
        elif match := _SIM_REQUEST_PATH_RE.match(path):
            records = sim._records(match.group(1))
            if records:
                self._send_json(200, records[0])
            else:
                self._not_found(f"Request '{match.group(1)}' not found")
        elif path == "/_sim/stats":
            self._send_json(200, sim._stats_view())
        elif path == "/_sim/faults":
            self._send_json(200, sim._fault_list())
        else:
            self._not_found()

    def _control_post(self, path: str, raw_body: bytes) -> None:
        sim = self._sim
        if not self._loopback_client():
            self._control_denied_or_missing()
        elif path == "/_sim/faults":
            try:
                self._send_json(200, sim._add_fault(_parse_json_object(raw_body)))
            except _BadRequest as exc:
                self._send_error_body(400, "Bad Request", str(exc))
        elif path == "/_sim/reset":
            sim._reset()
            self._send_json(200, {"reset": True})
        else:
            self._not_found()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest("body: must be valid JSON") from exc
    if not isinstance(value, dict):
        raise _BadRequest("body: must be a JSON object")
    return cast(dict[str, Any], value)


# --- standalone -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM; print ``simulator: <url>`` once it listens."""
    parser = argparse.ArgumentParser(prog="python -m pixverse_local.gateway_sim", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"the key callers must send (default ${API_KEY_ENV})",
    )
    parser.add_argument("--allow-http-webhooks-on-loopback", action="store_true")
    parser.add_argument("--queue-seconds", type=float, default=0.2)
    parser.add_argument("--processing-seconds", type=float, default=0.6)
    parser.add_argument("--poll-interval-seconds", type=float, default=0.2)
    parser.add_argument("--media-size", type=int, default=1024 * 1024)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error(f"--api-key (or ${API_KEY_ENV}) is required")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    simulator = GatewaySimulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        allow_http_webhooks_on_loopback=args.allow_http_webhooks_on_loopback,
        queue_seconds=args.queue_seconds,
        processing_seconds=args.processing_seconds,
        poll_interval_seconds=args.poll_interval_seconds,
        media_size=args.media_size,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    url = simulator.start()
    print(f"simulator: {url}", flush=True)  # the one line a parent process waits for
    try:
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

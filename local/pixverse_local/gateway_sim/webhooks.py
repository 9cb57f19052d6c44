"""Callbacks, as the doc's "Webhook Headers", "Callback Payload" and "Delivery semantics" describe them.

``X-Webhook-URL`` names the receiver (https only; http on loopback when the simulator allows it) and
``X-Webhook-Mode`` picks ``terminal`` (one POST at the final status) or ``sync`` (one POST per poll
cycle plus the final one). A failed attempt is retried after 0.2, 0.5 and 1 s. ``[sim:dup=N]`` sends the
final callback N times at once; ``[sim:no-callback]`` sends none. Every attempt is recorded on the
request (``GET /_sim/requests/{id}``: ``callbacks``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from typing import Any, Final, cast
from urllib.parse import urlsplit

import httpx

from pixverse_local.gateway_sim.httpio import BadRequest, is_loopback_host
from pixverse_local.gateway_sim.lifecycle import GatewayState, Request, utc_now

__all__ = [
    "CALLBACK_RETRY_DELAYS",
    "WEBHOOK_MODE_HEADER",
    "WEBHOOK_URL_HEADER",
    "CallbackSender",
    "webhook_settings",
]

logger = logging.getLogger(__name__)

WEBHOOK_URL_HEADER: Final = "X-Webhook-URL"
WEBHOOK_MODE_HEADER: Final = "X-Webhook-Mode"

# Callback retry schedule: the first attempt, then three more after these pauses.
CALLBACK_RETRY_DELAYS: Final[tuple[float, ...]] = (0.2, 0.5, 1.0)

DELIVERY_WORKERS: Final = 8


def webhook_settings(url: str | None, mode: str | None, *, allow_http_loopback: bool) -> tuple[str | None, str]:
    """The callback URL (or None) and mode a submit's headers ask for; ``BadRequest`` naming the header."""
    webhook_mode = (mode or "terminal").strip().lower()
    if webhook_mode not in ("terminal", "sync"):
        raise BadRequest(f"{WEBHOOK_MODE_HEADER}: must be 'terminal' or 'sync'")
    if url is None:
        return None, webhook_mode
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme == "http":
        if not (allow_http_loopback and parts.hostname and is_loopback_host(parts.hostname)):
            raise BadRequest(f"{WEBHOOK_URL_HEADER}: plain http:// URLs are rejected; use https://")
    elif parts.scheme != "https" or not parts.hostname:
        raise BadRequest(f"{WEBHOOK_URL_HEADER}: must be an absolute https:// URL")
    return url, webhook_mode


class CallbackSender:
    """Posts callbacks from a pool of worker threads, one sender at a time per request, with retries."""

    def __init__(self, state: GatewayState, *, timeout_seconds: float) -> None:
        """Nothing is sent until ``open()``."""
        self._state = state
        self._timeout = timeout_seconds
        self._client: httpx.Client | None = None
        self._queue: queue.Queue[Request | None] = queue.Queue()

    def open(self) -> list[threading.Thread]:
        """Create the HTTP client; return the worker threads, for the caller to start."""
        self._client = httpx.Client(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            trust_env=False,
            headers={"User-Agent": "pixazo-gateway-simulator"},
        )
        return [
            threading.Thread(target=self._delivery_loop, name=f"sim-callbacks-{index}", daemon=True)
            for index in range(DELIVERY_WORKERS)
        ]

    def release_workers(self) -> None:
        """Tell every worker to end once it is free."""
        for _ in range(DELIVERY_WORKERS):
            self._queue.put(None)

    def close(self) -> None:
        """Close the HTTP client (a callback still on the wire then fails and is not retried)."""
        if self._client is not None:
            self._client.close()

    def enqueue(self, record: Request, payload: dict[str, Any], copies: int) -> None:
        """Send ``payload`` to ``record``'s webhook ``copies`` times, after its earlier callbacks."""
        # One sender at a time per request keeps sync updates in order; the pool bounds the threads.
        with self._state.lock:
            record.outbox.append((payload, copies))
            if record.delivering:
                return
            record.delivering = True
        self._queue.put(record)

    def _delivery_loop(self) -> None:
        state = self._state
        while True:
            record = self._queue.get()
            if record is None:
                return
            while True:
                with state.lock:
                    if record.cancelled or state.stop.is_set() or not record.outbox:
                        record.outbox.clear()
                        record.delivering = False
                        break
                    payload, copies = record.outbox.popleft()
                try:
                    self._deliver(record, payload, copies)
                except Exception:
                    logger.exception("callback delivery failed", extra={"request_id": record.request_id})

    def _deliver(self, record: Request, payload: dict[str, Any], copies: int) -> None:
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
            while thread.is_alive() and not self._state.stop.is_set():
                thread.join(timeout=0.1)

    def _deliver_copy(
        self,
        record: Request,
        body: bytes,
        status: str,
        copy: int,
        barrier: threading.Barrier | None,
    ) -> None:
        if barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=2.0)
        state = self._state
        url = cast(str, record.webhook_url)
        for attempt, pause in enumerate((0.0, *CALLBACK_RETRY_DELAYS), start=1):
            if (pause and state.stop.wait(pause)) or state.stop.is_set() or record.cancelled:
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
            with state.lock:
                state.stats["callbacks_attempted"] += 1
                record.callbacks.append(
                    {
                        "at": utc_now(),
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

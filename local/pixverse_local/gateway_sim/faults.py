"""Injected faults (``POST /_sim/faults``) and the gateway's error answers ("Error Responses" in the doc).

A fault answers the next ``count`` requests of one kind with an error status, optionally after
``delay_seconds``: ``{"submit_status": CODE}`` for model submits, ``{"poll_status": CODE}`` for
``GET /v2/requests/status/{id}`` and ``{"media_get_status": CODE}`` for media GETs (any request's).
Status 202 (submit) or 200 (poll, media) with ``delay_seconds`` answers normally but late, which is a timeout
for a caller that does not wait that long. A delayed 202 accepts the job at once (recorded, its lifecycle
and callbacks start): only the HTTP answer waits, so the callbacks can arrive before it.
``retry_after`` adds ``Retry-After`` to a 429 or 503.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pixverse_local.gateway_sim.httpio import BadRequest, JsonHandler

__all__ = ["FAULT_BODIES", "FAULT_STATS", "FAULT_STATUSES", "FAULT_TARGETS", "Fault", "FaultBook", "answer_fault"]

FAULT_BODIES: Final[Mapping[int, Mapping[str, str]]] = {
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
FAULT_STATUSES: Final = frozenset({202, *FAULT_BODIES})
# Which requests a fault answers, by its key in POST /_sim/faults; the statuses each may take. A
# "success" status (202 submit, 200 poll) with a delay answers normally, only late.
FAULT_TARGETS: Final[Mapping[str, frozenset[int]]] = {
    "submit_status": FAULT_STATUSES,
    "poll_status": frozenset({200, 400, 401, 403, 429, 500, 502, 503, 504}),
    "media_get_status": frozenset({200, 408, 429, 500, 502, 503, 504}),
}
# The counter in /_sim/stats that each kind of fault bumps when it answers.
FAULT_STATS: Final[Mapping[str, str]] = {
    "submit_status": "submit_faults",
    "poll_status": "poll_faults",
    "media_get_status": "media_faults",
}
_GATEWAY_ERROR_BODIES: Final[Mapping[int, Mapping[str, str]]] = {
    **FAULT_BODIES,
    408: {"error": "Request Timeout", "message": "The server timed out waiting for the request."},
    502: {"error": "Bad Gateway", "message": "The upstream service answered badly."},
    503: {"error": "Service Unavailable", "message": "The service is temporarily unavailable."},
    504: {"error": "Gateway Timeout", "message": "The upstream service did not answer in time."},
}


@dataclass
class Fault:
    """One injected fault: the status it answers with, for how many more requests, how late."""

    status: int
    remaining: int
    retry_after: int | None
    delay_seconds: float
    target: str = "submit_status"  # a key of FAULT_TARGETS: which requests it answers

    def describe(self) -> dict[str, Any]:
        """The fault as ``GET /_sim/faults`` lists it."""
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


def parse_fault(spec: Mapping[str, Any]) -> Fault:
    """The fault a ``POST /_sim/faults`` body describes; ``BadRequest`` naming the bad field."""
    targets = [name for name in FAULT_TARGETS if name in spec]
    if len(targets) > 1:
        raise BadRequest(f"faults: give one of {', '.join(FAULT_TARGETS)}, not several")
    target = targets[0] if targets else "submit_status"
    allowed = FAULT_TARGETS[target]
    status = spec.get(target)
    count = spec.get("count", 1)
    retry_after = spec.get("retry_after")
    delay = spec.get("delay_seconds", 0)
    if type(status) is not int or status not in allowed:
        raise BadRequest(f"{target}: must be one of {sorted(allowed)}")
    if type(count) is not int or count < 1:
        raise BadRequest("count: must be an integer >= 1")
    if retry_after is not None and (type(retry_after) is not int or retry_after < 0):
        raise BadRequest("retry_after: must be an integer >= 0")
    if type(delay) not in (int, float) or not 0 <= delay <= 300:
        raise BadRequest("delay_seconds: must be a number between 0 and 300")
    return Fault(status, count, retry_after, float(delay), target)


class FaultBook:
    """The injected faults, in the order they were given. Not locked itself: callers hold the
    simulator's lock (``GatewayState.lock``)."""

    def __init__(self) -> None:
        """Start with no faults."""
        self._faults: deque[Fault] = deque()

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` after the others."""
        self._faults.append(fault)

    def take(self, target: str) -> Fault | None:
        """Use up one request of the first fault for ``target`` requests; a single-use copy, or None."""
        fault = next((queued for queued in self._faults if queued.target == target), None)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.remove(fault)
        return Fault(fault.status, 1, fault.retry_after, fault.delay_seconds, target)

    def clear(self) -> None:
        """Drop every fault."""
        self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        """The faults as ``GET /_sim/faults`` lists them."""
        return [fault.describe() for fault in self._faults]


def answer_fault(handler: JsonHandler, fault: Fault, stop: threading.Event) -> None:
    """Answer with the fault's error status and the gateway's body for it, after its delay."""
    if fault.delay_seconds:
        stop.wait(fault.delay_seconds)
    headers = {}
    if fault.status in (429, 503) and fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    handler.send_json(fault.status, _GATEWAY_ERROR_BODIES[fault.status], headers)

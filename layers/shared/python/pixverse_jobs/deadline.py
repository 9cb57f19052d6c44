"""The time an invocation has left, as one deadline that every slow call on the path obeys.

Lambda stops an invocation at the function's Timeout without running any more of our code
(``context.get_remaining_time_in_millis()``: "the number of milliseconds left before the
execution times out", https://docs.aws.amazon.com/lambda/latest/dg/python-context.html), and an
HTTP API stops waiting for its integration after at most 30 s (template.yaml: 29 s; "Maximum
integration timeout: 30 seconds", https://docs.aws.amazon.com/apigateway/latest/developerguide/
http-api-quotas.html). Work cut off there leaves no trace, so the submit path stops short of the
earlier of the two, keeping a reserve to record what happened and answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Deadline:
    """A point on ``clock`` (monotonic seconds) by which work must be over."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now (never in the past)."""
        return cls(clock() + max(0.0, seconds), clock)

    @classmethod
    def never(cls) -> Deadline:
        """No deadline: for callers outside an invocation (scripts, tests of other things)."""
        return cls(float("inf"))

    def remaining(self) -> float:
        """Seconds left, 0 once passed."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


def invocation_deadline(
    remaining_ms: int,
    *,
    reserve_seconds: float,
    api_started_epoch_ms: int | None = None,
    api_timeout_seconds: float | None = None,
    now_epoch: Callable[[], float] = time.time,
    clock: Callable[[], float] = time.monotonic,
) -> Deadline:
    """The deadline for an API-invoked function's own work: the earlier of Lambda's timeout
    (``remaining_ms``) and API Gateway's integration timeout counted from when it received the
    request (``requestContext.timeEpoch``: a cold start's init runs inside the API's timeout but
    before Lambda's), minus ``reserve_seconds`` for writing the outcome and answering.

    A ``timeEpoch`` that is in the future or older than the API's timeout is not this request's
    (a replayed test event, a skewed clock) and is ignored: Lambda's own count still bounds."""
    left = remaining_ms / 1000
    if api_started_epoch_ms is not None and api_timeout_seconds is not None:
        elapsed = now_epoch() - api_started_epoch_ms / 1000
        if 0 <= elapsed <= api_timeout_seconds:
            left = min(left, api_timeout_seconds - elapsed)
    return Deadline.after(left - reserve_seconds, clock=clock)

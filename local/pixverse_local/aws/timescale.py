"""One time scale for every delay the local stack emulates: ``LOCAL_TIME_SCALE``.

AWS makes some paths slow on purpose: a failed SQS message reappears only when its visibility timeout
ends (the template's copy queue: 5400 s), a message can be delayed (``DelaySeconds``), and the
reconciler runs on the template's schedule (``rate(5 minutes)``). The local stack keeps every one of
those delays as AWS has them, multiplied by one factor, so a test can run the slow paths in seconds
without a second code path: ``LOCAL_TIME_SCALE=0.01`` makes a 5400 s visibility timeout 54 s and a
5-minute schedule 3 s.

Scaled: SQS visibility timeouts (the queue's default, ``ReceiveMessage``'s and every
``ChangeMessageVisibility``), SQS delays (the queue's ``DelaySeconds`` and a message's), and the
schedules' ``rate(...)``. This happens inside the moto server process (see moto_server.py) and in the
scheduler, so the pollers and the functions' own SQS calls see the same behaviour.

Not scaled, on purpose: Lambda function timeouts and the HTTP API's 30 s are *limits* the product
must live within (a shorter limit would fail code that is fine on AWS, a longer one would hide code
that is not); so are SQS long-poll waits, message retention and the 12-hour visibility ceiling,
which are validated as AWS validates them, on the unscaled numbers. Note what follows: at a scale
below 1 a message's visibility timeout can end while the function that received it still runs
(on AWS the copy queue's 5400 s is six times the copier's timeout), so a slow invocation may see
its message delivered again, as on AWS when a function outlives its visibility timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

ENV_NAME = "LOCAL_TIME_SCALE"
DEFAULT_TIME_SCALE = 1.0


class TimeScaleError(ValueError):
    """``LOCAL_TIME_SCALE`` is not a positive, finite number."""


def parse_time_scale(raw: str | None) -> float:
    """The factor ``raw`` gives (``DEFAULT_TIME_SCALE`` when unset or blank).

    Raises :class:`TimeScaleError`, naming ``LOCAL_TIME_SCALE``, for anything but a positive finite
    number: zero would make every delay vanish (retries in a tight loop), a negative one has no meaning.
    """
    if raw is None or not raw.strip():
        return DEFAULT_TIME_SCALE
    try:
        value = float(raw)
    except ValueError:
        raise TimeScaleError(f"{ENV_NAME} must be a positive number (e.g. 0.01), got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise TimeScaleError(f"{ENV_NAME} must be a positive number (e.g. 0.01), got {raw!r}")
    return value


def time_scale_from(env: Mapping[str, str]) -> float:
    """The time scale an environment sets (see :func:`parse_time_scale`)."""
    return parse_time_scale(env.get(ENV_NAME))


def scaled_milliseconds(seconds: float, scale: float) -> float:
    """An emulated delay of ``seconds`` in real milliseconds."""
    return float(seconds) * 1000.0 * scale

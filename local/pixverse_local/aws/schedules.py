"""Local schedules: each Schedule / ScheduleV2 event of the template runs its function periodically.

Each schedule follows its own ``rate(N minute|minutes|hour|hours|day|days)`` expression, times
``LOCAL_TIME_SCALE`` (timescale.py): ``rate(5 minutes)`` fires every 300 s at scale 1, every 3 s at
0.01. As in EventBridge, "a rate expression starts when you create the scheduled event rule", so the
first run comes one period after the start. ``LOCAL_RECONCILE_EVERY_SECONDS``, when set, replaces
every schedule's period (a demo's or a test's reconciler every second).

``cron(...)`` and ``at(...)`` expressions are refused at start unless that override is set: they name
wall-clock times, which no time scale maps to a period.
The event is the EventBridge "Scheduled Event" (or the event's ``Input`` when the template sets one).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pixverse_local.aws.template import ScheduleEventSpec

LOG = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]

_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")


class ScheduleError(ValueError):
    """A schedule expression the local scheduler cannot follow."""


def rate_seconds(expression: str) -> int:
    """The period of an EventBridge ``rate(value unit)`` expression, in seconds.

    "rate(value unit)": value a positive number, unit minute | minutes | hour | hours | day | days;
    "If the value is equal to 1, then the unit must be singular. If the value is greater than 1, the
    unit must be plural" (EventBridge user guide, "Rate expressions reference").
    """
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        raise ScheduleError(
            f"schedule {expression!r} is not rate(N minute|minutes|hour|hours|day|days); cron(...) and "
            "at(...) are not emulated locally: set LOCAL_RECONCILE_EVERY_SECONDS to run it every N seconds"
        )
    value, unit = int(match.group(1)), match.group(2)
    if value < 1 or (value == 1) == unit.endswith("s"):
        raise ScheduleError(
            f"schedule {expression!r} is not valid in EventBridge: the unit is singular for 1 and plural above"
        )
    return value * _UNIT_SECONDS[unit.rstrip("s")]


def local_interval(spec: ScheduleEventSpec, *, time_scale: float, override_seconds: float | None) -> float:
    """Seconds between local runs of ``spec``: the override if given, else its rate times the scale."""
    if override_seconds is not None:
        return override_seconds
    return rate_seconds(spec.expression) * time_scale


def scheduled_event(spec: ScheduleEventSpec, *, region: str, account_id: str, rule_name: str) -> dict[str, Any]:
    """The payload EventBridge delivers for one firing of a schedule."""
    if spec.input:
        payload = json.loads(spec.input)
        return payload if isinstance(payload, dict) else {"input": payload}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{rule_name}"],
        "detail": {},
    }


class Scheduler:
    """One thread per enabled schedule, invoking its function every period (see :func:`local_interval`)."""

    def __init__(
        self,
        schedules: list[tuple[ScheduleEventSpec, Invoke]],
        *,
        interval_seconds: float | None = None,
        time_scale: float = 1.0,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "pixverse-local",
    ) -> None:
        """``interval_seconds`` replaces every schedule's period; otherwise each follows its rate().

        Raises :class:`ScheduleError` for an expression it cannot follow, before anything starts.
        """
        if interval_seconds is not None and not interval_seconds > 0:
            raise ScheduleError(f"the local schedule interval must be a positive number, got {interval_seconds!r}")
        self._schedules = [
            (spec, invoke, local_interval(spec, time_scale=time_scale, override_seconds=interval_seconds))
            for spec, invoke in schedules
            if spec.enabled
        ]
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def intervals(self) -> dict[str, float]:
        """Seconds between runs, by ``<function>.<event>``."""
        return {f"{spec.function_id}.{spec.event_id}": interval for spec, _, interval in self._schedules}

    def start(self) -> None:
        """Start one thread per schedule; the first run is one period away."""
        self._stop.clear()
        for spec, invoke, interval in self._schedules:
            thread = threading.Thread(
                target=self._run, args=(spec, invoke, interval), name=f"schedule-{spec.function_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            LOG.info("%s.%s (%s) runs every %ss locally", spec.function_id, spec.event_id, spec.expression, interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (a run in progress finishes first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()

    def _run(self, spec: ScheduleEventSpec, invoke: Invoke, interval: float) -> None:
        rule_name = f"{self.stack_name}-{spec.function_id}{spec.event_id}"
        while not self._stop.wait(interval):
            try:
                invoke(scheduled_event(spec, region=self.region, account_id=self.account_id, rule_name=rule_name))
            except Exception:
                LOG.exception("scheduled run of %s failed", spec.function_id)

"""Local schedules: each Schedule / ScheduleV2 event of the template runs its function periodically.

Deviation, on purpose: the template's rate or cron expression is not followed; every schedule fires
every ``LOCAL_RECONCILE_EVERY_SECONDS`` (default 10 s) so a reconciler does its work during a demo.
The event is the EventBridge "Scheduled Event" (or the event's ``Input`` when the template sets one).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pixverse_local.template import ScheduleEventSpec

LOG = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]

DEFAULT_INTERVAL_SECONDS = 10.0


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
    """One thread per enabled schedule, invoking its function every ``interval_seconds``."""

    def __init__(
        self,
        schedules: list[tuple[ScheduleEventSpec, Invoke]],
        *,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "pixverse-local",
    ) -> None:
        self._schedules = [(spec, invoke) for spec, invoke in schedules if spec.enabled]
        self.interval_seconds = interval_seconds
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for spec, invoke in self._schedules:
            thread = threading.Thread(
                target=self._run, args=(spec, invoke), name=f"schedule-{spec.function_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            LOG.info(
                "%s.%s (%s) runs every %ss locally",
                spec.function_id,
                spec.event_id,
                spec.expression,
                self.interval_seconds,
            )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()

    def _run(self, spec: ScheduleEventSpec, invoke: Invoke) -> None:
        rule_name = f"{self.stack_name}-{spec.function_id}{spec.event_id}"
        while not self._stop.wait(self.interval_seconds):
            try:
                invoke(scheduled_event(spec, region=self.region, account_id=self.account_id, rule_name=rule_name))
            except Exception:
                LOG.exception("scheduled run of %s failed", spec.function_id)

"""The admission limit: how many jobs the simulated gateway holds at once, and who asked how often.

The doc lists ``429 Too Many Requests`` among a submit's answers but publishes no limit, no
``Retry-After`` and no rate. A real gateway's capacity is finite, so the simulator can be told to
admit only ``max_in_flight`` requests at once (QUEUED or PROCESSING): a valid submit beyond that is
answered ``429 {"error": "Too Many Requests", "message": ...}``, the doc's error shape, and admitted
again once a request reaches its final status. By default there is no limit, and a 429 carries no
``Retry-After`` (no kinder than the doc); ``retry_after`` adds one, for tests of a caller that honours it.

Set it with ``GatewaySimulator(max_in_flight=..., retry_after_seconds=...)``, the simulator's
``--max-in-flight`` / ``--retry-after``, the local stack's ``SIM_MAX_IN_FLIGHT`` /
``SIM_RETRY_AFTER_SECONDS``, or at run time with ``POST /_sim/admission``.

Every submit is also counted per job: the pipeline's callback URL names its job
(``/webhooks/pixazo/{job_id}``), so ``GET /_sim/submits`` shows how often each job was submitted and
how often it was accepted; a job accepted twice is a duplicate the gateway would bill twice.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from pixverse_local.gateway_sim.httpio import BadRequest

__all__ = [
    "MAX_IN_FLIGHT_ENV",
    "RETRY_AFTER_ENV",
    "AdmissionBook",
    "AtCapacity",
    "admission_from_env",
    "job_id_of",
    "parse_admission_update",
]

MAX_IN_FLIGHT_ENV: Final = "SIM_MAX_IN_FLIGHT"
RETRY_AFTER_ENV: Final = "SIM_RETRY_AFTER_SECONDS"

# The pipeline's callback path (pixverse_jobs.signing.webhook_url): the job id is its last segment.
_JOB_PATH_RE: Final = re.compile(r"/webhooks/pixazo/([^/]+)$")


class AtCapacity(Exception):
    """A valid submit refused because ``max_in_flight`` requests are already QUEUED or PROCESSING."""


def job_id_of(webhook_url: str | None) -> str | None:
    """The job id an ``X-Webhook-URL`` of the pipeline names, or None for any other URL."""
    if not webhook_url:
        return None
    match = _JOB_PATH_RE.search(urlsplit(webhook_url.strip()).path)
    return unquote(match.group(1)) if match else None


def _limit(name: str, value: object, *, low: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < low:
        raise BadRequest(f"{name}: must be an integer >= {low}, or null")
    return value


def parse_admission_update(spec: Mapping[str, Any]) -> dict[str, int | None]:
    """The settings a ``POST /_sim/admission`` body changes (absent ones stay); ``BadRequest`` naming a bad field."""
    unknown = sorted(set(spec) - {"max_in_flight", "retry_after"})
    if unknown:
        raise BadRequest(f"{', '.join(unknown)}: unknown; give max_in_flight and/or retry_after")
    update: dict[str, int | None] = {}
    if "max_in_flight" in spec:
        update["max_in_flight"] = _limit("max_in_flight", spec["max_in_flight"], low=1)
    if "retry_after" in spec:
        update["retry_after"] = _limit("retry_after", spec["retry_after"], low=0)
    return update


def admission_from_env(env: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``SIM_MAX_IN_FLIGHT`` and ``SIM_RETRY_AFTER_SECONDS`` from ``env`` (unset or blank: None);
    ``ValueError`` naming the variable for anything but a whole number in range."""
    values: list[int | None] = []
    for name, low in ((MAX_IN_FLIGHT_ENV, 1), (RETRY_AFTER_ENV, 0)):
        raw = (env.get(name) or "").strip()
        if not raw:
            values.append(None)
        elif not raw.isdigit() or int(raw) < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {raw!r}")
        else:
            values.append(int(raw))
    return values[0], values[1]


class AdmissionBook:
    """The limit, its counters and the submits per job. Not locked itself: callers hold the
    simulator's lock (``GatewayState.lock``), which also guards the requests it counts."""

    def __init__(self, max_in_flight: int | None = None, retry_after: int | None = None) -> None:
        """Start with the given limit (None: none) and ``Retry-After`` seconds (None: no header)."""
        self.max_in_flight = _limit("max_in_flight", max_in_flight, low=1)
        self.retry_after = _limit("retry_after", retry_after, low=0)
        self.peak_in_flight = 0
        self.submits_by_job: Counter[str] = Counter()
        self.accepted_by_job: Counter[str] = Counter()
        self.submits_without_job = 0

    def count_submit(self, job_id: str | None) -> None:
        """One more submit received for ``job_id`` (None: a URL that names no job, or none)."""
        if job_id is None:
            self.submits_without_job += 1
        else:
            self.submits_by_job[job_id] += 1

    def admit(self, in_flight: int, job_id: str | None) -> None:
        """Take one more request with ``in_flight`` already held, or raise ``AtCapacity``."""
        if self.max_in_flight is not None and in_flight >= self.max_in_flight:
            raise AtCapacity(f"{in_flight} requests in flight, the limit is {self.max_in_flight}")
        self.peak_in_flight = max(self.peak_in_flight, in_flight + 1)
        if job_id is not None:
            self.accepted_by_job[job_id] += 1

    def update(self, settings: Mapping[str, int | None]) -> None:
        """Apply what ``parse_admission_update`` returned. A lower limit lets the requests already in
        flight finish; only new submits are refused until fewer remain."""
        if "max_in_flight" in settings:
            self.max_in_flight = settings["max_in_flight"]
        if "retry_after" in settings:
            self.retry_after = settings["retry_after"]

    def reset_counters(self) -> None:
        """Forget the counts; the limit and ``Retry-After`` are settings and stay."""
        self.peak_in_flight = 0
        self.submits_by_job.clear()
        self.accepted_by_job.clear()
        self.submits_without_job = 0

    def describe(self, in_flight: int) -> dict[str, int | None]:
        """``GET /_sim/admission``: the settings and the concurrency now and at its peak."""
        return {
            "max_in_flight": self.max_in_flight,
            "retry_after": self.retry_after,
            "in_flight": in_flight,
            "peak_in_flight": self.peak_in_flight,
        }

    def submits_view(self) -> dict[str, Any]:
        """``GET /_sim/submits``: per job, submits received and accepted, and the duplicates among them."""
        jobs = sorted(set(self.submits_by_job) | set(self.accepted_by_job))
        return {
            "jobs": len(jobs),
            "submits_with_job": sum(self.submits_by_job.values()),
            "submits_without_job": self.submits_without_job,
            "jobs_submitted_more_than_once": sum(1 for n in self.submits_by_job.values() if n > 1),
            "jobs_accepted_more_than_once": sorted(job for job, n in self.accepted_by_job.items() if n > 1),
            "by_job": {
                job: {"received": self.submits_by_job[job], "accepted": self.accepted_by_job[job]} for job in jobs
            },
        }

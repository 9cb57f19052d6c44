"""Burst: 2,000 jobs POSTed in 60 s by one caller against a gateway that admits only 8 jobs at once,
while a second caller POSTs 10 jobs a few seconds in. What every caller sees, what the gateway sees,
and whether every job is delivered exactly once (issue 14, "a burst run").

The local stack runs as a user runs it (``python -m pixverse_local`` in its own process, through
``pixverse_local.harness.StackProcess``), so the driver here does not share the stack's interpreter:

* the gateway simulator admits ``--max-in-flight`` (8) requests at once, QUEUED or PROCESSING, and
  answers ``429 Too Many Requests`` (the doc's error body, no ``Retry-After``) beyond that
  (``SIM_MAX_IN_FLIGHT``, gateway_sim/admission.py); the pipeline is not told the limit;
* each job generates for 0.8 s on the simulator (its defaults: 0.2 s QUEUED, 0.6 s PROCESSING) and its
  media is 4 KiB (``[sim:size=4096]`` in the prompt), so the gateway's 8 slots turn over about 10
  jobs a second and the drain is the gateway's pace, not the media copy's;
* the noisy caller (role ``noisy``: ``X-Local-Principal-Arn: arn:aws:sts::123456789012:assumed-role/noisy/burst``)
  POSTs job i at ``i * seconds / jobs`` from a pool of ``--workers`` (64) threads; the quiet caller
  (role ``quiet``) POSTs its 10 jobs together ``--quiet-at`` (5) seconds into the burst, on its own
  connections;
* final events are counted from an SQS queue subscribed to the events topic (as a consumer would),
  each stamped when it was received; jobs without one are looked up in the table at the end;
* the gateway's side comes from the simulator's control API: submits received, 429s answered, peak
  concurrency, and submits per job (``GET /_sim/submits``: a job accepted twice is a duplicate).

Bounded in time whatever happens: no POST starts after ``seconds + 60`` s, each POST gives up after
35 s (the API answers by 29 s), and the wait for delivery ends ``--budget`` (450) seconds after the
burst began; jobs not delivered by then are reported with the status the table holds.

Which submit path answered is read from the answers: a 202 whose job is ``ACCEPTED`` is the admission
path (POST records, enqueues and answers; a submitter feeds the gateway); otherwise POST called the
gateway itself (the synchronous path, "before"). The run is kept under ``before`` or ``after``
accordingly (a reduced run under its size), next to the other one from an earlier results.json.

    python bench/burst.py --jobs 200 --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR

# The callers as API Gateway sees a role's SigV4 caller: a session of the role (an ``iam::...:role/noisy``
# ARN signs nothing, and the local API refuses it with 403 as an authorizer would).
NOISY = "arn:aws:sts::123456789012:assumed-role/noisy/burst"
QUIET = "arn:aws:sts::123456789012:assumed-role/quiet/burst"
PRINCIPAL_HEADER = "X-Local-Principal-Arn"
MODEL = "pixverse-v6-text-to-video"
MEDIA_BYTES = 4096
DEFAULT_JOBS, DEFAULT_SECONDS, DEFAULT_MAX_IN_FLIGHT = 2000, 60.0, 8
DEFAULT_QUIET_JOBS, DEFAULT_QUIET_AT = 10, 5.0
DEFAULT_WORKERS = 64
DEFAULT_BUDGET_SECONDS = 450.0
SEND_GRACE_SECONDS = 60.0  # no POST starts later than this after the window
POST_TIMEOUT_SECONDS = 35.0  # the submit API answers by its 29 s integration timeout
SAMPLE_EVERY_SECONDS = 5.0
DELIVERED = "pixverse.job.delivered"
FAILED = "pixverse.job.failed"
FINAL_EVENTS = (DELIVERED, FAILED)
# Targets (issue 14, "a burst run"): the gateway asked at most this often per job on average, and the
# quiet caller done "long before the burst drains": by this share of the burst's drain time.
SUBMITS_PER_JOB_LIMIT = 3.0
QUIET_SHARE_OF_DRAIN = 0.25


@dataclass
class Answer:
    """One POST /jobs: who, when it was due and started (s after the burst began), how long, what came back."""

    caller: str
    index: int
    due_s: float
    started_s: float | None = None
    latency_s: float | None = None
    status: int | None = None  # None: no HTTP answer (see ``error``) or never sent
    error: str | None = None  # the API's error code, or the client's exception, or "not sent"
    job_id: str | None = None
    job_status: str | None = None


@dataclass
class Inbox:
    """The events topic's subscriber: every event with when it was received (s after the burst began)."""

    sqs: Any
    queue_url: str
    origin: float
    events: list[tuple[str, str, float]] = field(default_factory=list)  # (type, job_id, seen_s)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        while not self._stop.is_set():
            self.drain_once(wait_seconds=1)

    def drain_once(self, wait_seconds: int) -> int:
        try:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            ).get("Messages", [])
        except Exception:
            self.errors += 1
            time.sleep(0.2)
            return 0
        seen = time.monotonic() - self.origin
        with self._lock:
            for message in messages:
                event = json.loads(json.loads(message["Body"])["Message"])
                self.events.append((str(event.get("type")), str(event.get("subject")), round(seen, 3)))
        if messages:
            with contextlib.suppress(Exception):
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
                )
        return len(messages)

    def final_jobs(self) -> set[str]:
        with self._lock:
            return {job for kind, job, _ in self.events if kind in FINAL_EVENTS}

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------ the run
def _post(api: Any, answer: Answer, origin: float) -> None:
    """POST one job at its due time; record the answer, whatever it is."""
    body = {
        "model": MODEL,
        "input": {"prompt": f"A lighthouse at dusk, take {answer.index} [sim:size={MEDIA_BYTES}]", "duration": 5},
        "metadata": {"bench": "burst", "caller": answer.caller.rsplit("/", 1)[-1], "n": answer.index},
    }
    pause = origin + answer.due_s - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    started = time.monotonic()
    answer.started_s = round(started - origin, 4)
    try:
        response = api.post("/jobs", json=body, headers={PRINCIPAL_HEADER: answer.caller})
    except Exception as exc:
        answer.latency_s = round(time.monotonic() - started, 4)
        answer.error = type(exc).__name__
        return
    answer.latency_s = round(time.monotonic() - started, 4)
    answer.status = response.status_code
    with contextlib.suppress(ValueError):
        payload = response.json()
        if response.status_code == 202:
            answer.job_id, answer.job_status = payload.get("job_id"), payload.get("status")
        else:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                answer.error = error.get("code")
                answer.job_id, answer.job_status = error.get("job_id"), error.get("job_status")
            elif isinstance(payload, dict):
                answer.error = str(payload.get("message") or payload.get("error") or "")[:80] or None


def _drive(
    api: Any, quiet_api: Any, answers: Sequence[Answer], origin: float, send_cutoff: float, workers: int
) -> None:
    """POST every answer's job at its due time; none starts after ``send_cutoff`` (s after origin)."""

    def run(answer: Answer) -> None:
        if answer.due_s > send_cutoff or time.monotonic() - origin > send_cutoff:
            answer.error = "not sent (driver deadline)"
            return
        _post(quiet_api if answer.caller == QUIET else api, answer, origin)

    noisy = [a for a in answers if a.caller == NOISY]
    quiet = [a for a in answers if a.caller == QUIET]
    with ThreadPoolExecutor(max_workers=workers) as noisy_pool, ThreadPoolExecutor(max_workers=len(quiet) or 1) as qp:
        futures = [noisy_pool.submit(run, a) for a in noisy] + [qp.submit(run, a) for a in quiet]
        for future in futures:
            future.result()


def _sample(gateway: Any, inbox: Inbox, origin: float, stop: threading.Event, samples: list[dict[str, Any]]) -> None:
    while not stop.wait(SAMPLE_EVERY_SECONDS):
        with contextlib.suppress(Exception):
            stats = gateway.get("/_sim/stats").json()
            samples.append(
                {
                    "t_s": round(time.monotonic() - origin, 1),
                    "gateway_in_flight": stats.get("in_flight"),
                    "gateway_submits": stats.get("submits_received"),
                    "gateway_429s": stats.get("submits_throttled"),
                    "final_events": len(inbox.final_jobs()),
                }
            )


def _table_statuses(dynamodb: Any, table: str, job_ids: Sequence[str]) -> dict[str, str]:
    """The status the table holds for each job (BatchGetItem, 100 keys a call)."""
    found: dict[str, str] = {}
    for start in range(0, len(job_ids), 100):
        keys: list[dict[str, Any]] = [{"job_id": {"S": job}} for job in job_ids[start : start + 100]]
        request: dict[str, Any] = {
            table: {"Keys": keys, "ProjectionExpression": "job_id, #s", "ExpressionAttributeNames": {"#s": "status"}}
        }
        for _ in range(10):
            reply = dynamodb.batch_get_item(RequestItems=request)
            for item in reply.get("Responses", {}).get(table, []):
                found[item["job_id"]["S"]] = item.get("status", {}).get("S", "?")
            request = reply.get("UnprocessedKeys") or {}
            if not request:
                break
    return found


def run_burst_once(
    *,
    jobs: int = DEFAULT_JOBS,
    seconds: float = DEFAULT_SECONDS,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    quiet_jobs: int = DEFAULT_QUIET_JOBS,
    quiet_at: float = DEFAULT_QUIET_AT,
    workers: int = DEFAULT_WORKERS,
    budget: float = DEFAULT_BUDGET_SECONDS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One burst against a fresh local stack; the raw figures (see ``summarise``)."""
    from pixverse_local.harness import LocalClient, StackProcess

    env = {"SIM_MAX_IN_FLIGHT": str(max_in_flight)}
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        stack = StackProcess(env=env, log_path=Path(tmp) / "stack.log", start_timeout=90.0)
        began = time.monotonic()
        ready = stack.start()
        stack_start_s = time.monotonic() - began
        try:
            return _run_against(
                ready,
                LocalClient(ready),
                jobs=jobs,
                seconds=seconds,
                max_in_flight=max_in_flight,
                quiet_jobs=quiet_jobs,
                quiet_at=quiet_at,
                workers=workers,
                budget=budget,
                stack_start_s=stack_start_s,
                time_scale=os.environ.get("LOCAL_TIME_SCALE") or "1 (AWS's timings)",
                log=log,
            )
        finally:
            stack.stop()


def _run_against(  # noqa: PLR0915 - one straight story, told in order
    ready: Any,
    client: Any,
    *,
    jobs: int,
    seconds: float,
    max_in_flight: int,
    quiet_jobs: int,
    quiet_at: float,
    workers: int,
    budget: float,
    stack_start_s: float,
    time_scale: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    import httpx

    gateway = client.gateway
    admission = gateway.get("/_sim/admission").json()
    if admission.get("max_in_flight") != max_in_flight:
        raise RuntimeError(f"the simulator admits {admission.get('max_in_flight')} at once, not {max_in_flight}")
    queue_url = client.sqs.create_queue(QueueName="bench-burst-inbox")["QueueUrl"]
    queue_arn = client.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    client.sns.subscribe(TopicArn=ready["topic"], Protocol="sqs", Endpoint=queue_arn)
    gateway.post("/_sim/reset").raise_for_status()

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    api = httpx.Client(base_url=ready["api"], timeout=POST_TIMEOUT_SECONDS, limits=limits)
    quiet_api = httpx.Client(base_url=ready["api"], timeout=POST_TIMEOUT_SECONDS)
    interval = seconds / jobs
    answers = [Answer(NOISY, n, round(n * interval, 4)) for n in range(jobs)]
    answers += [Answer(QUIET, n, quiet_at) for n in range(quiet_jobs)]
    send_cutoff = min(seconds + SEND_GRACE_SECONDS, budget / 2)

    origin = time.monotonic()
    inbox = Inbox(client.sqs, queue_url, origin)
    stop_sampling = threading.Event()
    samples: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=inbox.run, name="burst-inbox", daemon=True),
        threading.Thread(
            target=_sample, args=(gateway, inbox, origin, stop_sampling, samples), name="burst-sample", daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    log(f"burst: {jobs} jobs in {seconds:g} s from {NOISY}, {quiet_jobs} from {QUIET} at {quiet_at:g} s")
    try:
        _drive(api, quiet_api, answers, origin, send_cutoff, workers)
        sent_s = time.monotonic() - origin
        log(f"burst: POSTs answered by {sent_s:.1f} s: {dict(Counter(a.status or a.error for a in answers))}")
        # Every job the API took (202) should end with one final event; wait for them, within the budget.
        expected = {a.job_id for a in answers if a.status == 202 and a.job_id}
        last_report = time.monotonic()
        while time.monotonic() - origin < budget:
            missing = expected - inbox.final_jobs()
            if not missing:
                break
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                log(f"burst: {len(expected) - len(missing)}/{len(expected)} final at {time.monotonic() - origin:.0f} s")
            time.sleep(0.5)
        waited_s = time.monotonic() - origin
        # A short look for late duplicates: a second final event for a job already counted.
        settle = time.monotonic() + 3.0
        while time.monotonic() < settle:
            inbox.drain_once(wait_seconds=1)
    finally:
        inbox.stop()
        stop_sampling.set()
        for thread in threads:
            thread.join(timeout=5)
        api.close()
        quiet_api.close()

    stats = gateway.get("/_sim/stats").json()
    submits = gateway.get("/_sim/submits").json()
    known = sorted({a.job_id for a in answers if a.job_id})
    statuses = _table_statuses(client.dynamodb, ready["table"], known)
    return {
        "config": {
            "jobs": jobs,
            "seconds": seconds,
            "max_in_flight": max_in_flight,
            "quiet_jobs": quiet_jobs,
            "quiet_at_s": quiet_at,
            "workers": workers,
            "budget_s": budget,
            "send_cutoff_s": send_cutoff,
            "generation_s": 0.8,  # the simulator's defaults: 0.2 s QUEUED, then 0.6 s PROCESSING
            "media_bytes": MEDIA_BYTES,
            "local_time_scale": time_scale,
            "retry_after": admission.get("retry_after"),
        },
        "stack_start_s": round(stack_start_s, 1),
        "answers": [a.__dict__ for a in answers],
        "events": inbox.events,
        "inbox_poll_errors": inbox.errors,
        "sent_s": round(sent_s, 1),
        "waited_s": round(waited_s, 1),
        "gateway_stats": stats,
        "gateway_submits": {k: v for k, v in submits.items() if k != "by_job"},
        "gateway_submits_by_job": {job: counts for job, counts in submits["by_job"].items()},
        "table_status": statuses,
        "samples": samples,
    }


# ------------------------------------------------------------------ the summary
def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0-1) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _latency(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    values = [a["latency_s"] for a in answers if a.get("latency_s") is not None]
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return {
        "n": len(values),
        "p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "max_ms": round(max(values) * 1000, 1) if values else None,
    }


def _answer_label(answer: Mapping[str, Any]) -> str:
    if answer.get("status") is None:
        return str(answer.get("error") or "no answer")
    code = answer.get("error")
    return f"{answer['status']}" + (f" {code}" if code and answer["status"] != 202 else "")


def summarise(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, from one run's raw record."""
    config = raw["config"]
    answers = raw["answers"]
    by_caller: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for answer in answers:
        by_caller[answer["caller"]].append(answer)
    noisy, quiet = by_caller[NOISY], by_caller[QUIET]

    finals: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for kind, job, seen in raw["events"]:
        if kind in FINAL_EVENTS:
            finals[job].append((kind, seen))
    accepted_202 = [a for a in answers if a.get("status") == 202]
    job_ids = [a["job_id"] for a in answers if a.get("job_id")]
    delivered_once = sum(1 for job in job_ids if [k for k, _ in finals.get(job, [])] == [DELIVERED])
    more_than_one_final = sorted(job for job in job_ids if len(finals.get(job, [])) > 1)
    undelivered = [job for job in job_ids if not any(k == DELIVERED for k, _ in finals.get(job, []))]
    undelivered_status = Counter(raw["table_status"].get(job, "not in table") for job in undelivered)

    def done_at(group: Sequence[Mapping[str, Any]]) -> float | None:
        """When the last of the jobs the API took (202) from ``group`` got its final event (s after the
        burst began): its backlog drained. None if one of them has none (not drained in the budget)."""
        taken = [a for a in group if a.get("status") == 202 and a.get("job_id")]
        if not taken or any(not finals.get(a["job_id"]) for a in taken):
            return None
        return max(finals[a["job_id"]][0][1] for a in taken)

    def finished(group: Sequence[Mapping[str, Any]]) -> list[float]:
        return [finals[a["job_id"]][0][1] for a in group if a.get("job_id") and finals.get(a["job_id"])]

    drain_s = done_at(noisy)
    quiet_done_s = done_at(quiet)
    quiet_latencies = [
        finals[a["job_id"]][0][1] - a["started_s"]
        for a in quiet
        if a.get("job_id") and finals.get(a["job_id"]) and a.get("started_s") is not None
    ]
    noisy_finished = finished(noisy)
    stats = raw["gateway_stats"]
    by_job = raw["gateway_submits_by_job"]
    posted = [a for a in answers if a.get("started_s") is not None]
    received = [c["received"] for c in by_job.values()]
    noisy_sent = [a for a in noisy if a.get("started_s") is not None]
    slips = [a["started_s"] - a["due_s"] for a in noisy_sent]
    statuses_of_202 = Counter(str(a.get("job_status")) for a in accepted_202)
    admission_path = statuses_of_202.get("ACCEPTED", 0) > 0
    submits_per_job = round(stats.get("submits_received", 0) / max(1, len(posted)), 2)
    accepted_twice = raw["gateway_submits"].get("jobs_accepted_more_than_once", [])
    summary: dict[str, Any] = {
        "submit_path": "admission (202 ACCEPTED, submitter feeds the gateway)"
        if admission_path
        else "synchronous (POST calls the gateway)",
        "config": config,
        "stack_start_s": raw["stack_start_s"],
        "posts": {
            "sent": len(posted),
            "not_sent": len(answers) - len(posted),
            "answers": dict(sorted(Counter(_answer_label(a) for a in answers).items())),
            "answers_noisy": dict(sorted(Counter(_answer_label(a) for a in noisy).items())),
            "answers_quiet": dict(sorted(Counter(_answer_label(a) for a in quiet).items())),
            "status_of_202_jobs": dict(sorted(statuses_of_202.items())),
            "latency_noisy": _latency(noisy),
            "latency_quiet": _latency(quiet),
            "latency_all": _latency(answers),
            "last_post_answered_s": raw["sent_s"],
            # The pace the noisy caller really POSTed at: its jobs over the time its last one took to start.
            "offered_rate_per_s": round(len(noisy_sent) / max(0.001, *(a["started_s"] for a in noisy_sent)), 1)
            if noisy_sent
            else None,
            "schedule_slip_p99_s": None if not slips else round(percentile(slips, 0.99) or 0.0, 3),
        },
        "gateway": {
            "max_in_flight": config["max_in_flight"],
            "peak_in_flight": stats.get("peak_in_flight"),
            "submits_received": stats.get("submits_received"),
            "submits_accepted": stats.get("submits_accepted"),
            "answered_429": stats.get("submits_throttled"),
            "submits_per_job_posted": submits_per_job,
            "submits_per_job_max": max(received, default=0),
            "jobs_submitted_more_than_once": raw["gateway_submits"].get("jobs_submitted_more_than_once", 0),
            "jobs_accepted_more_than_once": len(accepted_twice),
            "duplicate_examples": accepted_twice[:5],
            "submits_without_job": raw["gateway_submits"].get("submits_without_job", 0),
        },
        "delivery": {
            "jobs_with_id": len(job_ids),
            "taken_202": len(accepted_202),
            "delivered_exactly_once": delivered_once,
            "jobs_with_more_than_one_final_event": len(more_than_one_final),
            "final_events": dict(Counter(k for k, _, _ in raw["events"] if k in FINAL_EVENTS)),
            "not_delivered": len(undelivered),
            "not_delivered_by_table_status": dict(sorted(undelivered_status.items())),
            "waited_s": raw["waited_s"],
            "inbox_poll_errors": raw["inbox_poll_errors"],
        },
        "timing": {
            "burst_drain_s": None if drain_s is None else round(drain_s, 1),
            "last_noisy_final_s": round(max(noisy_finished), 1) if noisy_finished else None,
            "noisy_finished": len(noisy_finished),
            "quiet_done_s": None if quiet_done_s is None else round(quiet_done_s, 1),
            "quiet_taken": sum(1 for a in quiet if a.get("status") == 202),
            "quiet_finished": len(finished(quiet)),
            "quiet_job_latency_s": {
                "median": round(percentile(quiet_latencies, 0.5) or 0.0, 1) if quiet_latencies else None,
                "max": round(max(quiet_latencies), 1) if quiet_latencies else None,
            },
            "quiet_share_of_drain": None
            if drain_s is None or quiet_done_s is None or drain_s <= 0
            else round(quiet_done_s / drain_s, 3),
        },
        "samples": raw["samples"],
    }
    summary["targets"] = _targets(summary, len(answers))
    return summary


def _targets(summary: Mapping[str, Any], posts: int) -> dict[str, dict[str, Any]]:
    posts_202 = summary["posts"]["answers"].get("202", 0)
    delivery, gateway, timing = summary["delivery"], summary["gateway"], summary["timing"]
    share = timing["quiet_share_of_drain"]
    quiet_jobs = summary["config"]["quiet_jobs"]
    return {
        "every_post_202": {"value": f"{posts_202}/{posts}", "met": posts_202 == posts},
        "every_job_delivered_once": {
            "value": f"{delivery['delivered_exactly_once']}/{posts}",
            "met": delivery["delivered_exactly_once"] == posts and delivery["jobs_with_more_than_one_final_event"] == 0,
        },
        "no_duplicate_gateway_submit": {
            "value": gateway["jobs_accepted_more_than_once"],
            "met": gateway["jobs_accepted_more_than_once"] == 0,
        },
        "gateway_submits_per_job": {
            "value": gateway["submits_per_job_posted"],
            "limit": SUBMITS_PER_JOB_LIMIT,
            "met": gateway["submits_per_job_posted"] <= SUBMITS_PER_JOB_LIMIT,
        },
        # Every quiet job taken and ended, by a quarter of the time the burst's backlog takes to drain.
        "quiet_caller_done_long_before_drain": {
            "value": share if timing["quiet_taken"] == quiet_jobs else f"{timing['quiet_taken']}/{quiet_jobs} taken",
            "limit": QUIET_SHARE_OF_DRAIN,
            "met": timing["quiet_taken"] == quiet_jobs and share is not None and share <= QUIET_SHARE_OF_DRAIN,
        },
    }


def run_label(summary: Mapping[str, Any]) -> str:
    """``before`` (synchronous submit) or ``after`` (admission), with the size when it is not the full run."""
    label = "after" if summary["submit_path"].startswith("admission") else "before"
    config = summary["config"]
    if (config["jobs"], config["seconds"]) != (DEFAULT_JOBS, DEFAULT_SECONDS):
        label += f" ({config['jobs']} jobs in {config['seconds']:g} s)"
    return label


def run_burst(
    *,
    previous: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """One run, summarised and kept with the other labels of ``previous`` (an earlier section's result)."""
    summary = summarise(run_burst_once(log=log, **options))
    label = run_label(summary)
    runs = dict((previous or {}).get("runs") or {})
    runs[label] = summary
    ordered = {name: runs[name] for name in sorted(runs, key=lambda n: (not n.startswith("before"), n))}
    # The section's targets: the full "after" run once there is one, else "before", else this run.
    verdict_from = next((name for name in ("after", "before") if name in ordered), label)
    g, d, t = summary["gateway"], summary["delivery"], summary["timing"]
    log(
        f"burst [{label}]: answers {summary['posts']['answers']}, POST p50/p99 "
        f"{summary['posts']['latency_all']['p50_ms']}/{summary['posts']['latency_all']['p99_ms']} ms; gateway "
        f"{g['submits_per_job_posted']} submits/job, {g['answered_429']} 429s, peak {g['peak_in_flight']}, "
        f"{g['jobs_accepted_more_than_once']} accepted twice; {d['delivered_exactly_once']} delivered once; "
        f"drain {t['burst_drain_s']} s, quiet done {t['quiet_done_s']} s"
    )
    return {"runs": ordered, "latest": label, "targets_from": verdict_from, "targets": ordered[verdict_from]["targets"]}


def _previous(path: Path) -> Mapping[str, Any] | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        result: Mapping[str, Any] = json.loads(path.read_text())["benchmarks"]["burst"]["result"]
        return result
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="the noisy caller's jobs (default 2000)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="its POST window (default 60)")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT, help="the gateway's limit")
    parser.add_argument("--quiet-jobs", type=int, default=DEFAULT_QUIET_JOBS)
    parser.add_argument("--quiet-at", type=float, default=DEFAULT_QUIET_AT, help="s into the burst")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="the noisy caller's POST threads")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_SECONDS, help="s from the burst's start")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.seconds <= 0 or args.max_in_flight < 1 or args.workers < 1:
        parser.error("--jobs, --seconds, --max-in-flight and --workers must be positive")
    result = run_burst(
        previous=_previous(BENCH_DIR / "results.json"),
        log=lambda line: print(line, file=sys.stderr, flush=True),
        jobs=args.jobs,
        seconds=args.seconds,
        max_in_flight=args.max_in_flight,
        quiet_jobs=args.quiet_jobs,
        quiet_at=args.quiet_at,
        workers=args.workers,
        budget=args.budget,
    )
    print(json.dumps(result["runs"][result["latest"]], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Machinery of the reliability suite: its sizes, a stack of its own per module, a well-behaved API
client, and readers of what the pipeline did (jobs, SNS events, the gateway simulator's records, the
AWS call log).

Sizes come from ``RELIABILITY_SCALE``: ``small`` (the default, what ``make test`` runs) or ``full``
(``make reliability``: 300+ jobs under load). Figures of a run go to ``ResultsBook``, which the
suite's conftest prints at the end and writes as JSON with the command that produced them."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pixverse_local.harness import ROOT, TERMINAL, EventInbox, LocalClient, StackProcess

SCALE_ENV = "RELIABILITY_SCALE"
RESULTS_ENV = "RELIABILITY_RESULTS"
COMMAND_ENV = "RELIABILITY_COMMAND"
FULL_RESULTS_PATH = ROOT / "reliability" / "results.json"

# One of the doc's own example images: the simulator presumes its host serves an image (it fetches
# only loopback hosts; any other fails the request, as an unreachable image does at the gateway).
IMAGE_URL = "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/f1.png"
# Every model, with the smallest valid input besides the prompt (the simulator never fetches image_url).
MODEL_INPUTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pixverse-c1-text-to-video", {}),
    ("pixverse-v6-text-to-video", {"duration": 5}),
    ("pixverse", {"aspect_ratio": "16:9", "resolution": "720p", "duration": 5}),
    ("pixverse-i2v", {"resolution": "720p", "duration": "5", "image_url": IMAGE_URL}),
    ("pixverse-v6-image-to-video", {"image_url": IMAGE_URL}),
    ("pixverse-c1-image-to-video", {"image_url": IMAGE_URL}),
)


@dataclass(frozen=True)
class Scale:
    """How big each scenario is. Reconciler timings keep production's ratio (it looks at a job only
    once the pipeline had ample time to finish it), compressed to the run's length."""

    name: str
    load_jobs: int
    load_reconcile_after: int
    load_reconcile_every: int
    poll_faults: Mapping[int, int]  # gateway status-poll faults: status -> count
    fault_jobs: int
    multipart_jobs: int
    fault_reconcile_after: int
    fault_reconcile_every: int
    submit_faults: Mapping[str, int]  # "429" / "500" / "timeout" -> count
    media_faults: int  # media GETs answered 503
    module_timeout: int  # seconds, per test module (its stack and its run)


SCALES: Mapping[str, Scale] = {
    "small": Scale(
        name="small",
        load_jobs=40,
        load_reconcile_after=5,
        load_reconcile_every=2,
        poll_faults={429: 1, 500: 1},
        fault_jobs=30,
        multipart_jobs=3,
        fault_reconcile_after=10,
        fault_reconcile_every=3,
        submit_faults={"429": 3, "500": 2, "timeout": 1},
        media_faults=3,
        module_timeout=150,
    ),
    "full": Scale(
        name="full",
        load_jobs=320,
        load_reconcile_after=40,
        load_reconcile_every=20,
        poll_faults={429: 1, 500: 4},
        fault_jobs=160,
        multipart_jobs=16,
        fault_reconcile_after=60,
        fault_reconcile_every=10,
        submit_faults={"429": 6, "500": 4, "timeout": 2},
        media_faults=8,
        module_timeout=420,
    ),
}


def current_scale() -> Scale:
    name = os.environ.get(SCALE_ENV, "small").strip().lower() or "small"
    if name not in SCALES:
        raise ValueError(f"{SCALE_ENV} must be one of {', '.join(SCALES)}, got {name!r}")
    return SCALES[name]


# ------------------------------------------------------------------------------------------ results
class ResultsBook:
    """The suite's figures, by scenario; written as JSON at the end of the session."""

    def __init__(self, scale: Scale) -> None:
        self.scale = scale
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.scenarios: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, scenario: str, figures: Mapping[str, Any]) -> None:
        with self._lock:
            self.scenarios.setdefault(scenario, {}).update(figures)

    def command(self) -> str:
        return os.environ.get(COMMAND_ENV) or shlex.join(["python", "-m", "pytest", *sys.argv[1:]])

    def totals(self) -> dict[str, Any]:
        aws: Counter[str] = Counter()
        gateway: Counter[str] = Counter()
        for figures in self.scenarios.values():
            aws.update(figures.get("aws_faults_injected", {}))
            gateway.update(figures.get("gateway_faults_injected", {}))
        return {
            "jobs": sum(int(f.get("jobs", 0)) for f in self.scenarios.values()),
            "duplicate_callbacks": sum(int(f.get("duplicate_callbacks", 0)) for f in self.scenarios.values()),
            "faults_injected": {"aws": dict(sorted(aws.items())), "gateway": dict(sorted(gateway.items()))},
            "jobs_lost": sum(int(f.get("jobs_lost", 0)) for f in self.scenarios.values()),
            "duplicate_events": sum(int(f.get("duplicate_events", 0)) for f in self.scenarios.values()),
        }

    def document(self) -> dict[str, Any]:
        return {
            "command": self.command(),
            "scale": self.scale.name,
            "started_at": self.started_at,
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "totals": self.totals(),
            "scenarios": self.scenarios,
        }

    def write(self, default_dir: Path) -> Path:
        """Write the document to RELIABILITY_RESULTS, reliability/results.json for a full run, or
        ``default_dir`` (a small run must not rewrite the committed figures)."""
        configured = os.environ.get(RESULTS_ENV)
        if configured:
            path = Path(configured)
        elif self.scale.name == "full":
            path = FULL_RESULTS_PATH
        else:
            path = default_dir / "reliability-results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.document(), indent=2, sort_keys=False) + "\n")
        return path


# ------------------------------------------------------------------------------------------ stack
@contextlib.contextmanager
def local_stack(
    log_path: Path, env: Mapping[str, str], parameters: Mapping[str, str] | None = None
) -> Iterator[tuple[StackProcess, LocalClient]]:
    """``python -m pixverse_local`` of its own, with ``env`` and template ``parameters`` (the local
    stack restores DynamoDB's atomic writes and one event per invocation, see pixverse_local.aws.moto_server);
    asserts that it stops cleanly."""
    process = StackProcess(
        log_path=log_path, env=dict(env), parameter_overrides=dict(parameters or {}), start_timeout=90
    )
    process.start()
    assert process.ready is not None
    client = LocalClient(process.ready)
    try:
        yield process, client
    finally:
        client.close()
        code = process.stop()
        assert code == 0, f"local stack exited {code}; log: {log_path}"


# ------------------------------------------------------------------------------------------ submitting
def job_body(index: int, label: str, directives: str = "") -> dict[str, Any]:
    """A valid POST /jobs body for model ``index`` (round robin), its prompt carrying ``directives``."""
    model, extra = MODEL_INPUTS[index % len(MODEL_INPUTS)]
    prompt = f"{label} {index} {uuid.uuid4().hex[:8]} {directives}".strip()
    return {"model": model, "input": {"prompt": prompt, **extra}, "metadata": {"suite": "reliability", "n": index}}


@dataclass
class Submission:
    """One logical submission by the client: retried with the same Idempotency-Key until answered
    202, then resubmitted under a new key if its job ended SUBMIT_FAILED."""

    index: int
    body: dict[str, Any]
    keys: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)  # every job the API named, in order
    error: str | None = None

    @property
    def job_id(self) -> str | None:
        """The job the client holds now (its latest 202)."""
        return self.job_ids[-1] if self.job_ids else None


class PatientClient:
    """The API as a well-behaved client uses it: every submit carries an Idempotency-Key, and an
    answer that does not settle the request (5xx, 429, 409 "in progress", a dropped connection)
    is retried with the same key after the Retry-After or a short backoff, a bounded number of
    times. Jobs are read as the IAM user named ``caller`` (the local API's X-Local-Principal-Arn)."""

    def __init__(self, api_url: str, caller: str, *, max_attempts: int = 10, timeout: float = 40.0) -> None:
        self.caller = caller
        self.max_attempts = max_attempts
        self.http = httpx.Client(
            base_url=api_url,
            timeout=timeout,
            headers={"X-Local-Principal-Arn": f"arn:aws:iam::000000000000:user/{caller}"},
            # A connection per request: on a kept-alive one the local API's replies wait ~40 ms for a
            # delayed ACK (its handler does not disable Nagle's algorithm).
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=0),
        )
        self.answers: Counter[int] = Counter()
        self.transport_errors = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def _count(self, status: int) -> None:
        with self._lock:
            self.answers[status] += 1

    def submit(self, submission: Submission) -> Submission:
        """Submit under a new key; retry what does not settle it. Fills ``submission`` in place."""
        key = f"rel-{uuid.uuid4().hex}"
        submission.keys.append(key)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.http.post("/jobs", json=submission.body, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                with self._lock:
                    self.transport_errors += 1
                submission.error = f"{type(exc).__name__}: {exc}"
                time.sleep(min(2.0, 0.2 * attempt))
                continue
            self._count(response.status_code)
            submission.answers.append(response.status_code)
            payload = _json_or_empty(response)
            if response.status_code == 202:
                submission.job_ids.append(str(payload["job_id"]))
                submission.error = None
                return submission
            named = (payload.get("error") or {}).get("job_id") if isinstance(payload.get("error"), dict) else None
            if named and named not in submission.job_ids:
                submission.job_ids.append(str(named))
            if not _worth_retrying(response, payload):
                submission.error = f"HTTP {response.status_code}: {response.text[:300]}"
                return submission
            time.sleep(_retry_delay(response, attempt))
        submission.error = f"no 202 after {self.max_attempts} attempts; answers {submission.answers}"
        return submission

    def submit_all(self, submissions: Sequence[Submission], workers: int = 32) -> list[Submission]:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reliability-submit") as pool:
            return list(pool.map(self.submit, submissions))

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job of the caller, by id (GET /jobs, all pages)."""
        found: dict[str, dict[str, Any]] = {}
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if token:
                params["next_token"] = token
            response = self.http.get("/jobs", params=params)
            response.raise_for_status()
            page = response.json()
            for job in page["jobs"]:
                found[job["job_id"]] = job
            token = page.get("next_token")
            if not token:
                return found


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _worth_retrying(response: httpx.Response, payload: Mapping[str, Any]) -> bool:
    if response.status_code >= 500 or response.status_code == 429:
        return True
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    # The key's first request is still running: the documented answer is "retry later".
    return response.status_code == 409 and "in progress" in str((error or {}).get("message", ""))


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    raw = str(response.headers.get("Retry-After", ""))
    if raw.isascii() and raw.isdigit():
        return min(5.0, float(raw))
    return min(2.0, 0.25 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


# ------------------------------------------------------------------------------------------ observing
class Observer:
    """What the pipeline did, read the way a user (API, SNS subscription) or an operator (the
    simulator's records, the queues, the AWS call log) would."""

    def __init__(self, client: LocalClient, api: PatientClient) -> None:
        self.client = client
        self.api = api
        self.inbox = EventInbox(client)

    def close(self) -> None:
        self.inbox.close()

    def events_by_job(self, wait: float = 0.0) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for event in self.inbox.collect(wait=wait):
            grouped.setdefault(str(event.get("subject")), []).append(event)
        return grouped

    def wait_until(self, settled: Callable[[], bool], timeout: float, interval: float = 1.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if settled():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def announced(self, job_ids: Iterable[str]) -> bool:
        """Whether every job is terminal and, unless SUBMIT_FAILED by its submit, has an event."""
        wanted = set(job_ids)
        jobs = self.api.jobs()
        events = self.events_by_job()
        for job_id in wanted:
            job = jobs.get(job_id)
            if job is None or job["status"] not in TERMINAL:
                return False
            if job["status"] != "SUBMIT_FAILED" and job_id not in events:
                return False
        return True

    def gateway_records(self) -> dict[str, dict[str, Any]]:
        """The simulator's request records by request_id (with media sha256)."""
        assert self.client.gateway is not None
        response = self.client.gateway.get("/_sim/requests", timeout=120)
        response.raise_for_status()
        return {record["request_id"]: record for record in response.json()}

    def gateway_stats(self) -> dict[str, int]:
        assert self.client.gateway is not None
        stats: dict[str, int] = self.client.gateway.get("/_sim/stats").json()
        return stats

    def add_gateway_fault(self, spec: Mapping[str, Any]) -> None:
        assert self.client.gateway is not None
        self.client.gateway.post("/_sim/faults", json=dict(spec)).raise_for_status()

    def gateway_faults_injected(self, configured: Mapping[str, int]) -> dict[str, int]:
        """How many of the ``configured`` faults (``"<target>=<status>": count``, as added with
        add_gateway_fault) the simulator answered: those no longer pending."""
        assert self.client.gateway is not None
        pending: Counter[str] = Counter()
        for fault in self.client.gateway.get("/_sim/faults").json()["faults"]:
            target = next(k for k in fault if k.endswith("_status"))
            pending[f"{target}={fault[target]}"] += int(fault["remaining"])
        return {kind: count - pending[kind] for kind, count in configured.items()}

    def queue_depth(self, queue_url: str) -> int:
        attributes = self.client.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def object_keys(self, prefix: str = "") -> set[str]:
        bucket = self.client.ready["bucket"]
        keys: set[str] = set()
        for page in self.client.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys


def mixed_up_submissions(submissions: Sequence[Submission], jobs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Submissions whose job is not theirs: shared with another submission, or holding another input."""
    holders: dict[str, list[int]] = {}
    for submission in submissions:
        if submission.job_id:
            holders.setdefault(submission.job_id, []).append(submission.index)
    problems = [
        f"submissions {indexes} all answered with job {job_id}"
        for job_id, indexes in holders.items()
        if len(indexes) > 1
    ]
    for submission in submissions:
        job = jobs.get(str(submission.job_id)) if submission.job_id else None
        if job is not None and job.get("input") != submission.body["input"]:
            problems.append(f"submission {submission.index}: job {submission.job_id} holds another input")
    return problems


def webhook_job_id(record: Mapping[str, Any]) -> str | None:
    """The job a gateway request belongs to, from the signed callback URL it was given."""
    url = record.get("webhook_url")
    if not url:
        return None
    return httpx.URL(str(url)).path.rsplit("/", 1)[-1]


def jobs_accepted_twice(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Jobs the gateway accepted more than once (a duplicate, billed submit), with how many times."""
    counts = Counter(str(webhook_job_id(record)) for record in records)
    return {job_id: n for job_id, n in counts.items() if n > 1}


@dataclass
class DeliveryCheck:
    """The outcome of checking delivered jobs against what the gateway served."""

    delivered: int = 0
    objects_verified: int = 0
    problems: list[str] = field(default_factory=list)


def verify_deliveries(
    client: LocalClient,
    jobs: Mapping[str, Mapping[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
    job_ids: Iterable[str],
    workers: int = 8,
) -> DeliveryCheck:
    """Each job must be DELIVERED with one output per media URL the gateway served, and each S3
    object's bytes must hash to the simulator's sha256 of that media (read back, not trusted)."""
    check = DeliveryCheck()
    objects: list[tuple[str, str, str, int, str]] = []  # job, bucket, key, size, sha256 expected
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None or job["status"] != "DELIVERED":
            check.problems.append(f"{job_id}: {job['status'] if job else 'missing'}, not DELIVERED")
            continue
        record = records.get(str(job.get("request_id")))
        if record is None:
            check.problems.append(f"{job_id}: no gateway record for request {job.get('request_id')}")
            continue
        served = record["media"]
        outputs = job["outputs"]
        if len(outputs) != len(served):
            check.problems.append(f"{job_id}: {len(outputs)} outputs for {len(served)} media")
            continue
        check.delivered += 1
        for output, media in zip(outputs, served, strict=True):
            if (output["size"], output["sha256"]) != (media["size"], media["sha256"]):
                check.problems.append(f"{job_id}: output {output['key']} recorded {output['sha256']}")
            objects.append((job_id, output["bucket"], output["key"], int(media["size"]), str(media["sha256"])))

    def read(item: tuple[str, str, str, int, str]) -> str | None:
        job_id, bucket, key, size, sha256 = item
        try:
            got = client.object_sha256(bucket, key)
        except Exception as exc:
            return f"{job_id}: s3://{bucket}/{key} unreadable: {exc}"
        return None if got == (size, sha256) else f"{job_id}: s3://{bucket}/{key} holds {got}, served {sha256}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for problem in pool.map(read, objects):
            if problem:
                check.problems.append(problem)
            else:
                check.objects_verified += 1
    return check


def event_counts(events: Mapping[str, Sequence[Mapping[str, Any]]], job_ids: Iterable[str]) -> dict[str, Any]:
    """Per job: SNS messages, distinct events (by id) and their types."""
    messages: dict[str, int] = {}
    distinct: dict[str, int] = {}
    types: dict[str, list[str]] = {}
    for job_id in job_ids:
        received = list(events.get(job_id, []))
        messages[job_id] = len(received)
        distinct[job_id] = len({str(e.get("id")) for e in received})
        types[job_id] = sorted({str(e.get("type")) for e in received})
    return {"messages": messages, "distinct": distinct, "types": types}


def duplicate_callbacks(records: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(extra copies of final callbacks the gateway sent, all callback POSTs including retries)."""
    extra = posts = 0
    for record in records:
        attempts = record.get("callbacks") or []
        posts += len(attempts)
        copies = {attempt.get("copy") for attempt in attempts}
        extra += max(0, len(copies) - 1)
    return extra, posts


def aws_call_log(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(calls, injected faults) by ``service.Operation`` from LOCAL_AWS_CALL_LOG."""
    calls: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    if not path.exists():
        return calls, faults
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        name = f"{entry['service']}.{entry['operation']}"
        calls[name] += 1
        if entry.get("fault"):
            faults[name] += 1
    return calls, faults


def shorten(items: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` items, for an assertion message."""
    shown = list(items[:limit])
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(shown) + more

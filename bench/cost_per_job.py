"""Cost per job: AWS API calls and gateway calls per delivered job, DynamoDB write units per job and
a Lambda cost estimate, counted over N jobs (default 100) through the local stack.

The local stack runs in this benchmark's child process (``LocalStack``, moto server in its own
process), so the child can also watch what the stack's own call log cannot tell:

* every AWS call each function makes: the stack's ``LOCAL_AWS_CALL_LOG`` (attributed by function);
* DynamoDB write request units: for every write the functions make, the item before (the previous
  image, or what the write returned) and after (read back at once on another client, not counted)
  give its size; WRU = ceil(max(before, after) / 1 KB), at least 1, for the table and for each GSI
  the item is written to or removed from (both GSIs project ALL attributes), and ceil(size / 1 KB)
  for a write whose condition failed (DynamoDB still charges it). moto has no capacity accounting
  (ReturnConsumedCapacity answers a constant), hence this;
* Lambda durations: each invocation timed around the handler (a new container's import timed
  apart, as init).

Jobs are submitted one after another through the local API and counted delivered by their SNS
events (a queue subscribed to the topic, on the benchmark's own clients, so polling for the
outcome costs the functions nothing). The reconciler is kept out of the way with
RECONCILE_AFTER_SECONDS=3600 (its runs in the meantime query an index and find nothing; counted
apart, per run). Secret reads are per container, not per job, and reported apart.

    python bench/cost_per_job.py --jobs 100
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
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, ROOT, median, run_json_child
from pixverse_local.aws.moto_server import attribute_value_size
from pixverse_local.aws.moto_server import item_size as moto_item_size

# Lambda arm64 on-demand, us-east-1, as published on aws.amazon.com/lambda/pricing (checked 2026):
# duration per GB-second and requests per million. Free tier ignored.
PRICE_GB_SECOND = 0.0000133334
PRICE_PER_MILLION_REQUESTS = 0.20
# DynamoDB on-demand write request units, us-east-1 (standard table class), per million.
PRICE_PER_MILLION_WRU = 0.625
MODEL = "pixverse-v6-text-to-video"

# The fewest calls the design needs for one delivered job (terminal webhook mode, one media file
# of at most one part, 8 MiB), and why. See MINIMUM_REASONS.
MINIMUM_AWS = {
    # Put ACCEPTED; Update SUBMITTING (the claim), QUEUED + request_id, COMPLETED, COPYING, DELIVERED,
    # outbox flag
    "dynamodb": 7,
    "sqs": 2,  # SendMessage: the submit message (admission), the webhook's copy request
    "s3": 1,  # PutObject
    "sns": 1,  # Publish: the one final event
    "events": 1,  # PutEvents: the same event on the EventBridge bus
}
MINIMUM_GATEWAY = {"submit": 1, "status_polls": 0, "media_gets": 1}
MINIMUM_REASONS = [
    "DynamoDB PutItem (ACCEPTED): the record exists before anything is queued or sent, so a paid request is never lost",
    "SQS SendMessage: the submit message (admission: POST answers at once, the submitter feeds the gateway)",
    "DynamoDB UpdateItem (SUBMITTING, conditional on ACCEPTED): the claim before the submit, so two messages "
    "for one job never submit it twice",
    "DynamoDB UpdateItem (QUEUED + request_id): the request_id is stored the moment it is known",
    "DynamoDB UpdateItem (COMPLETED, conditional): the callback's transition; idempotency lives in this one write",
    "SQS SendMessage: the copy request, sent only by the write that made the transition",
    "DynamoDB UpdateItem (COPYING + lease): a duplicate message cannot copy at the same time; it returns the "
    "record (ALL_OLD), so no read is needed",
    "S3 PutObject: the media (one part; larger files add CreateMultipartUpload, one UploadPart per 8 MiB, "
    "CompleteMultipartUpload and PutObjectTagging for the sha256 tag)",
    "DynamoDB UpdateItem (DELIVERED + outputs)",
    "SNS Publish: the one event",
    "EventBridge PutEvents: the same event on the bus (one entry), for rules with content filters",
    "DynamoDB UpdateItem (outbox flag event_published_at): a crash between publish and flag re-publishes the "
    "same event id instead of losing or doubling it",
    "gateway: one submit, no status poll when the callback arrives, one media GET per file",
    "not per job: Secrets Manager reads (cached per container) and the reconciler's runs (per schedule)",
]
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem"}
# Time the write-unit tracker spends in a function's worker thread (its read-back), taken off that
# invocation's duration.
_overhead = threading.local()


# ------------------------------------------------------------------ DynamoDB item sizes and WRU
# DynamoDB's item sizing rules, as the local stack's moto server enforces the 400 KB limit with them.
attribute_size = attribute_value_size


def item_size(item: dict[str, Any] | None) -> int:
    return moto_item_size(item) if item else 0


def units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


class WriteUnits:
    """WRU of every DynamoDB write the functions make (see the module docstring)."""

    def __init__(self, reader: Any, indexes: dict[str, tuple[str, ...]]) -> None:
        self._reader = reader
        self._indexes = indexes
        self._images: dict[str, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        self.table: Counter[str] = Counter()  # by operation
        self.index: Counter[str] = Counter()  # by index name
        self.failed_conditions = 0
        self.writes = 0

    def before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if model.name not in WRITE_OPERATIONS:
            return
        body = json.loads(params.get("body") or b"{}")
        key = body.get("Key") or {"job_id": (body.get("Item") or {}).get("job_id")}
        context["bench_write"] = (body.get("TableName"), key)

    def after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        target = context.get("bench_write")
        if target is None:
            return
        table, key = target
        key_text = json.dumps(key, sort_keys=True)
        failed = parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
        reading = time.perf_counter()
        after = None if failed else self._reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        _overhead.seconds = getattr(_overhead, "seconds", 0.0) + time.perf_counter() - reading
        with self._lock:
            self.writes += 1
            known = self._images.get(key_text)
            before = parsed.get("Attributes") if "Attributes" in parsed else known
            if failed:
                current = parsed.get("Item") or known
                self.table[f"{model.name} (condition failed)"] += units(item_size(current))
                self.failed_conditions += 1
                return
            self.table[model.name] += units(max(item_size(before), item_size(after)))
            for index, keys in self._indexes.items():
                was_in = bool(before) and all(k in before for k in keys)
                is_in = bool(after) and all(k in after for k in keys)
                if was_in and is_in and any(before[k] != after[k] for k in keys):  # type: ignore[index]
                    self.index[index] += units(item_size(before)) + units(item_size(after))
                elif is_in:
                    self.index[index] += units(item_size(after))
                elif was_in:
                    self.index[index] += units(item_size(before))
            self._images[key_text] = after


# ------------------------------------------------------------------ Lambda durations
class Durations:
    """Handler durations by function, a new container's import (init) apart."""

    def __init__(self) -> None:
        self.invocations: dict[str, list[float]] = defaultdict(list)
        self.inits: dict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Time each handler call in the thread that runs it (the emulated Lambda's worker), where
        the write tracker's read-backs also run, so their time comes off that invocation alone; a
        new container's import (init) happens before, in the invoking thread, and is timed apart."""
        from pixverse_local.aws.lambda_runtime import Invocation, LocalFunction

        original_call = Invocation._call
        original_load = LocalFunction._load_handler
        durations = self

        def call(invocation: Any) -> Any:
            _overhead.seconds = 0.0
            with durations._lock:
                durations.in_flight += 1
            started = time.perf_counter()
            try:
                return original_call(invocation)
            finally:
                elapsed = time.perf_counter() - started - _overhead.seconds
                with durations._lock:
                    durations.in_flight -= 1
                    durations.invocations[invocation._function.spec.logical_id].append(elapsed)

        def load(spec: Any) -> Any:
            started = time.perf_counter()
            try:
                return original_load(spec)
            finally:
                elapsed = time.perf_counter() - started
                with durations._lock:
                    durations.inits[spec.logical_id].append(elapsed)

        Invocation._call = call  # type: ignore[method-assign]
        LocalFunction._load_handler = staticmethod(load)  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            Invocation._call = original_call  # type: ignore[method-assign]
            LocalFunction._load_handler = staticmethod(original_load)  # type: ignore[method-assign,assignment]

    def wait_quiet(self, quiet: float = 0.6, timeout: float = 30.0) -> None:
        """Until no invocation is running or has started for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                busy = self.in_flight
                count = sum(len(v) for v in self.invocations.values())
            if busy or count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)


# ------------------------------------------------------------------ the run (child process)
def track_dynamodb_writes(tracker: Sequence[WriteUnits]) -> None:
    """Hand every DynamoDB call of the functions' clients to ``tracker[0]`` once it holds one.
    Registered on boto3's default session, which the functions' clients come from: call it
    before the stack creates them."""

    def before_call(**kwargs: Any) -> None:
        if tracker:
            tracker[0].before_call(**kwargs)

    def after_call(**kwargs: Any) -> None:
        if tracker:
            tracker[0].after_call(**kwargs)

    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb", before_call)
    boto3.DEFAULT_SESSION.events.register("after-call.dynamodb", after_call)


def _wait_for_events(sqs: Any, queue_url: str, wanted: int, timeout: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < wanted and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            events.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return events


def run_child(jobs: int, out: Path) -> None:
    import boto3
    import httpx
    from pixverse_local.aws.provision import TABLE, TOPIC
    from pixverse_local.stack import LocalStack

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        region_name="us-east-1",
    )
    tracker: list[WriteUnits] = []  # set once the stack is up and the jobs start

    track_dynamodb_writes(tracker)

    durations = Durations()
    with (
        tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp,
        open(os.devnull, "w") as sink,
        durations.patched(),
        # Functions log to stdout, as in Lambda: here nobody reads it.
        contextlib.redirect_stdout(sink),
    ):
        call_log = Path(tmp) / "calls.jsonl"
        env = {
            **os.environ,
            "LOCAL_AWS_CALL_LOG": str(call_log),
            "RECONCILE_AFTER_SECONDS": "3600",
            "LOCAL_API_PORT": "0",
            # As in AWS, metrics are written (to the log), so the durations include them.
            "POWERTOOLS_METRICS_DISABLED": "false",
        }
        stack = LocalStack(ROOT / "template.yaml", env=env, api_port=0)
        stack_started = time.monotonic()
        stack.start()
        try:
            reader = session.client("dynamodb", endpoint_url=stack.aws_endpoint)
            table, topic = stack.first(TABLE), stack.first(TOPIC)
            assert table is not None and topic is not None
            description = reader.describe_table(TableName=table.ref)["Table"]
            indexes = {
                gsi["IndexName"]: tuple(k["AttributeName"] for k in gsi["KeySchema"])
                for gsi in description.get("GlobalSecondaryIndexes", [])
            }
            sqs = session.client("sqs", endpoint_url=stack.aws_endpoint)
            sns = session.client("sns", endpoint_url=stack.aws_endpoint)
            inbox = sqs.create_queue(QueueName="bench-cost-inbox")["QueueUrl"]
            inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic.ref, Protocol="sqs", Endpoint=inbox_arn)
            gateway = httpx.Client(base_url=stack.gateway_url, timeout=10.0)
            api = httpx.Client(base_url=stack.api_url, timeout=30.0)
            gateway.post("/_sim/reset").raise_for_status()
            call_log.write_text("")
            tracker.append(WriteUnits(reader, indexes))
            started = time.monotonic()
            submitted = []
            for number in range(jobs):
                response = api.post(
                    "/jobs",
                    json={
                        "model": MODEL,
                        "input": {"prompt": f"A lighthouse at dusk, take {number}", "duration": 5},
                        "metadata": {"bench": number},
                    },
                )
                response.raise_for_status()
                submitted.append(response.json()["job_id"])
            events = _wait_for_events(sqs, inbox, jobs, timeout=60.0 + jobs)
            # The outbox flag is written after the event goes out: wait for the last invocations.
            durations.wait_quiet()
            elapsed = time.monotonic() - started
            writes = tracker.pop()
            stats = gateway.get("/_sim/stats").json()
            containers = {lid: fn.containers for lid, fn in stack.functions.items()}
            memory = {lid: fn.spec.memory_size for lid, fn in stack.functions.items()}
            calls = [json.loads(line) for line in call_log.read_text().splitlines() if line.strip()]
        finally:
            stack.stop()
    result = {
        "jobs_submitted": len(submitted),
        "events": Counter(str(e.get("type")) for e in events),
        "delivered": sum(1 for e in events if e.get("type") == "pixverse.job.delivered"),
        "distinct_jobs_with_events": len({e.get("subject") for e in events}),
        "elapsed_s": round(elapsed, 1),
        "stack_start_s": round(started - stack_started, 1),
        "calls": calls,
        "gateway_stats": stats,
        "containers": containers,
        "memory_mb": memory,
        "invocations_s": dict(durations.invocations),
        "inits_s": dict(durations.inits),
        "wru_table": dict(writes.table),
        "wru_index": dict(writes.index),
        "dynamodb_writes_seen": writes.writes,
        "failed_conditions": writes.failed_conditions,
    }
    out.write_text(json.dumps(result, default=lambda o: float(o) if isinstance(o, Decimal) else str(o)))


# ------------------------------------------------------------------ the summary (parent)
def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    delivered = max(1, int(raw["delivered"]))
    per_container: Counter[str] = Counter()
    per_run: Counter[str] = Counter()
    per_job: dict[str, Counter[str]] = defaultdict(Counter)
    for call in raw["calls"]:
        if call.get("fault"):
            continue
        name = f"{call['service']}.{call['operation']}"
        if call["operation"] == "GetSecretValue":
            per_container[f"{call['function']}: {name}"] += 1
        elif call["function"] == "ReconcileFunction":
            per_run[name] += 1
        else:
            per_job[call["service"]][f"{call['function']}: {call['operation']}"] += 1
    by_service = {
        service: {
            "per_job": round(sum(ops.values()) / delivered, 2),
            "operations_per_job": {op: round(n / delivered, 2) for op, n in sorted(ops.items())},
        }
        for service, ops in sorted(per_job.items())
    }
    aws_per_job = round(sum(s["per_job"] for s in by_service.values()), 2)
    aws_minimum = sum(MINIMUM_AWS.values())
    stats = raw["gateway_stats"]
    gateway = {
        "submit": round(stats.get("submits_received", 0) / delivered, 2),
        "status_polls": round(stats.get("status_polls", 0) / delivered, 2),
        "media_gets": round(stats.get("media_gets", 0) / delivered, 2),
    }
    gateway_per_job = round(sum(gateway.values()), 2)
    gateway_minimum = sum(MINIMUM_GATEWAY.values())
    callbacks_per_job = round(stats.get("callbacks_attempted", 0) / delivered, 2)

    wru_table = sum(raw["wru_table"].values())
    wru_index = sum(raw["wru_index"].values())
    lambda_rows = {}
    total_cost = 0.0
    for function, durations in sorted(raw["invocations_s"].items()):
        if function == "ReconcileFunction":
            continue
        memory_gb = raw["memory_mb"][function] / 1024
        billed = [math.ceil(d * 1000) / 1000 for d in durations]
        invocations_per_job = len(durations) / delivered
        mean_billed = sum(billed) / len(billed)
        cost = (
            1000 * invocations_per_job * (mean_billed * memory_gb * PRICE_GB_SECOND + PRICE_PER_MILLION_REQUESTS / 1e6)
        )
        total_cost += cost
        lambda_rows[function] = {
            "memory_mb": raw["memory_mb"][function],
            "invocations_per_job": round(invocations_per_job, 2),
            "median_ms": round(median(durations) * 1000, 1),
            "mean_billed_ms": round(mean_billed * 1000, 1),
            "containers": raw["containers"].get(function),
            "median_init_ms": round(median(raw["inits_s"].get(function, [])) * 1000, 1)
            if raw["inits_s"].get(function)
            else None,
            "usd_per_1000_jobs": round(cost, 6),
        }
    return {
        "jobs": raw["jobs_submitted"],
        "delivered": raw["delivered"],
        "events_by_type": raw["events"],
        "one_event_per_job": raw["distinct_jobs_with_events"] == raw["jobs_submitted"] == raw["delivered"]
        and sum(raw["events"].values()) == raw["jobs_submitted"],
        "elapsed_s": raw["elapsed_s"],
        "aws_calls": {
            "per_job": aws_per_job,
            "by_service": by_service,
            "minimum": {"per_job": aws_minimum, "by_service": MINIMUM_AWS},
            "per_container_not_per_job": dict(per_container),
            "containers": raw["containers"],
            "reconciler_runs_not_per_job": dict(per_run),
        },
        "gateway_calls": {
            "per_job": gateway_per_job,
            "by_kind": gateway,
            "minimum": {"per_job": gateway_minimum, "by_kind": MINIMUM_GATEWAY},
            "callbacks_received_per_job": callbacks_per_job,
        },
        "minimum_reasons": MINIMUM_REASONS,
        "dynamodb_write_units": {
            "per_job": round((wru_table + wru_index) / delivered, 2),
            "table_per_job": round(wru_table / delivered, 2),
            "indexes_per_job": round(wru_index / delivered, 2),
            "table_by_operation_per_job": {k: round(v / delivered, 2) for k, v in sorted(raw["wru_table"].items())},
            "by_index_per_job": {k: round(v / delivered, 2) for k, v in sorted(raw["wru_index"].items())},
            "writes_per_job": round(raw["dynamodb_writes_seen"] / delivered, 2),
            "failed_conditions": raw["failed_conditions"],
            "usd_per_1000_jobs": round((wru_table + wru_index) / delivered * 1000 * PRICE_PER_MILLION_WRU / 1e6, 6),
            "method": "item sizes before/after each write (DynamoDB's sizing rules), table + each ALL-projected GSI",
        },
        "lambda": {
            "by_function": lambda_rows,
            "usd_per_1000_jobs": round(total_cost, 6),
            "assumptions": "arm64 us-east-1 on-demand: $0.0000133334 per GB-s, $0.20 per 1M requests (2026 price "
            "list, no free tier); durations measured here on x86 against moto (local latencies, a shared 2-core "
            "machine), billed per 1 ms, memory from template.yaml; init (cold start) billed since 2025-08-01 is "
            "not included; the reconciler is per schedule, not per job",
        },
        "targets": {
            "aws_calls_per_job": {
                "value": aws_per_job,
                "limit": aws_minimum + 2,
                "met": aws_per_job <= aws_minimum + 2,
            },
            "gateway_calls_per_job": {
                "value": gateway_per_job,
                "limit": gateway_minimum + 2,
                "met": gateway_per_job <= gateway_minimum + 2,
            },
        },
    }


def run_cost(jobs: int = 100, *, timeout: float = 900.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The count in a child process (the local stack inside it); the summary."""
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        out = Path(tmp) / "cost.json"
        run_json_child(
            [str(BENCH_DIR / "cost_per_job.py"), "--child", "--jobs", str(jobs), "--out", str(out)], timeout=timeout
        )
        raw = json.loads(out.read_text())
    summary = summarise(raw)
    log(
        f"cost: {summary['delivered']}/{summary['jobs']} delivered in {summary['elapsed_s']} s; AWS calls per job "
        f"{summary['aws_calls']['per_job']} (minimum {summary['aws_calls']['minimum']['per_job']}), gateway calls per "
        f"job {summary['gateway_calls']['per_job']}, WRU per job {summary['dynamodb_write_units']['per_job']}"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        assert args.out is not None
        run_child(args.jobs, args.out)
        print(json.dumps({"ok": True}), flush=True)
        return 0
    print(json.dumps(run_cost(args.jobs, log=lambda line: print(line, file=sys.stderr, flush=True)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

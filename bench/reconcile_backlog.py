"""Reconciler over a backlog: 5,000 unfinished jobs whose callbacks never came, on the local stack;
gateway status polls per second and the time until no job is due any more.

The jobs are written straight into the jobs table (as JobService writes them: PROCESSING, with a
request_id, created one to two hours ago, their first look ``check_at`` due) and their requests
seeded into the gateway simulator (``POST /_sim/requests``: they stand at their status for good,
no callbacks). Then ``ReconcileFunction`` is invoked through the local stack's Lambda emulation
(its 300 s timeout and the time budget it keeps) again and again, as the schedule would, until a
run finds nothing due. The simulator answers each status poll after ``--latency-ms`` (default 200,
within the real gateway's 100-300 ms), which is what RECONCILE_CONCURRENCY (48) is sized for:
48 / 0.2 s = 240 polls/s at most. Two backlogs:

* ``generating``: every job still PROCESSING at the gateway (a gateway slower than
  RECONCILE_AFTER_SECONDS): each poll finds nothing new and pushes the job's next look, one
  conditional write. The reconciler's own throughput; it carries the target (100 polls/s).
* ``callbacks_lost``: half the jobs FAILED at the gateway, half still PROCESSING: a poll that
  brings an outcome moves the job and sends its copy request, and the copier publishes the failed
  event at the same time, on the same emulator (moto server, one process, every DynamoDB write
  under one lock: about 3.7 ms of its CPU each), which then bounds both. Shown, not a target: in
  AWS the copier runs in Lambdas of its own against DynamoDB.

Measured per backlog: polls per second (the simulator's own count of status polls over the runs'
wall time), time to clear, the runs' reports, the AWS calls the reconciler made per job (the local
stack's call log), and the reconciler's own CPU per job (its worker and index-reader threads),
from which the vCPU, hence the Lambda memory, 100 polls/s take.

    python bench/reconcile_backlog.py --jobs 5000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, ROOT, run_json_child

TARGET_POLLS_PER_SECOND = 100
# Backlog name -> share of its jobs with an outcome (FAILED) at the gateway; the rest are PROCESSING.
BACKLOGS = {"generating": 0.0, "callbacks_lost": 0.5}
TARGET_BACKLOG = "generating"
MODEL = "pixverse-v6-text-to-video"
OWNER = "arn:aws:iam::000000000000:role/bench-reconcile-backlog"
# A scenario gives up after this long (the section stays bounded whatever the machine does).
SCENARIO_SECONDS = 900.0
# Lambda gives a function one vCPU at 1,769 MB and CPU in proportion below that
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
MB_PER_VCPU = 1769
PROMPT = ("A lighthouse at dusk, waves breaking on the rocks below, gulls over the foam. " * 6)[:400]


# ------------------------------------------------------------------ the run (child process)
def _job_items(count: int, request_ids: Sequence[str], now: datetime) -> Iterator[dict[str, Any]]:
    """``count`` jobs as JobService and JobStore.create write them, created one to two hours ago,
    PROCESSING, each due (``check_at`` = created_at + 900 s, ReconcileAfterSeconds' default)."""
    from boto3.dynamodb.types import TypeSerializer
    from pixverse_jobs.clock import to_iso
    from pixverse_jobs.store import OWNER_SHARDS, first_check_at, owner_shard_key, shard_of, unfinished_key

    serializer = TypeSerializer()
    for n in range(count):
        job_id = f"job_{uuid.uuid4().hex}"
        created_at = to_iso(now - timedelta(seconds=7200 - n * 3600 // count))
        record = {
            "job_id": job_id,
            "owner": OWNER,
            "owner_shard": owner_shard_key(OWNER, shard_of(job_id, OWNER_SHARDS)),
            "model": MODEL,
            "input": {"prompt": PROMPT, "duration": 5},
            "gateway_defaults": {},
            "metadata": {"order": f"bench-{n}"},
            "webhook_mode": "terminal",
            "status": "PROCESSING",
            "request_id": request_ids[n],
            "created_at": created_at,
            "updated_at": created_at,
            "expires_at": int(now.timestamp()) + 86400,
            "unfinished": unfinished_key(job_id),
            "check_at": first_check_at(created_at, 900),
        }
        yield {k: serializer.serialize(v) for k, v in record.items()}


def _put_all(ddb: Any, table: str, items: Iterator[dict[str, Any]]) -> int:
    """BatchWriteItem, 25 items a call, unprocessed items asked again."""
    written = 0
    batch: list[dict[str, Any]] = []
    for item in [*items, None]:
        if item is not None:
            batch.append({"PutRequest": {"Item": item}})
        if len(batch) == 25 or (item is None and batch):
            pending = {table: batch}
            while pending:
                pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            written += len(batch)
            batch = []
    return written


def _still_due(ddb: Any, table: str, due_by: int) -> int:
    """Entries of the unfinished index due by ``due_by``, over every key (Select COUNT)."""
    from pixverse_jobs.store import CHECK_AT, UNFINISHED, UNFINISHED_INDEX, unfinished_keys

    total = 0
    for key in unfinished_keys():
        kwargs: dict[str, Any] = {
            "TableName": table,
            "IndexName": UNFINISHED_INDEX,
            "KeyConditionExpression": "#u = :u AND #c <= :due",
            "ExpressionAttributeNames": {"#u": UNFINISHED, "#c": CHECK_AT},
            "ExpressionAttributeValues": {":u": {"S": key}, ":due": {"N": str(due_by)}},
            "Select": "COUNT",
        }
        while True:
            page = ddb.query(**kwargs)
            total += page.get("Count", 0)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return total


class CpuMeter:
    """CPU time of the reconciler's own threads: each job's look (on its worker) and each read of
    the index (query pages and BatchGetItem, on the reader pool), by ``time.thread_time``."""

    def __init__(self) -> None:
        self.look_s = 0.0
        self.read_s = 0.0
        self.looks = 0
        self._lock = threading.Lock()

    def install(self) -> None:
        # The modules the local stack's functions loaded (its cold start re-imported the layer).
        reconcile = sys.modules["pixverse_jobs.reconcile"]
        store = sys.modules["pixverse_jobs.store"]
        self._wrap(reconcile.Reconciler, "reconcile", look=True)
        self._wrap(store.JobStore, "query_due", look=False)
        self._wrap(store.JobStore, "_due_jobs", look=False)

    def _wrap(self, cls: type, name: str, *, look: bool) -> None:
        original: Callable[..., Any] = getattr(cls, name)
        meter = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with meter._lock:
                    if look:
                        meter.look_s += spent
                        meter.looks += 1
                    else:
                        meter.read_s += spent

        setattr(cls, name, timed)

    def take(self) -> dict[str, float]:
        with self._lock:
            taken = {"look_s": self.look_s, "read_s": self.read_s, "looks": self.looks}
            self.look_s = self.read_s = 0.0
            self.looks = 0
        return taken


def _calls(call_log: Path, since: int) -> tuple[Counter[str], int]:
    """The reconciler's AWS calls in the call log after byte ``since``, and the new end."""
    counts: Counter[str] = Counter()
    with call_log.open("rb") as log:
        log.seek(since)
        data = log.read()
    end = since + data.rfind(b"\n") + 1
    for line in data[: end - since].splitlines():
        entry = json.loads(line)
        if entry.get("function") == "ReconcileFunction":
            counts[f"{entry['service']}.{entry['operation']}"] += 1
    return counts, end


def _moto_pid() -> int | None:
    """moto server's process: the child of this one whose command line runs it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"moto_server" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


def _process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (0 where /proc cannot tell)."""
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class PollSampler:
    """The simulator's status-poll count every ``every`` seconds while a run goes on, so that the
    rate at which the run polls can be told apart from its start (the lease, the first page of each
    shard: on the emulator, whose index queries cost in proportion to the table, seconds)."""

    def __init__(self, gateway_url: str, baseline: int, every: float = 0.5) -> None:
        import httpx

        self._client = httpx.Client(base_url=gateway_url, timeout=10.0)
        self._baseline = baseline
        self._every = every
        self._stop = threading.Event()
        self._points: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._sample, name="poll-sampler", daemon=True)

    def __enter__(self) -> PollSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            with contextlib.suppress(Exception):
                polls = self._client.get("/_sim/stats").json()["status_polls"] - self._baseline
                self._points.append((time.monotonic(), polls))

    def samples(self, since: float) -> list[tuple[float, int]]:
        """(seconds since ``since``, polls so far) pairs."""
        return [(round(at - since, 2), polls) for at, polls in self._points]


def sustained_rate(samples: Sequence[Sequence[float]], total: int) -> tuple[float | None, float | None]:
    """Polls per second between the samples that first pass 10% and 90% of ``total`` polls (the
    run's pace once under way, before its tail), and the seconds until its first poll."""
    first = next((at for at, polls in samples if polls > 0), None)
    low = next(((at, polls) for at, polls in samples if polls >= 0.1 * total), None)
    high = next(((at, polls) for at, polls in samples if polls >= 0.9 * total), None)
    if total <= 0 or low is None or high is None or high[0] <= low[0]:
        return None, first
    return (high[1] - low[1]) / (high[0] - low[0]), first


def _scheduled_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/bench-ReconcileSchedule"],
        "detail": {},
    }


def run_child(jobs: int, latency_ms: int, backlogs: Sequence[str], out: Path) -> None:  # noqa: PLR0915 - one story
    import boto3
    import httpx
    from pixverse_local.aws.provision import TABLE
    from pixverse_local.stack import LocalStack

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        region_name="us-east-1",
    )
    scenarios = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp,
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),  # the functions log to stdout, as in Lambda
    ):
        call_log = Path(tmp) / "calls.jsonl"
        call_log.touch()
        env = {
            **os.environ,
            "LOCAL_API_PORT": "0",
            "LOCAL_AWS_CALL_LOG": str(call_log),
            "RECONCILE_AFTER_SECONDS": "900",
            # Only the benchmark invokes the reconciler: the schedule's first run would be a day away.
            "LOCAL_RECONCILE_EVERY_SECONDS": "86400",
        }
        stack = LocalStack(ROOT / "template.yaml", env=env, api_port=0)
        started = time.monotonic()
        stack.start()
        try:
            stack_start_s = time.monotonic() - started
            table = stack.first(TABLE)
            assert table is not None
            ddb = session.client("dynamodb", endpoint_url=stack.aws_endpoint)
            gateway = httpx.Client(base_url=stack.gateway_url, timeout=60.0)
            reconcile = stack.functions["ReconcileFunction"]
            meter = CpuMeter()
            meter.install()
            moto_pid = _moto_pid()
            for backlog in backlogs:
                gateway.post("/_sim/reset").raise_for_status()
                failed = round(jobs * BACKLOGS[backlog])
                request_ids: list[str] = []
                for status, count in (("FAILED", failed), ("PROCESSING", jobs - failed)):
                    if count:
                        seeded = gateway.post("/_sim/requests", json={"model": MODEL, "status": status, "count": count})
                        seeded.raise_for_status()
                        request_ids += seeded.json()["request_ids"]
                random.Random(14).shuffle(request_ids)  # outcomes spread over the backlog's order
                now = datetime.now(UTC)
                seeding = time.monotonic()
                written = _put_all(ddb, table.ref, _job_items(jobs, request_ids, now))
                seed_s = time.monotonic() - seeding
                if latency_ms:
                    delay = {"poll_status": 200, "delay_seconds": latency_ms / 1000, "count": 2 * jobs}
                    gateway.post("/_sim/faults", json=delay).raise_for_status()
                due_by = int(time.time())
                due_at_start = _still_due(ddb, table.ref, due_by)
                log_end = call_log.stat().st_size
                meter.take()
                runs = []
                load_before = os.getloadavg()[0]
                stack_cpu, moto_cpu = time.process_time(), _process_cpu_s(moto_pid)
                began = time.monotonic()
                while time.monotonic() - began < SCENARIO_SECONDS:
                    polls_before = gateway.get("/_sim/stats").json()["status_polls"]
                    run_started = time.monotonic()
                    with PollSampler(stack.gateway_url, polls_before) as sampler:
                        answer = reconcile.invoke(_scheduled_event())
                    seconds = time.monotonic() - run_started
                    polls = gateway.get("/_sim/stats").json()["status_polls"] - polls_before
                    runs.append(
                        {
                            "seconds": round(seconds, 2),
                            "polls": polls,
                            "samples": sampler.samples(run_started),
                            **answer,
                        }
                    )
                    if answer.get("examined", 0) == 0 and not answer.get("lease_held"):
                        break
                # The backlog is clear when a run found nothing due; its (short) run is not counted.
                worked = [r for r in runs if r.get("examined", 0) > 0]
                clear_s = sum(r["seconds"] for r in worked)
                stack_cpu, moto_cpu = time.process_time() - stack_cpu, _process_cpu_s(moto_pid) - moto_cpu
                load_after = os.getloadavg()[0]
                calls, log_end = _calls(call_log, log_end)
                gateway.delete("/_sim/faults")
                cpu = meter.take()
                scenarios.append(
                    {
                        "backlog": backlog,
                        "latency_ms": latency_ms,
                        "jobs": written,
                        "gateway_failed": failed,
                        "gateway_processing": jobs - failed,
                        "seed_s": round(seed_s, 1),
                        "due_at_start": due_at_start,
                        "runs": runs,
                        "clear_s": round(clear_s, 2),
                        "polls": sum(r["polls"] for r in worked),
                        "still_due_after": _still_due(ddb, table.ref, due_by),
                        "reconciler_calls": dict(calls),
                        "cpu": cpu,
                        # Everything in the local stack's process (reconciler, simulator, copier, pollers)
                        # and in moto server's, over the runs.
                        "stack_cpu_s": round(stack_cpu, 2),
                        "moto_cpu_s": round(moto_cpu, 2),
                        "load_average": [round(load_before, 2), round(load_after, 2)],
                    }
                )
        finally:
            stack.stop()
    result = {"stack_start_s": round(stack_start_s, 1), "scenarios": scenarios}
    out.write_text(json.dumps(result))


# ------------------------------------------------------------------ the summary (parent)
def summarise_scenario(raw: dict[str, Any]) -> dict[str, Any]:
    """Polls per second over the runs that worked, time to clear, calls and CPU per job."""
    worked = [r for r in raw["runs"] if r.get("examined", 0) > 0]
    examined = sum(r.get("examined", 0) for r in worked)
    actions: Counter[str] = Counter()
    for run in worked:
        actions.update(run.get("actions") or {})
    clear_s = raw["clear_s"]
    polls_per_s = raw["polls"] / clear_s if clear_s else 0.0
    main_run = max(worked, key=lambda r: r["polls"], default=None)
    sustained = sustained_rate(main_run.get("samples") or [], main_run["polls"])[0] if main_run else None
    cpu = raw["cpu"]
    looks = max(1, int(cpu["looks"]))
    cpu_ms_per_job = 1000 * (cpu["look_s"] + cpu["read_s"]) / looks
    # The vCPU share 100 looks a second need, and the Lambda memory that gives it.
    vcpu_at_target = TARGET_POLLS_PER_SECOND * cpu_ms_per_job / 1000
    # The run lease's writes are per run, not per job: taken and given back (2), or tried (1).
    lease_writes = sum(1 if r.get("lease_held") else 2 for r in raw["runs"])
    calls = dict(raw["reconciler_calls"])
    calls["dynamodb.UpdateItem"] = calls.get("dynamodb.UpdateItem", 0) - lease_writes
    return {
        "backlog": raw["backlog"],
        "latency_ms": raw["latency_ms"],
        "jobs": raw["jobs"],
        "gateway_mix": {"FAILED": raw["gateway_failed"], "PROCESSING": raw["gateway_processing"]},
        "due_at_start": raw["due_at_start"],
        "runs": [
            {
                "seconds": r["seconds"],
                "examined": r.get("examined"),
                "polls": r["polls"],
                "polls_per_s": round(r["polls"] / r["seconds"], 1) if r["seconds"] else None,
                "sustained_polls_per_s": _rounded(sustained_rate(r.get("samples") or [], r["polls"])[0]),
                "first_poll_after_s": sustained_rate(r.get("samples") or [], r["polls"])[1],
                "deferred": r.get("deferred"),
                "in_flight": r.get("in_flight"),
                "lease_held": r.get("lease_held"),
            }
            for r in raw["runs"]
        ],
        "examined": examined,
        "actions": dict(actions),
        "polls": raw["polls"],
        "clear_s": clear_s,
        "polls_per_s": round(polls_per_s, 1),
        # The pace of the run that did the work once under way: from 10% to 90% of its polls.
        "sustained_polls_per_s": _rounded(sustained),
        "still_due_after": raw["still_due_after"],
        "reconciler_calls_per_job": {k: round(v / max(1, examined), 3) for k, v in sorted(calls.items())},
        "run_lease_updates": lease_writes,
        "reconciler_cpu_ms_per_job": round(cpu_ms_per_job, 2),
        "reconciler_cpu_split_ms_per_job": {
            "looks": round(1000 * cpu["look_s"] / looks, 2),
            "index_reads": round(1000 * cpu["read_s"] / looks, 2),
        },
        "vcpu_at_100_polls_s": round(vcpu_at_target, 2),
        "lambda_mb_for_100_polls_s": math.ceil(vcpu_at_target * MB_PER_VCPU),
        # What the machine spent per job, where: the local stack's process (the reconciler with the
        # simulator, and in callbacks_lost the copier) and moto server; against the load around it.
        "local_cpu_ms_per_job": {
            "stack_process": round(1000 * raw["stack_cpu_s"] / max(1, examined), 2),
            "moto_server": round(1000 * raw["moto_cpu_s"] / max(1, examined), 2),
        },
        "load_average_1m": raw["load_average"],
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    scenarios = [summarise_scenario(s) for s in raw["scenarios"]]
    targets: dict[str, Any] = {}
    for scenario in scenarios:
        if scenario["backlog"] != TARGET_BACKLOG:
            continue
        targets["polls_per_second"] = {
            "value": scenario["polls_per_s"],
            "limit": TARGET_POLLS_PER_SECOND,
            "met": scenario["polls_per_s"] >= TARGET_POLLS_PER_SECOND and scenario["still_due_after"] == 0,
            "backlog": f"{scenario['jobs']} jobs still generating, gateway answering in {scenario['latency_ms']} ms",
        }
    return {
        "stack_start_s": raw["stack_start_s"],
        "scenarios": scenarios,
        "targets": targets,
        "method": (
            "jobs written straight into the table (PROCESSING, due), their requests seeded into the gateway "
            "simulator (POST /_sim/requests: no callbacks); ReconcileFunction invoked through the local stack's "
            "Lambda emulation until a run finds nothing due; polls = the simulator's status-poll count over the "
            "runs' wall time; latency = a delay the simulator adds to every status poll (a poll_status fault); "
            "CPU = the reconciler's worker and index-reader threads (time.thread_time)"
        ),
    }


def run_reconcile_backlog(
    jobs: int = 5000,
    *,
    latency_ms: int = 200,
    backlogs: Sequence[str] = tuple(BACKLOGS),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The backlogs in a child process (the local stack inside it); the summary."""
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        out = Path(tmp) / "reconcile.json"
        command = [str(BENCH_DIR / "reconcile_backlog.py"), "--child", "--jobs", str(jobs), "--out", str(out)]
        command += ["--latency-ms", str(latency_ms), "--backlogs", ",".join(backlogs)]
        run_json_child(command, timeout=len(backlogs) * SCENARIO_SECONDS + 600)
        raw = json.loads(out.read_text())
    summary = summarise(raw)
    for scenario in summary["scenarios"]:
        log(
            f"reconcile_backlog {scenario['backlog']}: {scenario['jobs']} jobs, gateway {scenario['latency_ms']} ms: "
            f"{scenario['polls_per_s']} polls/s, cleared in {scenario['clear_s']} s "
            f"({len(scenario['runs'])} runs), {scenario['still_due_after']} still due"
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=5000, help="unfinished jobs in each backlog (default 5000)")
    parser.add_argument(
        "--latency-ms", type=int, default=200, help="the simulator's answer time per status poll (default 200)"
    )
    parser.add_argument("--backlogs", default=",".join(BACKLOGS), help=f"comma-separated subset of {tuple(BACKLOGS)}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: must be at least 1, got {args.jobs}")
    if not 0 <= args.latency_ms <= 5000:
        parser.error(f"--latency-ms: must be from 0 to 5000, got {args.latency_ms}")
    backlogs = [name.strip() for name in args.backlogs.split(",") if name.strip()]
    unknown = sorted(set(backlogs) - set(BACKLOGS))
    if unknown or not backlogs:
        parser.error(f"--backlogs: choose from {', '.join(BACKLOGS)}, got {args.backlogs!r}")
    if args.child:
        assert args.out is not None
        run_child(args.jobs, args.latency_ms, backlogs, args.out)
        print(json.dumps({"ok": True}), flush=True)
        return 0
    summary = run_reconcile_backlog(
        args.jobs,
        latency_ms=args.latency_ms,
        backlogs=backlogs,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Capacity model, measured: every DynamoDB write the functions make for N jobs through the local
stack, by table, index and partition key, sized as DynamoDB sizes them; from them the WCU each
job puts on its hottest partition key and the ceiling in jobs/s that key allows, for one caller
and per deployment, terminal and sync webhook mode, with a typical input and the largest one.

Four runs of N jobs (default 50) on one local stack, each from its own caller (IAM principal):
``terminal`` / ``sync`` webhook mode x ``typical`` input (a 400-character prompt) / ``largest``
input (the widest request the catalog accepts: tests/size_support.py). Every write is caught by
the functions' client hooks with cost_per_job.py's ``WriteUnits`` (item before the write from its
``ALL_OLD`` answer or the last image, after it read back on another client) and sized with the moto
server's ``item_size`` (DynamoDB's sizing rules). For each write:

* the table: WCU = ceil(max(before, after) / 1 KB), at least 1; a refused condition still costs
  the current item's size (DynamoDB developer guide, "DynamoDB read and write operations",
  capacity unit consumption for write operations: UpdateItem consumes the larger of the item's
  sizes before and after the update; a write whose condition fails still consumes write units for
  the existing item's size). Its partition key is the job_id.
* each GSI, as "Provisioned throughput considerations for global secondary indexes" (DynamoDB
  developer guide, GSI.html#GSI.ThroughputConsiderations.Writes) counts it: an item that gains the
  index's key attributes is one put; one that loses them is one delete; one whose index key value
  changes (A to B) is a delete from the index plus a put into it; one that stays in the index with
  the same key and other changes is one write; an item in the index neither before nor after costs
  the index nothing. Both indexes project ALL, so an index entry is the whole item: a put is sized
  by the item after, a delete by the item before, an in-place write by the larger of the two (as
  the table's UpdateItem). The write lands on the index's partition key value: ``by_owner`` on the
  caller, ``unfinished_by_age`` on the constant ``"1"``.

A partition takes at most 1,000 write units per second ("Understanding DynamoDB warm throughput in
different scenarios": "each individual partition is limited to 1000 write units per second and
3000 read units per second"), and every item of one partition key value of an index sits in one
partition unless DynamoDB splits it by sort key (split for heat), so the ceiling a key allows is
1,000 / (that key's WCU per job) jobs/s. A throttled GSI write throttles the table write with it
("For a table write to succeed, the provisioned throughput settings for the table and global
secondary indexes must have enough write capacity", DynamoDB GSI considerations).

Whether a key is per caller or per deployment is measured, not assumed: a key that the jobs of
every caller land on is per deployment; a key only one caller's jobs land on is per caller.

    python bench/capacity.py --jobs 50
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, ROOT, run_json_child
from cost_per_job import Durations, WriteUnits, _wait_for_events, item_size, track_dynamodb_writes, units

# "each individual partition is limited to 1000 write units per second" (DynamoDB developer guide,
# "Understanding DynamoDB warm throughput in different scenarios"; also "Best practices for designing
# and using partition keys effectively").
PARTITION_WCU_PER_SECOND = 1000
TYPICAL_PROMPT_CHARS = 400
TYPICAL_MODEL = "pixverse-v6-text-to-video"
BASE_TABLE = "table"  # the name the base table goes by in the per-key figures
# The gateway doc: sync mode "fires on every poll cycle plus the terminal event, and caps the
# queue's polling delay at 15s": a job in generation for T seconds gets about T / 15 progress
# callbacks. The doc publishes no generation time; the report shows the ceiling at these counts.
SYNC_CALLBACK_SECONDS = 15
SYNC_ILLUSTRATED_CALLBACKS = (4, 8)
MODES = ("terminal", "sync")
INPUTS = ("typical", "largest")

# The issue's paper figures (issue 14, "No hot key" and "The capacity model, measured"): the
# BEFORE baseline the measurement is compared with.
ISSUE_CLAIMS = {
    "status_writes_per_job": "6-7",
    "wcu_per_job_typical": 10,
    "ceiling_jobs_per_s_typical": 100,
    "ceiling_jobs_per_s_largest": 20,
    "partition_wcu_per_second": 1000,
}


# ------------------------------------------------------------------ the model (pure)
@dataclass(frozen=True)
class IndexWrite:
    """One write a table write causes in a GSI: ``put``, ``delete`` or ``update`` (in place)."""

    index: str
    kind: str
    partition_key: str
    size: int

    @property
    def wcu(self) -> int:
        return units(self.size)


def key_value(item: Mapping[str, Any] | None, attribute: str) -> str | None:
    """The scalar value of a DynamoDB-typed attribute (``{"S": "1"}`` -> ``"1"``), None if absent."""
    if not item or attribute not in item:
        return None
    typed = item[attribute]
    if isinstance(typed, Mapping) and len(typed) == 1:
        return str(next(iter(typed.values())))
    return str(typed)


TABLE_KEYS = ("job_id",)


def index_entry(
    item: Mapping[str, Any] | None, keys: Sequence[str], projected: Sequence[str] | None
) -> dict[str, Any] | None:
    """What an index holds of ``item``: the whole item (``projected`` None: ALL), or the table's
    and the index's keys plus the ``projected`` attributes (KEYS_ONLY: none; INCLUDE: its
    NonKeyAttributes), which "are automatically projected" (API GlobalSecondaryIndex, Projection)."""
    if item is None or projected is None:
        return dict(item) if item is not None else None
    wanted = (*TABLE_KEYS, *keys, *projected)
    return {name: value for name, value in item.items() if name in wanted}


def index_writes(
    index: str,
    keys: Sequence[str],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    projected: Sequence[str] | None = None,
) -> list[IndexWrite]:
    """The writes one table write makes in an index whose key is ``keys`` (partition key first)
    and which projects ``projected`` (None: ALL), as "Provisioned throughput considerations for
    global secondary indexes" lists them (see the module docstring): sized by the index entry,
    and none when the entry is unchanged (an update of attributes the index does not hold)."""
    was_in = bool(before) and all(k in before for k in keys)  # type: ignore[operator]
    is_in = bool(after) and all(k in after for k in keys)  # type: ignore[operator]
    before = index_entry(before, keys, projected)
    after = index_entry(after, keys, projected)
    hash_key = keys[0]
    if was_in and is_in:
        assert before is not None and after is not None
        if any(before[k] != after[k] for k in keys):
            return [
                IndexWrite(index, "delete", str(key_value(before, hash_key)), item_size(dict(before))),
                IndexWrite(index, "put", str(key_value(after, hash_key)), item_size(dict(after))),
            ]
        if dict(before) == dict(after):
            return []  # nothing projected changed: the index is not written
        size = max(item_size(dict(before)), item_size(dict(after)))
        return [IndexWrite(index, "update", str(key_value(after, hash_key)), size)]
    if is_in:
        assert after is not None
        return [IndexWrite(index, "put", str(key_value(after, hash_key)), item_size(dict(after)))]
    if was_in:
        assert before is not None
        return [IndexWrite(index, "delete", str(key_value(before, hash_key)), item_size(dict(before)))]
    return []


@dataclass(frozen=True)
class TableWrite:
    """One write to the base table and what it cost there and in each index."""

    operation: str
    partition_key: str  # the job_id (or lease#..., idem#...)
    size: int  # the size the table write is charged for
    failed: bool
    status_before: str | None
    status_after: str | None
    index: tuple[IndexWrite, ...] = ()

    @property
    def wcu(self) -> int:
        return units(self.size)


def table_write(
    operation: str,
    partition_key: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    indexes: Mapping[str, Sequence[str]],
    *,
    failed: bool = False,
    projections: Mapping[str, Sequence[str] | None] | None = None,
) -> TableWrite:
    """Size one write: the table (larger of before and after; a refused condition: the item as it
    stands, ``before``, and no index write) and each index."""
    if failed:
        return TableWrite(
            operation, partition_key, item_size(dict(before or {})), True, key_value(before, "status"), None
        )
    size = max(item_size(dict(before or {})), item_size(dict(after or {})))
    projected = projections or {}
    written = tuple(
        w for name, keys in indexes.items() for w in index_writes(name, keys, before, after, projected.get(name))
    )
    return TableWrite(
        operation,
        partition_key,
        size,
        False,
        key_value(before, "status"),
        key_value(after, "status"),
        written,
    )


def ceiling(wcu_per_job: float, partition_wcu: float = PARTITION_WCU_PER_SECOND) -> float:
    """Jobs/s a partition key allows when each job puts ``wcu_per_job`` write units on it."""
    if wcu_per_job <= 0:
        return math.inf
    return partition_wcu / wcu_per_job


@dataclass
class KeyLoad:
    """Write units that landed on one partition key of one table or index, and from which callers."""

    wcu: int = 0
    writes: int = 0
    callers: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)


def key_loads(writes: Iterable[tuple[str, TableWrite]]) -> dict[str, dict[str, KeyLoad]]:
    """``{table or index: {partition key value: load}}`` over ``(caller, write)`` pairs."""
    loads: dict[str, dict[str, KeyLoad]] = defaultdict(lambda: defaultdict(KeyLoad))
    for caller, write in writes:
        base = loads[BASE_TABLE][write.partition_key]
        base.wcu += write.wcu
        base.writes += 1
        base.callers.add(caller)
        base.jobs.add(write.partition_key)
        for entry in write.index:
            load = loads[entry.index][entry.partition_key]
            load.wcu += entry.wcu
            load.writes += 1
            load.callers.add(caller)
            load.jobs.add(write.partition_key)
    return loads


def key_scope(load: KeyLoad, all_callers: set[str]) -> str:
    """``job`` (one job per key), ``deployment`` (every caller's jobs land on it) or ``caller``."""
    if len(load.jobs) <= 1:
        return "job"
    if len(all_callers) > 1 and load.callers >= all_callers:
        return "deployment"
    return "caller"


# ------------------------------------------------------------------ the reconciler, per poll
UNFINISHED_SHARD_KEYS = 16  # pixverse_jobs.store.UNFINISHED_SHARDS: the u#NN keys a poll's writes land on


def _job_item(item_bytes: int, *, status: str, check_at: int, updated_at: str) -> dict[str, Any]:
    """A job's item (DynamoDB-typed) of about ``item_bytes``, with the keys of every index."""
    item: dict[str, Any] = {
        "job_id": {"S": "job_" + "0" * 32},
        "owner": {"S": "arn:aws:iam::000000000000:role/backend"},
        "owner_shard": {"S": "arn:aws:iam::000000000000:role/backend#03"},
        "created_at": {"S": "2026-12-07T10:00:00.000Z"},
        "updated_at": {"S": updated_at},
        "status": {"S": status},
        "unfinished": {"S": "u#03"},
        "check_at": {"N": str(check_at)},
    }
    item["input"] = {"S": "x" * max(0, item_bytes - item_size(item) - len("input"))}
    return item


def reconciler_poll_load(
    item_bytes: int,
    indexes: Mapping[str, Sequence[str]],
    projected: Mapping[str, Sequence[str] | None],
) -> dict[str, Any]:
    """The writes one reconciler poll makes, per poll (a job polled twice pays twice; a job whose
    callback came is never polled): its one UpdateItem sets the job's next look (``check_at``, the
    unfinished index's sort key: a delete and a put there), alone when the status is unchanged
    (``JobStore.push_check_at``), with the outcome when there is one (which also writes
    by_owner_shard, where status is projected). Sized by the same rules as the jobs' writes; the
    ceiling is per u#NN key, and the deployment has 16."""
    created, looked, next_look = "2026-12-07T10:00:00.000Z", "2026-12-07T10:15:00.000Z", 1_800_000_900
    before = _job_item(item_bytes, status="PROCESSING", check_at=1_800_000_000, updated_at=created)
    kinds = {
        "unchanged": _job_item(item_bytes, status="PROCESSING", check_at=next_look, updated_at=created),
        "outcome": _job_item(item_bytes, status="FAILED", check_at=next_look, updated_at=looked),
    }
    result: dict[str, Any] = {"item_bytes": item_size(before)}
    for kind, after in kinds.items():
        write = table_write("UpdateItem", "job", before, after, indexes, projections=projected)
        by_index: dict[str, dict[str, Any]] = {}
        for entry in write.index:
            load = by_index.setdefault(entry.index, {"writes": [], "wcu": 0, "key": entry.partition_key})
            load["writes"].append(entry.kind)
            load["wcu"] += entry.wcu
        unfinished = next((v for k, v in by_index.items() if k.startswith("unfinished")), None)
        result[kind] = {
            "table_wcu": write.wcu,
            "index": by_index,
            # One key of the unfinished index takes the polls of 1/16 of the jobs.
            "ceiling_polls_per_s_per_key": _round(ceiling(unfinished["wcu"]) if unfinished else math.inf, 1),
            "ceiling_polls_per_s_per_deployment": _round(
                UNFINISHED_SHARD_KEYS * ceiling(unfinished["wcu"]) if unfinished else math.inf, 1
            ),
            "hottest_key_wcu_per_s_at_100_polls_s": round(100 / UNFINISHED_SHARD_KEYS * unfinished["wcu"], 2)
            if unfinished
            else 0,
        }
    return result


# ------------------------------------------------------------------ the recorder
class KeyedWriteUnits(WriteUnits):
    """cost_per_job's ``WriteUnits`` (its hooks, read-backs and images), each write also kept with
    its images so that it can be sized per index and partition key (``table_write``).

    ``WriteUnits`` stores the image after each successful write (``self._images[key] = after``)
    under its lock; the images dict here sees that store with the image before it, so the pair is
    taken under the same lock as ``WriteUnits`` takes its own."""

    def __init__(
        self,
        reader: Any,
        indexes: dict[str, tuple[str, ...]],
        projections: Mapping[str, Sequence[str] | None] | None = None,
    ) -> None:
        super().__init__(reader, indexes)
        self.projections = dict(projections or {})
        self.records: list[dict[str, Any]] = []
        self.label = ""
        self._call = threading.local()
        recorder = self

        class _Images(dict[str, Any]):
            def __setitem__(self, key: str, value: Any) -> None:
                recorder._stored(self.get(key), value)
                super().__setitem__(key, value)

        self._images = _Images()

    def after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        target = context.get("bench_write")
        if target is None:
            return
        _, key = target
        self._call.current = (model.name, parsed, key_value(key, "job_id") or "?")
        try:
            super().after_call(model=model, parsed=parsed, context=context, **kwargs)
        finally:
            self._call.current = None
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            current = parsed.get("Item") or self._images.get(json.dumps(key, sort_keys=True))
            self._keep(table_write(model.name, key_value(key, "job_id") or "?", current, None, {}, failed=True))

    def _stored(self, known: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        operation, parsed, partition_key = self._call.current
        # The image before, exactly as WriteUnits takes it.
        before = parsed.get("Attributes") if "Attributes" in parsed else known
        self._keep(table_write(operation, partition_key, before, after, self._indexes, projections=self.projections))

    def _keep(self, write: TableWrite) -> None:
        record = asdict(write)
        record["label"] = self.label
        self.records.append(record)


def record_to_write(record: Mapping[str, Any]) -> TableWrite:
    """A recorded write back as a ``TableWrite`` (records travel as JSON from the child)."""
    return TableWrite(
        operation=record["operation"],
        partition_key=record["partition_key"],
        size=record["size"],
        failed=record["failed"],
        status_before=record["status_before"],
        status_after=record["status_after"],
        index=tuple(IndexWrite(**entry) for entry in record["index"]),
    )


# ------------------------------------------------------------------ the run (child process)
def typical_request(number: int) -> dict[str, Any]:
    """A text-to-video request with a 400-character prompt (ASCII: no simulator directive in it)."""
    sentence = f"A lighthouse at dusk, waves breaking on the rocks below, gulls over the foam, take {number}. "
    prompt = (sentence * (TYPICAL_PROMPT_CHARS // len(sentence) + 1))[:TYPICAL_PROMPT_CHARS]
    return {"model": TYPICAL_MODEL, "input": {"prompt": prompt, "duration": 5}}


def largest_request(number: int) -> dict[str, Any]:
    """The widest request the catalog accepts: every parameter at its longest in 4-byte characters,
    metadata at its limit (tests/size_support.py)."""
    from size_support import EMOJI, widest_input, widest_metadata, widest_model

    model = widest_model(EMOJI)
    return {"model": model.id, "input": widest_input(model, EMOJI), "metadata": widest_metadata(EMOJI)}


def caller_arn(mode: str, kind: str) -> str:
    """One caller per run: a backend's role session, as a real deployment's caller looks."""
    return f"arn:aws:sts::000000000000:assumed-role/pixverse-backend-{mode}-{kind}/worker-session-1"


def run_child(jobs: int, out: Path) -> None:  # noqa: PLR0915 - one straight story, told in order
    sys.path.insert(0, str(ROOT / "tests"))
    import boto3
    import httpx
    from pixverse_local.aws.provision import TABLE, TOPIC
    from pixverse_local.stack import LocalStack

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        region_name="us-east-1",
    )
    tracker: list[KeyedWriteUnits] = []

    track_dynamodb_writes(tracker)

    durations = Durations()  # only to know when the functions have gone quiet
    runs: list[dict[str, Any]] = []
    with (
        open(os.devnull, "w") as sink,
        durations.patched(),
        contextlib.redirect_stdout(sink),  # the functions log to stdout, as in Lambda
    ):
        env = {**os.environ, "RECONCILE_AFTER_SECONDS": "3600", "LOCAL_API_PORT": "0"}
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
            projections = {
                gsi["IndexName"]: gsi["Projection"]["ProjectionType"]
                for gsi in description.get("GlobalSecondaryIndexes", [])
            }
            sqs = session.client("sqs", endpoint_url=stack.aws_endpoint)
            sns = session.client("sns", endpoint_url=stack.aws_endpoint)
            inbox = sqs.create_queue(QueueName="bench-capacity-inbox")["QueueUrl"]
            inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic.ref, Protocol="sqs", Endpoint=inbox_arn)
            gateway = httpx.Client(base_url=stack.gateway_url, timeout=10.0)
            api = httpx.Client(base_url=stack.api_url, timeout=60.0)
            stack_start_s = time.monotonic() - stack_started
            projected: dict[str, list[str] | None] = {
                gsi["IndexName"]: (
                    None
                    if gsi["Projection"]["ProjectionType"] == "ALL"
                    else list(gsi["Projection"].get("NonKeyAttributes", []))
                )
                for gsi in description.get("GlobalSecondaryIndexes", [])
            }
            writes = KeyedWriteUnits(reader, indexes, projected)
            tracker.append(writes)
            for mode in MODES:
                for kind in INPUTS:
                    durations.wait_quiet()
                    gateway.post("/_sim/reset").raise_for_status()
                    writes.label = f"{mode}/{kind}"
                    caller = caller_arn(mode, kind)
                    build = typical_request if kind == "typical" else largest_request
                    started = time.monotonic()
                    submitted = []
                    for number in range(jobs):
                        body = {**build(number), "webhook_mode": mode}
                        response = api.post("/jobs", json=body, headers={"X-Local-Principal-Arn": caller})
                        if response.status_code != 202:
                            raise RuntimeError(f"POST /jobs ({mode}/{kind}) answered {response.status_code}")
                        submitted.append(response.json()["job_id"])
                    events = _wait_for_events(sqs, inbox, jobs, timeout=60.0 + 2 * jobs)
                    durations.wait_quiet()  # the outbox flag is written after the event goes out
                    runs.append(
                        {
                            "label": writes.label,
                            "mode": mode,
                            "input": kind,
                            "caller": caller,
                            "jobs": submitted,
                            "delivered": sum(1 for e in events if e.get("type") == "pixverse.job.delivered"),
                            "events": dict(Counter(str(e.get("type")) for e in events)),
                            "elapsed_s": round(time.monotonic() - started, 1),
                            "gateway_stats": gateway.get("/_sim/stats").json(),
                        }
                    )
            tracker.clear()
        finally:
            stack.stop()
    result = {
        "stack_start_s": round(stack_start_s, 1),
        "indexes": indexes,
        "projections": projections,
        "projected": projected,
        "runs": runs,
        "writes": writes.records,
    }
    out.write_text(json.dumps(result, default=lambda o: float(o) if isinstance(o, Decimal) else str(o)))


# ------------------------------------------------------------------ the summary (parent)
def _round(value: float, digits: int = 2) -> float | None:
    return None if math.isinf(value) else round(value, digits)


def summarise_run(run: Mapping[str, Any], writes: Sequence[TableWrite], callers: set[str]) -> dict[str, Any]:
    """One run's figures: writes per job, WCU per job on each table/index's hottest key, ceilings."""
    jobs = max(1, len(run["jobs"]))
    job_ids = set(run["jobs"])
    per_job = [w for w in writes if w.partition_key in job_ids]
    succeeded = [w for w in per_job if not w.failed]
    status_changes = [w for w in succeeded if w.status_after and w.status_after != w.status_before]
    loads = key_loads((run["caller"], w) for w in per_job)
    keys: dict[str, Any] = {}
    for name, by_key in sorted(loads.items()):
        hottest_key, hottest = max(by_key.items(), key=lambda kv: kv[1].wcu)
        # The base table's key is the job: its hottest key is one job's writes, not a rate limit.
        per_key_job = hottest.wcu / max(1, len(hottest.jobs))
        wcu_per_job = per_key_job if name == BASE_TABLE else hottest.wcu / jobs
        keys[name] = {
            "hottest_key": hottest_key,
            "distinct_keys": len(by_key),
            "wcu_per_job": round(wcu_per_job, 2),
            "writes_per_job": round(hottest.writes / (max(1, len(hottest.jobs)) if name == BASE_TABLE else jobs), 2),
            "ceiling_jobs_per_s": None if name == BASE_TABLE else _round(ceiling(wcu_per_job), 1),
        }
    by_operation: Counter[str] = Counter()
    for w in per_job:
        if w.failed:
            by_operation[f"{w.operation} (condition failed)"] += 1
        elif w.status_after != w.status_before:
            by_operation[f"{w.operation} -> {w.status_after}"] += 1
        else:
            by_operation[f"{w.operation} ({w.status_after}, no status change)"] += 1
    first = run["jobs"][0] if run["jobs"] else None
    sample = [
        {
            "operation": w.operation,
            "status": f"{w.status_before or '-'} -> {w.status_after or '(refused)'}",
            "item_bytes": w.size,
            "table_wcu": w.wcu,
            "index": ", ".join(f"{e.index} {e.kind} {e.wcu}" for e in w.index) or "-",
        }
        for w in per_job
        if w.partition_key == first
    ]
    stats = run["gateway_stats"]
    return {
        "jobs": len(run["jobs"]),
        "delivered": run["delivered"],
        "elapsed_s": run["elapsed_s"],
        "callbacks_per_job": round(stats.get("callbacks_attempted", 0) / jobs, 2),
        "writes_per_job": round(len(per_job) / jobs, 2),
        "status_changes_per_job": round(len(status_changes) / jobs, 2),
        "failed_conditions_per_job": round(sum(1 for w in per_job if w.failed) / jobs, 2),
        "writes_by_kind_per_job": {k: round(v / jobs, 2) for k, v in sorted(by_operation.items())},
        "largest_item_bytes": max((w.size for w in succeeded), default=0),
        "table_wcu_per_job": round(sum(w.wcu for w in per_job) / jobs, 2),
        "index_writes_per_job": {
            name: round(sum(1 for w in per_job for e in w.index if e.index == name) / jobs, 2)
            for name in sorted({e.index for w in per_job for e in w.index})
        },
        "index_wcu_per_job": {
            name: round(sum(e.wcu for w in per_job for e in w.index if e.index == name) / jobs, 2)
            for name in sorted({e.index for w in per_job for e in w.index})
        },
        "by_key": keys,
        "sample_job_writes": sample,
        "_loads": loads,
    }


def summarise(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The capacity table and the comparison with the issue's figures."""
    writes = [record_to_write(r) for r in raw["writes"]]
    by_label: dict[str, list[TableWrite]] = defaultdict(list)
    for record, write in zip(raw["writes"], writes, strict=True):
        by_label[record["label"]].append(write)
    callers = {run["caller"] for run in raw["runs"]}
    runs = {run["label"]: summarise_run(run, by_label[run["label"]], callers) for run in raw["runs"]}
    # Which keys are per caller and which per deployment: over every run's writes together.
    all_loads = key_loads(
        (run["caller"], w) for run in raw["runs"] for w in by_label[run["label"]] if w.partition_key in set(run["jobs"])
    )
    scopes = {
        name: sorted({key_scope(load, callers) for load in by_key.values()}) for name, by_key in all_loads.items()
    }
    rows = []
    for name in sorted(all_loads):
        if name == BASE_TABLE:
            continue
        row: dict[str, Any] = {"index": name, "scope": "/".join(scopes[name]), "keys": raw["indexes"].get(name)}
        row["projection"] = raw["projections"].get(name)
        for label, summary in runs.items():
            figures = summary["by_key"].get(name, {})
            row[label] = {
                "wcu_per_job": figures.get("wcu_per_job"),
                "ceiling_jobs_per_s": figures.get("ceiling_jobs_per_s"),
                "hottest_key": figures.get("hottest_key"),
            }
        rows.append(row)
    for summary in runs.values():
        summary.pop("_loads")
    ceilings = _ceilings(runs, rows)
    typical = runs.get("terminal/typical") or next(iter(runs.values()), None)
    projected = raw.get("projected") or {
        name: None if kind == "ALL" else [] for name, kind in raw.get("projections", {}).items()
    }
    polls = (
        reconciler_poll_load(typical["largest_item_bytes"], raw["indexes"], projected) if typical is not None else None
    )
    return {
        "jobs_per_run": max((len(run["jobs"]) for run in raw["runs"]), default=0),
        "stack_start_s": raw["stack_start_s"],
        "partition_wcu_per_second": PARTITION_WCU_PER_SECOND,
        "runs": runs,
        "table": rows,
        "ceilings": ceilings,
        "sync_extrapolation": _sync_extrapolation(runs, rows),
        # Per poll, not per job: the jobs above had their callbacks and were never polled.
        "reconciler_per_poll": polls,
        "issue_claims": ISSUE_CLAIMS,
        "verdicts": _verdicts(runs, rows, ceilings),
        "method": (
            "every DynamoDB write the functions make, caught by their client hooks (cost_per_job.WriteUnits); "
            "sizes by DynamoDB's rules (moto_server.item_size), each write rounded up to 1 KB; GSI writes per "
            "'Provisioned throughput considerations for GSIs' (put / delete / key change = delete + put / in-place "
            "update), ALL projection = the whole item; ceiling = 1,000 WCU/s per partition / hottest key's WCU per job"
        ),
    }


def _ceilings(runs: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per run: the lowest ceiling over every index key one caller's jobs land on (one caller), and
    over the keys every caller shares (per deployment), with the indexes that set each."""
    result = {}
    for label in runs:
        ceilings = {
            r["index"]: r[label]["ceiling_jobs_per_s"] for r in rows if r[label]["ceiling_jobs_per_s"] is not None
        }
        shared = {
            name: value
            for name, value in ceilings.items()
            if any(r["index"] == name and "deployment" in r["scope"] for r in rows)
        }
        one_caller = min(ceilings.values()) if ceilings else None
        deployment = min(shared.values()) if shared else None
        result[label] = {
            "one_caller_jobs_per_s": one_caller,
            "one_caller_limited_by": sorted(n for n, v in ceilings.items() if v == one_caller),
            "per_deployment_jobs_per_s": deployment,
            "per_deployment_limited_by": sorted(n for n, v in shared.items() if v == deployment),
        }
    return result


def _sync_extrapolation(runs: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What each progress callback adds on each index key (sync minus terminal, per extra callback),
    and the ceiling at the illustrated callback counts (the gateway's ~15 s poll cap)."""
    result: dict[str, Any] = {}
    for kind in INPUTS:
        terminal, sync = runs.get(f"terminal/{kind}"), runs.get(f"sync/{kind}")
        if not terminal or not sync:
            continue
        extra_callbacks = sync["callbacks_per_job"] - terminal["callbacks_per_job"]
        if extra_callbacks <= 0:
            continue
        entry: dict[str, Any] = {"measured_progress_callbacks_per_job": round(extra_callbacks, 2), "by_index": {}}
        for row in rows:
            base = row[f"terminal/{kind}"]["wcu_per_job"] or 0
            per_callback = ((row[f"sync/{kind}"]["wcu_per_job"] or 0) - base) / extra_callbacks
            entry["by_index"][row["index"]] = {
                "wcu_per_progress_callback": round(per_callback, 2),
                "ceiling_jobs_per_s": {
                    str(k): _round(ceiling(base + k * per_callback), 1) for k in SYNC_ILLUSTRATED_CALLBACKS
                },
            }
        result[kind] = entry
    return result


def _right(measured: float | None, low: float, high: float) -> str:
    return "right" if measured is not None and low <= measured <= high else "wrong"


def _verdicts(runs: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], ceilings: Mapping[str, Any]) -> list[str]:
    """The issue's claims, each against the measurement, in plain words: right or wrong, and why."""
    out = []
    typical, sync = runs.get("terminal/typical"), runs.get("sync/typical")
    if typical:
        writes = typical["writes_per_job"]
        out.append(
            f'Writes per job, "6-7": {_right(writes, 6, 7)} for terminal mode: {writes} per job '
            f"({typical['status_changes_per_job']} status changes and the outbox flag). In sync mode each progress "
            "callback adds one"
            + (
                f" ({sync['writes_per_job']} at the simulator's {sync['callbacks_per_job'] - 1:g} progress callbacks)"
                if sync
                else ""
            )
            + ", which the issue leaves out."
        )
        successful = round(writes - typical["failed_conditions_per_job"], 2)
        landed = typical["index_writes_per_job"]
        out.append(
            '"Every status write lands again on the index\'s one key": '
            f"{_right(min(landed.values(), default=0), successful, successful)}; index writes per job "
            + ", ".join(f"{k} {v}" for k, v in landed.items())
            + f" for {successful} successful table writes, each on the index's one key (a refused condition writes "
            "no index; the last write removes the job from unfinished_by_age, a delete charged at the item's size)."
        )
        unfinished = typical["by_key"].get("unfinished_by_age", {}).get("wcu_per_job")
        owner = typical["by_key"].get("by_owner", {}).get("wcu_per_job")
        sample = typical["sample_job_writes"]
        small = sum(1 for w in sample if w["table_wcu"] == 1)
        if unfinished is None and owner is None:
            on_index = {k: v.get("wcu_per_job") or 0 for k, v in typical["by_key"].items() if k != "table"}
            claim = (
                '"About 10 WRU per job with a 400-character prompt" was about the one key of unfinished_by_age '
                "and by_owner, which the sharded indexes replaced: their hottest keys now take "
                + ", ".join(f"{k} {v}" for k, v in on_index.items())
                + f" WCU per job (the job's own table writes are {typical['by_key']['table']['wcu_per_job']} WCU, "
                "on its own key)."
            )
        else:
            claim = (
                f'"About 10 WRU per job with a 400-character prompt": {_right(unfinished, 8, 12)}: {unfinished} on '
                f"unfinished_by_age's key, {owner} on by_owner's."
            )
        out.append(
            f"{claim} The item straddles 1 KB ("
            f"{sample[0]['item_bytes'] if sample else '?'} to {typical['largest_item_bytes']} bytes): {small} of its "
            f"{len(sample)} writes are 1 WCU, so a longer prompt, metadata or longer gateway media URLs make it "
            f"{2 * len(sample)} WCU ({_round(ceiling(2 * len(sample)), 1)} jobs/s)."
        )
    for label, claim in (("terminal/typical", 100), ("terminal/largest", 20)):
        if label not in ceilings:
            continue
        measured = ceilings[label]["per_deployment_jobs_per_s"]
        verdict = _right(measured, 0.75 * claim, 1.25 * claim)
        line = (
            f'"Ceiling about {claim} jobs/s for the whole deployment" ({label.split("/")[1]} input): {verdict}: '
            f"measured {measured} jobs/s (set by {', '.join(ceilings[label]['per_deployment_limited_by'])})"
        )
        run = runs[label]
        per_write = math.ceil(run["largest_item_bytes"] / 1024)
        if verdict == "wrong" and measured:
            line += f", x{round(claim / measured, 1)} lower"
            if abs(ceiling(per_write) - claim) <= 0.1 * claim:
                line += (
                    f": {claim} jobs/s is 1,000 / {per_write} WCU, the units of one write of the "
                    f"{run['largest_item_bytes']}-byte item, not of the job's {run['writes_per_job']} writes"
                )
        out.append(line + ".")
    projections = {r["index"]: r["projection"] for r in rows}
    out.append(
        f'"Both GSIs project ALL": {"right" if set(projections.values()) == {"ALL"} else "wrong"}: '
        + ", ".join(f"{k} {v}" for k, v in projections.items())
        + " (DescribeTable on the local stack, from template.yaml)."
    )
    scopes = {r["index"]: r["scope"] for r in rows}
    as_claimed = scopes.get("unfinished_by_age") == "deployment" and scopes.get("by_owner") == "caller"
    out.append(
        "\"unfinished_by_age on the constant '1', by_owner on the caller\": "
        f"{'right' if as_claimed else 'wrong'}: measured from which callers' jobs landed on each key: "
        + ", ".join(f"{k} per {v}" for k, v in scopes.items())
        + ". For one caller both keys take the same WCU per job, so one busy caller's ceiling is the deployment's."
    )
    out.append(
        '"A partition takes 1,000 WCU/s": right, as the DynamoDB developer guide states it ("each individual '
        'partition is limited to 1000 write units per second", warm throughput scenarios); the ceilings above use it.'
    )
    out.append(
        '"created_at is monotonic, so DynamoDB cannot split it": not measurable locally (moto has no partitions). '
        "Partly right: new jobs always enter at the key range's end, but most writes are status updates of the jobs "
        "in flight, spread over their created_at range, and the final write deletes at its start; a split by sort "
        "key could share that load until the in-flight range moves past the split point (within one generation "
        "time). The ceiling here assumes one partition per key value, as the issue does."
    )
    return out


def run_capacity(jobs: int = 50, *, timeout: float = 1800.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The runs in a child process (the local stack inside it); the summary."""
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        out = Path(tmp) / "capacity.json"
        run_json_child(
            [str(BENCH_DIR / "capacity.py"), "--child", "--jobs", str(jobs), "--out", str(out)], timeout=timeout
        )
        raw = json.loads(out.read_text())
    summary = summarise(raw)
    for label, figures in summary["ceilings"].items():
        log(
            f"capacity {label}: {summary['runs'][label]['delivered']}/{summary['runs'][label]['jobs']} delivered; "
            f"ceiling one caller {figures['one_caller_jobs_per_s']} jobs/s, per deployment "
            f"{figures['per_deployment_jobs_per_s']} jobs/s"
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=50, help="jobs per run (4 runs: terminal/sync x typical/largest)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: must be at least 1, got {args.jobs}")
    if args.child:
        assert args.out is not None
        run_child(args.jobs, args.out)
        print(json.dumps({"ok": True}), flush=True)
        return 0
    print(json.dumps(run_capacity(args.jobs, log=lambda line: print(line, file=sys.stderr, flush=True)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

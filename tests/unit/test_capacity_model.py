"""The capacity model's arithmetic (bench/capacity.py) on its own: how a table write is charged in
each GSI ("Provisioned throughput considerations for global secondary indexes"), which partition
key it lands on, and the ceiling in jobs/s a key's WCU per job allows."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
INDEXES = {"by_owner": ("owner", "created_at"), "unfinished_by_age": ("unfinished", "created_at")}


@pytest.fixture
def capacity(monkeypatch: pytest.MonkeyPatch) -> Any:
    # bench/ is a directory of scripts, not a package on the test path.
    monkeypatch.syspath_prepend(str(BENCH))
    import capacity as module

    return module


def _job(job_id: str = "j1", owner: str = "caller-a", *, unfinished: bool = True, pad: int = 0) -> dict[str, Any]:
    item = {
        "job_id": {"S": job_id},
        "owner": {"S": owner},
        "created_at": {"S": "2026-01-01T00:00:00.000Z"},
        "status": {"S": "QUEUED"},
        "prompt": {"S": "x" * pad},
    }
    if unfinished:
        item["unfinished"] = {"S": "1"}
    return item


def test_a_new_item_is_put_in_each_index_whose_keys_it_has_sized_as_the_whole_item(capacity: Any) -> None:
    after = _job(pad=1500)  # ALL projection: the index entry is the whole item, > 1 KB
    write = capacity.table_write("PutItem", "j1", None, after, INDEXES)
    by_index = {w.index: w for w in write.index}
    assert {w.kind for w in write.index} == {"put"}
    assert by_index["by_owner"].partition_key == "caller-a"
    assert by_index["unfinished_by_age"].partition_key == "1"
    assert by_index["by_owner"].size == capacity.item_size(after) and by_index["by_owner"].wcu == 2
    assert write.wcu == 2


def test_an_item_without_the_index_key_costs_that_index_nothing(capacity: Any) -> None:
    # Sparse index: a finished job (no `unfinished`) is written to by_owner only.
    write = capacity.table_write("UpdateItem", "j1", _job(unfinished=False), _job(unfinished=False, pad=10), INDEXES)
    assert [(w.index, w.kind) for w in write.index] == [("by_owner", "update")]


def test_an_update_in_place_is_one_index_write_sized_by_the_larger_image(capacity: Any) -> None:
    before, after = _job(pad=900), _job(pad=1000)  # crosses 1 KB only after the write
    assert capacity.item_size(before) <= 1024 < capacity.item_size(after)
    write = capacity.table_write("UpdateItem", "j1", before, after, INDEXES)
    assert [(w.kind, w.wcu) for w in write.index] == [("update", 2), ("update", 2)]
    shrinking = capacity.table_write("UpdateItem", "j1", after, before, INDEXES)
    assert [w.wcu for w in shrinking.index] == [2, 2] and shrinking.wcu == 2


def test_a_change_of_the_index_key_is_a_delete_plus_a_put(capacity: Any) -> None:
    before, after = _job(owner="caller-a", pad=1500), _job(owner="caller-b", pad=10)
    writes = capacity.index_writes("by_owner", INDEXES["by_owner"], before, after)
    assert [(w.kind, w.partition_key, w.wcu) for w in writes] == [("delete", "caller-a", 2), ("put", "caller-b", 1)]
    # The sort key is part of the index key too.
    moved = {**after, "created_at": {"S": "2026-01-02T00:00:00.000Z"}}
    assert [w.kind for w in capacity.index_writes("by_owner", INDEXES["by_owner"], after, moved)] == ["delete", "put"]


def test_losing_the_index_key_is_one_delete_sized_by_the_item_before(capacity: Any) -> None:
    before, after = _job(pad=2100), _job(unfinished=False, pad=2100)
    writes = capacity.index_writes("unfinished_by_age", INDEXES["unfinished_by_age"], before, after)
    assert [(w.kind, w.partition_key, w.size) for w in writes] == [("delete", "1", capacity.item_size(before))]
    assert writes[0].wcu == 3


def test_an_unchanged_item_writes_no_index_but_still_costs_the_table(capacity: Any) -> None:
    item = _job()
    write = capacity.table_write("PutItem", "j1", item, dict(item), INDEXES)
    assert write.index == () and write.wcu == 1


def test_a_refused_condition_costs_the_table_the_item_and_no_index(capacity: Any) -> None:
    write = capacity.table_write("UpdateItem", "j1", _job(pad=2900), None, INDEXES, failed=True)
    assert write.failed and write.wcu == 3 and write.index == ()


def test_the_ceiling_is_a_partition_s_1000_wcu_over_the_key_s_wcu_per_job(capacity: Any) -> None:
    assert capacity.PARTITION_WCU_PER_SECOND == 1000
    assert capacity.ceiling(10) == 100
    assert capacity.ceiling(50) == 20
    assert capacity.ceiling(7.5) == pytest.approx(133.33, abs=0.01)
    assert math.isinf(capacity.ceiling(0))


def _raw(capacity: Any) -> dict[str, Any]:
    """Two runs of two jobs each, from two callers. A terminal job: a put, four status writes of
    about 1.5 KB (2 WCU each in every index), then a write that leaves the unfinished index; a sync
    job has two more status writes (two progress callbacks)."""
    records: list[dict[str, Any]] = []
    runs = []
    for label, caller, live, callbacks in (("terminal/typical", "caller-a", 5, 1), ("sync/typical", "caller-b", 7, 3)):
        ids = [f"{caller}-{n}" for n in range(2)]
        for job_id in ids:
            images = [None, *[_job(job_id, caller, pad=1500 + i) for i in range(live)]]
            images.append(_job(job_id, caller, unfinished=False, pad=1500 + live))
            for before, after in itertools.pairwise(images):
                write = capacity.table_write("UpdateItem", job_id, before, after, INDEXES)
                record = json.loads(json.dumps(capacity.asdict(write)))
                record["label"] = label
                records.append(record)
        runs.append(
            {
                "label": label,
                "caller": caller,
                "jobs": ids,
                "delivered": 2,
                "elapsed_s": 1.0,
                "gateway_stats": {"callbacks_attempted": callbacks * len(ids)},
            }
        )
    return {
        "stack_start_s": 1.0,
        "indexes": {k: list(v) for k, v in INDEXES.items()},
        "projections": {"by_owner": "ALL", "unfinished_by_age": "ALL"},
        "runs": runs,
        "writes": records,
    }


def test_summary_finds_the_hottest_key_its_scope_and_the_ceilings(capacity: Any) -> None:
    summary = capacity.summarise(_raw(capacity))
    rows = {row["index"]: row for row in summary["table"]}
    # by_owner: a put + 4 updates + 1 update (loses `unfinished`, stays in by_owner) = 6 x 2 WCU per job.
    assert rows["by_owner"]["terminal/typical"]["wcu_per_job"] == 12
    assert rows["by_owner"]["terminal/typical"]["hottest_key"] == "caller-a"
    # unfinished_by_age: a put + 4 updates + 1 delete = 6 x 2 WCU per job, all on "1".
    assert rows["unfinished_by_age"]["terminal/typical"]["wcu_per_job"] == 12
    assert rows["unfinished_by_age"]["terminal/typical"]["hottest_key"] == "1"
    assert rows["unfinished_by_age"]["terminal/typical"]["ceiling_jobs_per_s"] == pytest.approx(83.3)
    # Measured scopes: both callers' jobs land on "1"; each caller has its own by_owner key.
    assert rows["unfinished_by_age"]["scope"] == "deployment"
    assert rows["by_owner"]["scope"] == "caller"
    ceilings = summary["ceilings"]["terminal/typical"]
    assert ceilings["per_deployment_jobs_per_s"] == pytest.approx(83.3)
    assert ceilings["one_caller_jobs_per_s"] == pytest.approx(83.3)
    # One caller is held by both keys alike; a deployment only by the key every caller shares.
    assert ceilings["one_caller_limited_by"] == ["by_owner", "unfinished_by_age"]
    assert ceilings["per_deployment_limited_by"] == ["unfinished_by_age"]
    run = summary["runs"]["terminal/typical"]
    assert run["writes_per_job"] == 6 and run["table_wcu_per_job"] == 12
    assert run["index_writes_per_job"] == {"by_owner": 6, "unfinished_by_age": 6}
    assert run["by_key"]["table"]["ceiling_jobs_per_s"] is None  # one job per job_id: no rate limit
    # Within a quarter of the 100 jobs/s: the verdict says so.
    assert any("about 100 jobs/s" in v and ": right: measured 83.3 jobs/s" in v for v in summary["verdicts"])
    # Sync: two progress callbacks add 2 x 2 WCU per job on each key; at 4 and 8 of them the
    # ceiling is 1000 / (12 + 4 x 2) and 1000 / (12 + 8 x 2).
    sync = summary["sync_extrapolation"]["typical"]
    assert sync["measured_progress_callbacks_per_job"] == 2
    assert sync["by_index"]["unfinished_by_age"]["wcu_per_progress_callback"] == 2
    assert sync["by_index"]["unfinished_by_age"]["ceiling_jobs_per_s"] == {"4": 50.0, "8": 35.7}
    assert summary["ceilings"]["sync/typical"]["per_deployment_jobs_per_s"] == pytest.approx(62.5)


def test_scope_of_a_key_is_measured_from_the_callers_on_it(capacity: Any) -> None:
    load = capacity.KeyLoad(wcu=4, writes=2, callers={"a"}, jobs={"j1", "j2"})
    assert capacity.key_scope(load, {"a", "b"}) == "caller"
    load.callers.add("b")
    assert capacity.key_scope(load, {"a", "b"}) == "deployment"
    assert capacity.key_scope(capacity.KeyLoad(wcu=9, writes=3, callers={"a"}, jobs={"j1"}), {"a", "b"}) == "job"


# ------------------------------------------------------------------ the recorder on the client hooks
class _Model:
    def __init__(self, name: str) -> None:
        self.name = name


class _Reader:
    """Answers GetItem with what the test says the item now is."""

    def __init__(self) -> None:
        self.item: dict[str, Any] | None = None

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {"Item": self.item} if self.item else {}


def _write(tracker: Any, operation: str, body: dict[str, Any], parsed: dict[str, Any]) -> None:
    context: dict[str, Any] = {}
    tracker.before_call(model=_Model(operation), params={"body": json.dumps(body).encode()}, context=context)
    tracker.after_call(model=_Model(operation), parsed=parsed, context=context)


def test_the_recorder_keeps_each_write_with_its_images_and_keys(capacity: Any) -> None:
    reader = _Reader()
    tracker = capacity.KeyedWriteUnits(reader, INDEXES)
    tracker.label = "terminal/typical"
    created = _job(pad=10)
    reader.item = created
    _write(tracker, "PutItem", {"TableName": "t", "Item": created}, {})
    finished = _job(unfinished=False, pad=1500)
    reader.item = finished
    # ALL_OLD answers the image before: the recorder takes it, as WriteUnits does.
    _write(tracker, "UpdateItem", {"TableName": "t", "Key": {"job_id": {"S": "j1"}}}, {"Attributes": created})
    _write(
        tracker,
        "UpdateItem",
        {"TableName": "t", "Key": {"job_id": {"S": "j1"}}},
        {"Error": {"Code": "ConditionalCheckFailedException"}, "Item": finished},
    )

    put, update, refused = (capacity.record_to_write(r) for r in tracker.records)
    assert {r["label"] for r in tracker.records} == {"terminal/typical"}
    assert put.partition_key == "j1" and {(w.index, w.kind) for w in put.index} == {
        ("by_owner", "put"),
        ("unfinished_by_age", "put"),
    }
    assert {(w.index, w.kind, w.partition_key) for w in update.index} == {
        ("by_owner", "update", "caller-a"),
        ("unfinished_by_age", "delete", "1"),
    }
    assert update.wcu == 2 and refused.failed and refused.wcu == 2 and refused.index == ()
    # WriteUnits' own counters still run underneath (cost_per_job's machinery, reused).
    assert tracker.writes == 3 and tracker.failed_conditions == 1


def test_a_claimed_ceiling_off_by_the_writes_per_job_is_called_wrong_and_explained(capacity: Any) -> None:
    # 6 writes of a 50,054-byte item: 49 WCU each, 294 per job: 3.4 jobs/s, not 1,000 / 49 = 20.
    runs = {"terminal/largest": {"largest_item_bytes": 50054, "writes_per_job": 6.0}}
    ceilings = {
        "terminal/largest": {"per_deployment_jobs_per_s": 3.4, "per_deployment_limited_by": ["unfinished_by_age"]}
    }
    verdicts = capacity._verdicts(runs, [], ceilings)
    line = next(v for v in verdicts if "about 20 jobs/s" in v)
    assert ": wrong: measured 3.4 jobs/s" in line and "x5.9 lower" in line
    assert "1,000 / 49 WCU, the units of one write" in line


def test_a_keys_only_or_include_index_is_sized_by_its_entry_and_skips_updates_it_does_not_hold(
    capacity: Any,
) -> None:
    projections = {"by_owner": ["status"], "unfinished_by_age": []}  # INCLUDE status; KEYS_ONLY
    before, after = _job(pad=3000), _job(pad=3500)  # a prompt change: neither index holds it

    write = capacity.table_write("UpdateItem", "j1", before, after, INDEXES, projections=projections)

    assert write.index == () and write.wcu == 4  # the table pays for the whole item, no index does
    moved = dict(after, status={"S": "COMPLETED"})
    write = capacity.table_write("UpdateItem", "j1", before, moved, INDEXES, projections=projections)
    # The status change writes by_owner's small entry (keys and status), not the 3.5 KB item.
    assert [(w.index, w.kind, w.wcu) for w in write.index] == [("by_owner", "update", 1)]


def test_a_reconciler_poll_costs_its_write_per_poll_and_a_key_change_in_the_unfinished_index(capacity: Any) -> None:
    """The poll's one UpdateItem moves check_at, the unfinished index's sort key: a delete and a put
    there (keys only: 1 WCU each), on the job's u#NN key; by_owner_shard (status projected) is
    written only when the status changes."""
    indexes = {"by_owner_shard": ("owner_shard", "created_at"), "unfinished_by_check": ("unfinished", "check_at")}
    projected = {"by_owner_shard": ["status"], "unfinished_by_check": []}

    load = capacity.reconciler_poll_load(1632, indexes, projected)

    assert load["item_bytes"] == pytest.approx(1632, abs=2)
    unchanged, outcome = load["unchanged"], load["outcome"]
    assert unchanged["table_wcu"] == 2
    assert unchanged["index"] == {"unfinished_by_check": {"writes": ["delete", "put"], "wcu": 2, "key": "u#03"}}
    assert set(outcome["index"]) == {"by_owner_shard", "unfinished_by_check"}
    assert outcome["index"]["by_owner_shard"]["writes"] == ["update"]
    # 1,000 WCU/s per key / 2 WCU per poll, over 16 keys; 100 polls/s put 12.5 WCU/s on each.
    assert unchanged["ceiling_polls_per_s_per_key"] == 500
    assert unchanged["ceiling_polls_per_s_per_deployment"] == 8000
    assert unchanged["hottest_key_wcu_per_s_at_100_polls_s"] == 12.5

"""The benchmark harness (bench/run.py, ``make bench``) on small sizes, so it does not rot: every
benchmark runs end to end, writes results.json and results.md, and its figures come from runs
that did their real work. The DynamoDB write-unit arithmetic is checked on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--only",
            "copy,cold,cost,webhook,capacity,reconcile_backlog",
            "--sizes",
            "16",
            "--copy-variants",
            "ours,memory",
            "--repeats",
            "1",
            "--cold-functions",
            "WebhookFunction",
            "--no-cold-diagnostics",
            # The development venv: no pip install of the Lambda-like packages in a test.
            "--cold-import-path",
            "venv",
            "--jobs",
            "2",
            "--callbacks",
            "10",
            "--capacity-jobs",
            "1",
            "--reconcile-jobs",
            "20",
            "--reconcile-latency-ms",
            "0",
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    results["_markdown"] = (out / "results.md").read_text()
    return results


def test_every_benchmark_writes_its_section_and_a_verdict_per_target(smoke: dict[str, Any]) -> None:
    assert list(smoke["benchmarks"]) == ["copy", "cold", "cost", "webhook", "capacity", "reconcile_backlog"]
    assert {
        "copy.peak_growth_at_largest",
        "copy.wall_vs_fastest_peer",
        "copy.no_disk",
        "cold.WebhookFunction",
        "cold.webhook_imports_neither_httpx_nor_pydantic",
        "cost.aws_calls_per_job",
        "cost.gateway_calls_per_job",
        "reconcile_backlog.polls_per_second",
    } <= set(smoke["targets"])
    for section in smoke["benchmarks"].values():
        assert section["machine"]["cpus"] and section["command"].startswith("python bench/run.py")


def test_copy_figures_come_from_exact_copies_with_bounded_memory(smoke: dict[str, Any]) -> None:
    copy = smoke["benchmarks"]["copy"]["result"]
    ours = copy["by_size_mib"]["16"]["variants"]["ours"]
    assert ours["all_ok"] and copy["by_size_mib"]["16"]["variants"]["memory"]["all_ok"]
    assert ours["peak_rss_growth_mib"]["median"] <= 64
    assert ours["disk_write_mib"]["max"] < 1
    assert copy["by_size_mib"]["16"]["wall_ratio_vs_fastest_peer"] > 0
    # 16 MiB is multipart: tagged by one PutObjectTagging, never copied onto itself.
    assert "CopyObject" not in ours["s3_s"] and ours["s3_s"]["PutObjectTagging"] > 0
    assert copy["by_size_mib"]["16"]["ours_tagging_s"] > 0


def test_cold_start_runs_take_the_happy_path_against_a_measured_floor(smoke: dict[str, Any]) -> None:
    webhook = smoke["benchmarks"]["cold"]["result"]["by_function"]["WebhookFunction"]
    assert webhook["happy_path"] is True
    assert webhook["heavy_modules"] == []
    assert webhook["floor_ms"]["median"] > 0 and webhook["cold_ratio"] > 0


def test_cost_count_delivers_every_job_once_and_counts_its_calls(smoke: dict[str, Any]) -> None:
    cost = smoke["benchmarks"]["cost"]["result"]
    assert cost["delivered"] == cost["jobs"] == 2 and cost["one_event_per_job"] is True
    assert cost["aws_calls"]["by_service"]["dynamodb"]["per_job"] >= 6
    assert cost["gateway_calls"]["by_kind"]["submit"] == 1
    assert cost["dynamodb_write_units"]["per_job"] >= cost["dynamodb_write_units"]["writes_per_job"]
    assert cost["lambda"]["usd_per_1000_jobs"] > 0


def test_webhook_throughput_is_measured_for_both_handlers(smoke: dict[str, Any]) -> None:
    webhook = smoke["benchmarks"]["webhook"]["result"]
    for variant in ("ours", "bare"):
        assert webhook["by_variant"][variant]["all_200"] is True
        assert webhook["by_variant"][variant]["aws_calls_per_callback"] == {"SendMessage": 1.0, "UpdateItem": 1.0}
    assert 0 < webhook["by_variant"]["ours"]["aws_share"]["median"] < 1
    assert webhook["profile_ours"]["share_by_package"]


def test_reconciler_backlog_is_cleared_by_polling_every_job_once(smoke: dict[str, Any]) -> None:
    backlog = smoke["benchmarks"]["reconcile_backlog"]["result"]
    by_name = {scenario["backlog"]: scenario for scenario in backlog["scenarios"]}
    assert set(by_name) == {"generating", "callbacks_lost"}
    for scenario in by_name.values():
        assert scenario["due_at_start"] == scenario["examined"] == scenario["polls"] == 20
        assert scenario["still_due_after"] == 0 and scenario["polls_per_s"] > 0
        assert scenario["reconciler_calls_per_job"]["dynamodb.UpdateItem"] == 1.0  # one write per look
    assert by_name["generating"]["actions"] == {"polled_unchanged": 20}
    assert by_name["callbacks_lost"]["actions"] == {"polled_unchanged": 10, "polled_outcome": 10}


def test_markdown_report_has_a_section_per_benchmark(smoke: dict[str, Any]) -> None:
    headings = (
        "## Targets",
        "## 1. Media copy",
        "## 2. Cold start",
        "## 3. Cost per",
        "## 4. Webhook",
        "## 6. Reconciler",
    )
    for heading in headings:
        assert heading in smoke["_markdown"]


# ------------------------------------------------------------------ write units, on their own
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


def test_write_units_count_the_table_each_index_and_failed_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/ is a directory of scripts, not a package on the test path.
    monkeypatch.syspath_prepend(str(BENCH))
    from cost_per_job import WriteUnits, item_size

    small = {"job_id": {"S": "j1"}, "owner": {"S": "o"}, "created_at": {"S": "t"}, "unfinished": {"S": "1"}}
    big = {**small, "outputs": {"S": "x" * 1500}}
    assert item_size(small) == len("job_id") + 2 + len("owner") + 1 + len("created_at") + 1 + len("unfinished") + 1
    reader = _Reader()
    indexes = {"by_owner": ("owner", "created_at"), "unfinished_by_age": ("unfinished", "created_at")}
    tracker = WriteUnits(reader, indexes)

    reader.item = small
    _write(tracker, "PutItem", {"TableName": "t", "Item": small}, {})
    # An update that grows the item past 1 KB and leaves the unfinished index.
    reader.item = {k: v for k, v in big.items() if k != "unfinished"}
    _write(tracker, "UpdateItem", {"TableName": "t", "Key": {"job_id": {"S": "j1"}}}, {"Attributes": small})
    # A refused condition still costs the item's size.
    _write(
        tracker,
        "UpdateItem",
        {"TableName": "t", "Key": {"job_id": {"S": "j1"}}},
        {"Error": {"Code": "ConditionalCheckFailedException"}, "Item": reader.item},
    )

    assert tracker.table == {"PutItem": 1, "UpdateItem": 2, "UpdateItem (condition failed)": 2}
    assert tracker.index == {"by_owner": 1 + 2, "unfinished_by_age": 1 + 1}
    assert tracker.failed_conditions == 1 and tracker.writes == 3

"""The burst benchmark's arithmetic (bench/burst.py), on a hand-made run: what it counts as an answer,
a delivery, a duplicate, the drain and the quiet caller's wait; which run is ``before`` and which
``after``; and that the report renders both side by side. The run itself needs the local stack and
minutes: ``make bench`` (``--only burst``) does it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def burst(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # bench/ is a directory of scripts, not a package on the test path.
    monkeypatch.syspath_prepend(str(BENCH))
    import burst as module

    yield module


def _answer(caller: str, n: int, status: int | None, *, job: str | None, job_status: str, latency: float) -> Any:
    return {
        "caller": caller,
        "index": n,
        "due_s": n * 0.1,
        "started_s": n * 0.1 + 0.01,
        "latency_s": latency,
        "status": status,
        "error": None if status == 202 else "rate_limited",
        "job_id": job,
        "job_status": job_status,
    }


def _raw(burst: ModuleType, *, job_status: str = "ACCEPTED", duplicate: bool = False) -> dict[str, Any]:
    """Four noisy jobs (one refused 429 with its job left SUBMIT_FAILED) and two quiet ones."""
    noisy, quiet = burst.NOISY, burst.QUIET
    answers = [
        _answer(noisy, 0, 202, job="n0", job_status=job_status, latency=0.010),
        _answer(noisy, 1, 202, job="n1", job_status=job_status, latency=0.020),
        _answer(noisy, 2, 202, job="n2", job_status=job_status, latency=0.030),
        _answer(noisy, 3, 429, job="n3", job_status="SUBMIT_FAILED", latency=2.0),
        _answer(quiet, 0, 202, job="q0", job_status=job_status, latency=0.015),
        _answer(quiet, 1, 202, job="q1", job_status=job_status, latency=0.025),
    ]
    delivered = burst.DELIVERED
    events = [(delivered, "n0", 10.0), (delivered, "q0", 3.0), (delivered, "q1", 4.0), (delivered, "n1", 20.0)]
    events += [(delivered, "n2", 40.0), ("pixverse.job.progress", "n2", 39.0)]
    if duplicate:
        events.append((delivered, "n2", 41.0))
    by_job = {job: {"received": 1, "accepted": 1} for job in ("n0", "n1", "n2", "q0", "q1")}
    by_job["n3"] = {"received": 3, "accepted": 0}
    return {
        "config": {
            "jobs": 4,
            "seconds": 1.0,
            "max_in_flight": 8,
            "quiet_jobs": 2,
            "quiet_at_s": 0.5,
            "workers": 4,
            "budget_s": 60.0,
            "send_cutoff_s": 30.0,
            "generation_s": 0.8,
            "media_bytes": 4096,
            "local_time_scale": "1",
            "retry_after": None,
        },
        "stack_start_s": 5.0,
        "answers": answers,
        "events": events,
        "inbox_poll_errors": 0,
        "sent_s": 2.5,
        "waited_s": 41.0,
        "gateway_stats": {"submits_received": 8, "submits_accepted": 5, "submits_throttled": 3, "peak_in_flight": 8},
        "gateway_submits": {
            "jobs_submitted_more_than_once": 1,
            "jobs_accepted_more_than_once": ["n1"] if duplicate else [],
            "submits_without_job": 0,
        },
        "gateway_submits_by_job": by_job,
        "table_status": {"n3": "SUBMIT_FAILED"},
        "samples": [],
    }


def test_answers_latency_and_gateway_counts_summarised(burst: ModuleType) -> None:
    summary = burst.summarise(_raw(burst))

    assert summary["posts"]["answers"] == {"202": 5, "429 rate_limited": 1}
    assert summary["posts"]["answers_quiet"] == {"202": 2}
    assert summary["posts"]["latency_noisy"]["p50_ms"] == 20.0  # nearest rank of 10, 20, 30, 2000 ms
    assert summary["posts"]["latency_noisy"]["p99_ms"] == 2000.0
    assert summary["gateway"]["submits_per_job_posted"] == round(8 / 6, 2)
    assert summary["gateway"]["submits_per_job_max"] == 3
    assert (summary["gateway"]["peak_in_flight"], summary["gateway"]["answered_429"]) == (8, 3)


def test_delivery_drain_and_quiet_wait_measured_from_final_events(burst: ModuleType) -> None:
    summary = burst.summarise(_raw(burst))

    delivery, timing = summary["delivery"], summary["timing"]
    assert delivery["delivered_exactly_once"] == 5
    assert delivery["not_delivered_by_table_status"] == {"SUBMIT_FAILED": 1}
    assert timing["burst_drain_s"] == 40.0  # the last taken noisy job's final event; progress events do not count
    assert (timing["quiet_done_s"], timing["quiet_taken"]) == (4.0, 2)
    assert timing["quiet_share_of_drain"] == 0.1
    targets = summary["targets"]
    assert targets["every_post_202"] == {"value": "5/6", "met": False}
    assert targets["every_job_delivered_once"]["met"] is False
    assert targets["quiet_caller_done_long_before_drain"]["met"] is True
    assert targets["no_duplicate_gateway_submit"]["met"] is True


def test_second_final_event_and_double_acceptance_are_duplicates(burst: ModuleType) -> None:
    summary = burst.summarise(_raw(burst, duplicate=True))

    assert summary["delivery"]["jobs_with_more_than_one_final_event"] == 1
    assert summary["delivery"]["delivered_exactly_once"] == 4  # n2 was delivered twice
    assert summary["gateway"]["jobs_accepted_more_than_once"] == 1
    assert summary["targets"]["no_duplicate_gateway_submit"]["met"] is False


def test_a_taken_job_without_final_event_means_not_drained(burst: ModuleType) -> None:
    raw = _raw(burst)
    raw["events"] = [e for e in raw["events"] if e[1] != "n2"]
    raw["table_status"]["n2"] = "ACCEPTED"

    summary = burst.summarise(raw)

    assert summary["timing"]["burst_drain_s"] is None
    assert summary["timing"]["last_noisy_final_s"] == 20.0
    assert summary["delivery"]["not_delivered_by_table_status"] == {"ACCEPTED": 1, "SUBMIT_FAILED": 1}
    assert summary["targets"]["quiet_caller_done_long_before_drain"]["met"] is False


def test_runs_labelled_by_submit_path_and_kept_side_by_side(burst: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    raws = iter([_raw(burst, job_status="QUEUED"), _raw(burst, job_status="ACCEPTED")])
    monkeypatch.setattr(burst, "run_burst_once", lambda **_: next(raws))

    before = burst.run_burst(log=lambda _: None)
    both = burst.run_burst(previous=before, log=lambda _: None)

    assert before["latest"] == "before (4 jobs in 1 s)"
    assert list(both["runs"]) == ["before (4 jobs in 1 s)", "after (4 jobs in 1 s)"]
    assert both["runs"]["after (4 jobs in 1 s)"]["submit_path"].startswith("admission")
    assert both["targets"] == both["runs"][both["targets_from"]]["targets"]


def test_report_renders_each_run_as_a_column(burst: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    raws = iter([_raw(burst, job_status="QUEUED"), _raw(burst, job_status="ACCEPTED")])
    monkeypatch.setattr(burst, "run_burst_once", lambda **_: next(raws))
    both = burst.run_burst(previous=burst.run_burst(log=lambda _: None), log=lambda _: None)
    import report

    section = {
        "command": "python bench/run.py --only burst",
        "seconds": 1.0,
        "ran_at": "now",
        "machine": {"cpus": 2, "cpu": "x", "machine": "x", "memory_gib": 1, "python": "3.13", "load_average": [0]},
        "load_average_after": [0, 0, 0],
        "result": both,
    }

    text = "\n".join(report._burst(section))

    assert "| figure | `before (4 jobs in 1 s)` | `after (4 jobs in 1 s)` |" in text
    assert "| every_post_202 | **missed** (5/6) | **missed** (5/6) |" in text
    assert "| burst drained: its last taken job's final event (s) | 40.0 | 40.0 |" in text


def test_percentile_is_nearest_rank(burst: ModuleType) -> None:
    assert burst.percentile([], 0.5) is None
    assert burst.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert burst.percentile([float(n) for n in range(1, 101)], 0.99) == 99.0

"""JobStore.advance as the webhook relies on it: one UpdateItem that returns the new record and
the status it replaced (computed from ALL_OLD), so a callback can tell a real status change from
a sync-mode refresh without a second call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore


@pytest.fixture
def store() -> Iterator[JobStore]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        yield JobStore(create_jobs_table(ddb), ddb)


def _create(store: JobStore, status: JobStatus = JobStatus.QUEUED, **extra: Any) -> None:
    store.create(
        {
            "job_id": "j1",
            "owner": "tester",
            "model": "pixverse",
            "input": {"prompt": "x", "duration": 5},
            "status": str(status),
            "created_at": "2026-11-25T12:00:00.000Z",
            "updated_at": "2026-11-25T12:00:00.000Z",
            **extra,
        }
    )


def test_applied_advance_returns_exactly_the_stored_record(store: JobStore) -> None:
    _create(store, lease=5, flags={"a": True})
    result = store.advance(
        "j1",
        JobStatus.COMPLETED,
        request_id="req-1",
        attributes={
            "media_urls": ["https://a.r2.dev/1.mp4", "https://a.r2.dev/2.mp4"],
            "ratio": 0.25,
            "count": 3,
            "error": {"code": "x", "nested": {"n": 1.5, "list": [1, "two"]}},
        },
        remove=["lease", "missing_attribute"],
    )
    assert result.applied
    assert result.job == store.get("j1")
    assert "lease" not in result.job


def test_advance_reports_the_status_it_replaced(store: JobStore) -> None:
    _create(store, JobStatus.QUEUED)
    moved = store.advance("j1", JobStatus.PROCESSING)
    refreshed = store.advance("j1", JobStatus.PROCESSING)
    refused = store.advance("j1", JobStatus.QUEUED)

    assert (moved.applied, moved.previous_status, moved.changed_status) == (True, JobStatus.QUEUED, True)
    assert (refreshed.applied, refreshed.previous_status, refreshed.changed_status) == (
        True,
        JobStatus.PROCESSING,
        False,
    )
    assert (refused.applied, refused.changed_status) == (False, False)
    assert refused.job["status"] == "PROCESSING"


def test_set_request_id_returns_the_stored_record(store: JobStore) -> None:
    _create(store, JobStatus.COMPLETED)
    result = store.set_request_id("j1", "req-9")
    assert result.applied
    assert result.job == store.get("j1")
    assert result.previous_status is JobStatus.COMPLETED
    assert not result.changed_status

"""The job's public view: what it says of the submit (``submit_outcome``)."""

from __future__ import annotations

from typing import Any

import pytest
from pixverse_jobs.views import PUBLIC_FIELDS, job_view

BASE = {"job_id": "job_1", "model": "pixverse", "created_at": "2026-11-25T12:00:00.000Z", "owner": "o"}
UNKNOWN_AT_MAX_AGE = {"code": "submit_outcome_unknown", "message": "no callback within 24 hours"}


@pytest.mark.parametrize(
    ("record", "outcome"),
    [
        ({"status": "SUBMITTING"}, "pending"),
        ({"status": "SUBMITTING", "submit_error": {"code": "gateway_unavailable", "message": "m"}}, "unknown"),
        ({"status": "SUBMITTING", "request_id": "r1"}, "accepted"),
        ({"status": "QUEUED", "request_id": "r1"}, "accepted"),
        ({"status": "DELIVERED", "request_id": "r1"}, "accepted"),
        ({"status": "SUBMIT_FAILED", "error": {"code": "insufficient_balance", "message": "m"}}, "refused"),
        ({"status": "SUBMIT_FAILED", "error": UNKNOWN_AT_MAX_AGE}, "unknown"),
    ],
    ids=["being-sent", "answer-late", "answered", "queued", "delivered", "refused", "unknown-at-max-age"],
)
def test_submit_outcome_follows_the_record(record: dict[str, Any], outcome: str) -> None:
    assert job_view({**BASE, **record})["submit_outcome"] == outcome


def test_view_keeps_internal_attributes_out() -> None:
    view = job_view({**BASE, "status": "SUBMITTING", "submit_error": {"code": "c", "message": "m"}})
    assert set(view) == set(PUBLIC_FIELDS)
    assert "submit_error" not in view and "owner" not in view

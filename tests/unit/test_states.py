from __future__ import annotations

import pytest
from pixverse_jobs.states import TERMINAL, JobStatus, can_move, sources_of

PIPELINE = [
    JobStatus.SUBMITTING,
    JobStatus.QUEUED,
    JobStatus.PROCESSING,
    JobStatus.COMPLETED,
    JobStatus.COPYING,
    JobStatus.DELIVERED,
]


@pytest.mark.parametrize("index", range(1, len(PIPELINE)))
def test_pipeline_never_moves_backwards(index: int) -> None:
    later = PIPELINE[index]
    for earlier in PIPELINE[:index]:
        assert not can_move(later, earlier), f"{later} -> {earlier}"


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_have_no_successor(status: JobStatus) -> None:
    assert all(not can_move(status, target) for target in JobStatus)


def test_completed_is_reached_only_from_gateway_states() -> None:
    assert sources_of(JobStatus.COMPLETED) == {JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.PROCESSING}


def test_late_processing_after_completed_is_refused() -> None:
    assert JobStatus.COMPLETED not in sources_of(JobStatus.PROCESSING)
    assert JobStatus.PROCESSING in sources_of(JobStatus.PROCESSING)  # sync-mode progress


def test_submit_failed_only_from_submitting() -> None:
    assert sources_of(JobStatus.SUBMIT_FAILED) == {JobStatus.SUBMITTING}

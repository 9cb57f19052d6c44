from __future__ import annotations

import pytest
from pixverse_jobs.states import GATEWAY_STATUSES, TERMINAL, JobStatus, can_move, sources_of

PIPELINE = [
    JobStatus.ACCEPTED,
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
        if (later, earlier) == (JobStatus.SUBMITTING, JobStatus.ACCEPTED):
            continue  # the submitter's "not now": see the next test
        assert not can_move(later, earlier), f"{later} -> {earlier}"


def test_only_a_claimed_submit_goes_back_to_waiting() -> None:
    # SUBMITTING -> ACCEPTED is the gateway's "not now" to the submit the submitter claimed; no
    # later status (one a callback brought) ever returns to ACCEPTED.
    assert sources_of(JobStatus.ACCEPTED) == {JobStatus.SUBMITTING}
    assert JobStatus.ACCEPTED not in GATEWAY_STATUSES.values()


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_have_no_successor(status: JobStatus) -> None:
    assert all(not can_move(status, target) for target in JobStatus)


def test_completed_is_reached_only_from_gateway_states() -> None:
    # ACCEPTED too: a callback for a job waiting after a 5xx proves the gateway took that submit.
    assert sources_of(JobStatus.COMPLETED) == {
        JobStatus.ACCEPTED,
        JobStatus.SUBMITTING,
        JobStatus.QUEUED,
        JobStatus.PROCESSING,
    }


def test_late_processing_after_completed_is_refused() -> None:
    assert JobStatus.COMPLETED not in sources_of(JobStatus.PROCESSING)
    assert JobStatus.PROCESSING in sources_of(JobStatus.PROCESSING)  # sync-mode progress


def test_submit_failed_only_before_the_gateway_took_the_job() -> None:
    assert sources_of(JobStatus.SUBMIT_FAILED) == {JobStatus.ACCEPTED, JobStatus.SUBMITTING}

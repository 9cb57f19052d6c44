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


def test_not_submitted_error_names_the_maximum_age_and_the_gateways_last_answer() -> None:
    from pixverse_jobs.states import not_submitted_error

    last = {"code": "insufficient_balance", "message": "Your wallet does not have enough balance."}
    assert not_submitted_error(last, 5400) == {
        "code": "not_submitted",
        "message": "the gateway did not take the job within 1.5 hours "
        "(its last answer: insufficient_balance: Your wallet does not have enough balance.)",
    }
    assert not_submitted_error(None, 86400)["message"] == "the gateway did not take the job within 24 hours"


def test_every_status_not_ended_may_be_cancelled_and_nothing_leaves_cancelled() -> None:
    for status in JobStatus:
        assert can_move(status, JobStatus.CANCELLED) is (status not in TERMINAL)
        assert can_move(JobStatus.CANCELLED, status) is False

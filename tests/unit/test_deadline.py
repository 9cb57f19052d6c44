"""The invocation's deadline: Lambda's time left, API Gateway's integration timeout, the reserve."""

from __future__ import annotations

import pytest
from pixverse_jobs.deadline import Deadline, invocation_deadline


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_on_its_clock_and_stops_at_zero() -> None:
    clock = Clock()
    deadline = Deadline.after(2.0, clock=clock)
    clock.now += 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    assert not deadline.expired()
    clock.now += 1.0
    assert deadline.remaining() == 0.0
    assert deadline.expired()


def test_lambda_time_left_less_the_reserve_bounds_the_work() -> None:
    clock = Clock()
    deadline = invocation_deadline(29_000, reserve_seconds=2.5, clock=clock)
    assert deadline.remaining() == pytest.approx(26.5)


def test_a_cold_start_counts_against_the_apis_timeout() -> None:
    # Given API Gateway received the request 1.2 s ago (the init ran), Lambda still reports 29 s
    clock = Clock()
    deadline = invocation_deadline(
        29_000,
        reserve_seconds=2.5,
        api_started_epoch_ms=1_000_000,
        api_timeout_seconds=29.0,
        now_epoch=lambda: 1_001.2,
        clock=clock,
    )
    # Then the work must end by the API's timeout, not Lambda's
    assert deadline.remaining() == pytest.approx(29.0 - 1.2 - 2.5)


@pytest.mark.parametrize("now_epoch", [999.0, 1_100.0], ids=["future-time-epoch", "stale-time-epoch"])
def test_an_implausible_time_epoch_is_ignored(now_epoch: float) -> None:
    clock = Clock()
    deadline = invocation_deadline(
        20_000,
        reserve_seconds=2.5,
        api_started_epoch_ms=1_000_000,
        api_timeout_seconds=29.0,
        now_epoch=lambda: now_epoch,
        clock=clock,
    )
    assert deadline.remaining() == pytest.approx(17.5)


def test_too_little_time_gives_a_deadline_already_passed() -> None:
    assert invocation_deadline(2_000, reserve_seconds=2.5, clock=Clock()).expired()

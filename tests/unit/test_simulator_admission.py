"""The simulator's admission limit: at most N requests QUEUED or PROCESSING, 429 with the doc's
error body beyond it, admitted again once one finishes; and its counters (429s, peak concurrency,
submits per job). Time is a hand-moved clock, so nothing here depends on how fast the machine is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pixverse_local.gateway_sim import GatewaySimulator
from pixverse_local.gateway_sim.admission import admission_from_env, job_id_of
from pixverse_local.stack import LocalStack, LocalStackError

API_KEY = "sim-admission-test-key"
KEY_HEADERS = {"Ocp-Apim-Subscription-Key": API_KEY}
MODEL = "pixverse-v6-text-to-video"
SUBMIT_PATH = f"/{MODEL}/v1/{MODEL}-request"
BODY = {"prompt": "A lighthouse at dusk", "duration": 5}
QUEUE_SECONDS, PROCESSING_SECONDS = 0.2, 0.6  # a request is final 0.8 s (of the hand clock) after its submit
DOC_429_BODY = {"error": "Too Many Requests", "message": "Rate limit exceeded. Try again later."}


class HandClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


def _simulator(clock: HandClock, **options: Any) -> GatewaySimulator:
    return GatewaySimulator(
        api_key=API_KEY,
        allow_http_webhooks_on_loopback=True,
        queue_seconds=QUEUE_SECONDS,
        processing_seconds=PROCESSING_SECONDS,
        clock=clock,
        **options,
    )


@pytest.fixture
def limited(clock: HandClock) -> Iterator[tuple[GatewaySimulator, httpx.Client]]:
    """A simulator that admits 2 requests at once."""
    simulator = _simulator(clock, max_in_flight=2)
    url = simulator.start()
    try:
        with httpx.Client(base_url=url, timeout=5.0) as http:
            yield simulator, http
    finally:
        simulator.stop()


def submit(client: httpx.Client, job_id: str | None = None, body: object = BODY) -> httpx.Response:
    headers = dict(KEY_HEADERS)
    if job_id is not None:
        # As the pipeline sends it (pixverse_jobs.signing.webhook_url); nothing listens there, and the
        # hand clock never lets a request finish on its own, so no callback is attempted.
        headers["X-Webhook-URL"] = f"http://127.0.0.1:9/webhooks/pixazo/{job_id}?sig=v1.abc"
    return client.post(SUBMIT_PATH, json=body, headers=headers)


def test_submit_beyond_limit_answers_429_with_doc_error_body(limited: tuple[GatewaySimulator, httpx.Client]) -> None:
    _, client = limited

    answers = [submit(client) for _ in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json() == DOC_429_BODY
    assert "retry-after" not in answers[2].headers  # the doc publishes none: by default, neither do we
    stats = client.get("/_sim/stats").json()
    assert (stats["submits_received"], stats["submits_accepted"], stats["submits_throttled"]) == (3, 2, 1)
    assert (stats["in_flight"], stats["peak_in_flight"]) == (2, 2)


def test_slot_freed_when_a_request_finishes_admits_again(
    limited: tuple[GatewaySimulator, httpx.Client], clock: HandClock
) -> None:
    # Given A submitted at t, B at t + 0.5, and the limit of 2 reached
    sim, client = limited
    first = submit(client).json()["request_id"]
    clock.now += 0.5
    second = submit(client).json()["request_id"]
    refused = submit(client)

    # When A reaches its final status (t + 0.85 >= 0.8) while B is still PROCESSING
    clock.now += 0.35
    sim.lifecycle.advance(clock())
    admitted = submit(client)
    refused_again = submit(client)

    # Then one more request is admitted, and the next is refused again
    statuses = {r["request_id"]: r["status"] for r in client.get("/_sim/requests").json()}
    assert refused.status_code == 429
    assert (statuses[first], statuses[second]) == ("COMPLETED", "PROCESSING")
    assert admitted.status_code == 202
    assert refused_again.status_code == 429
    assert client.get("/_sim/stats").json()["peak_in_flight"] == 2


def test_retry_after_option_adds_the_header(clock: HandClock) -> None:
    with _simulator(clock, max_in_flight=1, retry_after_seconds=7) as sim, httpx.Client(base_url=sim.url) as client:
        submit(client)
        refused = submit(client)

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"


def test_limit_set_at_run_time_through_control_endpoint(clock: HandClock) -> None:
    with _simulator(clock) as sim, httpx.Client(base_url=sim.url) as client:
        unlimited = [submit(client).status_code for _ in range(2)]
        set_answer = client.post("/_sim/admission", json={"max_in_flight": 2, "retry_after": 3})
        at_limit = submit(client)
        lifted = client.post("/_sim/admission", json={"max_in_flight": None})
        after_lift = submit(client)
        described = client.get("/_sim/admission").json()

    assert unlimited == [202, 202]
    assert set_answer.json() == {"max_in_flight": 2, "retry_after": 3, "in_flight": 2, "peak_in_flight": 2}
    assert (at_limit.status_code, at_limit.headers["retry-after"]) == (429, "3")
    assert lifted.status_code == 200
    assert after_lift.status_code == 202
    assert described == {"max_in_flight": None, "retry_after": 3, "in_flight": 3, "peak_in_flight": 3}


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": "8"}, "max_in_flight"),
        ({"retry_after": -1}, "retry_after"),
        ({"max_inflight": 8}, "max_inflight"),
    ],
)
def test_bad_admission_setting_rejected_naming_field(
    limited: tuple[GatewaySimulator, httpx.Client], spec: dict[str, Any], named: str
) -> None:
    _, client = limited

    answer = client.post("/_sim/admission", json=spec)

    assert answer.status_code == 400
    assert answer.json()["message"].startswith(f"{named}:")
    assert client.get("/_sim/admission").json()["max_in_flight"] == 2


def test_invalid_body_at_capacity_is_still_400(limited: tuple[GatewaySimulator, httpx.Client]) -> None:
    _, client = limited
    submit(client)
    submit(client)

    answer = submit(client, body={**BODY, "resolution": "9000p"})

    assert answer.status_code == 400  # "never" stays "never", whatever the gateway's load
    assert client.get("/_sim/stats").json()["submits_throttled"] == 0


def test_concurrent_submits_admit_exactly_the_limit(clock: HandClock) -> None:
    with (
        _simulator(clock, max_in_flight=5) as sim,
        httpx.Client(base_url=sim.url, timeout=5.0) as client,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        codes = list(pool.map(lambda _: submit(client).status_code, range(24)))
        stats = client.get("/_sim/stats").json()

    assert codes.count(202) == 5
    assert codes.count(429) == 19
    assert (stats["peak_in_flight"], stats["submits_throttled"]) == (5, 19)


def test_submits_counted_per_job_so_a_duplicate_is_visible(limited: tuple[GatewaySimulator, httpx.Client]) -> None:
    _, client = limited
    submit(client, "job-1")
    submit(client, "job-1")  # the same job accepted twice: billed twice by a real gateway
    submit(client, "job-2")  # refused: at the limit
    submit(client, "job-2")  # refused again
    submit(client)  # no webhook: no job to count it for

    submits = client.get("/_sim/submits").json()

    assert submits["by_job"] == {"job-1": {"received": 2, "accepted": 2}, "job-2": {"received": 2, "accepted": 0}}
    assert submits["jobs_accepted_more_than_once"] == ["job-1"]
    assert submits["jobs_submitted_more_than_once"] == 2
    assert (submits["jobs"], submits["submits_with_job"], submits["submits_without_job"]) == (2, 4, 1)


def test_submits_counted_even_when_a_fault_answers(limited: tuple[GatewaySimulator, httpx.Client]) -> None:
    _, client = limited
    client.post("/_sim/faults", json={"submit_status": 429}).raise_for_status()

    refused = submit(client, "job-9")
    accepted = submit(client, "job-9")

    assert (refused.status_code, accepted.status_code) == (429, 202)
    assert client.get("/_sim/submits").json()["by_job"]["job-9"] == {"received": 2, "accepted": 1}
    assert client.get("/_sim/stats").json()["submits_throttled"] == 1


def test_reset_clears_counters_and_keeps_limit(limited: tuple[GatewaySimulator, httpx.Client]) -> None:
    _, client = limited
    for job in ("a", "b", "c"):
        submit(client, job)

    client.post("/_sim/reset").raise_for_status()

    stats = client.get("/_sim/stats").json()
    assert (stats["submits_throttled"], stats["in_flight"], stats["peak_in_flight"]) == (0, 0, 0)
    assert client.get("/_sim/submits").json()["by_job"] == {}
    assert client.get("/_sim/admission").json()["max_in_flight"] == 2
    assert [submit(client).status_code for _ in range(3)] == [202, 202, 429]


@pytest.mark.parametrize(
    ("url", "job_id"),
    [
        ("https://api.example.com/webhooks/pixazo/0190abcd-job?sig=v1.x", "0190abcd-job"),
        ("https://api.example.com/prod/webhooks/pixazo/a%2Fb", "a/b"),
        ("https://api.example.com/hook", None),
        (None, None),
    ],
)
def test_job_id_read_from_webhook_url(url: str | None, job_id: str | None) -> None:
    assert job_id_of(url) == job_id


def test_admission_env_read_and_checked() -> None:
    assert admission_from_env({}) == (None, None)
    assert admission_from_env({"SIM_MAX_IN_FLIGHT": "8", "SIM_RETRY_AFTER_SECONDS": "0"}) == (8, 0)
    with pytest.raises(ValueError, match="SIM_MAX_IN_FLIGHT"):
        admission_from_env({"SIM_MAX_IN_FLIGHT": "0"})
    with pytest.raises(ValueError, match="SIM_RETRY_AFTER_SECONDS"):
        admission_from_env({"SIM_RETRY_AFTER_SECONDS": "soon"})


def test_local_stack_refuses_bad_admission_env_naming_it() -> None:
    # Checked before anything starts: AWS_ENDPOINT_URL points at nothing, so no moto server is started,
    # and nothing is provisioned there.
    env = {"SIM_MAX_IN_FLIGHT": "eight", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    stack = LocalStack(Path(__file__).resolve().parents[2] / "template.yaml", env=env, api_port=0)

    with pytest.raises(LocalStackError, match="SIM_MAX_IN_FLIGHT"):
        stack.start()


def test_standalone_flag_sets_the_limit() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "local")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pixverse_local.gateway_sim", "--api-key", API_KEY, "--max-in-flight", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("simulator: ")
        described = httpx.get(f"{url}/_sim/admission", timeout=2.0).json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)

    assert described["max_in_flight"] == 8
    assert described["retry_after"] is None

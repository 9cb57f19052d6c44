from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from pixverse_jobs import gateway as gateway_module
from pixverse_jobs.deadline import Deadline
from pixverse_jobs.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayOutcomeUnknown,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
    InsufficientBalance,
    ModelNotFound,
)
from pixverse_jobs.gateway import GatewayClient, RetryPolicy
from slow_gateway import SlowGateway

KEY = "sk-test-0123456789"


def _client(handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float] | None = None) -> GatewayClient:
    slept = sleeps if sleeps is not None else []
    return GatewayClient(
        "https://gw.example",
        lambda: KEY,
        httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=slept.append,
    )


def _sequence(*responses: httpx.Response | Exception) -> tuple[Callable[[httpx.Request], httpx.Response], list[int]]:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        item = responses[min(len(calls), len(responses)) - 1]
        if isinstance(item, Exception):
            raise type(item)(str(item), request=request)  # type: ignore[call-arg]
        return item

    return handler, calls


def test_429_is_retried_after_retry_after_then_accepted() -> None:
    handler, calls = _sequence(
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(202, json={"request_id": "pixverse_1", "status": "QUEUED"}),
    )
    sleeps: list[float] = []
    assert _client(handler, sleeps).submit("pixverse", {"prompt": "p"}, webhook_url=None).request_id == "pixverse_1"
    assert len(calls) == 2
    assert sleeps == [2.0]


def test_429_retries_are_bounded_then_rate_limited() -> None:
    handler, calls = _sequence(httpx.Response(429))
    sleeps: list[float] = []
    with pytest.raises(GatewayRateLimited):
        _client(handler, sleeps).submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 4.0 for s in sleeps)


def test_retry_after_beyond_budget_goes_back_to_caller_at_once() -> None:
    handler, calls = _sequence(httpx.Response(429, headers={"Retry-After": "60"}))
    with pytest.raises(GatewayRateLimited) as info:
        _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert len(calls) == 1
    assert info.value.retry_after == 60


def test_connect_error_is_retried_because_nothing_was_sent() -> None:
    handler, calls = _sequence(httpx.ConnectError("refused"), httpx.Response(202, json={"request_id": "pixverse_1"}))
    assert _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None).request_id == "pixverse_1"
    assert len(calls) == 2


def test_timeout_after_sending_is_never_resubmitted() -> None:
    handler, calls = _sequence(httpx.ReadTimeout("slow"), httpx.Response(202, json={"request_id": "pixverse_2"}))
    with pytest.raises(GatewayOutcomeUnknown):
        _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert len(calls) == 1


def test_5xx_answer_is_not_retried() -> None:
    handler, calls = _sequence(httpx.Response(500), httpx.Response(202, json={"request_id": "pixverse_2"}))
    with pytest.raises(GatewayUnavailable):
        _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert len(calls) == 1


def test_submit_sends_documented_headers_and_body_unchanged() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"request_id": "pixverse-i2v_1", "status": "QUEUED", "polling_url": "u"})

    params = {"prompt": "p", "resolution": "720p", "duration": "5", "image_url": "https://x/a.png"}
    accepted = _client(handler).submit(
        "pixverse-i2v", params, webhook_url="https://api/webhooks/pixazo/j?sig=ab", webhook_mode="sync"
    )
    assert accepted.request_id == "pixverse-i2v_1"
    request = seen[0]
    assert str(request.url) == "https://gw.example/pixverse-i2v/v1/pixverse-i2v-request"
    assert request.headers["Ocp-Apim-Subscription-Key"] == KEY
    assert request.headers["Cache-Control"] == "no-cache"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Webhook-URL"] == "https://api/webhooks/pixazo/j?sig=ab"
    assert request.headers["X-Webhook-Mode"] == "sync"
    assert json.loads(request.content) == params
    assert isinstance(json.loads(request.content)["duration"], str)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": "Bad Request", "message": "duration invalid"}, GatewayRejected),
        (400, {"error": "Model not found", "message": "Model 'pixverse' not found or is disabled"}, ModelNotFound),
        (401, {"error": "Unauthorized"}, GatewayAuthError),
        (403, {"error": "Forbidden"}, GatewayAuthError),
        (
            402,
            {"error": "Insufficient Balance", "message": "Your wallet does not have enough balance."},
            InsufficientBalance,
        ),
        (429, {"error": "Too Many Requests"}, GatewayRateLimited),
        (500, {"error": "Internal Server Error"}, GatewayUnavailable),
        (404, {"error": "Not Found"}, GatewayError),
    ],
)
def test_submit_maps_gateway_errors(status: int, body: dict[str, str], error: type[GatewayError]) -> None:
    client = _client(lambda _: httpx.Response(status, json=body, headers={"Retry-After": "7"}))
    with pytest.raises(error) as info:
        client.submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert type(info.value) is error
    assert KEY not in str(info.value)
    if error is GatewayRateLimited:
        assert info.value.retry_after == 7  # type: ignore[attr-defined]


def test_gateway_400_message_is_passed_through() -> None:
    client = _client(lambda _: httpx.Response(400, json={"error": "Bad Request", "message": "duration invalid"}))
    with pytest.raises(GatewayRejected, match="duration invalid"):
        client.submit("pixverse", {"prompt": "p"}, webhook_url=None)


def test_connect_error_means_not_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(GatewayUnavailable) as info:
        _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert not info.value.accepted_possible
    assert info.value.status is None


def test_read_timeout_after_sending_may_have_been_accepted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(GatewayOutcomeUnknown) as info:
        _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None)
    assert info.value.accepted_possible


def test_status_returns_payload_with_key_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"request_id": "r1", "status": "PROCESSING"})

    assert _client(handler).status("r1")["status"] == "PROCESSING"
    assert seen[0].url.path == "/v2/requests/status/r1"
    assert seen[0].headers["Ocp-Apim-Subscription-Key"] == KEY


# ------------------------------------------------------------------ the deadline of the invocation
class FakeClock:
    """Monotonic time that only a sleep moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@pytest.fixture
def slow_gateway() -> Iterator[SlowGateway]:
    gateway = SlowGateway(delay=10.0)
    yield gateway
    gateway.close()


def test_answer_later_than_the_deadline_is_outcome_unknown_by_the_deadline_and_sent_once(
    slow_gateway: SlowGateway,
) -> None:
    # Given a gateway that accepts the job at once but answers only after 10 s, and 1.5 s left
    client = GatewayClient(slow_gateway.url, lambda: KEY)
    started = time.monotonic()

    # When the job is submitted under that deadline
    with pytest.raises(GatewayOutcomeUnknown) as info:
        client.submit("pixverse", {"prompt": "p"}, webhook_url=None, deadline=Deadline.after(1.5))

    # Then the client gives up by the deadline, knowing the gateway may have the job, and sent it once
    elapsed = time.monotonic() - started
    assert 0.7 <= elapsed < 1.5 + 0.5, elapsed  # it waited for the answer at least half the time
    assert info.value.accepted_possible
    assert len(slow_gateway.accepted) == 1
    client.close()


def test_no_attempt_is_started_without_time_for_it() -> None:
    handler, calls = _sequence(httpx.Response(202, json={"request_id": "pixverse_1"}))
    clock = FakeClock()

    with pytest.raises(GatewayUnavailable) as info:
        _client(handler).submit(
            "pixverse", {"prompt": "p"}, webhook_url=None, deadline=Deadline.after(0.5, clock=clock)
        )

    assert calls == []
    assert not info.value.accepted_possible  # nothing sent: the job can end SUBMIT_FAILED


def test_attempt_timeouts_add_up_to_no_more_than_the_time_left() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(202, json={"request_id": "pixverse_1"})

    clock = FakeClock()
    _client(handler).submit("pixverse", {"prompt": "p"}, webhook_url=None, deadline=Deadline.after(6.0, clock=clock))

    (timeout,) = seen
    assert sum(timeout.values()) == pytest.approx(6.0)
    assert timeout["connect"] <= 1.0 and timeout["pool"] <= 1.0 and timeout["write"] <= 1.0
    assert timeout["read"] >= 3.0


def test_retry_waits_never_pass_the_deadline() -> None:
    # Given a gateway that cannot be reached, generous retries and 5 s left on a fake clock
    handler, calls = _sequence(httpx.ConnectError("refused"))
    clock = FakeClock()
    deadline = Deadline.after(5.0, clock=clock)
    client = GatewayClient(
        "https://gw.example",
        lambda: KEY,
        httpx.Client(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(attempts=50, base_delay=1.0, max_delay=2.0),
        sleep=clock.sleep,
    )

    # When it is submitted
    with pytest.raises(GatewayUnavailable):
        client.submit("pixverse", {"prompt": "p"}, webhook_url=None, deadline=deadline)

    # Then it retried while there was time, and every attempt started with time for it
    assert len(calls) >= 2
    assert clock.now <= deadline.at - gateway_module.MIN_ATTEMPT_SECONDS


def test_retry_after_past_the_deadline_goes_back_to_the_caller_at_once() -> None:
    # Given a 429 asking for 2 s, with 2.5 s left (too little for the wait and an attempt)
    handler, calls = _sequence(
        httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(202, json={"request_id": "pixverse_1"})
    )
    sleeps: list[float] = []
    clock = FakeClock()

    with pytest.raises(GatewayRateLimited) as info:
        _client(handler, sleeps).submit(
            "pixverse", {"prompt": "p"}, webhook_url=None, deadline=Deadline.after(2.5, clock=clock)
        )

    assert len(calls) == 1
    assert sleeps == []
    assert info.value.retry_after == 2

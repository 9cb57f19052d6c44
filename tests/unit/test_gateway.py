from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
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
from pixverse_jobs.gateway import GatewayClient

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

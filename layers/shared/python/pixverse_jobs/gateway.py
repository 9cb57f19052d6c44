"""The Pixazo gateway over httpx: submit for the six models, status by request_id.

One ``httpx.Client`` per container with explicit timeouts. A submit made under a ``Deadline``
(the time its invocation has left) shrinks those timeouts, and its retries, to end by then: an
invocation Lambda cuts off mid-call records nothing, while a call that gives up in time lets the
caller record that the outcome is unknown. Errors become the domain errors of ``errors``; the
key goes only into the ``Ocp-Apim-Subscription-Key`` header, never into a message or a log line."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from pixverse_jobs.catalog import get_model
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

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=3.0)
KEY_HEADER = "Ocp-Apim-Subscription-Key"
# A submit attempt is not started with less time than this before its deadline: it could hardly
# get an answer, and a request sent without one leaves the job's outcome unknown for a day.
MIN_ATTEMPT_SECONDS = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for submits the gateway cannot have accepted: a 429 (refused by its
    rate limiter) or a connection that never opened. Full jitter on an exponential backoff;
    a Retry-After from the gateway is honoured up to ``max_delay`` (the API answers within
    API Gateway's 30 s, so a longer wait goes back to the caller as 429 + Retry-After). Under a
    deadline, a wait that would leave less than MIN_ATTEMPT_SECONDS for the next attempt is not
    taken either: the last refusal goes back to the caller."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 4.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_delay else None
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))  # noqa: S311


@dataclass(frozen=True)
class SubmitAccepted:
    request_id: str
    status: str
    polling_url: str | None


class GatewayClient:
    """Calls the gateway at ``base_url``; ``api_key`` is a callable so the key is read from
    Secrets Manager (cached) only when a call is made."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        client: httpx.Client | None = None,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def submit(
        self,
        model_id: str,
        params: Mapping[str, Any],
        *,
        webhook_url: str | None,
        webhook_mode: str = "terminal",
        deadline: Deadline | None = None,
    ) -> SubmitAccepted:
        """POST the parameters, unchanged, to the model's request path.

        Retried (bounded, see RetryPolicy) only where the gateway cannot have accepted the
        request; a timeout after sending raises GatewayOutcomeUnknown at once, never a resubmit
        that could be paid twice. With a ``deadline``, every attempt and every wait ends by it:
        without time for an attempt, GatewayUnavailable (nothing sent); an answer that has not
        come by then, GatewayOutcomeUnknown."""
        attempt = 1
        while True:
            timeout = self._attempt_timeout(deadline)
            try:
                return self._submit_once(
                    model_id, params, webhook_url=webhook_url, webhook_mode=webhook_mode, timeout=timeout
                )
            except (GatewayRateLimited, GatewayUnavailable) as exc:
                if isinstance(exc, GatewayUnavailable) and exc.status is not None:
                    # A 5xx answer is the gateway refusing this request (the job ends
                    # SUBMIT_FAILED); only a request that never left is retried here.
                    raise
                wait = self._retry.delay(attempt, getattr(exc, "retry_after", None))
                if wait is None:
                    raise
                if deadline is not None and wait + MIN_ATTEMPT_SECONDS > deadline.remaining():
                    raise
                self._sleep(wait)
                attempt += 1

    def _attempt_timeout(self, deadline: Deadline | None) -> httpx.Timeout:
        """The client's timeouts, or under a deadline, timeouts whose sum ends by it.

        httpx has no timeout for a whole request, only one per phase, each bounding one wait
        (taking a pooled connection, connecting, each write, each read). So the time left is
        split: the phases before the answer, usually instant on a kept-alive connection, get at
        most a sixth each (and no more than the client's own), the read for the answer gets the
        rest, at least half. The read may wait past the client's own read timeout: an answer
        that comes late but in time is worth more than a job whose outcome stays unknown. A
        server that drips its answer over several reads could still overrun; the gateway
        answers a submit with one small JSON body."""
        own = self._client.timeout
        if deadline is None:
            return own
        left = deadline.remaining()
        if left < MIN_ATTEMPT_SECONDS:
            # Nothing is sent: the job can end SUBMIT_FAILED, and the caller may retry.
            raise GatewayUnavailable("no time left to call the gateway before the API's timeout")
        share = left / 6
        connect = min(own.connect or share, share)
        pool = min(own.pool or share, share)
        write = min(own.write or share, share)
        return httpx.Timeout(connect=connect, pool=pool, write=write, read=left - connect - pool - write)

    def _submit_once(
        self,
        model_id: str,
        params: Mapping[str, Any],
        *,
        webhook_url: str | None,
        webhook_mode: str,
        timeout: httpx.Timeout,
    ) -> SubmitAccepted:
        model = get_model(model_id)
        if model is None:
            raise ModelNotFound(f"Model '{model_id}' is not in the catalog")
        headers = self._headers()
        headers["Content-Type"] = "application/json"
        if webhook_url:
            headers["X-Webhook-URL"] = webhook_url
            headers["X-Webhook-Mode"] = webhook_mode
        try:
            response = self._client.post(
                self._base_url + model.path, json=dict(params), headers=headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise GatewayUnavailable(f"gateway unreachable: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            # The request may have reached the gateway: it must not be resubmitted blindly.
            raise GatewayOutcomeUnknown(f"no answer from the gateway after sending: {type(exc).__name__}") from exc
        if response.status_code in (200, 201, 202):
            body = _json(response)
            request_id = body.get("request_id") if isinstance(body, dict) else None
            if not isinstance(request_id, str) or not request_id:
                raise GatewayOutcomeUnknown("gateway accepted the request but returned no request_id")
            return SubmitAccepted(
                request_id=request_id,
                status=str(body.get("status") or "QUEUED"),
                polling_url=body.get("polling_url"),
            )
        raise _error_from(response)

    def status(self, request_id: str) -> dict[str, Any]:
        """GET /v2/requests/status/{request_id}: the same shape as a callback."""
        try:
            response = self._client.get(f"{self._base_url}/v2/requests/status/{request_id}", headers=self._headers())
        except httpx.TransportError as exc:
            raise GatewayUnavailable(f"gateway unreachable: {type(exc).__name__}") from exc
        if response.status_code == 200:
            body = _json(response)
            if isinstance(body, dict):
                return body
            raise GatewayError("gateway status response is not a JSON object", status=200)
        raise _error_from(response)

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        return {"Cache-Control": "no-cache", KEY_HEADER: self._api_key()}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return fallback


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _error_from(response: httpx.Response) -> GatewayError:
    code = response.status_code
    body = _json(response)
    message = _message(body, f"gateway answered HTTP {code}")
    if code == 400:
        if isinstance(body, dict) and str(body.get("error", "")).lower() == "model not found":
            return ModelNotFound(message, status=code)
        return GatewayRejected(message, status=code)
    if code in (401, 403):
        return GatewayAuthError(f"gateway refused our credentials (HTTP {code})", status=code)
    if code == 402:
        return InsufficientBalance(message, status=code)
    if code == 404:
        return GatewayError(f"gateway answered 404: {message}", status=code)
    if code == 429:
        return GatewayRateLimited("gateway rate limit reached", retry_after=_retry_after(response))
    if code >= 500:
        return GatewayUnavailable(f"gateway error HTTP {code}", status=code)
    return GatewayError(f"unexpected gateway answer HTTP {code}", status=code)

"""HTTP API (payload 2.0) answers without a router: SPEC.md's error body and the proxy response.

The webhook function has one route, so it answers with these directly instead of through the
Powertools event handler, whose import (every resolver, every event data class, asyncio) was
35 ms of each of its cold starts (bench/results.md). ``http_errors`` builds the submit API's
answers from the same error body, so both speak one format:
``{"error": {"code", "message", "details": [{"field", "message"}]}}``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pixverse_jobs.errors import CallbackRejected, FieldError, JobNotFound, RequestRejected
from pixverse_jobs.observability import count_by

JSON = "application/json"


def json_text(body: Any) -> str:
    """A response body as JSON text. Non-ASCII is written as itself (UTF-8 on the wire), not as
    ``\\uXXXX`` escapes: an emoji is 4 bytes instead of 12, and 14 once the runtime escapes the
    body again inside its own JSON. (Stored text holds no lone surrogates: requests and callbacks
    carrying one are refused, and DynamoDB stores only valid UTF-8.)"""
    return json.dumps(body, ensure_ascii=False)


def lambda_payload_bytes(body: Any) -> int:
    """Bytes ``body`` adds to the function's response payload, which Lambda's 6 MB limit counts:
    the body's JSON text, serialized again as a string by the runtime, which leaves non-ASCII
    unescaped from Python 3.12 on (Lambda developer guide, "Building Lambda functions with
    Python", Response format: https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html)."""
    return len(json.dumps(json_text(body), ensure_ascii=False).encode())


def error_body(
    code: str, message: str, details: list[FieldError] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "details": [d.as_dict() for d in details or []]}
    if extra:
        error.update(extra)
    return {"error": error}


def proxy_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The Lambda proxy answer API Gateway turns into the HTTP response."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON, **(headers or {})},
        "body": json_text(body),
        "isBase64Encoded": False,
    }


# Domain errors both functions answer (status, body); http_errors maps the rest for the submit API.
Answer = tuple[int, dict[str, Any]]


def rejection_answer(exc: RequestRejected) -> Answer:
    if exc.too_large:
        return 413, error_body("payload_too_large", exc.message, exc.details)
    return 400, error_body("validation_error", exc.message, exc.details)


def callback_answer(exc: CallbackRejected) -> Answer:
    code = "payload_too_large" if exc.status_code == 413 else "callback_rejected"
    return exc.status_code, error_body(code, exc.message)


def not_found_answer(exc: JobNotFound) -> Answer:
    return 404, error_body("not_found", f"job {exc.job_id} not found")


def method_not_allowed_answer(method: str, allowed: Iterable[str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """405 for a method the resource does not take, with the ``Allow`` header RFC 9110 (15.5.6)
    requires: API Gateway's own answer to a method no route takes is a 404, which says the resource
    does not exist, so template.yaml routes every other method on the API's paths (``ANY``) to the
    function, which answers this instead."""
    methods = ", ".join(sorted(set(allowed)))
    message = f"method {method or '(none)'} is not allowed on this resource; allowed: {methods}"
    return 405, error_body("method_not_allowed", message), {"Allow": methods}


# EMF metric (namespace POWERTOOLS_METRICS_NAMESPACE, dimensions service and function): every 500
# an HTTP function answers. Lambda's Errors metric counts only invocations that fail, and these
# answer; without this count an outage behind the API (DynamoDB, SQS) leaves every alarm OK.
METRIC_HANDLED_ERRORS = "HandledErrors"


def internal_answer(function: str) -> Answer:
    """The 500 answer of ``function`` ("submit" or "webhook"), counted as HandledErrors."""
    count_by(METRIC_HANDLED_ERRORS, function=function)
    return 500, error_body("internal", "internal error")

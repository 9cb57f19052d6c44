"""HTTP API (payload 2.0) answers without a router: SPEC.md's error body and the proxy response.

The webhook function has one route, so it answers with these directly instead of through the
Powertools event handler, whose import (every resolver, every event data class, asyncio) was
35 ms of each of its cold starts (bench/results.md). ``http_errors`` builds the submit API's
answers from the same error body, so both speak one format:
``{"error": {"code", "message", "details": [{"field", "message"}]}}``."""

from __future__ import annotations

import json
from typing import Any

from pixverse_jobs.errors import FieldError

JSON = "application/json"


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
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }

"""The submit API's HTTP answers: domain exceptions mapped to responses in one place (the bodies
and the answers the webhook shares come from ``proxy``).

Body: ``{"error": {"code", "message", "details": [{"field", "message"}]}}`` (SPEC.md)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from pixverse_jobs.errors import (
    IdempotencyConflict,
    JobNotFound,
    JobStateConflict,
    QuotaExceeded,
    RequestRejected,
)
from pixverse_jobs.nesting import MAX_DEPTH, deeper_than
from pixverse_jobs.observability import logger
from pixverse_jobs.proxy import (
    error_body,
    internal_answer,
    json_text,
    method_not_allowed_answer,
    not_found_answer,
    proxy_response,
    rejection_answer,
)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json_text(body),
        headers=headers,
    )


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def json_body_limits(max_bytes: int, methods: frozenset[str] = frozenset({"POST"})) -> Callable[[Handler], Handler]:
    """Refuse a request body larger than ``max_bytes`` (413) or not declared as JSON (400)
    before the resolver parses or validates it: a huge body costs no parsing, and nothing
    downstream sees it. Only the bodies of ``methods`` (the routes that read one) are checked:
    any other method goes to the resolver, whose routes never read its body, and a method no
    route takes is a 405 there whatever its body."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def checked(event: dict[str, Any], context: Any) -> dict[str, Any]:
            method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
            # An event without a method is checked all the same: API Gateway always sets one.
            rejection = _body_rejection(event, max_bytes) if method in methods or not method else None
            if rejection is None:
                return handler(event, context)
            return proxy_response(*rejection_answer(rejection))

        return checked

    return decorate


def _body_rejection(event: dict[str, Any], max_bytes: int) -> RequestRejected | None:
    raw = event.get("body")
    if not raw:
        return None
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return RequestRejected("request body is not valid base64")
    else:
        body = str(raw).encode("utf-8", "surrogatepass")  # lone surrogates fail the decode below
    if len(body) > max_bytes:
        return RequestRejected(f"request body exceeds {max_bytes} bytes", too_large=True)
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "application/json").strip().lower()
    if not content_type.startswith("application/json"):
        return RequestRejected("Content-Type must be application/json")
    # Parsed once here, as the handler will parse it (strict UTF-8 text, then JSON), so that what
    # would otherwise be a 500 there (bytes that are not UTF-8, a byte-order mark, nesting deep
    # enough to exhaust the recursion limit) is a clear 400 instead.
    try:
        parsed = json.loads(body.decode("utf-8"))
    except RecursionError:
        return RequestRejected(f"request body is nested too deeply (at most {MAX_DEPTH} levels)")
    except ValueError as exc:  # also UnicodeDecodeError
        return RequestRejected(f"request body is not valid JSON: {exc.args[0] if exc.args else exc}")
    if deeper_than(parsed, MAX_DEPTH):
        # Python 3.12+ parses nesting that the recursive checks downstream cannot walk.
        return RequestRejected(f"request body is nested too deeply (at most {MAX_DEPTH} levels)")
    return None


def _path_pattern(route_path: str) -> re.Pattern[str]:
    """A resolver route's path (``/jobs/<job_id>``) as API Gateway matches ``/jobs/{job_id}``: a
    path variable is any one non-empty segment. (The resolver's own patterns take fewer characters
    than API Gateway routes, so they cannot say whether a path is one of the API's.)"""
    segments = route_path.strip("/").split("/")
    parts = ["[^/]+" if re.fullmatch(r"<\w+>", s) else re.escape(s) for s in segments]
    return re.compile("/" + "/".join(parts))


def allowed_methods(app: APIGatewayHttpResolver, path: str) -> set[str]:
    """The methods ``app`` answers on ``path`` (empty: not a path of this API)."""
    # Powertools keeps its routes in these two lists and has no public accessor for them;
    # tests/unit/test_handlers.py answers 405 through this function, so a rename fails there.
    routes = app._static_routes + app._dynamic_routes
    return {route.method for route in routes if _path_pattern(route.path).fullmatch(path)}


def register_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Map every domain exception to its HTTP answer; anything else is a logged 500."""

    @app.not_found
    def _no_route(exc: NotFoundError) -> Response[str]:
        # The resolver found no route for the method and path. template.yaml's ANY routes send
        # every other method on the API's paths here: that is a 405 naming the allowed methods.
        # Without this handler the catch-all below made each of them a 500.
        event = app.current_event
        allowed = allowed_methods(app, event.path)
        if allowed:
            return json_response(*method_not_allowed_answer(event.http_method.upper(), allowed))
        return json_response(404, error_body("not_found", "no such resource"))

    @app.exception_handler(RequestRejected)
    def _rejected(exc: RequestRejected) -> Response[str]:
        return json_response(*rejection_answer(exc))

    @app.exception_handler(JobNotFound)
    def _not_found(exc: JobNotFound) -> Response[str]:
        return json_response(*not_found_answer(exc))

    @app.exception_handler(IdempotencyConflict)
    def _idempotency(exc: IdempotencyConflict) -> Response[str]:
        return json_response(409, error_body("idempotency_conflict", exc.message))

    @app.exception_handler(JobStateConflict)
    def _state_conflict(exc: JobStateConflict) -> Response[str]:
        return json_response(409, error_body(exc.code, exc.message, extra={"job_status": exc.job_status}))

    @app.exception_handler(QuotaExceeded)
    def _quota(exc: QuotaExceeded) -> Response[str]:
        return json_response(
            429,
            error_body("quota_exceeded", exc.message),
            headers={"Retry-After": str(exc.retry_after_seconds)},
        )

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return json_response(*internal_answer("submit"))

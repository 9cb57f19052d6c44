"""Schemathesis hooks for tests/reliability/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

JSON Schema counts 5.0 as an integer, so a generator following the document sends whole-number
floats for the catalog's integer parameters; the API takes JSON integers only (5, not 5.0), as
the document says in words, since no schema keyword can say it. Sent bodies get integers there.
Likewise a next_token is only one the API returned: generated ones are left out. And a webhook's
sig is made valid, so that the callback bodies are fuzzed past the signature check."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from pixverse_jobs.signing import sign


def _whole_floats_as_integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_as_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_integers(item) for item in value]
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """A POST /jobs body's ``input`` and ``deadline_seconds``, and a POST /uploads body's ``size``,
    with whole-number floats written as integers."""
    if isinstance(body, dict) and isinstance(body.get("input"), dict):
        body = {**body, "input": _whole_floats_as_integers(body["input"])}
        if isinstance(body.get("deadline_seconds"), float):
            body["deadline_seconds"] = _whole_floats_as_integers(body["deadline_seconds"])
        return body
    if isinstance(body, dict) and isinstance(body.get("size"), float):
        return {**body, "size": _whole_floats_as_integers(body["size"])}
    return body


@schemathesis.hook
def map_query(context: Any, query: Any) -> Any:
    """GET /jobs without a generated next_token: only a token the API returned is one (it holds
    the caller and an index position), which no schema can describe; any other is a 400 naming it."""
    if isinstance(query, dict) and "next_token" in query:
        return {key: value for key, value in query.items() if key != "next_token"}
    return query


WEBHOOK_PATH = "/webhooks/pixazo/{job_id}"


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """A webhook request's ``sig`` made the valid one for its job id (the stack's secret comes in
    SCHEMATHESIS_WEBHOOK_SECRET): a generated sig is never valid, so without this every callback
    stopped at the 401 and its body was never fuzzed. A request without a sig keeps none (401)."""
    secret = os.environ.get("SCHEMATHESIS_WEBHOOK_SECRET")
    if not secret or case.operation.path != WEBHOOK_PATH or not isinstance(case.query, dict) or "sig" not in case.query:
        return
    # The function signs the job id API Gateway hands it: the path segment, URL-decoded.
    case.query["sig"] = sign(str(case.path_parameters.get("job_id", "")), secret)

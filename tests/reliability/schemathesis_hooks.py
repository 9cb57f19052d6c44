"""Schemathesis hooks for tests/reliability/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

JSON Schema counts 5.0 as an integer, so a generator following the document sends whole-number
floats for the catalog's integer parameters; the API takes JSON integers only (5, not 5.0), as
the document says in words, since no schema keyword can say it. Sent bodies get integers there.
Likewise a next_token is only one the API returned: generated ones are left out."""

from __future__ import annotations

from typing import Any

import schemathesis


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
    """A POST /jobs body's ``input`` with whole-number floats written as integers."""
    if isinstance(body, dict) and isinstance(body.get("input"), dict):
        return {**body, "input": _whole_floats_as_integers(body["input"])}
    return body


@schemathesis.hook
def map_query(context: Any, query: Any) -> Any:
    """GET /jobs without a generated next_token: only a token the API returned is one (it holds
    the caller and an index position), which no schema can describe; any other is a 400 naming it."""
    if isinstance(query, dict) and "next_token" in query:
        return {key: value for key, value in query.items() if key != "next_token"}
    return query

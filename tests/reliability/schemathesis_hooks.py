"""Schemathesis hooks for tests/reliability/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

JSON Schema counts 5.0 as an integer, so a generator following the document sends whole-number
floats for the catalog's integer parameters; the API takes JSON integers only (5, not 5.0), as
the document says in words, since no schema keyword can say it. Sent bodies get integers there."""

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

"""How deeply a parsed JSON value nests, measured without recursion.

Python's ``json.loads`` parses far deeper than Python code can recurse (since 3.12 its C parser
has a limit of its own, so a 5000-level body parses and the first recursive walk over it fails), so
a request or callback body is measured here, once, before anything walks it recursively
(``MAX_DEPTH``). What is stored is held to DynamoDB's own limit (``STORED_DEPTH``), field by field,
so the error names the field."""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100  # any body: far below what the recursive checks and botocore's serializer can walk
STORED_DEPTH = 32  # DynamoDB's nested-attribute limit, counting the item's own attribute


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (a scalar is level 0)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False

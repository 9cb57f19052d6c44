"""How deeply a parsed JSON value nests, measured without recursion.

DynamoDB stores at most 32 levels of nested attributes, and Python's ``json.loads`` parses far
deeper than Python code can recurse (since 3.12 its C parser has a limit of its own, so a 5000-level
body parses and the first recursive walk over it fails). A request or callback body is measured
here, once, before anything walks it recursively or tries to store it."""

from __future__ import annotations

from typing import Any

# The body is level 1, so the job's ``input`` and ``metadata`` maps hold at most 31 levels:
# within DynamoDB's 32.
MAX_DEPTH = 32


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

"""The largest POST /jobs body the catalog accepts, computed from its limits: the submit API's
body limit is set from it, so a request the catalog would accept is never refused for its size.

The widest form counted is what ``json.dumps`` writes by default (and most JSON libraries can be
told to write): every character outside the Basic Multilingual Plane escaped as a surrogate pair,
``\\ud83d\\ude00``, 12 bytes for one character of the catalog's length limits."""

from __future__ import annotations

import json

from pixverse_jobs.catalog import MODELS, Model, Param
from pixverse_jobs.config import WEBHOOK_MODES
from pixverse_jobs.jobs import MAX_METADATA_BYTES

WIDEST_CHAR_BYTES = 12  # one non-BMP character as a JSON escape pair
URL_PREFIX = "https://"  # the shortest prefix a URL parameter must start with (besides http://)
# Between members: ", " and ": " (json.dumps's default separators) where compact JSON has "," and
# ":". Each separator follows at least one other byte, so metadata at its compact limit takes
# at most 1.5 times as many bytes with the default separators.
METADATA_SPACING = 1.5
# Headroom for a client's own whitespace (indentation, newlines) around the widest body.
ROUND_TO = 4096


def widest_value_bytes(param: Param) -> int:
    """Bytes of the longest JSON value ``param`` accepts."""
    if param.choices is not None:
        return max(len(json.dumps(choice)) for choice in param.choices)
    if param.type == "boolean":
        return len("false")
    if param.type == "integer":
        assert param.minimum is not None and param.maximum is not None
        return max(len(str(param.minimum)), len(str(param.maximum)))
    chars = param.max_length - (len(URL_PREFIX) if param.is_url else 0)
    return 2 + (len(URL_PREFIX) if param.is_url else 0) + chars * WIDEST_CHAR_BYTES


def widest_input_bytes(model: Model) -> int:
    """Bytes of the widest ``input`` object for ``model``, every parameter given."""
    members = [len(json.dumps(p.name)) + len(": ") + widest_value_bytes(p) for p in model.params]
    return len("{}") + sum(members) + len(", ") * (len(members) - 1)


def widest_submit_body_bytes() -> int:
    """Bytes of the widest POST /jobs body the catalog accepts, as json.dumps writes it."""
    values = {
        "model": max(len(json.dumps(m)) for m in MODELS),
        "input": max(widest_input_bytes(m) for m in MODELS.values()),
        "webhook_mode": max(len(json.dumps(mode)) for mode in WEBHOOK_MODES),
        "metadata": int(MAX_METADATA_BYTES * METADATA_SPACING),
    }
    members = [len(json.dumps(name)) + len(": ") + size for name, size in values.items()]
    return len("{}") + sum(members) + len(", ") * (len(members) - 1)


def submit_body_limit() -> int:
    """The submit API's body limit: the widest body, rounded up to ROUND_TO bytes."""
    widest = widest_submit_body_bytes()
    return -(-widest // ROUND_TO) * ROUND_TO

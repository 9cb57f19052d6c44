"""The widest requests the catalog accepts, and the sizes AWS counts: what the size tests
(response pages, events, request bodies) build their worst cases from."""

from __future__ import annotations

import json
from typing import Any

from pixverse_jobs.catalog import MODELS, Model, Param
from pixverse_jobs.jobs import MAX_METADATA_BYTES

EMOJI = "\U0001f600"  # 4 bytes of UTF-8, 12 as json.dumps writes it (\ud83d\ude00)
CONTROL = "\x01"  # 1 byte of UTF-8, 6 as JSON writes it (\u0001), 7 once escaped again


def widest_value(param: Param, char: str) -> Any:
    """The longest value of ``param`` the catalog accepts, strings made of ``char``."""
    if param.choices is not None:
        return max(param.choices, key=lambda c: len(json.dumps(c)))
    if param.type == "boolean":
        return False
    if param.type == "integer":
        assert param.maximum is not None and param.minimum is not None
        return max((param.minimum, param.maximum), key=lambda n: len(str(n)))
    if param.is_url:
        return "https://" + char * (param.max_length - len("https://"))
    return char * param.max_length


def widest_input(model: Model, char: str = EMOJI) -> dict[str, Any]:
    return {p.name: widest_value(p, char) for p in model.params}


def widest_model(char: str = EMOJI) -> Model:
    """The model whose widest input is the longest as json.dumps writes it."""
    return max(MODELS.values(), key=lambda m: len(json.dumps(widest_input(m, char))))


def widest_metadata(char: str = EMOJI) -> dict[str, Any]:
    """Metadata at the catalog's limit (MAX_METADATA_BYTES as compact, ASCII-escaped JSON)."""
    unit = len(json.dumps(char)) - 2
    room = MAX_METADATA_BYTES - len('{"m":""}')
    metadata = {"m": char * (room // unit)}
    assert len(json.dumps(metadata, separators=(",", ":"))) <= MAX_METADATA_BYTES
    return metadata


def lambda_payload_bytes(response: dict[str, Any]) -> int:
    """Bytes of a handler's result as the Python 3.12+ Lambda runtime sends it, which is what
    Lambda's 6 MB response limit counts. The runtime serializes the result with
    ensure_ascii=False from Python 3.12 on (Lambda developer guide, "Building Lambda functions
    with Python", Response format)."""
    return len(json.dumps(response, ensure_ascii=False).encode())

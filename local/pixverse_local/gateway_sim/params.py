"""Each model's parameter table, as ``pixazo-pixverse-api.txt`` lists it, and the submit body check.

The tables are written out from the gateway document on purpose, independent of ``pixverse_jobs``'s
catalog: the simulator is the gateway's stand-in, so a catalog that drifts from the document fails here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

__all__ = ["MODEL_IDS", "MODEL_PARAMETERS", "is_http_url", "validate_parameters"]

ParamKind = Literal["string", "integer", "boolean"]


@dataclass(frozen=True)
class _Param:
    kind: ParamKind
    required: bool = False
    choices: tuple[str | int, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    http_url: bool = False
    non_empty: bool = False


_V6_ASPECT_RATIOS: Final = ("16:9", "4:3", "1:1", "3:4", "9:16", "2:3", "3:2", "21:9")
_STYLES: Final = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
_THINKING_TYPES: Final = ("enabled", "disabled", "auto")
_PROMPT: Final = _Param("string", required=True, non_empty=True)
_IMAGE_URL: Final = _Param("string", required=True, http_url=True)
_V6_DURATION: Final = _Param("integer", minimum=1, maximum=15)

_TEXT_TO_VIDEO_V6_C1: Final[Mapping[str, _Param]] = {
    "prompt": _PROMPT,
    "negative_prompt": _Param("string"),
    "aspect_ratio": _Param("string", choices=_V6_ASPECT_RATIOS),
    "resolution": _Param("string", choices=("360p", "540p", "720p", "1080p")),
    "duration": _V6_DURATION,
    "style": _Param("string", choices=_STYLES),
    "seed": _Param("integer"),
    "generate_audio_switch": _Param("boolean"),
    "generate_multi_clip_switch": _Param("boolean"),
    "thinking_type": _Param("string", choices=_THINKING_TYPES),
}

MODEL_PARAMETERS: Final[Mapping[str, Mapping[str, _Param]]] = {
    "pixverse-v6-text-to-video": _TEXT_TO_VIDEO_V6_C1,
    "pixverse-v6-image-to-video": {
        "prompt": _PROMPT,
        # The parameter table lists 480p, the pricing table 540p: both are accepted on purpose.
        "resolution": _Param("string", choices=("360p", "480p", "540p", "720p", "1080p")),
        "duration": _V6_DURATION,
        "negative_prompt": _Param("string"),
        "image_url": _IMAGE_URL,
        "style": _Param("string", choices=_STYLES),
        "seed": _Param("integer"),
        "generate_audio_switch": _Param("boolean"),
        "generate_multi_clip_switch": _Param("boolean"),
        "thinking_type": _Param("string", choices=_THINKING_TYPES),
    },
    "pixverse-c1-text-to-video": _TEXT_TO_VIDEO_V6_C1,
    "pixverse-c1-image-to-video": {
        "prompt": _PROMPT,
        "image_url": _IMAGE_URL,
        "resolution": _Param("string", choices=("360p", "540p", "720p", "1080p")),
        "duration": _V6_DURATION,
        "seed": _Param("integer"),
        "generate_audio_switch": _Param("boolean"),
    },
    # V5.6 text to video: aspect_ratio, resolution and duration are required, duration from a set.
    "pixverse": {
        "prompt": _PROMPT,
        "aspect_ratio": _Param("string", required=True, choices=("16:9", "9:16", "1:1", "4:3", "3:4")),
        "resolution": _Param("string", required=True, choices=("720p", "1080p", "2160p")),
        "duration": _Param("integer", required=True, choices=(3, 5, 7, 10)),
        "negative_prompt": _Param("string"),
    },
    # V5.6 image to video: duration is a *string*.
    "pixverse-i2v": {
        "prompt": _PROMPT,
        "resolution": _Param("string", required=True, choices=("720p", "1080p")),
        "duration": _Param("string", required=True, choices=("5", "10")),
        "negative_prompt": _Param("string"),
        "image_url": _IMAGE_URL,
    },
}
MODEL_IDS: Final[tuple[str, ...]] = tuple(MODEL_PARAMETERS)

_KIND_NAMES: Final[Mapping[ParamKind, str]] = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean",
}


def _has_kind(value: object, kind: ParamKind) -> bool:
    # bool is a subclass of int in Python, but true/false is not a JSON integer.
    if kind == "integer":
        return type(value) is int
    if kind == "boolean":
        return type(value) is bool
    return type(value) is str


def validate_parameters(model: str, body: Mapping[str, Any]) -> list[str]:
    """Check ``body`` against ``model``'s parameter table; return ``"<field>: <why>"`` problems, in order."""
    table = MODEL_PARAMETERS[model]
    problems = [f"{name}: unknown parameter" for name in body if name not in table]
    for name, param in table.items():
        if name not in body:
            if param.required:
                problems.append(f"{name}: is required")
            continue
        value = body[name]
        if not _has_kind(value, param.kind):
            problems.append(f"{name}: must be {_KIND_NAMES[param.kind]}")
            continue
        if param.choices is not None and value not in param.choices:
            allowed = ", ".join(json.dumps(choice) for choice in param.choices)
            problems.append(f"{name}: must be one of {allowed}")
        if param.minimum is not None and param.maximum is not None and not (param.minimum <= value <= param.maximum):
            problems.append(f"{name}: must be between {param.minimum} and {param.maximum}")
        if param.non_empty and not value.strip():
            problems.append(f"{name}: must not be empty")
        if param.http_url and not is_http_url(value):
            problems.append(f"{name}: must be an http or https URL")
    return problems


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an absolute http(s) URL with a host."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)

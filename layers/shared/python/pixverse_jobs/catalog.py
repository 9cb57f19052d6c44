"""The model catalog: every documented parameter of the six PixVerse models on the Pixazo
gateway (../shared/pixazo-pixverse-api.txt), one declarative entry per model, and the
validation that runs before anything is sent.

The doc's quirks are handled on purpose:
- V5.6 text-to-video (``pixverse``) requires aspect_ratio, resolution and duration, and its
  duration is one of 3, 5, 7, 10;
- V5.6 image-to-video (``pixverse-i2v``) takes duration as the string "5" or "10";
- V6 image-to-video lists 480p in its parameter table but 540p in its pricing table: both are
  accepted (see ``V6_I2V_RESOLUTION_NOTE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pixverse_jobs.errors import FieldError

ParamType = Literal["string", "integer", "boolean"]

PROMPT_MAX_CHARS = 5000
STRING_MAX_CHARS = 5000
URL_MAX_CHARS = 2048
SEED_RANGE = (0, 2**31 - 1)

V6_I2V_RESOLUTION_NOTE = (
    "the gateway doc lists 480p in the parameter table and 540p in the pricing table; both are accepted"
)


# check() refuses a required string that is all whitespace (str.strip()); the schema says so with
# one character that is whitespace neither to Python (str.isspace: also U+001C-U+001F and U+0085)
# nor to JSON Schema's ECMA-262 \s. Without it a generator sent "\f" as a valid prompt (issue 13, 2.14).
NOT_BLANK_PATTERN = r"[^\s\x1c-\x1f\x85]"


@dataclass(frozen=True)
class Param:
    """One documented request parameter."""

    name: str
    type: ParamType
    description: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = STRING_MAX_CHARS
    is_url: bool = False
    # image_url may also name an object in S3 (s3://BUCKET/KEY): POST /jobs checks the object and
    # the submitter sends the gateway a presigned https URL of it (pixverse_jobs.inputs).
    s3_allowed: bool = False
    note: str = ""

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or None."""
        if self.type == "boolean":
            if not isinstance(value, bool):
                return f"must be a boolean (true or false), got {_json_type(value)}"
            return None
        if self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"must be an integer, got {_json_type(value)}"
        elif self.type == "string":
            if not isinstance(value, str):
                return f"must be a string, got {_json_type(value)}"
            if self.required and not value.strip():
                return "must not be empty"
            if len(value) > self.max_length:
                return f"must be at most {self.max_length} characters, got {len(value)}"
            if self.is_url:
                parts = urlsplit(value)
                if self.s3_allowed and value.startswith("s3://"):
                    return None  # its bucket, key and object are checked by pixverse_jobs.inputs
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    return "must be an http:// or https:// URL" + (" or s3://BUCKET/KEY" if self.s3_allowed else "")
        if self.choices is not None and value not in self.choices:
            return f"must be one of {_render_choices(self.choices)}, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"must be between {self.minimum} and {self.maximum}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be between {self.minimum} and {self.maximum}, got {value}"
        return None

    def describe(self) -> dict[str, Any]:
        """The parameter as the API documents it."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        if self.choices is not None:
            out["allowed"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
            out["maximum"] = self.maximum
        out["description"] = self.description
        if self.note:
            out["note"] = self.note
        return out

    def json_schema(self) -> dict[str, Any]:
        """The parameter as a JSON Schema (the OpenAPI document's per-model input schemas)."""
        schema: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.note:
            schema["description"] += f" ({self.note})"
        if self.default is not None:
            schema["default"] = self.default
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.type == "string":
            schema["maxLength"] = self.max_length
            if self.required:
                schema["minLength"] = 1
            if self.is_url:
                schema["format"] = "uri"
                schema["pattern"] = "^(https?|s3)://" if self.s3_allowed else "^https?://"
            elif self.required:
                schema["pattern"] = NOT_BLANK_PATTERN
        return schema


@dataclass(frozen=True)
class Model:
    """One gateway model: its id (the ``model`` value and the callbacks' ``model_id``)."""

    id: str
    title: str
    kind: Literal["text-to-video", "image-to-video"]
    params: tuple[Param, ...]
    path: str = field(default="")

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", f"/{self.id}/v1/{self.id}-request")

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def input_json_schema(self) -> dict[str, Any]:
        """The model's ``input`` as a JSON Schema object."""
        return {
            "title": f"{self.id} input",
            "description": f"{self.title} ({self.kind}); gateway path {self.path}",
            "type": "object",
            "properties": {p.name: p.json_schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }

    def defaults(self) -> dict[str, Any]:
        """Documented defaults the gateway applies to parameters left out."""
        return {p.name: p.default for p in self.params if p.default is not None}

    def validate(self, data: Mapping[str, Any], *, prefix: str = "input") -> list[FieldError]:
        """Every problem with ``data`` at once: unknown, missing, wrong type, out of range."""
        errors: list[FieldError] = []
        known = {p.name for p in self.params}
        for name in data:
            if name not in known:
                errors.append(
                    FieldError(
                        f"{prefix}.{name}",
                        f"unknown parameter for {self.id}; allowed: {', '.join(sorted(known))}",
                    )
                )
        for p in self.params:
            if p.name not in data or data[p.name] is None:
                if p.required:
                    errors.append(FieldError(f"{prefix}.{p.name}", f"is required for {self.id}"))
                continue
            problem = p.check(data[p.name])
            if problem:
                errors.append(FieldError(f"{prefix}.{p.name}", problem))
        return errors


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _render_choices(choices: tuple[Any, ...]) -> str:
    return ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)


# ------------------------------------------------------------------ shared parameter shapes
_STYLES = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
_V6_ASPECTS = ("16:9", "4:3", "1:1", "3:4", "9:16", "2:3", "3:2", "21:9")
_THINKING = ("enabled", "disabled", "auto")
_V6_RESOLUTIONS = ("360p", "540p", "720p", "1080p")


def _prompt(description: str) -> Param:
    return Param("prompt", "string", description, required=True, max_length=PROMPT_MAX_CHARS)


def _negative(default: str | None = None) -> Param:
    return Param(
        "negative_prompt",
        "string",
        "Terms to exclude from the generated video.",
        default=default,
        max_length=PROMPT_MAX_CHARS,
    )


def _image_url(description: str) -> Param:
    return Param(
        "image_url",
        "string",
        description
        + " Or s3://BUCKET/KEY of a JPEG, PNG or WebP of at most 20,000,000 bytes in a bucket of the stack's"
        " InputBuckets parameter, or an image_url from POST /uploads.",
        required=True,
        is_url=True,
        s3_allowed=True,
        max_length=URL_MAX_CHARS,
    )


def _duration_1_15() -> Param:
    return Param("duration", "integer", "Length of the video in seconds (1-15).", default=5, minimum=1, maximum=15)


def _seed() -> Param:
    return Param(
        "seed",
        "integer",
        "Random seed for reproducible results.",
        minimum=SEED_RANGE[0],
        maximum=SEED_RANGE[1],
    )


def _switch(name: str, description: str) -> Param:
    return Param(name, "boolean", description, default=False)


_AUDIO = "Generate background music, sound effects and dialogue alongside the video."
_MULTI_CLIP = "Dynamic camera transitions and multi-clip output."

# V6 and C1 text-to-video document the same parameter table.
_V6_C1_TEXT_TO_VIDEO: tuple[Param, ...] = (
    _prompt("Text description of the video to generate."),
    _negative(default=""),
    Param("aspect_ratio", "string", "Video aspect ratio.", default="16:9", choices=_V6_ASPECTS),
    Param(
        "resolution", "string", "Output video resolution.", default="720p", choices=("360p", "540p", "720p", "1080p")
    ),
    _duration_1_15(),
    Param("style", "string", "Visual style of the video.", choices=_STYLES),
    _seed(),
    _switch("generate_audio_switch", _AUDIO),
    _switch("generate_multi_clip_switch", _MULTI_CLIP),
    Param("thinking_type", "string", "Prompt optimization mode.", choices=_THINKING),
)

MODELS: dict[str, Model] = {
    m.id: m
    for m in (
        Model(
            id="pixverse-v6-text-to-video",
            title="PixVerse V6 text to video",
            kind="text-to-video",
            params=_V6_C1_TEXT_TO_VIDEO,
        ),
        Model(
            id="pixverse-v6-image-to-video",
            title="PixVerse V6 image to video",
            kind="image-to-video",
            params=(
                _prompt("Description of the desired motion and atmosphere."),
                Param(
                    "resolution",
                    "string",
                    "Output video resolution.",
                    default="720p",
                    choices=("360p", "480p", "540p", "720p", "1080p"),
                    note=V6_I2V_RESOLUTION_NOTE,
                ),
                _duration_1_15(),
                _negative(),
                _image_url("Publicly accessible http(s) URL of a JPEG, PNG or WebP input image."),
                Param("style", "string", "Visual style of the video.", choices=_STYLES),
                _seed(),
                _switch("generate_audio_switch", _AUDIO),
                _switch("generate_multi_clip_switch", _MULTI_CLIP),
                Param("thinking_type", "string", "Prompt optimization mode.", default="auto", choices=_THINKING),
            ),
        ),
        Model(
            id="pixverse-c1-text-to-video",
            title="PixVerse C1 text to video",
            kind="text-to-video",
            params=_V6_C1_TEXT_TO_VIDEO,
        ),
        Model(
            id="pixverse-c1-image-to-video",
            title="PixVerse C1 image to video",
            kind="image-to-video",
            params=(
                _prompt("Text guiding the video motion and scene evolution."),
                _image_url("URL of the source image (jpg, jpeg, png, webp, gif, avif)."),
                Param(
                    "resolution",
                    "string",
                    "Output video resolution.",
                    default="720p",
                    choices=("360p", "540p", "720p", "1080p"),
                ),
                _duration_1_15(),
                _seed(),
                _switch("generate_audio_switch", _AUDIO),
            ),
        ),
        Model(
            id="pixverse",
            title="PixVerse V5.6 text to video",
            kind="text-to-video",
            params=(
                _prompt("Detailed description of the scene, motion, lighting and style."),
                Param(
                    "aspect_ratio",
                    "string",
                    "Aspect ratio of the output video.",
                    required=True,
                    choices=("16:9", "9:16", "1:1", "4:3", "3:4"),
                ),
                Param(
                    "resolution",
                    "string",
                    "Output video resolution.",
                    required=True,
                    choices=("720p", "1080p", "2160p"),
                ),
                Param(
                    "duration",
                    "integer",
                    "Duration of the video in seconds.",
                    required=True,
                    choices=(3, 5, 7, 10),
                ),
                _negative(),
            ),
        ),
        Model(
            id="pixverse-i2v",
            title="PixVerse V5.6 image to video",
            kind="image-to-video",
            params=(
                _prompt("Description of the desired motion and scene."),
                Param(
                    "resolution",
                    "string",
                    "Target video resolution.",
                    required=True,
                    choices=("720p", "1080p"),
                ),
                Param(
                    "duration",
                    "string",
                    "Duration in seconds, as a string.",
                    required=True,
                    choices=("5", "10"),
                    note='V5.6 image-to-video takes duration as the string "5" or "10", not a number',
                ),
                _negative(),
                _image_url("Publicly accessible http(s) URL of the input image."),
            ),
        ),
    )
}


def get_model(model_id: str) -> Model | None:
    return MODELS.get(model_id)

from __future__ import annotations

import pytest
from doc_examples import DOC_EXAMPLES
from pixverse_jobs.catalog import MODELS, get_model


def test_catalog_has_the_six_gateway_models() -> None:
    assert set(MODELS) == {
        "pixverse-v6-text-to-video",
        "pixverse-v6-image-to-video",
        "pixverse-c1-text-to-video",
        "pixverse-c1-image-to-video",
        "pixverse",
        "pixverse-i2v",
    }
    assert MODELS["pixverse"].path == "/pixverse/v1/pixverse-request"
    assert MODELS["pixverse-i2v"].path == "/pixverse-i2v/v1/pixverse-i2v-request"


@pytest.mark.parametrize(("model_id", "params"), DOC_EXAMPLES, ids=[m for m, _ in DOC_EXAMPLES])
def test_doc_example_is_valid(model_id: str, params: dict[str, object]) -> None:
    model = get_model(model_id)
    assert model is not None
    assert model.validate(params) == []


def test_v56_t2v_requires_aspect_ratio_resolution_duration() -> None:
    errors = MODELS["pixverse"].validate({"prompt": "a sunset"})
    assert {e.field for e in errors} == {"input.aspect_ratio", "input.resolution", "input.duration"}


def test_v56_t2v_duration_outside_set_names_allowed_values() -> None:
    errors = MODELS["pixverse"].validate(
        {"prompt": "a sunset", "aspect_ratio": "16:9", "resolution": "720p", "duration": 4}
    )
    assert [e.field for e in errors] == ["input.duration"]
    assert "3, 5, 7, 10" in errors[0].message


def test_v56_i2v_integer_duration_is_rejected_as_wrong_type() -> None:
    errors = MODELS["pixverse-i2v"].validate(
        {"prompt": "a dragon", "resolution": "720p", "duration": 5, "image_url": "https://x.example/a.png"}
    )
    assert [e.field for e in errors] == ["input.duration"]
    assert "string" in errors[0].message


@pytest.mark.parametrize("resolution", ["480p", "540p"])
def test_v6_i2v_accepts_480p_and_540p(resolution: str) -> None:
    params = {"prompt": "snow", "image_url": "https://x.example/a.png", "resolution": resolution}
    assert MODELS["pixverse-v6-image-to-video"].validate(params) == []


def test_every_bad_field_is_reported_at_once() -> None:
    errors = MODELS["pixverse-v6-text-to-video"].validate(
        {"prompt": "", "duration": "5", "generate_audio_switch": 1, "colour": "red", "seed": 5.5}
    )
    fields = {e.field for e in errors}
    assert fields == {
        "input.prompt",
        "input.duration",
        "input.generate_audio_switch",
        "input.colour",
        "input.seed",
    }


def test_image_url_must_be_http_url() -> None:
    errors = MODELS["pixverse-c1-image-to-video"].validate({"prompt": "x", "image_url": "file:///etc/passwd"})
    assert [e.field for e in errors] == ["input.image_url"]


def test_duration_range_message_names_bounds() -> None:
    errors = MODELS["pixverse-c1-text-to-video"].validate({"prompt": "x", "duration": 16})
    assert "between 1 and 15" in errors[0].message


def test_defaults_are_the_documented_ones() -> None:
    assert MODELS["pixverse-v6-text-to-video"].defaults()["resolution"] == "720p"
    assert MODELS["pixverse-v6-image-to-video"].defaults()["thinking_type"] == "auto"
    assert MODELS["pixverse"].defaults() == {}

"""The OpenAPI document: generated from the code, committed, current, and consistent with
template.yaml's routes and the catalog's validation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from doc_examples import DOC_EXAMPLES
from lambda_support import template_resources
from pixverse_jobs.catalog import MODELS

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_openapi_generator", ROOT / "scripts" / "openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    document: dict[str, Any] = _generator().build_document()
    return document


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "functions" / "submit" / "openapi.json").read_text())
    return document


def test_committed_document_is_what_the_code_generates(generated: dict[str, Any]) -> None:
    generator = _generator()
    committed_text = generator.OUTPUT.read_text()

    assert committed_text == generator.render(generated), "stale functions/submit/openapi.json: run `make openapi`"


def test_committed_event_schema_is_what_the_code_generates() -> None:
    generator = _generator()

    assert generator.EVENT_SCHEMA.read_text() == generator.render(generator.build_event_schema()), (
        "stale events/pixverse-job-event.schema.json: run `make openapi`"
    )


def test_document_has_every_template_route_and_no_other(committed: dict[str, Any]) -> None:
    template_routes = {
        tuple(resource["Properties"]["RouteKey"].lower().split(" ", 1))
        for resource in template_resources().values()
        if resource["Type"] == "AWS::ApiGatewayV2::Route"
    }
    documented = {(method, path) for path, operations in committed["paths"].items() for method in operations}

    assert documented == template_routes


def _routes(resolver: Any) -> set[tuple[str, str]]:
    return {(route.method, route.path) for route in resolver._static_routes + resolver._dynamic_routes}


def test_documented_routes_are_the_submit_functions_routes() -> None:
    """openapi.json describes scripts/api_contract.py's documentation resolver: its routes must be
    the ones the functions answer, or the document would promise a route nobody serves."""
    generator = _generator()
    generator.build_document()  # sets up the environment and import paths
    function = generator._load("submit")

    # The webhook function answers its one route without a resolver (template.yaml routes it there).
    webhook = {("POST", "/webhooks/pixazo/<job_id>")}

    assert _routes(generator._contract().doc_resolver()) == _routes(function.app) | webhook
    assert _routes(function.app) == {("POST", "/jobs"), ("GET", "/jobs/<job_id>"), ("GET", "/jobs")}


def test_document_never_promises_a_422(committed: dict[str, Any]) -> None:
    statuses = {code for ops in committed["paths"].values() for op in ops.values() for code in op["responses"]}

    assert "422" not in statuses
    assert {"400", "404", "409", "413", "429", "502", "503"} <= statuses


@pytest.mark.parametrize(("model", "params"), DOC_EXAMPLES, ids=[m for m, _ in DOC_EXAMPLES])
def test_doc_example_input_matches_its_model_schema(committed: dict[str, Any], model: str, params: Any) -> None:
    schema = committed["components"]["schemas"][f"{model}Input"]

    jsonschema.validate(params, schema)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("pixverse-i2v", {"prompt": "p", "image_url": "https://x.r2.dev/a.png", "duration": 5}),
        ("pixverse", {"prompt": "p", "aspect_ratio": "16:9", "resolution": "720p", "duration": 4}),
        ("pixverse-v6-text-to-video", {"prompt": "p", "colour": "red"}),
        ("pixverse-v6-text-to-video", {"prompt": "p", "generate_audio_switch": 1}),
    ],
)
def test_model_schema_refuses_what_the_catalog_refuses(committed: dict[str, Any], model: str, params: Any) -> None:
    assert MODELS[model].validate(params), "the catalog must refuse this input"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(params, committed["components"]["schemas"][f"{model}Input"])

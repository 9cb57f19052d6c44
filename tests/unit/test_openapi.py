"""The OpenAPI document: generated from the code, committed, current, and consistent with
template.yaml's routes and the catalog's validation."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from doc_examples import DOC_EXAMPLES
from lambda_support import load_event, template_resources
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


def _template_routes() -> set[tuple[str, str]]:
    return {
        (method.lower(), path)
        for resource in template_resources().values()
        if resource["Type"] == "AWS::ApiGatewayV2::Route"
        for method, path in [resource["Properties"]["RouteKey"].split(" ", 1)]
    }


def test_document_has_every_template_route_and_no_other(committed: dict[str, Any]) -> None:
    # An ANY route is no operation: it takes the methods the others do not, for the 405 below.
    operations = {(method, path) for method, path in _template_routes() if method != "any"}
    documented = {(method, path) for path, ops in committed["paths"].items() for method in ops}

    assert documented == operations


def test_every_documented_path_and_no_other_has_an_any_route(committed: dict[str, Any]) -> None:
    """Without ``ANY`` on a path, API Gateway answers another method itself with a 404 (no route),
    and the function's 405 with Allow is never seen (issue 13, 2.14: schemathesis' unsupported_method)."""
    any_paths = {path for method, path in _template_routes() if method == "any"}

    assert any_paths == set(committed["paths"])


def test_each_operation_states_the_allow_header_of_its_path(committed: dict[str, Any]) -> None:
    for path, operations in committed["paths"].items():
        methods = ", ".join(sorted(method.upper() for method in operations))
        for method, operation in operations.items():
            assert (
                f"405 method_not_allowed (the error body) with the header Allow: {methods}."
                in (operation["description"])
            ), f"{method} {path}"


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
    assert _routes(function.app) == {
        ("POST", "/jobs"),
        ("GET", "/jobs/<job_id>"),
        ("GET", "/jobs"),
        ("POST", "/jobs/<job_id>/cancel"),
        ("POST", "/jobs/<job_id>/replay"),
        ("POST", "/uploads"),
    }


def test_document_never_promises_a_422(committed: dict[str, Any]) -> None:
    statuses = {code for ops in committed["paths"].values() for op in ops.values() for code in op["responses"]}

    assert "422" not in statuses
    assert {"400", "404", "409", "413", "429", "503"} <= statuses
    # POST never answers for the gateway (admission): no 402 or 502 is promised.
    assert not {"402", "502"} & statuses


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
        # Whitespace only: schemathesis sent "\f" as a schema-valid prompt (issue 13, 2.14).
        ("pixverse-v6-text-to-video", {"prompt": "\f"}),
        ("pixverse-v6-text-to-video", {"prompt": " \x1c\u3000\n"}),
        ("pixverse-v6-text-to-video", {"prompt": "\x85\u2028"}),
    ],
)
def test_model_schema_refuses_what_the_catalog_refuses(committed: dict[str, Any], model: str, params: Any) -> None:
    assert MODELS[model].validate(params), "the catalog must refuse this input"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(params, committed["components"]["schemas"][f"{model}Input"])


# ------------------------------------------------ what the code enforces, the document says (issue 13, 2.14)
def _parameter(committed: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    [parameter] = [p for p in committed["paths"][path][method]["parameters"] if p["name"].lower() == name.lower()]
    schema: dict[str, Any] = parameter["schema"]
    return next((s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"), schema)


def test_error_codes_include_every_code_the_api_answers(committed: dict[str, Any]) -> None:
    described = committed["components"]["schemas"]["ErrorBody"]["properties"]["code"]["description"]
    for code in (
        "callback_rejected",
        "payload_too_large",
        "quota_exceeded",
        "already_ended",
        "not_ended",
        "not_found",
        "method_not_allowed",
        "internal",
    ):
        assert code in described


def test_webhook_answers_are_documented_as_it_gives_them(committed: dict[str, Any]) -> None:
    responses = committed["paths"]["/webhooks/pixazo/{job_id}"]["post"]["responses"]

    assert set(responses) == {"200", "400", "401", "404", "409", "413", "500"}
    for status in ("400", "401", "409"):
        assert responses[status]["description"].startswith("callback_rejected")
    assert "idempotency" not in responses["409"]["description"]


def test_every_route_documents_its_500(committed: dict[str, Any]) -> None:
    for path, operations in committed["paths"].items():
        for method, operation in operations.items():
            assert "500" in operation["responses"], f"{method} {path}"


def test_limit_is_documented_as_an_integer_from_1_to_100(committed: dict[str, Any]) -> None:
    from pixverse_jobs.jobs import MAX_PAGE_SIZE

    schema = _parameter(committed, "/jobs", "get", "limit")

    assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, MAX_PAGE_SIZE)


def test_idempotency_key_is_documented_as_the_code_checks_it(committed: dict[str, Any]) -> None:
    import re

    from pixverse_jobs.jobs import IDEMPOTENCY_KEY_PATTERN

    schema = _parameter(committed, "/jobs", "post", "idempotency-key")

    assert (schema["minLength"], schema["maxLength"]) == (1, 255)
    for key in ("k", "order-1001/retry:2", "~" * 255, "", "with space", "é", "x" * 256):
        documented = bool(re.search(schema["pattern"], key)) and 1 <= len(key) <= 255
        assert documented == bool(IDEMPOTENCY_KEY_PATTERN.fullmatch(key)), key


def test_callback_request_id_is_documented_non_empty(committed: dict[str, Any]) -> None:
    assert committed["components"]["schemas"]["GatewayCallback"]["properties"]["request_id"]["minLength"] == 1


# ------------------------------------------------ callbacks the webhook refuses, the schema refuses (2.14)
def _callback_schema(committed: dict[str, Any]) -> dict[str, Any]:
    return {"$ref": "#/components/schemas/GatewayCallback", "components": committed["components"]}


@pytest.mark.parametrize(
    "callback",
    [
        {"request_id": "r1", "status": "COMPLETED"},
        {"request_id": "r1", "status": "COMPLETED", "output": None},
        {"request_id": "r1", "status": "COMPLETED", "output": {"media_url": []}},
        {"request_id": "r1", "status": "PROCESSING", "output": {"media_url": [""]}},
        {"request_id": "", "status": "QUEUED"},
    ],
    ids=["completed-no-output", "completed-null-output", "completed-no-media", "empty-url", "empty-request-id"],
)
def test_callback_schema_refuses_what_the_webhook_refuses(committed: dict[str, Any], callback: Any) -> None:
    from pixverse_jobs.callbacks import parse_callback
    from pixverse_jobs.errors import CallbackRejected

    with pytest.raises(CallbackRejected):
        parse_callback(json.dumps(callback))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(callback, _callback_schema(committed))


def test_callback_schema_takes_the_callbacks_the_webhook_takes(committed: dict[str, Any]) -> None:
    from pixverse_jobs.callbacks import parse_callback

    for callback in (
        json.loads(load_event("webhook_callback")["body"]),
        {"request_id": "r1", "status": "PROCESSING", "output": None},
        {"request_id": "r1", "status": "FAILED", "error": "policy"},
    ):
        parse_callback(json.dumps(callback))
        jsonschema.validate(callback, _callback_schema(committed))


def test_generating_the_document_leaves_the_environment_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    # Left behind, the placeholder PIXAZO_BASE_URL pointed a local stack started later in the same
    # test process at the real gateway.
    monkeypatch.delenv("PIXAZO_BASE_URL", raising=False)
    before = dict(os.environ)
    generator = _generator()

    generator.build_document()
    generator._load("submit")

    assert dict(os.environ) == before

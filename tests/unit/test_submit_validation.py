"""Table-driven: invalid requests across the six models are refused with 400 naming the
field, with zero calls reaching the gateway and nothing written; every example request of
the gateway doc is accepted and forwarded with its parameters unchanged, types included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from doc_examples import DOC_EXAMPLES
from lambda_support import FakeLambdaContext, create_jobs_table, drain_queue, load_event, load_function
from moto import mock_aws
from pixverse_jobs.catalog import MODELS
from pixverse_jobs.gateway import GatewayClient, RetryPolicy
from pixverse_jobs.request_size import submit_body_limit, widest_input_bytes, widest_submit_body_bytes
from size_support import EMOJI, widest_input, widest_metadata

VALID: dict[str, dict[str, Any]] = {
    "pixverse-v6-text-to-video": {"prompt": "A cat by a window"},
    "pixverse-v6-image-to-video": {"prompt": "Snow falls", "image_url": "https://pub.r2.dev/f1.png"},
    "pixverse-c1-text-to-video": {"prompt": "A cat by a window"},
    "pixverse-c1-image-to-video": {"prompt": "A warrior walks", "image_url": "https://pub.r2.dev/Image.jpeg"},
    "pixverse": {"prompt": "A sunset", "aspect_ratio": "16:9", "resolution": "720p", "duration": 5},
    "pixverse-i2v": {"prompt": "A dragon", "resolution": "720p", "duration": "5", "image_url": "https://x.dev/a.png"},
}


def _invalid_cases() -> Iterator[tuple[str, dict[str, Any], str]]:
    """(model, input, the field that must be named) for every kind of mistake, per model."""
    for model_id, model in MODELS.items():
        base = VALID[model_id]
        yield model_id, {**base, "colour": "red"}, "input.colour"
        for p in model.params:
            if p.required:
                yield model_id, {k: v for k, v in base.items() if k != p.name}, f"input.{p.name}"
            if p.type == "boolean":
                yield model_id, {**base, p.name: 1}, f"input.{p.name}"
                yield model_id, {**base, p.name: "true"}, f"input.{p.name}"
            elif p.type == "integer":
                yield model_id, {**base, p.name: "5"}, f"input.{p.name}"
                yield model_id, {**base, p.name: 5.5}, f"input.{p.name}"
                yield model_id, {**base, p.name: True}, f"input.{p.name}"
                if p.minimum is not None:
                    yield model_id, {**base, p.name: p.minimum - 1}, f"input.{p.name}"
                    yield model_id, {**base, p.name: p.maximum + 1}, f"input.{p.name}"  # type: ignore[operator]
                if p.choices:
                    yield model_id, {**base, p.name: 4}, f"input.{p.name}"
            else:
                yield model_id, {**base, p.name: 5}, f"input.{p.name}"
                if p.choices:
                    yield model_id, {**base, p.name: "not-a-choice"}, f"input.{p.name}"
                if p.is_url:
                    yield model_id, {**base, p.name: "ftp://pub.r2.dev/a.png"}, f"input.{p.name}"
                if p.name == "prompt":
                    yield model_id, {**base, p.name: "   "}, f"input.{p.name}"
                    yield model_id, {**base, p.name: "x" * 5001}, f"input.{p.name}"


CASES = list(_invalid_cases())
CASE_IDS = [f"{m}:{f}:{i}" for i, (m, _, f) in enumerate(CASES)]


@pytest.fixture
def submit(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        secrets = boto3.client("secretsmanager")
        table = create_jobs_table(ddb)
        sqs = boto3.client("sqs")
        submit_queue = sqs.create_queue(QueueName="submit")["QueueUrl"]
        copy_queue = sqs.create_queue(QueueName="copy")["QueueUrl"]
        secrets.create_secret(Name="pixverse-jobs/pixazo-api-key", SecretString="sk-test")
        signing = secrets.create_secret(Name="signing", SecretString="s" * 64)["ARN"]
        for k, v in {
            "JOBS_TABLE": table,
            "UPLOAD_BUCKET": "media",
            "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
            "PIXAZO_API_KEY_SECRET": "pixverse-jobs/pixazo-api-key",
            "WEBHOOK_SECRET_ARN": signing,
            "SUBMIT_QUEUE_URL": submit_queue,
            "DEADLINE_QUEUE_URL": submit_queue,
            "COPY_QUEUE_URL": copy_queue,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            monkeypatch.setenv(k, v)
        sent: list[httpx.Request] = []

        def gateway(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            model = request.url.path.split("/")[1]
            return httpx.Response(202, json={"request_id": f"{model}_019d", "status": "QUEUED"})

        module = load_function("SubmitFunction")
        submitter = load_function("SubmitterFunction")
        submitter.submitter._gateway = GatewayClient(
            "https://gateway.pixazo.ai",
            lambda: "sk-test",
            httpx.Client(transport=httpx.MockTransport(gateway)),
            retry=RetryPolicy(attempts=1),
        )
        yield {
            "module": module,
            "submitter": submitter,
            "sqs": sqs,
            "submit_queue": submit_queue,
            "sent": sent,
            "ddb": ddb,
            "table": table,
        }


def _post(env: dict[str, Any], body: Any, context: Any) -> dict[str, Any]:
    """POST /jobs, then the submitter on what it queued (the gateway sees what was forwarded)."""
    event = load_event("submit_job")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    response: dict[str, Any] = env["module"].handler(event, context)
    drain_queue(env["sqs"], env["submit_queue"], env["submitter"].handler, FakeLambdaContext())
    return response


def test_suite_covers_at_least_80_invalid_requests() -> None:
    assert len(CASES) >= 80
    assert {m for m, _, _ in CASES} == set(MODELS)


@pytest.mark.parametrize(
    ("model_id", "params", "field"), CASES, ids=[f"{m}:{f}:{i}" for i, (m, _, f) in enumerate(CASES)]
)
def test_invalid_request_is_400_naming_field_and_nothing_sent(
    submit: dict[str, Any], lambda_context: Any, model_id: str, params: dict[str, Any], field: str
) -> None:
    response = _post(submit, {"model": model_id, "input": params}, lambda_context)
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["code"] == "validation_error"
    assert field in {d["field"] for d in error["details"]}
    assert submit["sent"] == []
    assert submit["ddb"].scan(TableName=submit["table"])["Count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "pixverse-v7", "input": {"prompt": "x"}}, "model"),
        ({"input": {"prompt": "x"}}, "model"),
        ({"model": "pixverse"}, "input"),
        ({"model": "pixverse", "input": ["prompt"]}, "input"),
        ({"model": "pixverse-v6-text-to-video", "input": {"prompt": "x"}, "webhook_mode": "push"}, "webhook_mode"),
        ({"model": "pixverse-v6-text-to-video", "input": {"prompt": "x"}, "metadata": "m"}, "metadata"),
        ({"model": "pixverse-v6-text-to-video", "input": {"prompt": "x"}, "metadata": {"k": "v" * 3000}}, "metadata"),
        ({"model": "pixverse-v6-text-to-video", "input": {"prompt": "x"}, "priority": 1}, "priority"),
    ],
)
def test_envelope_errors_name_the_field(
    submit: dict[str, Any], lambda_context: Any, body: dict[str, Any], field: str
) -> None:
    response = _post(submit, body, lambda_context)
    assert response["statusCode"] == 400
    assert field in {d["field"] for d in json.loads(response["body"])["error"]["details"]}
    assert submit["sent"] == []


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "null", "{bad json"])
def test_body_that_is_not_an_object_is_400(submit: dict[str, Any], lambda_context: Any, raw: str) -> None:
    response = _post(submit, raw, lambda_context)
    assert response["statusCode"] == 400
    assert submit["sent"] == []


def test_unknown_model_error_lists_the_six_models(submit: dict[str, Any], lambda_context: Any) -> None:
    response = _post(submit, {"model": "pixverse-v7", "input": {"prompt": "x"}}, lambda_context)
    message = json.loads(response["body"])["error"]["details"][0]["message"]
    assert all(m in message for m in MODELS)


@pytest.mark.parametrize(
    ("model_id", "params"), DOC_EXAMPLES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(DOC_EXAMPLES)]
)
def test_doc_example_is_accepted_and_forwarded_unchanged(
    submit: dict[str, Any], lambda_context: Any, model_id: str, params: dict[str, Any]
) -> None:
    response = _post(submit, {"model": model_id, "input": params}, lambda_context)
    assert response["statusCode"] == 202, response["body"]
    [request] = submit["sent"]
    assert request.url.path == MODELS[model_id].path
    forwarded = json.loads(request.content)
    assert forwarded == params
    assert {k: type(v) for k, v in forwarded.items()} == {k: type(v) for k, v in params.items()}


@pytest.mark.parametrize("model_id", list(MODELS))
def test_widest_request_the_catalog_accepts_is_not_refused_for_its_size(
    submit: dict[str, Any], lambda_context: Any, model_id: str
) -> None:
    # Given every parameter at its longest, strings of emoji escaped as json.dumps writes them
    # (12 bytes each), and metadata at its limit (issue 13, 2.14: 64 KB refused these)
    body = json.dumps(
        {
            "model": model_id,
            "input": widest_input(MODELS[model_id], EMOJI),
            "webhook_mode": "terminal",
            "metadata": widest_metadata(EMOJI),
        }
    )

    response = _post(submit, body, lambda_context)

    assert response["statusCode"] == 202, response["body"][:300]
    assert len(body.encode()) <= submit["module"].MAX_BODY_BYTES


@pytest.mark.parametrize("model_id", list(MODELS))
def test_computed_widest_input_is_the_widest_input_json_writes(model_id: str) -> None:
    assert widest_input_bytes(MODELS[model_id]) == len(json.dumps(widest_input(MODELS[model_id], EMOJI)))


def test_body_limit_is_the_widest_body_rounded_up_to_4_kib() -> None:
    assert widest_submit_body_bytes() <= submit_body_limit() < widest_submit_body_bytes() + 4096
    assert submit_body_limit() % 4096 == 0


def test_body_over_the_limit_is_413(submit: dict[str, Any], lambda_context: Any) -> None:
    body = json.dumps({"model": "pixverse", "input": {"prompt": "x" * submit["module"].MAX_BODY_BYTES}})

    assert _post(submit, body, lambda_context)["statusCode"] == 413

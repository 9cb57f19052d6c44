"""GET /jobs pages stay under Lambda's 6 MB response limit whatever the catalog let jobs hold
(issue 13, 2.6): pages are bounded by bytes as well as by count, and non-ASCII is written as
UTF-8 rather than as 12-byte escapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from lambda_support import create_jobs_table, load_event, load_function
from moto import mock_aws
from pixverse_jobs.store import JobStore
from size_support import CONTROL, EMOJI, lambda_payload_bytes, widest_input, widest_metadata, widest_model

OWNER = "arn:aws:iam::123456789012:user/video-backend"  # the events' caller
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # Lambda quotas: 6 MB synchronous response payload
JOBS = 110


@pytest.fixture
def submit_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        secrets = boto3.client("secretsmanager")
        table = create_jobs_table(ddb)
        secrets.create_secret(Name="pixverse-jobs/pixazo-api-key", SecretString="k")
        signing_arn = secrets.create_secret(Name="signing", SecretString="w" * 64)["ARN"]
        for name, value in {
            "JOBS_TABLE": table,
            "UPLOAD_BUCKET": "media",
            "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
            "PIXAZO_API_KEY_SECRET": "pixverse-jobs/pixazo-api-key",
            "WEBHOOK_SECRET_ARN": signing_arn,
            "SUBMIT_QUEUE_URL": boto3.client("sqs").create_queue(QueueName="submit")["QueueUrl"],
            "DEADLINE_QUEUE_URL": boto3.client("sqs").create_queue(QueueName="deadline")["QueueUrl"],
            "COPY_QUEUE_URL": boto3.client("sqs").create_queue(QueueName="copy")["QueueUrl"],
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        yield JobStore(table, ddb)


def _record_widest_jobs(store: JobStore, char: str, count: int) -> list[str]:
    model = widest_model(char)
    ids = []
    for n in range(count):
        job_id = f"job_{n:032x}"
        store.create(
            {
                "job_id": job_id,
                "owner": OWNER,
                "model": model.id,
                "input": widest_input(model, char),
                "metadata": widest_metadata(char),
                "webhook_mode": "terminal",
                "status": "FAILED",
                "error": {"code": "generation_failed", "message": char * 2000},
                "created_at": f"2026-11-25T10:{n // 60:02d}:{n % 60:02d}.000000Z",
                "updated_at": f"2026-11-25T10:{n // 60:02d}:{n % 60:02d}.000000Z",
            }
        )
        ids.append(job_id)
    return ids


def _list_event(query: dict[str, str]) -> dict[str, Any]:
    event = load_event("get_job")
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /jobs"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/jobs"
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    event["queryStringParameters"] = query
    del event["pathParameters"]
    return event


@pytest.mark.parametrize("status", [None, "FAILED"], ids=["all", "status-filter"])
@pytest.mark.parametrize("char", [EMOJI, CONTROL], ids=["emoji", "control-characters"])
def test_every_page_of_the_widest_jobs_fits_lambdas_response_limit(
    submit_env: JobStore, lambda_context: Any, char: str, status: str | None
) -> None:
    # Given more than a page of jobs holding the widest input, metadata and error the catalog accepts
    ids = _record_widest_jobs(submit_env, char, JOBS)
    module = load_function("SubmitFunction")

    # When the caller pages through GET /jobs?limit=100 (a status filter reads up to 5 DynamoDB pages)
    listed: list[str] = []
    sizes: list[int] = []
    token: str | None = None
    while True:
        query = {"limit": "100", **({"status": status} if status else {}), **({"next_token": token} if token else {})}
        response = module.handler(_list_event(query), lambda_context)
        assert response["statusCode"] == 200
        sizes.append(lambda_payload_bytes(response))
        page = json.loads(response["body"])
        listed.extend(job["job_id"] for job in page["jobs"])
        token = page["next_token"]
        if token is None:
            break

    # Then every page fits, and every job is listed exactly once, newest first
    assert max(sizes) < LAMBDA_RESPONSE_LIMIT, sizes
    assert listed == ids[::-1]


def test_non_ascii_is_written_as_utf8_not_escaped(submit_env: JobStore, lambda_context: Any) -> None:
    _record_widest_jobs(submit_env, EMOJI, 1)
    module = load_function("SubmitFunction")

    body = module.handler(_list_event({"limit": "1"}), lambda_context)["body"]

    assert EMOJI in body and "\\ud83d" not in body

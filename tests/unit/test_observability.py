"""EMF metrics by dimension: one document per count, with its own dimensions only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from lambda_support import load_event
from pixverse_jobs import observability
from pixverse_jobs.errors import JobNotFound
from pixverse_jobs.http_errors import register_error_handlers
from pixverse_jobs.observability import count_by
from pixverse_jobs.proxy import METRIC_HANDLED_ERRORS


def test_count_by_writes_one_emf_document_with_its_dimension(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(observability.metrics, "namespace", "PixverseJobsTests")

    count_by("JobsDelivered", model="pixverse-v6-text-to-video")

    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Metrics"] == [{"Name": "JobsDelivered", "Unit": "Count"}]
    assert "model" in directive["Dimensions"][0]
    assert document["model"] == "pixverse-v6-text-to-video"
    assert document["JobsDelivered"] in (1, 1.0, [1.0])


def test_count_by_writes_nothing_when_metrics_are_disabled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    count_by("JobsDelivered", model="pixverse")

    assert capsys.readouterr().out == ""


def test_submit_api_500_is_counted_as_a_handled_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lambda_context: Any
) -> None:
    # Lambda's Errors metric does not count an exception the API answers as a 500 (issue 13, 2.8).
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(observability.metrics, "namespace", "PixverseJobsTests")
    app = APIGatewayHttpResolver()
    register_error_handlers(app)

    @app.get("/jobs")
    def broken() -> None:
        raise RuntimeError("DynamoDB is unavailable")

    event = load_event("get_job")
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /jobs"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/jobs"
    response = app.resolve(event, lambda_context)

    assert response["statusCode"] == 500
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    handled = [d for d in documents if METRIC_HANDLED_ERRORS in d]
    assert len(handled) == 1
    assert handled[0]["function"] == "submit"
    assert sorted(handled[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == ["function", "service"]


def test_answers_below_500_are_not_handled_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lambda_context: Any
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(observability.metrics, "namespace", "PixverseJobsTests")
    app = APIGatewayHttpResolver()
    register_error_handlers(app)

    @app.get("/jobs/<job_id>")
    def missing(job_id: str) -> None:
        raise JobNotFound(job_id)

    response = app.resolve(load_event("get_job"), lambda_context)

    assert response["statusCode"] == 404
    assert METRIC_HANDLED_ERRORS not in capsys.readouterr().out

"""EMF metrics by dimension: one document per count, with its own dimensions only."""

from __future__ import annotations

import json

import pytest
from pixverse_jobs import observability
from pixverse_jobs.observability import count_by


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

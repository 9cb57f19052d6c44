"""Cold starts: importing the webhook's handler pulls in neither httpx nor pydantic nor the
Powertools event handler, and the submit function's pulls in no pydantic (the catalog validates;
scripts/api_contract.py, which needs pydantic, only builds the documents).

Checked in a fresh interpreter, since this test process has long imported both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", f"functions/{sys.argv[1]}/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({
    "heavy": sorted(name for name in ("httpx", "pydantic") if name in sys.modules),
    "layer": sorted(name for name in sys.modules if name.startswith("pixverse_jobs.")),
    "sns_client": getattr(module, "sns", None) is not None,
    "event_handler": "aws_lambda_powertools.event_handler" in sys.modules,
}))
"""


def _import_webhook(**extra_env: str) -> dict[str, Any]:
    return _import_function("webhook", **extra_env)


def _import_function(directory: str, **extra_env: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "layers" / "shared" / "python"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "JOBS_TABLE": "jobs",
        "COPY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/copy",
        "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:signing-AbCdEf",
        "UPLOAD_BUCKET": "media",
        "EVENT_BUS_NAME": "events",
        **extra_env,
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, directory],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("progress_events", ["false", "true"])
def test_webhook_handler_imports_neither_httpx_nor_pydantic(progress_events: str) -> None:
    loaded = _import_webhook(
        PROGRESS_EVENTS=progress_events, EVENTS_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:events"
    )
    assert loaded["heavy"] == []
    # Nor the Powertools event handler (every resolver, every event data class, asyncio): one route.
    assert loaded["event_handler"] is False
    # The layer modules that would bring httpx in are not imported either.
    assert not {"pixverse_jobs.gateway", "pixverse_jobs.jobs", "pixverse_jobs.media"} & set(loaded["layer"])


def test_webhook_creates_an_sns_client_only_when_progress_events_are_on() -> None:
    assert _import_webhook(PROGRESS_EVENTS="false")["sns_client"] is False
    assert _import_webhook(PROGRESS_EVENTS="true", EVENTS_TOPIC_ARN="arn:aws:sns:us-east-1:1:t")["sns_client"] is True


def test_submit_handler_imports_neither_httpx_nor_pydantic() -> None:
    # Admission: POST records and queues, the submitter calls the gateway; nothing here calls out.
    loaded = _import_function(
        "submit",
        SUBMIT_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/submit",
        DEADLINE_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/deadline",
    )

    assert loaded["heavy"] == []
    assert "pixverse_jobs.catalog" in loaded["layer"]
    assert not {"pixverse_jobs.gateway", "pixverse_jobs.admission"} & set(loaded["layer"])


def test_submitter_handler_imports_httpx_but_not_pydantic() -> None:
    loaded = _import_function(
        "submitter",
        SUBMIT_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/submit",
        PIXAZO_BASE_URL="https://gateway.pixazo.ai",
        PIXAZO_API_KEY_SECRET="arn:aws:secretsmanager:us-east-1:123456789012:secret:key-AbCdEf",
    )

    assert loaded["heavy"] == ["httpx"]
    assert loaded["event_handler"] is False


def test_callback_buffer_handler_imports_neither_httpx_nor_pydantic() -> None:
    # It applies callbacks through the webhook's CallbackProcessor: nothing that calls out over HTTP.
    loaded = _import_function("callback_buffer", PROGRESS_EVENTS="false")

    assert loaded["heavy"] == []
    assert loaded["event_handler"] is False
    assert loaded["sns_client"] is False
    assert "pixverse_jobs.callback_buffer" in loaded["layer"]
    assert not {"pixverse_jobs.gateway", "pixverse_jobs.jobs", "pixverse_jobs.media"} & set(loaded["layer"])

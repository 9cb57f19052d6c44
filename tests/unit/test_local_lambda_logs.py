"""The local Lambda runtime's logs: each execution environment keeps its own Powertools keys and cold
start, as each is its own process on AWS, though every function shares one process (and one
Powertools formatter per service) here."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pixverse_local.aws.lambda_runtime import LocalFunction
from pixverse_local.aws.template import FunctionSpec

# The functions of one test share a service name, hence one formatter, as the stack's functions do.
# The event carries a barrier so two invocations can be made to overlap.
LOGGING_HANDLER = """
from concurrent.futures import ThreadPoolExecutor
from aws_lambda_powertools import Logger
logger = Logger(service={service!r})

@logger.inject_lambda_context(clear_state={clear_state})
def handler(event, context):
    if "job_id" in event:
        logger.append_keys(job_id=event["job_id"])
    for step in event.get("steps", ["line"]):
        if step == "wait":
            event["barrier"].wait(5)
        elif step == "thread":
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(logger.info, "from a worker thread").result()
        else:
            logger.info(step)
    return None
"""


def _function(tmp_path: Path, name: str, service: str, *, clear_state: bool = True) -> LocalFunction:
    code = tmp_path / name
    code.mkdir()
    (code / "app.py").write_text(LOGGING_HANDLER.format(service=service, clear_state=clear_state))
    spec = FunctionSpec(name, f"test-{name}", code, "app.handler", 10, 128, {}, (), None)
    return LocalFunction.load(spec, region="us-east-1", account_id="123456789012")


def _lines(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """The Powertools lines written so far, by message."""
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return {record["message"]: record for record in records}


@pytest.fixture
def service() -> str:
    return f"logs-{uuid.uuid4().hex[:8]}"


def test_overlapping_invocations_of_two_functions_log_their_own_names_and_keys(
    tmp_path: Path, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two functions on one Powertools logger, the second clearing its state on entry
    first = _function(tmp_path, "First", service, clear_state=False)
    second = _function(tmp_path, "Second", service, clear_state=True)
    barrier = threading.Barrier(2)

    # When the first appends a job_id, the second starts (and clears its state), then both log
    running = first.start({"job_id": "job_first", "barrier": barrier, "steps": ["wait", "wait", "first line"]})
    second.invoke({"barrier": barrier, "steps": ["wait", "second line", "wait"]})
    running.result()

    # Then each line carries its own function's name and keys
    lines = _lines(capsys)
    assert lines["first line"]["function_name"] == "test-First"
    assert lines["first line"]["job_id"] == "job_first"
    assert lines["second line"]["function_name"] == "test-Second"
    assert "job_id" not in lines["second line"]
    assert lines["first line"]["function_request_id"] != lines["second line"]["function_request_id"]


def test_threads_an_invocation_starts_log_with_its_keys(
    tmp_path: Path, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    function = _function(tmp_path, "Pooled", service)
    other = _function(tmp_path, "Other", service)
    other.invoke({"job_id": "job_other"})

    function.invoke({"job_id": "job_pooled", "steps": ["thread"]})

    line = _lines(capsys)["from a worker thread"]
    assert (line["function_name"], line["job_id"]) == ("test-Pooled", "job_pooled")


def test_each_execution_environment_has_its_own_cold_start(
    tmp_path: Path, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two functions: each one's first invocation is a cold start, the next warm
    first = _function(tmp_path, "ColdA", service)
    second = _function(tmp_path, "ColdB", service)
    first.invoke({"steps": ["a1"]})
    second.invoke({"steps": ["b1"]})
    first.invoke({"steps": ["a2"]})
    # When two invocations of one function overlap (a second container starts)
    barrier = threading.Barrier(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda step: first.invoke({"barrier": barrier, "steps": ["wait", step]}), ["a3", "a4"]))

    cold = {message: record["cold_start"] for message, record in _lines(capsys).items()}
    assert (cold["a1"], cold["b1"], cold["a2"]) == (True, True, False)
    assert first.containers == 2
    assert sorted([cold["a3"], cold["a4"]]) == [False, True]  # the warm container, and the new one


def test_warm_invocation_keeps_the_keys_its_environment_appended(
    tmp_path: Path, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without clear_state, what one invocation appended stays for the next one in its container,
    # as it does in a warm Lambda environment (and nowhere else).
    function = _function(tmp_path, "Sticky", service, clear_state=False)
    other = _function(tmp_path, "Fresh", service, clear_state=False)
    function.invoke({"job_id": "job_earlier", "steps": ["earlier"]})

    function.invoke({"steps": ["later"]})
    other.invoke({"steps": ["elsewhere"]})

    lines = _lines(capsys)
    assert lines["later"]["job_id"] == "job_earlier"
    assert "job_id" not in lines["elsewhere"]

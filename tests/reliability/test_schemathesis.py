"""Schemathesis (4.x) against the OpenAPI document (functions/submit/openapi.json) and a local
stack of its own: generated requests, valid and invalid, on every route, with the checks an
outside fuzzer ran (issue 13, 2.14). Bounded in time: a fixed seed, SCHEMATHESIS_MAX_EXAMPLES per
operation (``small`` scale by default, more with RELIABILITY_SCALE=full) and a hard timeout.

The run is the CLI (``st run``) in a child process, so its report (each failure with a curl line
that reproduces it) is the test's failure message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pixverse_local.harness import LocalClient, StackProcess
from reliability_support import current_scale, local_stack

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "functions" / "submit" / "openapi.json"
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "positive_data_acceptance",
    "unsupported_method",
)
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100" if current_scale().name == "full" else "15"))
RUN_TIMEOUT_SECONDS = 600 if current_scale().name == "full" else 150

pytestmark = pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 120)


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackProcess, LocalClient]]:
    log = tmp_path_factory.mktemp("schemathesis-stack") / "local-stack.log"
    with local_stack(log, {"LOCAL_RETRY_DELAY_SECONDS": "1"}) as started:
        yield started


def schemathesis_command(api_url: str, report_dir: Path) -> list[str]:
    """``st run`` with the checks, a fixed seed and the example bound."""
    return [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(DOCUMENT),
        "--url",
        api_url,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "13",
        "--workers",
        "1",
        "--request-timeout",
        "35",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
        "--no-color",
    ]


def test_schemathesis_finds_nothing(fuzzed_stack: tuple[StackProcess, LocalClient], tmp_path: Path) -> None:
    stack, _ = fuzzed_stack
    assert stack.ready is not None
    command = schemathesis_command(stack.ready["api"], tmp_path)
    started = time.monotonic()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False
    )
    elapsed = time.monotonic() - started
    print(f"schemathesis: {MAX_EXAMPLES} examples per operation, {elapsed:.1f} s")
    assert run.returncode == 0, f"{' '.join(command)}\n{run.stdout[-20000:]}\n{run.stderr[-5000:]}"

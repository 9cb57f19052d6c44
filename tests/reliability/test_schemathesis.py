"""Schemathesis (4.x) against the OpenAPI document (functions/submit/openapi.json) and a local stack
of its own: generated requests, valid and invalid, on every route, with the checks an outside
fuzzer ran (issue 13, 2.14; tests/schemathesis_support.py). Bounded in time: a fixed seed,
SCHEMATHESIS_MAX_EXAMPLES per operation (100 by default) and a hard timeout.

This is the full run, for ``make reliability`` (RELIABILITY_SCALE=full). ``make test`` runs
tests/integration/test_schemathesis_quick.py instead (the same checks, few examples); at the small
scale this module is skipped rather than run a second, near-identical time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pixverse_local.harness import LocalClient, StackProcess
from reliability_support import ResultsBook, current_scale, local_stack
from schemathesis_support import run_schemathesis

FULL = current_scale().name == "full"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100"))
RUN_TIMEOUT_SECONDS = 900

pytestmark = [
    pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 120),
    pytest.mark.skipif(not FULL, reason="full size only: make test runs tests/integration/test_schemathesis_quick.py"),
]


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackProcess, LocalClient]]:
    log = tmp_path_factory.mktemp("schemathesis-stack") / "local-stack.log"
    with local_stack(log, {"LOCAL_RETRY_DELAY_SECONDS": "1"}) as started:
        yield started


def test_schemathesis_finds_nothing(
    fuzzed_stack: tuple[StackProcess, LocalClient], tmp_path: Path, results: ResultsBook
) -> None:
    stack, _ = fuzzed_stack
    assert stack.ready is not None

    run = run_schemathesis(
        stack.ready["api"],
        stack.ready["aws"],
        tmp_path,
        max_examples=MAX_EXAMPLES,
        timeout_seconds=RUN_TIMEOUT_SECONDS,
    )

    print(run.stdout[-4000:])
    print(f"schemathesis: {MAX_EXAMPLES} examples per operation, {run.seconds:.1f} s")
    results.record(
        "schemathesis",
        {"examples_per_operation": MAX_EXAMPLES, "seconds": round(run.seconds, 1), "exit_code": run.returncode},
    )
    assert run.returncode == 0, run.report()

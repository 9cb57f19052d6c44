"""Schemathesis in ``make test`` (issue 13, 2.14): the checks of tests/reliability/test_schemathesis.py
(no server error, answers that fit the document, schema-valid requests accepted, 405 with Allow for
a method the document does not list) with few examples per operation, against a local stack of its
own (the fuzzer's jobs stay out of the shared stack's listings). Every phase runs: the coverage
phase, which sends the undeclared methods and each parameter's boundary values, does not depend on
the example count. ``make reliability`` runs the same with 100 examples per operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pixverse_local.harness import StackProcess
from schemathesis_support import run_schemathesis

MAX_EXAMPLES = 10
# Measured at 12-14 s for the run and about 4 s to start the stack on a shared 2-core machine; the bound
# leaves room for a loaded machine and stops a hung run.
RUN_TIMEOUT_SECONDS = 120

pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 120)]


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    log = tmp_path_factory.mktemp("schemathesis-quick-stack") / "local-stack.log"
    process = StackProcess(log_path=log, env={"LOCAL_RETRY_DELAY_SECONDS": "1"}, start_timeout=90)
    process.start()
    yield process
    code = process.stop()
    assert code == 0, f"local stack exited {code}; log: {log}"


def test_schemathesis_with_few_examples_finds_nothing(fuzzed_stack: StackProcess, tmp_path: Path) -> None:
    assert fuzzed_stack.ready is not None

    run = run_schemathesis(
        fuzzed_stack.ready["api"],
        fuzzed_stack.ready["aws"],
        tmp_path,
        max_examples=MAX_EXAMPLES,
        timeout_seconds=RUN_TIMEOUT_SECONDS,
    )

    print(f"schemathesis: {MAX_EXAMPLES} examples per operation, {run.seconds:.1f} s")
    assert run.returncode == 0, run.report()
    # The coverage phase ran: it is the one that sends the undeclared methods (each answered 405
    # with Allow, or unsupported_method failed the run above).
    assert "✅  Coverage" in run.stdout, run.report()

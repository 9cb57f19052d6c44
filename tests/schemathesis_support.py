"""Schemathesis (4.x, the CLI ``st run``) against the OpenAPI document and a running local stack, for
tests/reliability/test_schemathesis.py (the full run) and tests/integration/test_schemathesis_quick.py
(the run ``make test`` makes). Issue 13, 2.14: an outside fuzzer found what the unit tests had not.

The run is a child process bounded twice: SCHEMATHESIS_MAX_EXAMPLES-style example counts per
operation, and a hard timeout on the process. Its report (each failure with a curl line that
reproduces it) is the caller's failure message. A fixed seed and no example database make two runs
send the same requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "functions" / "submit" / "openapi.json"
HOOKS_DIR = ROOT / "tests" / "reliability"
# The checks the outside fuzzer ran: no 5xx, answers that fit the document (body, status, content
# type), requests the document calls valid accepted, and 405 with Allow for a method it does not list.
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "positive_data_acceptance",
    "unsupported_method",
)
SEED = 13
# template.yaml's logical id of the secret that signs webhook URLs (the local stack provisions it
# under a name holding the id).
SIGNING_SECRET_ID = "WebhookSigningSecret"


@dataclass(frozen=True)
class FuzzRun:
    """One ``st run``: its exit code, output and wall time."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> str:
        return f"{' '.join(self.command)}\n{self.stdout[-20000:]}\n{self.stderr[-5000:]}"


def signing_secret(aws_url: str) -> str:
    """The local stack's webhook signing secret, read from its Secrets Manager (moto)."""
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"] if SIGNING_SECRET_ID in s["Name"]]
    if len(names) != 1:
        raise RuntimeError(f"expected one secret named after {SIGNING_SECRET_ID}, found {names}")
    return str(secrets.get_secret_value(SecretId=names[0])["SecretString"])


def schemathesis_command(
    api_url: str, report_dir: Path, *, max_examples: int, phases: str = "examples,coverage,fuzzing,stateful"
) -> list[str]:
    """``st run`` with the checks, a fixed seed and the example bound."""
    return [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(DOCUMENT),
        "--url",
        api_url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        # Past the API's own 30 s integration timeout: a hung request is reported, not waited on forever.
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


def run_schemathesis(
    api_url: str,
    aws_url: str,
    report_dir: Path,
    *,
    max_examples: int,
    timeout_seconds: float,
    phases: str = "examples,coverage,fuzzing,stateful",
) -> FuzzRun:
    """Run ``st`` against the stack at ``api_url`` (hooks: tests/reliability/schemathesis_hooks.py,
    which signs webhook requests with the stack's secret so that they get past the signature)."""
    command = schemathesis_command(api_url, report_dir, max_examples=max_examples, phases=phases)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(HOOKS_DIR), str(ROOT / "layers" / "shared" / "python")]),
        "SCHEMATHESIS_WEBHOOK_SECRET": signing_secret(aws_url),
    }
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=report_dir, env=env, capture_output=True, text=True, timeout=timeout_seconds, check=False
    )
    return FuzzRun(command, run.returncode, run.stdout, run.stderr, time.monotonic() - started)

"""Shared fixtures: a fake Lambda context, AWS credentials that can never reach a real account,
a loopback trap that no request may reach."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from lambda_support import FakeLambdaContext
from traps import Trap


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


@pytest.fixture(autouse=True, scope="session")
def _offline_aws_credentials() -> Iterator[None]:
    """Dummy credentials and region, so no test can ever sign a request for a real account."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PixverseJobsTests")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "pixverse-jobs-tests")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

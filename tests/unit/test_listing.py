"""GET /jobs listing: status-filtered pages are full, tokens resume exactly where a page ended."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs.jobs import JobService, parse_list_query
from pixverse_jobs.store import JobStore

OWNER = "arn:aws:iam::123456789012:user/lister"


def _job_id(owner: str, n: int) -> str:
    """A real-looking job id (job_ + 32 hex digits): page tokens hold only ids the API hands out."""
    return f"job_{int(owner == OWNER):02x}{n:030x}"


@pytest.fixture
def service() -> Iterator[JobService]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        store = JobStore(create_jobs_table(ddb), ddb)
        # 30 jobs, one in three FAILED, the rest QUEUED; another owner's jobs interleaved.
        for n in range(30):
            for owner in (OWNER, "someone-else"):
                store.create(
                    {
                        "job_id": _job_id(owner, n),
                        "owner": owner,
                        "model": "pixverse",
                        "status": "FAILED" if n % 3 == 0 else "QUEUED",
                        "created_at": f"2026-11-25T10:00:{n:02d}.000000Z",
                    }
                )
        yield JobService(store, queue=Any)  # type: ignore[arg-type]


def _all_pages(service: JobService, params: dict[str, str]) -> list[list[str]]:
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        query = parse_list_query({**params, **({"next_token": token} if token else {})}, owner=OWNER)
        jobs, token = service.list_jobs(query, owner=OWNER)
        pages.append([job["job_id"] for job in jobs])
        if token is None:
            return pages


def test_status_filter_fills_each_page_and_resumes_after_it(service: JobService) -> None:
    pages = _all_pages(service, {"status": "FAILED", "limit": "3"})

    expected = [_job_id(OWNER, n) for n in range(27, -1, -3)]
    assert [job for page in pages for job in page] == expected
    assert [len(page) for page in pages[:-1]] == [3] * (len(pages) - 1)


def test_unfiltered_pages_list_every_job_once_newest_first(service: JobService) -> None:
    pages = _all_pages(service, {"limit": "7"})

    assert [job for page in pages for job in page] == [_job_id(OWNER, n) for n in range(29, -1, -1)]

"""No hot key (issue 14): both job indexes spread each key over shards, project only what their
queries read, and the listing and the reconciler still read them in order, every job once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs import store as store_module
from pixverse_jobs.jobs import JobService, ListQuery, OwnerListing, decode_page_token, parse_list_query
from pixverse_jobs.store import (
    CHECK_AT,
    OWNER_INDEX,
    OWNER_SHARD,
    OWNER_SHARDS,
    UNFINISHED,
    UNFINISHED_INDEX,
    UNFINISHED_SHARDS,
    JobStore,
    owner_shard_key,
    unfinished_keys,
)

OWNER = "arn:aws:iam::123456789012:role/backend"
OTHER = "arn:aws:iam::123456789012:role/other"
STATUSES = ("QUEUED", "PROCESSING", "FAILED", "DELIVERED")


def _job_id(n: int) -> str:
    return f"job_{n:032x}"


def _created_at(second: int) -> str:
    return f"2026-11-25T10:{second // 60:02d}:{second % 60:02d}.000Z"


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_jobs_table(client)
        yield client


def _create(store: JobStore, n: int, *, owner: str = OWNER, second: int, status: str = "QUEUED") -> None:
    store.create(
        {
            "job_id": _job_id(n),
            "owner": owner,
            "model": "pixverse",
            "input": {"prompt": f"take {n}"},
            "status": status,
            "created_at": _created_at(second),
        }
    )


def test_a_callers_jobs_and_the_unfinished_ones_spread_over_every_shard(ddb: Any) -> None:
    store = JobStore("jobs", ddb)
    for n in range(320):
        _create(store, n, second=n)

    items = ddb.scan(TableName="jobs")["Items"]
    owner_keys = Counter(item[OWNER_SHARD]["S"] for item in items)
    unfinished_keys = Counter(item[UNFINISHED]["S"] for item in items)

    assert set(owner_keys) == {owner_shard_key(OWNER, n) for n in range(OWNER_SHARDS)}
    assert set(unfinished_keys) == {f"u#{n:02d}" for n in range(UNFINISHED_SHARDS)}
    # 20 per shard on average: no shard takes more than twice its share.
    assert max(owner_keys.values()) <= 2 * 320 / OWNER_SHARDS
    assert max(unfinished_keys.values()) <= 2 * 320 / UNFINISHED_SHARDS


def test_indexes_hold_only_what_their_queries_read(ddb: Any) -> None:
    """KEYS_ONLY / INCLUDE status: an update of anything else (progress, leases, media) writes
    neither index; the entries are the keys (and the listing's status filter)."""
    store = JobStore("jobs", ddb)
    _create(store, 1, second=1)

    owner_entry = ddb.scan(TableName="jobs", IndexName=OWNER_INDEX)["Items"][0]
    unfinished_entry = ddb.scan(TableName="jobs", IndexName=UNFINISHED_INDEX)["Items"][0]

    assert set(owner_entry) == {"job_id", OWNER_SHARD, "created_at", "status"}
    assert set(unfinished_entry) == {"job_id", UNFINISHED, CHECK_AT}


@pytest.fixture
def crowded(ddb: Any) -> tuple[JobService, list[dict[str, Any]]]:
    """400 jobs of one caller (and 100 of another) over 60 distinct created_at values, so that
    many jobs share a created_at inside and across shards; statuses at random."""
    rng = random.Random(14)
    store = JobStore("jobs", ddb)
    mine: list[dict[str, Any]] = []
    for n in range(500):
        owner = OWNER if n % 5 else OTHER
        second = rng.randrange(60)
        status = rng.choice(STATUSES)
        _create(store, n, owner=owner, second=second, status=status)
        if owner == OWNER:
            mine.append({"job_id": _job_id(n), "created_at": _created_at(second), "status": status})
    mine.sort(key=lambda j: (j["created_at"], j["job_id"]), reverse=True)
    return JobService(store, queue=Any), mine  # type: ignore[arg-type]


def _pages(service: JobService, params: dict[str, str], **kwargs: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        query = parse_list_query({**params, **({"next_token": token} if token else {})}, owner=OWNER)
        jobs, token = service.list_jobs(query, owner=OWNER, **kwargs)
        pages.append(jobs)
        assert len(pages) < 1000, "paging does not end"
        if token is None:
            return pages


@pytest.mark.parametrize(
    ("status", "limit"), [(None, 7), (None, 20), (None, 100), ("FAILED", 1), ("FAILED", 3), ("FAILED", 20)]
)
def test_listing_over_shards_is_newest_first_every_job_once(
    crowded: tuple[JobService, list[dict[str, Any]]], limit: int, status: str | None
) -> None:
    service, mine = crowded
    params = {"limit": str(limit), **({"status": status} if status else {})}

    pages = _pages(service, params)

    listed = [job["job_id"] for page in pages for job in page]
    expected = [j["job_id"] for j in mine if status is None or j["status"] == status]
    assert listed == expected  # newest first, ties by job_id, none twice, none skipped
    assert all(len(page) <= limit for page in pages)
    # Full pages: every page but the last is full (the reads per page suffice here).
    assert all(len(page) == limit for page in pages[:-1])
    assert all(job["owner"] == OWNER and "input" in job for page in pages for job in page)  # whole jobs


def test_listing_keeps_the_byte_budget_and_resumes_after_the_cut(
    crowded: tuple[JobService, list[dict[str, Any]]],
) -> None:
    service, mine = crowded

    pages = _pages(service, {"limit": "50"}, max_bytes=40, size_of=lambda job: 4)

    assert [len(page) for page in pages[:-1]] == [10] * (len(pages) - 1)
    assert [job["job_id"] for page in pages for job in page] == [j["job_id"] for j in mine]


def test_a_rare_status_pages_within_the_read_bound_and_finds_every_job(ddb: Any) -> None:
    """1 job in 150 FAILED: a page stops after LIST_READS_PER_PAGE reads per shard (it may then
    be short, even empty), and its token resumes below every job looked at."""
    store = JobStore("jobs", ddb)
    failed = []
    for n in range(1200):
        status = "FAILED" if n % 150 == 7 else "QUEUED"
        _create(store, n, second=n % 3600, status=status)
        if status == "FAILED":
            failed.append((_created_at(n % 3600), _job_id(n)))
    service = JobService(store, queue=Any)  # type: ignore[arg-type]
    queries = []
    original = ddb.query

    def counting_query(**kwargs: Any) -> Any:
        queries.append(kwargs)
        return original(**kwargs)

    ddb.query = counting_query

    pages = _pages(service, {"limit": "2", "status": "FAILED"})

    assert [job["job_id"] for page in pages for job in page] == [j for _, j in sorted(failed, reverse=True)]
    assert len(queries) / len(pages) <= 5 * OWNER_SHARDS
    assert any(len(page) < 2 for page in pages[:-1])  # some pages ran out of reads first


def test_token_of_a_page_cut_by_reads_covers_every_job_at_its_created_at(ddb: Any) -> None:
    """The "after every job created at T" position: the next page starts with T's jobs."""
    store = JobStore("jobs", ddb)
    for n in range(40):
        _create(store, n, second=5)  # all at one created_at, over every shard
    listing = OwnerListing(store, OWNER, status=None, limit=100, after=None)
    position = {"job_id": {"S": "~"}, "owner": {"S": OWNER}, "created_at": {"S": _created_at(5)}}

    assert decode_page_token(__import__("pixverse_jobs.jobs").jobs.encode_page_token(position)) == position
    entries, token = OwnerListing(store, OWNER, status=None, limit=100, after=position).page()

    assert [e.job_id for e in entries] == [e.job_id for e in listing.page()[0]]
    assert len(entries) == 40 and token is None


def test_page_fill_asks_again_for_unprocessed_keys(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore("jobs", ddb)
    for n in range(10):
        _create(store, n, second=n)
    original = ddb.batch_get_item
    calls: list[int] = []

    def throttled(**kwargs: Any) -> Any:
        keys = kwargs["RequestItems"]["jobs"]["Keys"]
        calls.append(len(keys))
        if len(calls) == 1:  # the first call serves 3 keys and leaves the rest, as under throttling
            served = original(RequestItems={"jobs": {**kwargs["RequestItems"]["jobs"], "Keys": keys[:3]}})
            served["UnprocessedKeys"] = {"jobs": {"Keys": keys[3:], "ConsistentRead": True}}
            return served
        return original(**kwargs)

    monkeypatch.setattr(ddb, "batch_get_item", throttled)
    monkeypatch.setattr(store_module, "BATCH_GET_BACKOFF_SECONDS", 0.0)
    service = JobService(store, queue=Any)  # type: ignore[arg-type]

    jobs, token = service.list_jobs(ListQuery(status=None, limit=10, start_key=None), owner=OWNER)

    assert [j["job_id"] for j in jobs] == [_job_id(n) for n in range(9, -1, -1)]
    assert token is None
    assert calls == [10, 7]


def _epoch(second: int) -> int:
    """``second`` seconds after 10:00, the first created_at, in epoch seconds (CHECK_AT's unit)."""
    return int(datetime.fromisoformat(_created_at(0).replace("Z", "+00:00")).timestamp()) + second


def test_due_jobs_come_most_overdue_first_across_shards_and_the_legacy_key(ddb: Any) -> None:
    store = JobStore("jobs", ddb, first_check_after_seconds=600)
    for n in range(60):
        _create(store, n, second=59 - n)  # the newest ids are the oldest jobs
    # A job written before the sharded index (unfinished = "1") is still read once it has a check_at.
    store.create(
        {"job_id": _job_id(999), "owner": OWNER, "status": "QUEUED", "created_at": _created_at(30), UNFINISHED: "1"}
    )
    # An ended and announced job has left the index.
    _create(store, 500, second=0)
    store.mark_event_published(_job_id(500), "evt")
    # The oldest job was looked at and its next look pushed: it is no longer due, old as it is.
    assert store.push_check_at(_job_id(59), _epoch(7200))

    due = list(store.iter_due(due_by=_epoch(3600)))
    due_early = list(store.iter_due(due_by=_epoch(610)))

    order = [(j[CHECK_AT], j["job_id"]) for j in due]
    assert order == sorted(order)
    assert {j["job_id"] for j in due} == {_job_id(n) for n in range(59)} | {_job_id(999)}
    assert all("model" in j for j in due if j["job_id"] != _job_id(999))  # read whole
    # Due by created_at + 610 s: the jobs created in the first 10 s, but not the one pushed.
    assert {j["job_id"] for j in due_early} == {_job_id(n) for n in range(49, 59)}


def test_every_shard_of_the_index_is_read_at_once(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 17 keys are queried in parallel, not one after the other."""
    store = JobStore("jobs", ddb, first_check_after_seconds=600)
    for n in range(40):
        _create(store, n, second=n)
    original = ddb.query
    lock = threading.Lock()
    in_flight = {"now": 0, "most": 0}

    def slow_query(**kwargs: Any) -> Any:
        with lock:
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])
        try:
            time.sleep(0.05)
            return original(**kwargs)
        finally:
            with lock:
                in_flight["now"] -= 1

    monkeypatch.setattr(ddb, "query", slow_query)

    due = list(store.iter_due(due_by=_epoch(3600)))

    assert len(due) == 40
    assert in_flight["most"] == len(unfinished_keys())  # 16 shards and the legacy key together


def test_a_job_that_left_the_index_or_was_pushed_since_is_not_a_candidate(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index lags the table: the whole read (strongly consistent) decides."""
    store = JobStore("jobs", ddb, first_check_after_seconds=600)
    for n in (1, 2, 3):
        _create(store, n, second=n)
    original = store.batch_get

    def after_the_query(job_ids: Any) -> dict[str, Any]:
        found = original(job_ids)
        found[_job_id(1)].pop(UNFINISHED)  # its final event went out after the index was read
        found[_job_id(3)][CHECK_AT] = _epoch(7200)  # a callback showed it alive meanwhile
        return found

    monkeypatch.setattr(store, "batch_get", after_the_query)

    assert [j["job_id"] for j in store.iter_due(due_by=_epoch(3600))] == [_job_id(2)]


def test_next_look_only_moves_forward_and_never_brings_a_job_back(ddb: Any) -> None:
    store = JobStore("jobs", ddb, first_check_after_seconds=600)
    _create(store, 1, second=0)
    _create(store, 2, second=0)
    store.mark_event_published(_job_id(2), "evt")

    later, earlier = store.push_check_at(_job_id(1), _epoch(1000)), store.push_check_at(_job_id(1), _epoch(900))
    ended = store.push_check_at(_job_id(2), _epoch(1000))

    assert (later, earlier, ended) == (True, False, False)
    assert store.get(_job_id(1))[CHECK_AT] == _epoch(1000)  # type: ignore[index]
    assert CHECK_AT in store.get(_job_id(2)) and UNFINISHED not in store.get(_job_id(2))  # type: ignore[operator]


def test_backfill_gives_old_jobs_their_shard_keys_once(ddb: Any) -> None:
    """Upgrade: jobs the old code wrote (no owner_shard, unfinished "1") are listed and sharded
    after the backfill; an announced job does not get `unfinished` back; a second run does nothing."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "backfill_index_shards.py"
    spec = importlib.util.spec_from_file_location("backfill_index_shards", path)
    assert spec and spec.loader
    backfill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backfill)
    for n in range(5):
        item = {
            "job_id": {"S": _job_id(n)},
            "owner": {"S": OWNER},
            "status": {"S": "QUEUED"},
            "created_at": {"S": _created_at(n)},
        }
        if n != 4:
            item[UNFINISHED] = {"S": "1"}
        ddb.put_item(TableName="jobs", Item=item)
    store = JobStore("jobs", ddb)
    service = JobService(store, queue=Any)  # type: ignore[arg-type]
    query = ListQuery(status=None, limit=10, start_key=None)
    assert service.list_jobs(query, owner=OWNER) == ([], None)

    first = backfill.backfill(ddb, "jobs", reconcile_after_seconds=600)
    second = backfill.backfill(ddb, "jobs", reconcile_after_seconds=600)

    assert (first["owner_shard"], first["unfinished"], first["check_at"]) == (5, 4, 4)
    assert (second["owner_shard"], second["unfinished"], second["check_at"]) == (0, 0, 0)
    jobs, _ = service.list_jobs(query, owner=OWNER)
    assert [j["job_id"] for j in jobs] == [_job_id(n) for n in range(4, -1, -1)]
    unfinished = {item[UNFINISHED]["S"] for item in ddb.scan(TableName="jobs", IndexName=UNFINISHED_INDEX)["Items"]}
    assert unfinished and all(key.startswith("u#") for key in unfinished)
    due = list(store.iter_due(due_by=_epoch(3600)))
    assert sorted((j[CHECK_AT], j["job_id"]) for j in due) == [(_epoch(n) + 600, _job_id(n)) for n in range(4)]
    assert [j for j in store.iter_due(due_by=_epoch(599))] == []


def test_an_entry_a_page_boundary_repeats_is_read_once(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages that overlap (as the emulator's do among equal check_at) give each job once."""
    store = JobStore("jobs", ddb, first_check_after_seconds=600)
    for n in range(3):  # one shard, one check_at for all three
        store.create({"job_id": _job_id(n), "status": "QUEUED", "created_at": _created_at(0), UNFINISHED: "u#05"})
    pages: dict[str, int] = {}
    original = store.query_due

    def overlapping(key: str, **kwargs: Any) -> Any:
        entries, _ = original(key, **{**kwargs, "start_key": None})
        pages[key] = pages.get(key, 0) + 1
        if len(entries) > 1 and pages[key] == 1:
            return entries[:2], {"page": "more"}  # a boundary between the second and the rest...
        return (entries[1:] if len(entries) > 1 else entries if pages[key] == 1 else []), None  # ...repeating it

    monkeypatch.setattr(store, "query_due", overlapping)

    due = [job["job_id"] for job in store.iter_due(due_by=_epoch(3600))]

    assert sorted(due) == [_job_id(n) for n in range(3)]

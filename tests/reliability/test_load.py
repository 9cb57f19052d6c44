"""Load: many jobs at once, every final callback delivered three times concurrently, and 20% of the
jobs' callbacks lost (the reconciler must deliver those, through status polls that the gateway first
answers 429 and 500). One run on a stack of its own; each test checks one property of it.

Expected: every job DELIVERED, each object's bytes hashing to what the gateway served, exactly one
delivered event per job, the dead-letter queue empty."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pixverse_jobs.events import JOB_DELIVERED
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.store import UNFINISHED
from pixverse_local.harness import EventInbox, LocalClient, StackProcess
from reliability_support import (
    DeliveryCheck,
    Observer,
    PatientClient,
    ResultsBook,
    Scale,
    Submission,
    current_scale,
    duplicate_callbacks,
    event_counts,
    job_body,
    jobs_accepted_twice,
    local_stack,
    mixed_up_submissions,
    shorten,
    verify_deliveries,
    webhook_job_id,
)

SCALE = current_scale()
pytestmark = pytest.mark.timeout(SCALE.module_timeout)

LOST_EVERY = 5  # one job in five loses its callbacks: 20%
DUPLICATES = 3
MEDIA_BYTES = 16 * 1024
SETTLE_SECONDS = 3.0
CALL_LOG = "load-aws-calls.jsonl"
MAX_COPY_SPREAD_SECONDS = 5.0  # answers, not sends: the webhook under load adds its own time


@pytest.fixture(scope="module")
def load_stack(stack_logs: Path, scale: Scale) -> Iterator[tuple[StackProcess, LocalClient]]:
    env = {
        "LOCAL_AWS_CALL_LOG": str(stack_logs / CALL_LOG),
        "LOCAL_TIME_SCALE": "0.001",
        "RECONCILE_AFTER_SECONDS": str(scale.load_reconcile_after),
        "LOCAL_RECONCILE_EVERY_SECONDS": str(scale.load_reconcile_every),
        # The functions' INFO logs cost more CPU than the work itself at this rate.
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with local_stack(stack_logs / "load.log", env) as pair:
        yield pair


@dataclass
class LoadRun:
    submissions: list[Submission]
    lost: set[str]  # job ids whose callbacks the gateway never sent
    jobs: dict[str, dict[str, Any]]
    records: dict[str, dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]
    check: DeliveryCheck
    settled: bool
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def job_ids(self) -> list[str]:
        return [s.job_id for s in self.submissions if s.job_id]


@pytest.fixture(scope="module")
def load_run(
    load_stack: tuple[StackProcess, LocalClient], scale: Scale, results: ResultsBook, stack_logs: Path
) -> Iterator[LoadRun]:
    _, client = load_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-load-{uuid.uuid4().hex[:8]}")
    observer = Observer(client, api)
    try:
        # The reconciler's first status polls meet a rate limit, then server errors.
        for status, count in scale.poll_faults.items():
            spec: dict[str, Any] = {"poll_status": status, "count": count}
            if status == 429:
                spec["retry_after"] = 1
            observer.add_gateway_fault(spec)
        submissions = []
        for index in range(scale.load_jobs):
            lost = index % LOST_EVERY == 0
            directives = f"[sim:size={MEDIA_BYTES}] " + ("[sim:no-callback]" if lost else f"[sim:dup={DUPLICATES}]")
            submissions.append(Submission(index, job_body(index, "reliability load", directives)))
        started = time.monotonic()
        api.submit_all(submissions, workers=32)
        submitted_in = time.monotonic() - started
        job_ids = [s.job_id for s in submissions if s.job_id]
        wait = scale.load_reconcile_after + 6 * scale.load_reconcile_every + scale.load_jobs / 2
        settled = observer.wait_until(lambda: observer.announced(job_ids), timeout=wait, interval=1.0)
        time.sleep(SETTLE_SECONDS)  # late duplicates, if any, arrive now
        wall = time.monotonic() - started
        jobs = api.jobs()
        records = observer.gateway_records()
        events = observer.events_by_job(wait=1.0)
        lost_ids = {s.job_id for s in submissions if s.job_id and s.index % LOST_EVERY == 0}
        check = verify_deliveries(client, jobs, records, job_ids)
        run = LoadRun(submissions, lost_ids, jobs, records, events, check, settled)
        counts = event_counts(events, job_ids)
        extra_callbacks, callback_posts = duplicate_callbacks(records.values())
        stats = observer.gateway_stats()
        copy_requests = _copy_requests(stack_logs / CALL_LOG)
        run.figures = {
            "jobs": len(submissions),
            "jobs_accepted": len(job_ids),
            "lost_callback_jobs": len(lost_ids),
            "duplicate_callbacks": extra_callbacks,
            "callback_posts": callback_posts,
            "max_duplicate_callback_spread_seconds": max(
                (s for r in records.values() if (s := _spread(r)) is not None), default=0.0
            ),
            "delivered": check.delivered,
            "objects_sha256_verified": check.objects_verified,
            "delivered_events": sum(1 for j in job_ids for e in events.get(j, []) if e["type"] == JOB_DELIVERED),
            "duplicate_events": sum(max(0, n - 1) for n in counts["messages"].values()),
            "jobs_lost": len(_undelivered(run)),
            "dlq_messages": observer.queue_depth(client.ready["dlq"]),
            "copy_queue_messages": observer.queue_depth(client.ready["queue"]),
            "reconciler_status_polls": stats["status_polls"],
            "copy_requests_by_webhook": copy_requests["WebhookFunction"],
            "copy_requests_by_reconciler": copy_requests["ReconcileFunction"],
            "copy_attempts": copy_requests["copier GetItem"],
            "gateway_faults_injected": observer.gateway_faults_injected(
                {f"poll_status={status}": count for status, count in scale.poll_faults.items()}
            ),
            "submit_answers": dict(sorted(api.answers.items())),
            "gateway_submits_received": stats["submits_received"],
            "jobs_accepted_twice_by_gateway": len(jobs_accepted_twice(records.values())),
            "submit_seconds": round(submitted_in, 1),
            "wall_seconds": round(wall, 1),
            "settled_in_time": settled,
        }
        results.record("load", run.figures)
        _dump(stack_logs / "load-run.json", run)
        yield run
    finally:
        observer.close()
        api.close()


def _dump(path: Path, run: LoadRun) -> None:
    """What the run saw, for a post-mortem next to the stack's log."""
    document = {
        "submissions": [{"index": s.index, "job_ids": s.job_ids, "answers": s.answers} for s in run.submissions],
        "jobs": run.jobs,
        "gateway_records": run.records,
        "events": run.events,
        "figures": run.figures,
    }
    path.write_text(json.dumps(document, default=str))


def _copy_requests(call_log: Path) -> Counter[str]:
    """Copy-queue SendMessage calls by function, and the copier's deliveries (one GetItem each)."""
    counts: Counter[str] = Counter()
    for line in call_log.read_text().splitlines() if call_log.exists() else []:
        entry = json.loads(line)
        if entry["operation"] == "SendMessage":
            counts[entry["function"]] += 1
        elif entry["function"] == "MediaCopyFunction" and entry["operation"] == "GetItem":
            counts["copier GetItem"] += 1
    return counts


def _spread(record: dict[str, Any]) -> float | None:
    """Seconds between the first and the last answer to the request's callbacks."""
    moments = [datetime.fromisoformat(c["at"].replace("Z", "+00:00")) for c in record["callbacks"]]
    return (max(moments) - min(moments)).total_seconds() if moments else None


def _undelivered(run: LoadRun) -> list[str]:
    """Submissions that did not end with a verified delivery."""
    broken = {problem.split(":", 1)[0] for problem in run.check.problems}
    missing = [f"submission {s.index}: {s.error}" for s in run.submissions if not s.job_id]
    return missing + mixed_up_submissions(run.submissions, run.jobs) + sorted(broken)


def test_every_job_is_delivered_with_the_bytes_the_gateway_served(load_run: LoadRun) -> None:
    figures = load_run.figures

    assert not _undelivered(load_run), (
        f"jobs lost: {figures['jobs_lost']} of {figures['jobs']} "
        f"(settled in time: {load_run.settled}); {shorten(load_run.check.problems)}"
    )
    assert figures["objects_sha256_verified"] == figures["jobs"], figures


def test_each_job_has_exactly_one_delivered_event(load_run: LoadRun) -> None:
    counts = event_counts(load_run.events, load_run.job_ids)

    wrong = [
        f"{job_id}: {counts['messages'][job_id]} messages, types {counts['types'][job_id]}"
        for job_id in load_run.job_ids
        if counts["messages"][job_id] != 1 or counts["types"][job_id] != [JOB_DELIVERED]
    ]

    assert not wrong, (
        f"duplicate events: {load_run.figures['duplicate_events']}; "
        f"{len(wrong)} of {len(load_run.job_ids)} jobs without exactly one delivered event: {shorten(wrong)}"
    )


def test_each_job_was_sent_to_the_gateway_once(load_run: LoadRun) -> None:
    """Admission under load: POST /jobs answers at once and the submitter sends each job once (it
    claims a job before it calls; nothing here answers "not now")."""
    twice = jobs_accepted_twice(load_run.records.values())

    assert not twice, f"jobs the gateway accepted more than once: {twice}"
    assert load_run.figures["gateway_submits_received"] == load_run.figures["jobs_accepted"], load_run.figures


def test_every_final_callback_was_sent_three_times_at_once(load_run: LoadRun) -> None:
    """The premise of the load: each final callback reached the webhook DUPLICATES times. The
    simulator releases the copies together (a barrier); their answers are recorded when each one
    completes, so the spread of those moments bounds how far apart they were handled."""
    problems = []
    for record in load_run.records.values():
        if record["directives"]["no_callback"]:
            continue
        answered = [c for c in record["callbacks"] if c["status_code"] and 200 <= c["status_code"] < 300]
        copies = {c["copy"] for c in answered}
        spread = _spread(record)
        if len(copies) != DUPLICATES or spread is None or spread > MAX_COPY_SPREAD_SECONDS:
            problems.append(f"{record['request_id']}: copies answered 2xx {sorted(copies)}, spread {spread}s")

    assert not problems, f"{len(problems)} requests without {DUPLICATES} concurrent callbacks: {shorten(problems)}"
    assert load_run.figures["duplicate_callbacks"] == (DUPLICATES - 1) * (
        load_run.figures["jobs_accepted"] - load_run.figures["lost_callback_jobs"]
    ), load_run.figures


def test_concurrent_duplicate_callbacks_send_one_copy_request_per_job(load_run: LoadRun) -> None:
    """One conditional write wins per job, so the webhook sends one copy request per job, however
    many copies of its final callback arrive at once."""
    figures = load_run.figures
    called_back = figures["jobs_accepted"] - figures["lost_callback_jobs"]

    assert figures["copy_requests_by_webhook"] == called_back, (
        f"{figures['copy_requests_by_webhook']} copy requests from the webhook for {called_back} jobs "
        f"whose final callback came {DUPLICATES} times"
    )


def test_jobs_whose_callbacks_were_lost_are_delivered_by_the_reconciler(load_run: LoadRun) -> None:
    assert load_run.lost, "the scenario lost no callbacks"
    by_job = {webhook_job_id(r): r for r in load_run.records.values()}
    not_delivered = [j for j in load_run.lost if load_run.jobs.get(j, {}).get("status") != "DELIVERED"]
    called_back = [j for j in load_run.lost if by_job[j]["callbacks"]]

    assert not called_back, f"the gateway called back for 'lost' jobs: {shorten(called_back)}"
    assert not not_delivered, (
        f"{len(not_delivered)} of {len(load_run.lost)} jobs without callbacks not delivered by the reconciler "
        f"(status polls {load_run.figures['reconciler_status_polls']}): {shorten(not_delivered)}"
    )
    assert load_run.figures["reconciler_status_polls"] >= len(load_run.lost), load_run.figures


def test_dead_letter_queue_and_copy_queue_are_empty_and_no_stray_object_exists(
    load_run: LoadRun, load_stack: tuple[StackProcess, LocalClient]
) -> None:
    _, client = load_stack
    named = {o["key"] for j in load_run.job_ids for o in load_run.jobs.get(j, {}).get("outputs", [])}
    stray = sorted(_object_keys(client) - named)

    assert load_run.figures["dlq_messages"] == 0, load_run.figures
    assert load_run.figures["copy_queue_messages"] == 0, load_run.figures
    assert not stray, f"{len(stray)} objects no job names: {shorten(stray)}"


def _object_keys(client: LocalClient) -> set[str]:
    keys: set[str] = set()
    for page in client.s3.get_paginator("list_objects_v2").paginate(Bucket=client.ready["bucket"]):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def test_concurrent_redelivery_of_an_unannounced_delivered_job_publishes_one_event(
    load_run: LoadRun, load_stack: tuple[StackProcess, LocalClient]
) -> None:
    _, client = load_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-race-{uuid.uuid4().hex[:8]}")
    inbox = EventInbox(client)
    try:
        submissions = [Submission(i, job_body(i, "reliability race", "[sim:size=1024]")) for i in range(5)]
        api.submit_all(submissions, workers=5)
        job_ids = [s.job_id for s in submissions if s.job_id]
        deadline = time.monotonic() + 30
        while {e["subject"] for e in inbox.events} < set(job_ids) and time.monotonic() < deadline:
            inbox.collect(wait=0.5)
        assert {e["subject"] for e in inbox.events} >= set(job_ids), "setup: the jobs were not announced"
        inbox.events.clear()
        # Given: the state a copier leaves when it dies between DELIVERED and its publish.
        for job_id in job_ids:
            client.dynamodb.update_item(
                TableName=client.ready["table"],
                Key={"job_id": {"S": job_id}},
                UpdateExpression=f"SET {UNFINISHED} = :u REMOVE event_published_at, event_id",
                ExpressionAttributeValues={":u": {"S": "1"}},
            )
        # When: its message is retried while the reconciler re-drives it (three requests at once).
        queue = CopyQueue(client.ready["queue"], client.sqs)
        threads = [
            threading.Thread(target=queue.request_delivery, args=(job_id,)) for job_id in job_ids for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        time.sleep(1.0)
        events = inbox.collect(wait=2.5)
        counts = {job_id: sum(1 for e in events if e["subject"] == job_id) for job_id in job_ids}

        # Then: one event per job, not one per delivery.
        assert counts == dict.fromkeys(job_ids, 1), f"events per job after concurrent redelivery: {json.dumps(counts)}"
    finally:
        inbox.close()
        api.close()

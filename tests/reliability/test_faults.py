"""Faults on both sides of the pipeline, at once, on a stack of its own.

AWS side (LOCAL_AWS_FAULTS, hard failures as if the SDK had given up): DynamoDB PutItem / UpdateItem
throttling, SQS SendMessage, SNS Publish, S3 PutObject and UploadPart failures. Gateway side (the
simulator's /_sim/faults and prompt directives): submits answered 429 and 500, submits answered only
after the submitter's deadline, media GETs answered 503, downloads cut half-way (with and without
ranges). The client behaves as a well-behaved one does: it retries a submit that was not settled with
the same Idempotency-Key, and submits again under a new key if its job ends SUBMIT_FAILED.

Expected: nothing lost (every submission ends DELIVERED with the right bytes, every request the gateway
accepted is delivered), no second event for any job, every job terminal.

Since admission (issue 14) POST /jobs answers 202 ACCEPTED and the submitter calls the gateway: a
429 or 500 keeps the job waiting and the submitter sends it again; a submit answered only after the
submitter's deadline leaves its outcome unknown, the gateway has the job, and its callback completes
it (nothing is submitted again). A job whose submit message POST could not send is flagged and the
reconciler queues it; if the flag's write failed too, the reconciler queues it once it has waited
untouched for an hour, which the suite stands in for (below). One of the product's recovery
paths waits on a timer far longer than this run: a copier that could not write DELIVERED keeps its
900 s copy lease (its message's retry then finds the job "in hand" and is dropped); a copy lease
still held long after its copy stalled is expired by the suite (as the passage of 900 s would),
counted in the figures, and the product's reconciler must then finish the job. Likewise the
reconciler's own run lease, when a run could not give it back."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pixverse_jobs.admission import SUBMIT_CALL_SECONDS
from pixverse_jobs.events import JOB_DELIVERED
from pixverse_jobs.reconcile import ACCEPTED_RESEND_SECONDS, RETRY_GRACE_SECONDS, RUN_LEASE
from pixverse_jobs.store import (
    CHECK_AT,
    COPY_LEASE,
    COPY_RETRY_AT,
    ENQUEUE_PENDING,
    LEASE_HOLDER,
    LEASE_UNTIL,
    RUN_LEASE_PREFIX,
)
from pixverse_local.harness import TERMINAL, LocalClient, StackProcess
from reliability_support import (
    DeliveryCheck,
    Observer,
    PatientClient,
    ResultsBook,
    Scale,
    Submission,
    aws_call_log,
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

AWS_FAULT_RATES = {
    "dynamodb.PutItem": 0.05,
    "dynamodb.UpdateItem": 0.03,
    "sqs.SendMessage": 0.1,
    "sns.Publish": 0.05,
    "s3.PutObject": 0.03,
    "s3.UploadPart": 0.05,
}
FAULT_SEED = "20261125"
# Past the submitter's deadline for one submit: its outcome is unknown, and the simulator, which
# accepted the job at once, calls back.
SUBMIT_TIMEOUT_DELAY = SUBMIT_CALL_SECONDS + 10
MEDIA_BYTES = 64 * 1024
MULTIPART_BYTES = 9 * 1024 * 1024  # two parts: the copier's 8 MiB, then the rest
STALLED_COPY_SECONDS = 10.0  # a healthy copy here takes under 3 s, retries included
# An ACCEPTED job is sent within seconds here (its backoffs shrunk by LOCAL_TIME_SCALE), or waits in
# a submitter's batch behind a late submit (SUBMIT_CALL_SECONDS) and the pace: longer, it is forgotten.
FORGOTTEN_ACCEPTED_SECONDS = SUBMIT_CALL_SECONDS + 15
STALLED_RUN_LEASE_SECONDS = 15.0  # a reconciler run here takes a few seconds at most
MAX_RESUBMITS = 2
SETTLE_SECONDS = 2.0
# A fault kind must have been injected when this many were expected (calls x rate): P(none) < 0.3%.
CERTAIN_FAULTS = 6.0


@pytest.fixture(scope="module")
def fault_stack(stack_logs: Path, scale: Scale) -> Iterator[tuple[StackProcess, LocalClient, Path]]:
    call_log = stack_logs / "faults-aws-calls.jsonl"
    env = {
        "LOCAL_TIME_SCALE": "0.001",
        "RECONCILE_AFTER_SECONDS": str(scale.fault_reconcile_after),
        "LOCAL_RECONCILE_EVERY_SECONDS": str(scale.fault_reconcile_every),
        "LOCAL_AWS_FAULTS": ",".join(f"{name}={rate}" for name, rate in AWS_FAULT_RATES.items()),
        "LOCAL_AWS_FAULT_SEED": FAULT_SEED,
        "LOCAL_AWS_CALL_LOG": str(call_log),
    }
    with local_stack(stack_logs / "faults.log", env, {}) as (process, client):
        yield process, client, call_log


@dataclass
class FaultRun:
    submissions: list[Submission]
    jobs: dict[str, dict[str, Any]]
    records: dict[str, dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]
    check: DeliveryCheck
    settled: bool
    aws_calls: Counter[str]
    aws_faults: Counter[str]
    copier_update_faults: int
    leases_expired: list[str]  # one entry per expiry
    resubmitted: int
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def final_job_ids(self) -> list[str]:
        return [s.job_id for s in self.submissions if s.job_id]

    def undelivered(self) -> dict[str, str]:
        """What was lost, one entry per job (or submission without one): submissions that did not end
        with a verified delivery of their own, and requests the gateway accepted whose job was not
        delivered."""
        lost = {f"submission {s.index}": f"no job ({s.error})" for s in self.submissions if not s.job_id}
        lost.update({problem: problem for problem in mixed_up_submissions(self.submissions, self.jobs)})
        for problem in self.check.problems:
            lost.setdefault(problem.split(":", 1)[0], problem)
        for record in self.records.values():
            job_id = str(webhook_job_id(record))
            status = self.jobs.get(job_id, {}).get("status")
            if status != "DELIVERED":
                lost.setdefault(job_id, f"gateway request {record['request_id']} (job {job_id}) accepted, job {status}")
        return lost


def _directives(index: int, scale: Scale) -> str:
    size = MULTIPART_BYTES if index < scale.multipart_jobs else MEDIA_BYTES
    parts = [f"[sim:size={size}]"]
    if index % 2:
        parts.append("[sim:dup=2]")
    if index % 10 == 4:
        parts.append("[sim:cut=1]")
    if index % 15 == 7:
        parts += ["[sim:cut=1]", "[sim:no-ranges]"]
    return " ".join(parts)


@dataclass
class RunLeaseWatch:
    """The reconciler's run lease as the suite last saw it: who held it, since when (monotonic)."""

    holder: str | None = None
    since: float = 0.0
    expired: int = 0


def _expire_stalled_run_lease(client: LocalClient, watch: RunLeaseWatch) -> None:
    """Expire the reconciler's run lease when one holder has kept it far longer than a run lasts
    here (what the passage of time would do): a run whose give-back failed leaves it held for the
    run's whole deadline (about 300 s, a DynamoDB timestamp LOCAL_TIME_SCALE does not shrink), and
    every run until then exits at once. On AWS that skips one scheduled run; here, the rest of the
    suite's reconciling."""
    key = {"job_id": {"S": RUN_LEASE_PREFIX + RUN_LEASE}}
    item = client.dynamodb.get_item(TableName=client.ready["table"], Key=key, ConsistentRead=True).get("Item", {})
    holder = item.get(LEASE_HOLDER, {}).get("S")
    if holder != watch.holder:
        watch.holder, watch.since = holder, time.monotonic()
        return
    if holder is None or time.monotonic() - watch.since < STALLED_RUN_LEASE_SECONDS:
        return
    with contextlib.suppress(ClientError):  # given back or taken over meanwhile
        client.dynamodb.update_item(
            TableName=client.ready["table"],
            Key=key,
            UpdateExpression="SET #until = :past",
            ConditionExpression="#holder = :holder",
            ExpressionAttributeNames={"#holder": LEASE_HOLDER, "#until": LEASE_UNTIL},
            ExpressionAttributeValues={":holder": {"S": holder}, ":past": {"N": str(int(time.time()) - 1)}},
        )
        watch.expired += 1


def _age_forgotten_accepted_jobs(client: LocalClient, jobs: dict[str, dict[str, Any]], aged: list[str]) -> None:
    """Make an ACCEPTED job untouched for a while look untouched for an hour (what the passage of
    ACCEPTED_RESEND_SECONDS would do): the reconciler then queues it again. A job waits ACCEPTED
    that long only when POST could neither send its submit message nor flag it for the reconciler;
    one the submitter deals with is touched at each try."""
    now = datetime.now(UTC)
    for job_id, job in jobs.items():
        updated = datetime.fromisoformat(str(job["updated_at"]).replace("Z", "+00:00"))
        if job["status"] != "ACCEPTED" or (now - updated).total_seconds() < FORGOTTEN_ACCEPTED_SECONDS:
            continue
        key = {"job_id": {"S": job_id}}
        item = client.dynamodb.get_item(TableName=client.ready["table"], Key=key, ConsistentRead=True)["Item"]
        if ENQUEUE_PENDING in item:
            continue  # flagged: the reconciler's next run queues it, no hour to wait
        long_ago = (now - timedelta(seconds=ACCEPTED_RESEND_SECONDS + 1)).isoformat(timespec="milliseconds")
        with contextlib.suppress(ClientError):  # moved on meanwhile: nothing to do
            client.dynamodb.update_item(
                TableName=client.ready["table"],
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET updated_at = :long_ago",
                ConditionExpression="#status = :accepted AND updated_at = :seen",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":long_ago": {"S": long_ago.replace("+00:00", "Z")},
                    ":seen": {"S": str(job["updated_at"])},
                    ":accepted": {"S": "ACCEPTED"},
                },
            )
            aged.append(job_id)


def _expire_stalled_leases(client: LocalClient, jobs: dict[str, dict[str, Any]], expired: list[str]) -> None:
    """Expire the copy lease, or the pending retry, of a job whose copy stopped long ago (what the
    passage of time would do: a lease lasts 900 s and a retry waits up to 900 s, in DynamoDB
    timestamps that LOCAL_TIME_SCALE does not shrink), and make the reconciler's next look at it
    due (its check_at, set to when that lease or retry runs out, is such a timestamp too); a job
    may stall again on its next attempt, so this may happen to it more than once."""
    now = datetime.now(UTC)
    for job_id, job in jobs.items():
        if job["status"] != "COPYING":
            continue
        updated = datetime.fromisoformat(str(job["updated_at"]).replace("Z", "+00:00"))
        if (now - updated).total_seconds() < STALLED_COPY_SECONDS:
            continue
        key = {"job_id": {"S": job_id}}
        item = client.dynamodb.get_item(TableName=client.ready["table"], Key=key, ConsistentRead=True)["Item"]
        for attribute in (COPY_LEASE, COPY_RETRY_AT):
            held = item.get(attribute, {}).get("N")
            if held is None or int(held) <= time.time():
                continue
            client.dynamodb.update_item(
                TableName=client.ready["table"],
                Key=key,
                UpdateExpression="SET #held = :past, #check = :due",
                ConditionExpression="#held = :until AND #status = :copying",
                ExpressionAttributeNames={"#held": attribute, "#status": "status", "#check": CHECK_AT},
                ExpressionAttributeValues={
                    ":due": {"N": str(int(time.time()) - 1)},
                    # Past the reconciler's grace for a retry's message too.
                    ":past": {
                        "N": str(int(time.time()) - 1 - (RETRY_GRACE_SECONDS if attribute == COPY_RETRY_AT else 0))
                    },
                    ":until": {"N": held},
                    ":copying": {"S": "COPYING"},
                },
            )
            expired.append(job_id)


@pytest.fixture(scope="module")
def fault_run(
    fault_stack: tuple[StackProcess, LocalClient, Path], scale: Scale, results: ResultsBook
) -> Iterator[FaultRun]:
    _, client, call_log = fault_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-faults-{uuid.uuid4().hex[:8]}")
    observer = Observer(client, api)
    gateway_faults = {
        "submit_status=429": scale.submit_faults["429"],
        "submit_status=500": scale.submit_faults["500"],
        "submit_status=202": scale.submit_faults["timeout"],
        "media_get_status=503": scale.media_faults,
    }
    try:
        observer.add_gateway_fault(
            {"submit_status": 429, "count": gateway_faults["submit_status=429"], "retry_after": 1}
        )
        observer.add_gateway_fault({"submit_status": 500, "count": gateway_faults["submit_status=500"]})
        observer.add_gateway_fault(
            {"submit_status": 202, "count": gateway_faults["submit_status=202"], "delay_seconds": SUBMIT_TIMEOUT_DELAY}
        )
        observer.add_gateway_fault({"media_get_status": 503, "count": scale.media_faults, "retry_after": 1})
        submissions = [
            Submission(i, job_body(i, "reliability faults", _directives(i, scale))) for i in range(scale.fault_jobs)
        ]
        started = time.monotonic()
        api.submit_all(submissions, workers=16)
        submitted_in = time.monotonic() - started

        expired: list[str] = []
        aged: list[str] = []
        run_lease = RunLeaseWatch()
        resubmits: Counter[int] = Counter()

        def settled() -> bool:
            jobs = api.jobs()
            _expire_stalled_leases(client, jobs, expired)
            _age_forgotten_accepted_jobs(client, jobs, aged)
            _expire_stalled_run_lease(client, run_lease)
            # A job the client holds that ended SUBMIT_FAILED: submit it again, under a new key.
            again = [
                s
                for s in submissions
                if s.job_id
                and jobs.get(s.job_id, {}).get("status") == "SUBMIT_FAILED"
                and resubmits[s.index] < MAX_RESUBMITS
            ]
            for submission in again:
                resubmits[submission.index] += 1
            if again:
                api.submit_all(again, workers=8)
            return not again and observer.announced([s.job_id for s in submissions if s.job_id])

        wait = SUBMIT_TIMEOUT_DELAY + scale.fault_reconcile_after + 8 * scale.fault_reconcile_every + 30
        is_settled = observer.wait_until(settled, timeout=wait, interval=1.0)
        time.sleep(SETTLE_SECONDS)
        wall = time.monotonic() - started

        jobs = api.jobs()
        records = observer.gateway_records()
        events = observer.events_by_job(wait=1.0)
        final_ids = [s.job_id for s in submissions if s.job_id]
        check = verify_deliveries(client, jobs, records, final_ids)
        calls, faults = aws_call_log(call_log)
        copier_update_faults = sum(
            1
            for line in call_log.read_text().splitlines()
            if '"fault": true' in line and "MediaCopyFunction" in line and "UpdateItem" in line
        )
        run = FaultRun(
            submissions,
            jobs,
            records,
            events,
            check,
            is_settled,
            calls,
            faults,
            copier_update_faults,
            expired,
            sum(resubmits.values()),
        )
        counts = event_counts(events, final_ids)
        extra_callbacks, callback_posts = duplicate_callbacks(records.values())
        refused_callbacks = sum(
            1
            for record in records.values()
            for attempt in record["callbacks"]
            if not (attempt["status_code"] and 200 <= attempt["status_code"] < 300)
        )
        cut = sum(
            min(int(r["directives"]["cut"]), sum(1 for m in r["media_requests"] if "fault" not in m))
            for r in records.values()
        )
        injected_gateway = observer.gateway_faults_injected(gateway_faults)
        injected_gateway["cut_downloads"] = cut
        run.figures = {
            "jobs": len(submissions),
            "jobs_created": len(jobs),
            "resubmitted_after_submit_failed": run.resubmitted,
            "submit_answers": dict(sorted(api.answers.items())),
            "delivered": check.delivered,
            "objects_sha256_verified": check.objects_verified,
            "multipart_jobs": scale.multipart_jobs,
            "jobs_lost": len(run.undelivered()),
            "duplicate_events": sum(max(0, n - 1) for n in counts["distinct"].values()),
            "republished_same_event_id": sum(counts["messages"][j] - counts["distinct"][j] for j in final_ids),
            "copier_update_item_faults": copier_update_faults,
            "duplicate_callbacks": extra_callbacks,
            "callback_posts": callback_posts,
            "callbacks_answered_non_2xx": refused_callbacks,
            "aws_faults_injected": dict(sorted(faults.items())),
            "aws_calls": {name: calls[name] for name in sorted(AWS_FAULT_RATES)},
            "gateway_faults_injected": injected_gateway,
            "copy_leases_expired_by_suite": len(expired),
            "forgotten_accepted_jobs_aged_by_suite": len(aged),
            "reconciler_run_leases_expired_by_suite": run_lease.expired,
            "jobs_whose_copy_lease_was_expired": len(set(expired)),
            "submit_failed_jobs": sum(1 for j in jobs.values() if j["status"] == "SUBMIT_FAILED"),
            "gateway_submits_received": observer.gateway_stats()["submits_received"],
            "gateway_submits_accepted": len(records),
            "jobs_accepted_twice_by_gateway": len(jobs_accepted_twice(records.values())),
            "dlq_messages": observer.queue_depth(client.ready["dlq"]),
            "non_terminal_jobs": sum(1 for j in jobs.values() if j["status"] not in TERMINAL),
            "submit_seconds": round(submitted_in, 1),
            "wall_seconds": round(wall, 1),
            "settled_in_time": is_settled,
        }
        results.record("faults", run.figures)
        yield run
    finally:
        observer.close()
        api.close()


def test_no_job_is_lost(fault_run: FaultRun) -> None:
    lost = list(fault_run.undelivered().values())

    assert not lost, (
        f"jobs lost: {len(lost)} of {fault_run.figures['jobs']} submissions "
        f"(settled in time: {fault_run.settled}); {shorten(lost)}"
    )


def test_no_job_has_a_second_event(fault_run: FaultRun) -> None:
    """One event per job, deduplicated by its id as the SPEC tells consumers to; a publish retried
    after its outbox flag failed to be written re-sends the same event (counted, not a duplicate)."""
    counts = event_counts(fault_run.events, fault_run.final_job_ids)

    wrong = [
        f"{job_id}: {counts['distinct'][job_id]} distinct events, types {counts['types'][job_id]}"
        for job_id in fault_run.final_job_ids
        if counts["distinct"][job_id] != 1 or counts["types"][job_id] != [JOB_DELIVERED]
    ]

    assert not wrong, f"duplicate events: {fault_run.figures['duplicate_events']}; {shorten(wrong)}"


def test_no_job_was_accepted_twice_by_the_gateway(fault_run: FaultRun) -> None:
    """The submitter claims a job before it calls the gateway, and never re-sends one whose submit
    may have been accepted (its answer late, or a write after it failed): under every fault here,
    each job was accepted (so billed) once."""
    twice = jobs_accepted_twice(fault_run.records.values())

    assert not twice, f"jobs the gateway accepted more than once: {twice}"
    sent = sum(1 for job in fault_run.jobs.values() if job["status"] != "SUBMIT_FAILED")
    assert fault_run.figures["gateway_submits_accepted"] == sent, fault_run.figures


def test_every_job_ends_in_a_terminal_state(fault_run: FaultRun) -> None:
    open_jobs = [f"{j['job_id']}: {j['status']}" for j in fault_run.jobs.values() if j["status"] not in TERMINAL]

    assert not open_jobs, f"{len(open_jobs)} of {len(fault_run.jobs)} jobs not terminal: {shorten(open_jobs)}"


def test_faults_of_every_kind_were_injected(fault_run: FaultRun, scale: Scale) -> None:
    gateway = fault_run.figures["gateway_faults_injected"]
    expected_gateway = {
        "submit_status=429": scale.submit_faults["429"],
        "submit_status=500": scale.submit_faults["500"],
        "submit_status=202": scale.submit_faults["timeout"],
        "media_get_status=503": scale.media_faults,
    }
    cut_jobs = sum(1 for i in range(scale.fault_jobs) if "[sim:cut=1]" in _directives(i, scale))
    unexercised = [name for name in AWS_FAULT_RATES if fault_run.aws_calls[name] == 0]
    should_have = [
        f"{name} ({fault_run.aws_calls[name]} calls)"
        for name, rate in AWS_FAULT_RATES.items()
        if fault_run.aws_calls[name] * rate >= CERTAIN_FAULTS and fault_run.aws_faults[name] == 0
    ]

    assert {k: gateway[k] for k in expected_gateway} == expected_gateway, gateway
    assert gateway["cut_downloads"] >= cut_jobs, gateway
    assert not unexercised, f"AWS operations never called, so never faulted: {unexercised}"
    assert sum(fault_run.aws_faults.values()) > 0, fault_run.figures["aws_faults_injected"]
    assert not should_have, f"no fault injected where several were certain: {should_have}"


@pytest.fixture(scope="module")
def part_failure_stack(stack_logs: Path) -> Iterator[tuple[LocalClient, Path]]:
    """A stack whose first S3 UploadPart fails and the next seven succeed (seed 92, rate 0.5): one
    multipart copy loses a part on its first attempt, whatever the order its two parts go in."""
    call_log = stack_logs / "part-failure-aws-calls.jsonl"
    env = {
        "LOCAL_TIME_SCALE": "0.001",
        "LOCAL_RECONCILE_EVERY_SECONDS": "10",
        "LOCAL_AWS_FAULTS": "s3.UploadPart=0.5",
        "LOCAL_AWS_FAULT_SEED": "92",
        "LOCAL_AWS_CALL_LOG": str(call_log),
    }
    with local_stack(stack_logs / "part-failure.log", env) as (_, client):
        yield client, call_log


def test_a_failed_s3_part_is_uploaded_again_and_the_job_delivered_once(
    part_failure_stack: tuple[LocalClient, Path], results: ResultsBook
) -> None:
    client, call_log = part_failure_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-part-{uuid.uuid4().hex[:8]}")
    observer = Observer(client, api)
    try:
        submission = api.submit(Submission(0, job_body(0, "reliability part", f"[sim:size={MULTIPART_BYTES}]")))
        assert submission.job_id, f"not accepted: {submission.answers} {submission.error}"
        settled = observer.wait_until(lambda: observer.announced([str(submission.job_id)]), timeout=40)
        time.sleep(1.0)
        jobs = api.jobs()
        records = observer.gateway_records()
        events = observer.events_by_job(wait=1.0).get(str(submission.job_id), [])
        check = verify_deliveries(client, jobs, records, [str(submission.job_id)])
        calls, faults = aws_call_log(call_log)
        results.record(
            "s3_part_failure",
            {
                "jobs": 1,
                "aws_faults_injected": dict(faults),
                "upload_part_calls": calls["s3.UploadPart"],
                "jobs_lost": 0 if check.delivered == 1 and not check.problems else 1,
                "duplicate_events": max(0, len(events) - 1),
            },
        )

        assert faults["s3.UploadPart"] == 1, f"the scenario needs exactly one failed part: {dict(faults)}"
        assert calls["s3.UploadPart"] >= 4, f"the copy was not retried in full: {dict(calls)}"
        assert settled and check.delivered == 1 and not check.problems, f"settled {settled}; {check.problems}"
        assert [e["type"] for e in events] == [JOB_DELIVERED], f"events: {[e['type'] for e in events]}"
    finally:
        observer.close()
        api.close()


@pytest.fixture(scope="module")
def request_id_write_stack(stack_logs: Path) -> Iterator[tuple[LocalClient, Path]]:
    """A stack whose submitter's second DynamoDB UpdateItem fails and the ten after it succeed (seed
    54, rate 0.2, the submitter's calls only): for one job, its claim (ACCEPTED -> SUBMITTING)
    succeeds and the write of the request_id the gateway answered fails."""
    call_log = stack_logs / "request-id-write-aws-calls.jsonl"
    env = {
        "LOCAL_TIME_SCALE": "0.001",
        "RECONCILE_AFTER_SECONDS": "2",
        "LOCAL_RECONCILE_EVERY_SECONDS": "1",
        "LOCAL_AWS_FAULTS": "SubmitterFunction:dynamodb.UpdateItem=0.2",
        "LOCAL_AWS_FAULT_SEED": "54",
        "LOCAL_AWS_CALL_LOG": str(call_log),
    }
    with local_stack(stack_logs / "request-id-write.log", env) as (_, client):
        yield client, call_log


def _function_updates(call_log: Path, function: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in call_log.read_text().splitlines()
        if '"UpdateItem"' in line and f'"{function}"' in line
    ]


def test_request_id_survives_a_failed_write_after_the_gateway_accepted(
    request_id_write_stack: tuple[LocalClient, Path],
) -> None:
    client, call_log = request_id_write_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-rid-{uuid.uuid4().hex[:8]}", max_attempts=1)
    try:
        # Given: a job whose callback never comes, and the submitter's write of its request_id fails once.
        submission = Submission(0, job_body(0, "reliability request-id", "[sim:no-callback] [sim:size=1024]"))
        # When: it is submitted (admitted at once), then sent by the submitter, whose write of the
        # request_id fails once and is retried.
        api.submit(submission)
        assert submission.answers == [202], f"admission answers at once: {submission.answers}"
        assert submission.job_id
        job_id = submission.job_id
        deadline = time.monotonic() + 10
        job = api.job(job_id)
        while job["request_id"] is None and job["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.25)
            job = api.job(job_id)
        assert client.gateway is not None
        accepted = [r for r in client.gateway.get("/_sim/requests").json() if webhook_job_id(r) == job_id]
        updates = _function_updates(call_log, "SubmitterFunction")
        if len(updates) < 3 or updates[0].get("fault") or not updates[1].get("fault"):
            raise RuntimeError(f"setup: the fault did not hit the request_id write after the claim: {updates}")

        # Then: the gateway accepted it once, so its request_id is known and the job moves on.
        assert len(accepted) == 1, f"the gateway should have accepted exactly one request: {accepted}"
        assert job["request_id"] == accepted[0]["request_id"], (
            f"job {job_id} is {job['status']} with request_id {job['request_id']}; the gateway accepted "
            f"{accepted[0]['request_id']} for it, which is now lost"
        )
        assert job["submit_attempts"] == 1, job
    finally:
        api.close()


@pytest.fixture(scope="module")
def delivered_write_stack(stack_logs: Path) -> Iterator[tuple[LocalClient, Path]]:
    """A stack whose copier's second DynamoDB UpdateItem fails and the ten after it succeed (seed 54,
    rate 0.2, the copier's calls only). For one job these are the copier's claim, then its DELIVERED
    write, which fails after the object is in S3."""
    call_log = stack_logs / "delivered-write-aws-calls.jsonl"
    env = {
        "LOCAL_TIME_SCALE": "0.001",
        "LOCAL_RECONCILE_EVERY_SECONDS": "10",
        "LOCAL_AWS_FAULTS": "MediaCopyFunction:dynamodb.UpdateItem=0.2",
        "LOCAL_AWS_FAULT_SEED": "54",
        "LOCAL_AWS_CALL_LOG": str(call_log),
    }
    with local_stack(stack_logs / "delivered-write.log", env) as (_, client):
        yield client, call_log


def test_a_failed_delivered_write_is_retried_at_once(delivered_write_stack: tuple[LocalClient, Path]) -> None:
    client, call_log = delivered_write_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-lease-{uuid.uuid4().hex[:8]}")
    try:
        # Given: one job; the copier's DELIVERED write fails once.
        submission = api.submit(Submission(0, job_body(0, "reliability lease", "[sim:size=1024]")))
        assert submission.job_id, f"not accepted: {submission.answers} {submission.error}"
        # Admission: the job is sent by the submitter after the 202; the copy starts at its callback.
        deadline = time.monotonic() + 10
        job = api.job(submission.job_id)
        while job["status"] not in ("COMPLETED", "COPYING", *TERMINAL) and time.monotonic() < deadline:
            time.sleep(0.1)
            job = api.job(submission.job_id)
        deadline = time.monotonic() + 4
        while job["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.25)
            job = api.job(submission.job_id)
        updates = _function_updates(call_log, "MediaCopyFunction")
        if len(updates) < 2 or not updates[1].get("fault") or any(u.get("fault") for u in updates[2:]):
            raise RuntimeError(f"setup: the fault did not hit the DELIVERED write alone: {updates}")

        # Then: the message's retry delivers it within seconds, not after the lease.
        assert job["status"] == "DELIVERED", (
            f"job {submission.job_id} is {job['status']} 4 s after its DELIVERED write failed once"
        )
    finally:
        api.close()


@pytest.fixture(scope="module")
def unsent_message_stack(stack_logs: Path) -> Iterator[LocalClient]:
    """A stack whose submit function can never send to the submit queue (its SendMessage always
    fails), with a reconciler that looks at jobs after 2 s, every second."""
    env = {
        "LOCAL_TIME_SCALE": "0.001",
        "RECONCILE_AFTER_SECONDS": "2",
        "LOCAL_RECONCILE_EVERY_SECONDS": "1",
        "LOCAL_AWS_FAULTS": "SubmitFunction:sqs.SendMessage=1",
    }
    with local_stack(stack_logs / "unsent-message.log", env) as (_, client):
        yield client


UNSENT_WAIT_SECONDS = 12.0


def test_a_job_whose_submit_message_was_not_sent_is_delivered(unsent_message_stack: LocalClient) -> None:
    client = unsent_message_stack
    api = PatientClient(client.ready["api"], caller=f"reliability-unsent-{uuid.uuid4().hex[:8]}", max_attempts=1)
    observer = Observer(client, api)
    try:
        # Given: two jobs admitted while the submit queue could not be reached
        submissions = [Submission(i, job_body(i, "reliability unsent", "[sim:size=1024]")) for i in range(2)]
        api.submit_all(submissions, workers=2)
        assert [s.answers for s in submissions] == [[202], [202]], "the jobs are recorded, so admitted"
        job_ids = [str(s.job_id) for s in submissions]

        # When: the reconciler runs (every second) past the jobs' age of 2 s
        settled = observer.wait_until(lambda: observer.announced(job_ids), timeout=UNSENT_WAIT_SECONDS, interval=0.5)

        # Then: it queued them, and they were delivered
        jobs = api.jobs()
        assert settled, f"not delivered: {[(j, jobs[j]['status']) for j in job_ids]}"
        assert {jobs[j]["status"] for j in job_ids} == {"DELIVERED"}
    finally:
        observer.close()
        api.close()

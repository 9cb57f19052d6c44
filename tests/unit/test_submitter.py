"""The submitter (``pixverse_jobs.admission``) against moto: claim before submit, what each gateway
answer does to the job, the adaptive pace, the in-flight cap, and the maximum wait."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs import admission
from pixverse_jobs.admission import AdaptivePace, Outcome, Submitter
from pixverse_jobs.config import SubmitterSettings
from pixverse_jobs.gateway import GatewayClient, RetryPolicy
from pixverse_jobs.jobs import JobService, parse_submit_request
from pixverse_jobs.queue import CopyQueue, SubmitMessage, SubmitQueue, caller_group
from pixverse_jobs.store import JobStore

OWNER = "arn:aws:iam::123456789012:role/backend"
REQUEST = parse_submit_request({"model": "pixverse-v6-text-to-video", "input": {"prompt": "a fox"}})


class Gateway:
    """A gateway stand-in: answers from ``answers`` in turn (the last one again), counts calls;
    ``hold`` keeps each call waiting until released (to overlap two submitters)."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.calls: list[httpx.Request] = []
        self.hold: threading.Event | None = None
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.calls.append(request)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if self.hold is not None:
            self.hold.wait(5)
        return answer


class Aws:
    def __init__(self) -> None:
        ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.store = JobStore(create_jobs_table(ddb), ddb)
        self.submit_url = self.sqs.create_queue(QueueName="submit")["QueueUrl"]
        self.copy_url = self.sqs.create_queue(QueueName="copy")["QueueUrl"]
        self.queue = SubmitQueue(self.submit_url, self.sqs)
        self.service = JobService(self.store, self.queue)

    def submitter(self, gateway: Gateway, **settings: Any) -> Submitter:
        return Submitter(
            self.store,
            GatewayClient(
                "https://gateway.pixazo.ai",
                lambda: "key",
                httpx.Client(transport=httpx.MockTransport(gateway)),
                retry=RetryPolicy(attempts=1),
            ),
            lambda: "s" * 64,
            self.queue,
            CopyQueue(self.copy_url, self.sqs),
            SubmitterSettings(submit_queue_url=self.submit_url, max_age_seconds=3600, **settings),
            sleep=lambda _: None,
        )

    def admit(self, owner: str = OWNER) -> str:
        return str(self.service.submit(REQUEST, owner=owner, webhook_base_url="https://api.example.com")["job_id"])

    def messages(self, url: str) -> list[dict[str, Any]]:
        """Every message on the queue, delayed ones included (received, then deleted)."""
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "0"})
        found: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageSystemAttributeNames=["All"]
        ).get("Messages", []):
            for m in batch:
                found.append({"body": json.loads(m["Body"]), "attributes": m.get("Attributes", {})})
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return found

    def delayed(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.submit_url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesDelayed"])


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        yield Aws()


def accepted(request_id: str = "pixverse-v6-text-to-video_1") -> httpx.Response:
    return httpx.Response(202, json={"request_id": request_id, "status": "QUEUED"})


# ------------------------------------------------------------------ admission
def test_post_records_the_job_accepted_and_queues_it_in_the_callers_group(aws: Aws) -> None:
    job_id = aws.admit()

    job = aws.store.get(job_id)
    assert job is not None and job["status"] == "ACCEPTED"
    [message] = aws.messages(aws.submit_url)
    assert message["body"] == {"v": 1, "job_id": job_id, "owner": OWNER, "deferrals": 0}
    # The fair queue's group: a hash of the caller, the same for each of its jobs, another for another
    assert message["attributes"]["MessageGroupId"] == caller_group(OWNER)
    assert caller_group(OWNER) != caller_group("arn:aws:iam::123456789012:role/other")


def test_a_job_whose_message_could_not_be_sent_is_still_answered_and_flagged_for_the_reconciler(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: Any, **__: Any) -> None:
        raise RuntimeError("SQS unavailable")

    monkeypatch.setattr(aws.queue, "enqueue", down)

    job = aws.service.submit(REQUEST, owner=OWNER, webhook_base_url="https://api.example.com")

    stored = aws.store.get(str(job["job_id"]))
    assert stored is not None and stored["status"] == "ACCEPTED"
    assert "enqueue_pending" in stored


# ------------------------------------------------------------------ claim before submit
def test_two_messages_for_one_job_submit_it_once(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given one job whose message came twice (SQS delivers at least once), handled at the same time
    # by two containers that both read it ACCEPTED, while the gateway holds the first call open
    job_id = aws.admit()
    gateway = Gateway(accepted())
    gateway.hold = threading.Event()
    first, second = aws.submitter(gateway), aws.submitter(gateway)
    both_read = threading.Barrier(2, timeout=5)
    real_get = aws.store.get

    def get_then_wait(job_id: str) -> Any:
        job = real_get(job_id)
        if job is not None and job["status"] == "ACCEPTED":
            both_read.wait()
        return job

    monkeypatch.setattr(aws.store, "get", get_then_wait)
    # DynamoDB applies the writes to one item one at a time, condition and all; moto in-process
    # does not (two threads can both pass a condition before either writes), so serialize them.
    one_at_a_time = threading.Lock()
    real_update = aws.store._client.update_item

    def update_item(**kwargs: Any) -> Any:
        with one_at_a_time:
            return real_update(**kwargs)

    monkeypatch.setattr(aws.store._client, "update_item", update_item)
    outcomes: list[Outcome] = []

    def handle(submitter: Submitter) -> None:
        outcomes.append(submitter.handle(SubmitMessage(job_id, OWNER, 0)))

    threads = [threading.Thread(target=handle, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    threads[0].join(0.5)
    gateway.hold.set()
    for t in threads:
        t.join(10)

    # Then the gateway was called once: the claim (a conditional write) let only one through
    assert len(gateway.calls) == 1
    assert sorted(outcomes) == sorted([Outcome.SUBMITTED, Outcome.SKIPPED])
    job = aws.store.get(job_id)
    assert job is not None and (job["status"], job["submit_attempts"]) == ("QUEUED", 1)


def test_a_message_for_a_job_already_sent_sends_nothing(aws: Aws) -> None:
    job_id = aws.admit()
    gateway = Gateway(accepted())
    submitter = aws.submitter(gateway)

    assert submitter.handle(SubmitMessage(job_id, OWNER, 0)) is Outcome.SUBMITTED
    assert submitter.handle(SubmitMessage(job_id, OWNER, 0)) is Outcome.SKIPPED
    assert submitter.handle(SubmitMessage("job_" + "0" * 32, OWNER, 0)) is Outcome.SKIPPED
    assert len(gateway.calls) == 1


# ------------------------------------------------------------------ what the gateway said
def test_429_with_retry_after_puts_the_job_back_for_that_long_and_halves_the_pace(aws: Aws) -> None:
    job_id = aws.admit()
    aws.messages(aws.submit_url)
    gateway = Gateway(httpx.Response(429, headers={"Retry-After": "42"}, json={"error": "Too Many Requests"}))
    submitter = aws.submitter(gateway, initial_rate=8.0)

    outcome = submitter.handle(SubmitMessage(job_id, OWNER, 0))

    assert outcome is Outcome.DEFERRED
    job = aws.store.get(job_id)
    assert job is not None
    assert (job["status"], job["submit_attempts"], job["last_submit_error"]["code"]) == ("ACCEPTED", 1, "rate_limited")
    assert submitter.pace.rate == pytest.approx(8.0 * AdaptivePace.DECREASE)
    assert submitter.pace.wait() > 40
    assert submitter.backoff(1, 42.0) == 42
    assert aws.delayed() == 1


def test_a_job_waiting_after_not_now_is_sent_again_and_counts_its_attempts(aws: Aws) -> None:
    job_id = aws.admit()
    gateway = Gateway(httpx.Response(503, json={"error": "busy"}), httpx.Response(402, json={}), accepted())
    submitter = aws.submitter(gateway)

    outcomes = [submitter.handle(SubmitMessage(job_id, OWNER, 0)) for _ in range(3)]

    assert outcomes == [Outcome.DEFERRED, Outcome.DEFERRED, Outcome.SUBMITTED]
    job = aws.store.get(job_id)
    assert job is not None
    assert (job["status"], job["submit_attempts"], job["request_id"]) == ("QUEUED", 3, "pixverse-v6-text-to-video_1")
    assert job["last_submit_error"]["code"] == "insufficient_balance"


def test_model_not_found_ends_the_job_with_its_failed_event(aws: Aws) -> None:
    job_id = aws.admit()
    gateway = Gateway(httpx.Response(400, json={"error": "Model not found", "message": "disabled"}))

    assert aws.submitter(gateway).handle(SubmitMessage(job_id, OWNER, 0)) is Outcome.REFUSED

    job = aws.store.get(job_id)
    assert job is not None and (job["status"], job["error"]["code"]) == ("SUBMIT_FAILED", "model_not_found")
    assert [m["body"] for m in aws.messages(aws.copy_url)] == [{"job_id": job_id}]


def test_a_callback_for_a_job_waiting_after_a_5xx_takes_it_and_stops_its_resubmit(aws: Aws) -> None:
    # Given a job the gateway answered 503 (not now), though it had in fact accepted it
    from pixverse_jobs.callbacks import CallbackProcessor, parse_callback

    job_id = aws.admit()
    gateway = Gateway(httpx.Response(503, json={}), accepted("pixverse-v6-text-to-video_2"))
    submitter = aws.submitter(gateway)
    assert submitter.handle(SubmitMessage(job_id, OWNER, 0)) is Outcome.DEFERRED

    # When its signed callback arrives
    processor = CallbackProcessor(aws.store, CopyQueue(aws.copy_url, aws.sqs))
    body = {"request_id": "pixverse-v6-text-to-video_1", "status": "PROCESSING", "output": None}
    outcome = processor.process(job_id, parse_callback(json.dumps(body)))

    # Then the job takes it, and its next turn sends nothing
    assert outcome.applied
    assert submitter.handle(SubmitMessage(job_id, OWNER, 0)) is Outcome.SKIPPED
    assert len(gateway.calls) == 1


def test_a_job_that_waited_past_the_maximum_age_ends_not_submitted(aws: Aws) -> None:
    job_id = aws.admit()
    aws.store.annotate(job_id, attributes={"created_at": "2020-01-01T00:00:00.000Z"})
    gateway = Gateway(accepted())

    assert aws.submitter(gateway).handle(SubmitMessage(job_id, OWNER, 0)) is Outcome.EXPIRED

    job = aws.store.get(job_id)
    assert job is not None and (job["status"], job["error"]["code"]) == ("SUBMIT_FAILED", "not_submitted")
    assert gateway.calls == []
    assert [m["body"] for m in aws.messages(aws.copy_url)] == [{"job_id": job_id}]


# ------------------------------------------------------------------ pace and cap
def test_pace_grows_with_acceptances_falls_at_a_429_and_keeps_its_bounds() -> None:
    now = {"t": 0.0}
    pace = AdaptivePace(2.0, 20.0, clock=lambda: now["t"])
    pace.take()
    assert pace.wait() == pytest.approx(0.5)
    # slow start: a quarter more per acceptance
    pace.accepted()
    assert pace.rate == pytest.approx(2.5)
    # a 429 cuts the rate and pauses for the new interval
    pace.busy(None)
    assert pace.rate == pytest.approx(2.5 * 0.7)
    assert pace.wait() == pytest.approx(1 / (2.5 * 0.7))
    # then additive increase, up to the maximum
    pace.accepted()
    assert pace.rate == pytest.approx(2.5 * 0.7 + 0.25)
    for _ in range(200):
        pace.accepted()
    assert pace.rate == 20.0
    for _ in range(100):
        pace.busy(None)
    assert pace.rate == AdaptivePace.MIN_RATE


def test_a_job_the_pace_holds_too_long_is_queued_again_without_a_claim(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = aws.admit()
    aws.messages(aws.submit_url)
    gateway = Gateway(accepted())
    submitter = aws.submitter(gateway)
    submitter.pace.busy(60.0)
    sent: list[dict[str, Any]] = []
    real_enqueue = aws.queue.enqueue
    monkeypatch.setattr(aws.queue, "enqueue", lambda *a, **kw: sent.append(kw) or real_enqueue(*a, **kw))

    assert submitter.handle(SubmitMessage(job_id, OWNER, 2)) is Outcome.PACED

    job = aws.store.get(job_id)
    assert job is not None and job["status"] == "ACCEPTED" and "submit_attempts" not in job
    assert gateway.calls == []
    [again] = sent
    assert again["deferrals"] == 3 and 60 <= again["delay_seconds"] <= 61
    assert aws.delayed() == 1


def test_in_flight_cap_holds_jobs_back_and_a_slot_whose_job_left_the_gateway_is_taken_over(aws: Aws) -> None:
    # Given a cap of 2 jobs at the gateway
    jobs = [aws.admit() for _ in range(3)]
    gateway = Gateway(accepted("r1"), accepted("r2"), accepted("r3"))
    submitter = aws.submitter(gateway, max_in_flight=2)

    # When three jobs come, the third waits
    outcomes = [submitter.handle(SubmitMessage(job_id, OWNER, 0)) for job_id in jobs]
    assert outcomes == [Outcome.SUBMITTED, Outcome.SUBMITTED, Outcome.PACED]
    assert len(gateway.calls) == 2

    # and once one of the first two has left the gateway (completed), its slot is taken over
    aws.store.advance(jobs[0], "COMPLETED")  # type: ignore[arg-type]
    assert submitter.handle(SubmitMessage(jobs[2], OWNER, 1)) is Outcome.SUBMITTED
    assert len(gateway.calls) == 3


def test_not_now_backoff_doubles_with_jitter_within_its_cap(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    submitter = aws.submitter(Gateway(accepted()), retry_base_seconds=5, retry_max_seconds=300)
    monkeypatch.setattr(admission.random, "uniform", lambda low, high: high)

    assert [submitter.backoff(n, None) for n in (1, 2, 3, 8, 30)] == [5, 10, 20, 300, 300]
    monkeypatch.setattr(admission.random, "uniform", lambda low, high: low)
    assert submitter.backoff(3, None) == 10
    assert submitter.backoff(1, 5000.0) == 900  # SQS delays a message at most 15 minutes


# ------------------------------------------------------------------ per-caller cap
def test_per_caller_cap_answers_quota_exceeded_and_an_announced_end_frees_a_place(aws: Aws) -> None:
    from pixverse_jobs.errors import QuotaExceeded
    from pixverse_jobs.store import QUOTA_KEY

    # Given a stack that allows 3 unfinished jobs per caller
    capped = JobService(aws.store, aws.queue, max_jobs_per_caller=3)
    jobs = [capped.submit(REQUEST, owner=OWNER, webhook_base_url="https://a") for _ in range(3)]

    # When the caller submits a fourth, it is refused, naming the cap, and nothing is written
    with pytest.raises(QuotaExceeded, match="3 unfinished jobs"):
        capped.submit(REQUEST, owner=OWNER, webhook_base_url="https://a")
    assert len(aws.messages(aws.submit_url)) == 3
    # while another caller is not held back by it
    capped.submit(REQUEST, owner="arn:aws:iam::123456789012:role/other", webhook_base_url="https://a")

    # When one of the first jobs ends and its event is announced, its place is free again, once
    first = aws.store.get(str(jobs[0]["job_id"]))
    assert first is not None
    assert aws.store.mark_event_published(first["job_id"], "evt-1", quota=first[QUOTA_KEY])
    assert not aws.store.mark_event_published(first["job_id"], "evt-1", quota=first[QUOTA_KEY])
    capped.submit(REQUEST, owner=OWNER, webhook_base_url="https://a")
    with pytest.raises(QuotaExceeded):
        capped.submit(REQUEST, owner=OWNER, webhook_base_url="https://a")


# ------------------------------------------------------------------ the reconciler's part
def _reconciler(aws: Aws) -> Any:
    from pixverse_jobs.config import ReconcileSettings
    from pixverse_jobs.reconcile import Reconciler

    settings = ReconcileSettings(after_seconds=60, max_age_seconds=3600, concurrency=1)
    return Reconciler(
        aws.store,
        None,
        None,
        CopyQueue(aws.copy_url, aws.sqs),
        settings,
        submit_queue=aws.queue,  # type: ignore[arg-type]
    )


def test_reconciler_queues_a_job_post_could_not_queue_and_leaves_a_waiting_one_alone(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from pixverse_jobs.reconcile import Action

    waiting = aws.admit()
    monkeypatch.setattr(aws.queue, "enqueue", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("SQS down")))
    lost = aws.admit()
    monkeypatch.undo()
    aws.messages(aws.submit_url)
    reconciler = _reconciler(aws)
    now = datetime.now(UTC)

    actions = {job_id: reconciler.reconcile(aws.store.get(job_id), now) for job_id in (waiting, lost)}

    assert actions == {waiting: Action.SKIPPED, lost: Action.RESUBMIT_QUEUED}
    assert [m["body"]["job_id"] for m in aws.messages(aws.submit_url)] == [lost]
    job = aws.store.get(lost)
    assert job is not None and "enqueue_pending" not in job and job["status"] == "ACCEPTED"


def test_reconciler_ends_a_job_that_waited_past_the_maximum_age_with_its_failed_event(aws: Aws) -> None:
    from datetime import UTC, datetime, timedelta

    from pixverse_jobs.reconcile import Action

    job_id = aws.admit()
    later = datetime.now(UTC) + timedelta(hours=2)

    assert _reconciler(aws).reconcile(aws.store.get(job_id), later) is Action.NOT_SUBMITTED

    job = aws.store.get(job_id)
    assert job is not None and (job["status"], job["error"]["code"]) == ("SUBMIT_FAILED", "not_submitted")
    assert [m["body"] for m in aws.messages(aws.copy_url)] == [{"job_id": job_id}]


def test_an_accepted_job_is_looked_at_again_after_reconcile_after_seconds_not_an_hour(aws: Aws) -> None:
    # Once sent, a job keeps the check_at its ACCEPTED look set: an hour away, a job whose callback
    # was lost would wait that long for its first poll.
    from datetime import UTC, datetime

    from pixverse_jobs.store import CHECK_AT

    job_id = aws.admit()
    now = datetime.now(UTC)
    aws.store.annotate(job_id, attributes={CHECK_AT: int(now.timestamp()) - 1})  # due now

    _reconciler(aws).reconcile(aws.store.get(job_id), now)

    job = aws.store.get(job_id)
    assert job is not None and job[CHECK_AT] <= int(now.timestamp()) + 60 + 1

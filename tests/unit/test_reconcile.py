"""The reconciler against moto: which jobs it reads (the sparse index), what it does with each,
and that it shares the callbacks' state machine so a late callback and a poll cannot both act."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import boto3
import httpx
import pytest
from lambda_support import create_jobs_table, load_function
from moto import mock_aws
from pixverse_jobs import observability, reconcile
from pixverse_jobs import store as store_module
from pixverse_jobs.callbacks import CallbackProcessor, parse_callback
from pixverse_jobs.clock import epoch_seconds
from pixverse_jobs.config import ReconcileSettings
from pixverse_jobs.gateway import GatewayClient
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.reconcile import Action, Reconciler
from pixverse_jobs.store import JobStore

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=4)
MEDIA = "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/v1/x/output.mp4"


@dataclass
class FakeGateway:
    """The gateway's status endpoint: request_id -> (HTTP status, body); records calls."""

    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    delay: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict[str, threading.Event] = field(default_factory=dict)  # request_id -> answer when set

    def handle(self, request: httpx.Request) -> httpx.Response:
        request_id = request.url.path.rsplit("/", 1)[-1]
        with self.lock:
            self.calls.append(request_id)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request_id in self.held:
                self.held[request_id].wait(timeout=30)
            time.sleep(self.delay)
            status, body = self.answers.get(request_id, (404, {"error": "not found"}))
            return httpx.Response(status, json=body)
        finally:
            with self.lock:
                self.in_flight -= 1


@dataclass
class Clock:
    """The reconciler's now (the test moves it)."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    store: JobStore
    queue: CopyQueue
    sqs: Any
    queue_url: str
    gateway: FakeGateway
    reconciler: Reconciler
    processor: CallbackProcessor
    clock: Clock
    client: GatewayClient

    def reconciler_with(self, settings: ReconcileSettings = SETTINGS, **kwargs: Any) -> Reconciler:
        return Reconciler(self.store, self.client, self.processor, self.queue, settings, now=self.clock, **kwargs)

    def copy_requests(self) -> list[str]:
        jobs = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return sorted(jobs)
            for message in messages:
                jobs.append(json.loads(message["Body"])["job_id"])
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def _status_body(request_id: str, status: str) -> dict[str, Any]:
    completed = status == "COMPLETED"
    return {
        "request_id": request_id,
        "status": status,
        "model_id": "pixverse",
        "error": "content policy" if status == "FAILED" else None,
        "output": {"media_url": [MEDIA], "media_type": "video/mp4"} if completed else None,
    }


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        store = JobStore(create_jobs_table(ddb), ddb, first_check_after_seconds=SETTINGS.after_seconds)
        queue_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
        queue = CopyQueue(queue_url, sqs)
        gateway = FakeGateway()
        client = GatewayClient(
            "https://gateway.pixazo.ai", lambda: "test-key", httpx.Client(transport=httpx.MockTransport(gateway.handle))
        )
        processor = CallbackProcessor(store, queue)
        clock = Clock()
        reconciler = Reconciler(store, client, processor, queue, SETTINGS, now=clock)
        yield World(store, queue, sqs, queue_url, gateway, reconciler, processor, clock, client)


def _job(
    world: World, job_id: str, *, age_seconds: int, status: str, request_id: str | None = None, **extra: Any
) -> None:
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    record: dict[str, Any] = {
        "job_id": job_id,
        "owner": "owner-1",
        "model": "pixverse",
        "status": status,
        "created_at": created,
        "updated_at": created,
        **extra,
    }
    if request_id:
        record["request_id"] = request_id
    world.store.create(record)


def test_lost_completed_callback_is_polled_and_delivery_requested_once(world: World) -> None:
    _job(world, "job_lost", age_seconds=1200, status="QUEUED", request_id="req_lost")
    world.gateway.answers["req_lost"] = (200, _status_body("req_lost", "COMPLETED"))

    report = world.reconciler.run()

    assert report.actions == {"polled_outcome": 1}
    assert report.reconciled == 1
    job = world.store.get("job_lost")
    assert job is not None and job["status"] == "COMPLETED" and job["media_urls"] == [MEDIA]
    assert world.copy_requests() == ["job_lost"]


def test_late_callback_after_the_poll_changes_nothing_and_enqueues_nothing(world: World) -> None:
    _job(world, "job_race", age_seconds=1200, status="PROCESSING", request_id="req_race")
    world.gateway.answers["req_race"] = (200, _status_body("req_race", "COMPLETED"))
    world.reconciler.run()

    late = world.processor.process("job_race", parse_callback(json.dumps(_status_body("req_race", "COMPLETED"))))

    assert late.applied is False
    assert world.copy_requests() == ["job_race"]


def test_job_younger_than_reconcile_after_is_not_polled(world: World) -> None:
    _job(world, "job_young", age_seconds=60, status="QUEUED", request_id="req_young")

    report = world.reconciler.run()

    assert report.examined == 0
    assert world.gateway.calls == []


def test_still_running_job_is_polled_and_left_alone(world: World) -> None:
    _job(world, "job_running", age_seconds=1200, status="QUEUED", request_id="req_running")
    world.gateway.answers["req_running"] = (200, _status_body("req_running", "PROCESSING"))

    report = world.reconciler.run()

    assert report.actions == {"polled_progress": 1}
    assert report.reconciled == 0
    job = world.store.get("job_running")
    assert job is not None and job["status"] == "PROCESSING"
    assert world.copy_requests() == []


@pytest.mark.parametrize("age_seconds", [1200, 86000], ids=["past-submit-deadline", "just-under-max-age"])
def test_submit_outcome_unknown_is_not_ended_before_max_age(world: World, age_seconds: int) -> None:
    # Given a job the gateway may have accepted: sent, its answer never came, no callback yet
    _job(
        world,
        "job_unknown",
        age_seconds=age_seconds,
        status="SUBMITTING",
        submit_error={"code": "gateway_unavailable", "message": "timed out after sending"},
    )

    # When the reconciler runs past SubmitDeadlineSeconds (300 s) but within MaxJobAgeSeconds
    report = world.reconciler.run()

    # Then it leaves the job to its callback: nothing ended, nothing polled, nothing resent
    assert report.actions == {"skipped": 1}
    job = world.store.get("job_unknown")
    assert job is not None and job["status"] == "SUBMITTING"
    assert world.copy_requests() == []
    assert world.gateway.calls == []


def test_submit_outcome_unknown_then_callback_moves_the_job_on(world: World) -> None:
    # Given a job whose submit answer never came, an hour old
    _job(
        world,
        "job_late",
        age_seconds=3600,
        status="SUBMITTING",
        submit_error={"code": "gateway_unavailable", "message": "timed out after sending"},
    )
    world.reconciler.run()

    # When the gateway's COMPLETED callback finally arrives, carrying the request_id
    callback = parse_callback(json.dumps(_status_body("req_late", "COMPLETED")))
    outcome = world.processor.process("job_late", callback)

    # Then the job takes the request_id and completes, and its copy is requested
    assert outcome.applied and outcome.status == "COMPLETED"
    job = world.store.get("job_late")
    assert job is not None and job["status"] == "COMPLETED" and job["request_id"] == "req_late"
    assert world.copy_requests() == ["job_late"]


def test_submit_outcome_unknown_ends_submit_failed_at_max_age(world: World) -> None:
    # Given a job whose submit answer never came and that no callback reached for a day
    _job(
        world,
        "job_unknown",
        age_seconds=86400 + 60,
        status="SUBMITTING",
        submit_error={"code": "gateway_unavailable", "message": "timed out after sending"},
    )

    report = world.reconciler.run()

    assert report.actions == {"submit_failed": 1}
    job = world.store.get("job_unknown")
    assert job is not None and job["status"] == "SUBMIT_FAILED"
    assert job["error"]["code"] == "submit_outcome_unknown"
    assert "timed out after sending" in job["error"]["message"]
    assert "24 hours" in job["error"]["message"]
    assert world.copy_requests() == ["job_unknown"]  # the copier publishes its failed event
    assert world.gateway.calls == []


def test_job_past_max_age_times_out_as_error(world: World) -> None:
    _job(world, "job_ancient", age_seconds=90000, status="PROCESSING", request_id="req_ancient")
    world.gateway.answers["req_ancient"] = (200, _status_body("req_ancient", "PROCESSING"))

    report = world.reconciler.run()

    assert report.actions == {"timed_out": 1}
    job = world.store.get("job_ancient")
    assert job is not None and job["status"] == "ERROR" and job["error"]["code"] == "timed_out"
    assert world.copy_requests() == ["job_ancient"]


def test_copy_in_hand_is_left_to_its_copier(world: World) -> None:
    _job(world, "job_busy", age_seconds=1200, status="COPYING", copy_lease_until=epoch_seconds() + 600)
    _job(world, "job_stalled", age_seconds=1200, status="COPYING", copy_lease_until=epoch_seconds() - 1)
    _job(world, "job_unqueued", age_seconds=1200, status="COMPLETED")

    report = world.reconciler.run()

    assert report.actions == {"skipped": 1, "delivery_requested": 2}
    assert world.copy_requests() == ["job_stalled", "job_unqueued"]


def test_announced_job_leaves_the_index(world: World) -> None:
    _job(world, "job_done", age_seconds=1200, status="DELIVERED")
    _job(world, "job_unannounced", age_seconds=1200, status="FAILED")
    world.store.mark_event_published("job_done", "event-1")

    report = world.reconciler.run()

    assert report.examined == 1
    assert world.copy_requests() == ["job_unannounced"]


def test_rate_limit_pauses_polling_until_the_next_run(world: World) -> None:
    slow = Reconciler(
        world.store,
        world.reconciler._gateway,
        world.processor,
        world.queue,
        ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=1),
        now=lambda: NOW,
    )
    for n in range(5):
        _job(world, f"job_{n}", age_seconds=1200 + n, status="QUEUED", request_id=f"req_{n}")
        world.gateway.answers[f"req_{n}"] = (429, {"error": "Too Many Requests"})

    report = slow.run()

    assert report.rate_limited is True
    assert len(world.gateway.calls) == 1
    assert report.actions == {"skipped": 5}


def test_rate_limit_does_not_freeze_the_age_timeout(world: World) -> None:
    # Given a gateway that answers every status poll 429, and jobs past MAX_JOB_AGE_SECONDS
    for n in range(3):
        _job(world, f"job_old_{n}", age_seconds=SETTINGS.max_age_seconds + 60 + n, status="QUEUED", request_id=f"r{n}")
        world.gateway.answers[f"r{n}"] = (429, {"error": "Too Many Requests"})
    _job(world, "job_young", age_seconds=1200, status="PROCESSING", request_id="r_young")
    world.gateway.answers["r_young"] = (429, {"error": "Too Many Requests"})

    # When the reconciler runs (its polling paused by the first 429)
    report = world.reconciler.run()

    # Then the old jobs still end timed_out and go to the copier for their event; the young one waits
    assert report.rate_limited is True
    assert report.actions.get("timed_out") == 3
    for n in range(3):
        job = world.store.get(f"job_old_{n}")
        assert job is not None and job["status"] == "ERROR" and job["error"]["code"] == "timed_out"
    young = world.store.get("job_young")
    assert young is not None and young["status"] == "PROCESSING"
    assert world.copy_requests() == ["job_old_0", "job_old_1", "job_old_2"]


def test_polls_run_concurrently_within_the_bound(world: World) -> None:
    world.gateway.delay = 0.05
    for n in range(16):
        _job(world, f"job_{n:02d}", age_seconds=1200 + n, status="QUEUED", request_id=f"req_{n:02d}")
        world.gateway.answers[f"req_{n:02d}"] = (200, _status_body(f"req_{n:02d}", "PROCESSING"))

    report = world.reconciler.run()

    assert report.examined == 16
    assert len(world.gateway.calls) == 16
    assert 1 < world.gateway.max_in_flight <= SETTINGS.concurrency


def test_gateway_error_on_one_job_does_not_stop_the_others(world: World) -> None:
    _job(world, "job_a", age_seconds=1300, status="QUEUED", request_id="req_a")
    _job(world, "job_b", age_seconds=1200, status="QUEUED", request_id="req_b")
    world.gateway.answers["req_a"] = (500, {"error": "boom"})
    world.gateway.answers["req_b"] = (200, _status_body("req_b", "FAILED"))

    report = world.reconciler.run()

    assert report.actions == {"poll_failed": 1, "polled_outcome": 1}
    job = world.store.get("job_b")
    assert job is not None and job["status"] == "FAILED"


def test_reconcile_action_values_are_stable() -> None:
    # They are metric dimensions and log fields: renaming one breaks dashboards.
    assert [a.value for a in Action] == [
        "polled_outcome",
        "polled_progress",
        "polled_unchanged",
        "submit_failed",
        "timed_out",
        "delivery_requested",
        "skipped",
        "poll_failed",
        "resubmit_queued",
        "not_submitted",
        "deadline_exceeded",
    ]


# ---------------------------------------------------------------- one run at a time (finding 2.1)


def test_run_that_finds_the_lease_held_exits_at_once_without_polling(world: World) -> None:
    _job(world, "job_q", age_seconds=1200, status="QUEUED", request_id="req_q")
    assert world.store.acquire_run_lease(reconcile.RUN_LEASE, "another-run", seconds=300)

    report = world.reconciler.run(run_id="this-run")

    assert report.lease_held is True
    assert report.examined == 0 and report.actions == {}
    assert world.gateway.calls == []


def test_run_gives_the_lease_back_so_the_next_run_works(world: World) -> None:
    _job(world, "job_q", age_seconds=1200, status="QUEUED", request_id="req_q")
    world.gateway.answers["req_q"] = (200, _status_body("req_q", "PROCESSING"))

    first = world.reconciler.run(run_id="run-1")
    world.clock.now += timedelta(hours=1)  # the job's next look has come
    second = world.reconciler.run(run_id="run-2")

    assert (first.lease_held, first.examined) == (False, 1)
    assert (second.lease_held, second.examined) == (False, 1)
    assert world.store.acquire_run_lease(reconcile.RUN_LEASE, "run-3", seconds=300)


def test_lease_of_a_run_that_died_is_taken_over_once_expired(world: World) -> None:
    _job(world, "job_q", age_seconds=1200, status="QUEUED", request_id="req_q")
    world.gateway.answers["req_q"] = (200, _status_body("req_q", "PROCESSING"))
    assert world.store.acquire_run_lease(reconcile.RUN_LEASE, "killed-run", seconds=-1)

    report = world.reconciler.run(run_id="next-run")

    assert report.lease_held is False and report.examined == 1
    # The dead run, were it to come back, cannot free the lease of the run that took it over.
    assert world.store.release_run_lease(reconcile.RUN_LEASE, "killed-run") is False


def test_lease_lasts_a_little_longer_than_the_run_may(world: World) -> None:
    world.reconciler.run(run_id="run-1", time_left=lambda: 300.0)  # released at its end
    taken: dict[str, Any] = {}
    real_acquire = world.store.acquire_run_lease

    def acquire(name: str, holder: str, *, seconds: int) -> bool:
        taken.update(name=name, holder=holder, seconds=seconds)
        return real_acquire(name, holder, seconds=seconds)

    world.store.acquire_run_lease = acquire  # type: ignore[method-assign]
    world.reconciler.run(run_id="run-2", time_left=lambda: 300.0)

    assert taken == {"name": reconcile.RUN_LEASE, "holder": "run-2", "seconds": 310}


def test_run_started_while_another_runs_polls_nothing(world: World) -> None:
    # Given a run busy polling a job (its poll answers only when the test lets it)
    _job(world, "job_q", age_seconds=1200, status="QUEUED", request_id="req_q")
    world.gateway.answers["req_q"] = (200, _status_body("req_q", "PROCESSING"))
    answer = world.gateway.held["req_q"] = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(world.reconciler.run, run_id="run-1")
        while not world.gateway.calls:
            time.sleep(0.01)

        # When a second run starts meanwhile (a late schedule, an async retry)
        second = world.reconciler.run(run_id="run-2")
        answer.set()

    # Then it exits at once and the job is polled once, by the first run
    assert second.lease_held is True and second.examined == 0
    assert first.result().examined == 1
    assert world.gateway.calls == ["req_q"]


def test_lease_item_is_in_neither_index(world: World) -> None:
    _job(world, "job_q", age_seconds=1200, status="QUEUED", request_id="req_q")
    assert world.store.acquire_run_lease(reconcile.RUN_LEASE, "run-1", seconds=300)
    ddb = world.store._client

    indexed = {
        index: [item["job_id"]["S"] for item in ddb.scan(TableName="jobs", IndexName=index)["Items"]]
        for index in (store_module.OWNER_INDEX, store_module.UNFINISHED_INDEX)
    }

    assert indexed == {store_module.OWNER_INDEX: ["job_q"], store_module.UNFINISHED_INDEX: ["job_q"]}
    lease_key = {"job_id": {"S": store_module.RUN_LEASE_PREFIX + reconcile.RUN_LEASE}}
    lease = ddb.get_item(TableName="jobs", Key=lease_key)["Item"]
    assert set(lease) == {"job_id", "lease_holder", "lease_until"}


# ---------------------------------------------------------------- the time budget (finding 2.5)

# Lambda time scaled down 100 times: a 300 s run in 3 s, a 13 s gateway poll (its connect and
# read timeouts) in 0.13 s. The reconciler only reads ``time_left()``, so it runs as in Lambda.
SCALE = 0.01


def _scaled_budget(seconds: float) -> tuple[float, Any]:
    deadline = time.monotonic() + seconds * SCALE
    return deadline, lambda: (deadline - time.monotonic()) / SCALE


def test_slow_gateway_run_returns_within_its_budget_and_says_what_it_left(world: World) -> None:
    # Given 500 jobs to poll, 4 at a time, through a gateway taking 13 s per poll: 1,625 s of polls
    world.gateway.delay = 13 * SCALE
    for n in range(500):
        _job(world, f"job_{n:03d}", age_seconds=1200 + n, status="QUEUED", request_id=f"req_{n:03d}")
        world.gateway.answers[f"req_{n:03d}"] = (200, _status_body(f"req_{n:03d}", "QUEUED"))
    deadline, time_left = _scaled_budget(300)

    # When a run with 300 s (the function's timeout) goes at them
    report = world.reconciler.run(time_left=time_left)
    returned = time.monotonic()

    # Then it returns before its deadline, with the reserve, and counts the jobs it read and left;
    # it read only a few more than it could work on, and every job it did not look at is still due
    assert returned <= deadline - reconcile.RESERVE_SECONDS * SCALE / 2, f"{deadline - returned:.3f} s left"
    assert report.out_of_time is True
    assert 0 < report.examined < 500 and report.deferred > 0
    read = report.examined + report.deferred + report.in_flight
    assert read <= report.examined + SETTINGS.concurrency * (reconcile.READ_AHEAD_PER_WORKER + 1)
    assert len(world.gateway.calls) == report.examined + report.in_flight
    # (a poll still in flight when the run returned may have written its next look since)
    still_due = len(list(world.store.iter_due(due_by=int(NOW.timestamp()))))
    assert 500 - report.examined - report.in_flight <= still_due <= 500 - report.examined


def test_poll_that_overruns_its_timeouts_does_not_hold_the_run_past_its_budget(world: World) -> None:
    # Given a poll that does not answer (a gateway slower than the client's timeouts allow)
    _job(world, "job_hung", age_seconds=1300, status="QUEUED", request_id="req_hung")
    hung = world.gateway.held["req_hung"] = threading.Event()
    deadline, time_left = _scaled_budget(100)
    try:
        # When a run with 100 s left starts it
        report = world.reconciler.run(time_left=time_left)
        returned = time.monotonic()
    finally:
        hung.set()

    # Then the run returns at its reserve anyway, saying one job was still in flight
    assert returned <= deadline, f"{returned - deadline:.3f} s late"
    assert report.in_flight == 1 and report.examined == 0 and report.out_of_time is True


def test_reconcile_handler_counts_a_run_skipped_for_the_lease(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "JOBS_TABLE": "jobs",
        "COPY_QUEUE_URL": world.queue_url,
        "SUBMIT_QUEUE_URL": world.queue_url,
        "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
        "PIXAZO_API_KEY_SECRET": "pixazo/api-key",
        "POWERTOOLS_METRICS_DISABLED": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(observability.metrics, "namespace", "PixverseJobsTests")
    module = load_function("ReconcileFunction")
    assert world.store.acquire_run_lease(reconcile.RUN_LEASE, "a-run-still-going", seconds=300)

    result = module.handler({}, lambda_context)

    assert result["lease_held"] is True and result["examined"] == 0
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(document.get("ReconcilerRunsSkipped") in (1, 1.0, [1.0]) for document in documents), documents


# ---------------------------------------------------------------- keeping up (issue 14)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _check_at(world: World, job_id: str) -> int:
    job = world.store.get(job_id)
    assert job is not None
    return int(job["check_at"])


def test_jobs_are_looked_at_by_when_they_next_need_a_look_not_by_age(world: World) -> None:
    # Given jobs across every shard (and the legacy key), created in one order and due in another
    due_order = []
    for n in range(40):
        job_id = f"job_{(n * 7919) % 1000:04d}_{n}"  # ids unrelated to either order
        extra: dict[str, Any] = {"check_at": _epoch(NOW) - 10 * (40 - n)}  # due: the later n, the less overdue
        if n == 5:
            extra["unfinished"] = "1"  # written before the sharded index
        _job(world, job_id, age_seconds=1200 + n, status="QUEUED", request_id=f"req_{job_id}", **extra)
        world.gateway.answers[f"req_{job_id}"] = (200, _status_body(f"req_{job_id}", "QUEUED"))
        due_order.append(f"req_{job_id}")
    # ... and the oldest job of all, looked at recently: not due
    _job(world, "job_oldest", age_seconds=7200, status="QUEUED", request_id="req_oldest", check_at=_epoch(NOW) + 60)
    one_at_a_time = world.reconciler_with(ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=1))

    # When a run looks at them one at a time
    report = one_at_a_time.run()

    # Then most overdue first, whatever their age or shard, and not the one whose look is not due
    assert world.gateway.calls == due_order
    assert report.examined == 40


def test_unchanged_poll_pushes_the_next_look_by_a_backoff_that_grows_with_age(world: World) -> None:
    _job(world, "job_young", age_seconds=1200, status="PROCESSING", request_id="req_young")
    _job(world, "job_old", age_seconds=8 * 3600, status="PROCESSING", request_id="req_old")
    _job(world, "job_ancient", age_seconds=86400 - 600, status="PROCESSING", request_id="req_ancient")
    for name in ("young", "old", "ancient"):
        world.gateway.answers[f"req_{name}"] = (200, _status_body(f"req_{name}", "PROCESSING"))

    first = world.reconciler.run()
    again = world.reconciler.run()  # at the same moment: nothing is due any more

    assert first.actions == {"polled_unchanged": 3} and again.examined == 0
    # Nothing new: only the next look was written, not the callback path's whole refresh
    young = world.store.get("job_young")
    assert young is not None and young["updated_at"] == young["created_at"] and "gateway_status" not in young
    # A quarter of its age, at least RECONCILE_AFTER_SECONDS (600 s here), at most an hour...
    assert _check_at(world, "job_young") == _epoch(NOW) + 600
    assert _check_at(world, "job_old") == _epoch(NOW) + 3600
    # ...and never past the maximum age, so the timeout is applied on time
    assert _check_at(world, "job_ancient") == _epoch(NOW) + 600 + 1
    world.clock.now += timedelta(seconds=601)
    assert world.reconciler.run().examined == 2  # young and ancient, not old


def test_outcome_and_redrive_look_again_after_reconcile_after(world: World) -> None:
    _job(world, "job_lost", age_seconds=1200, status="QUEUED", request_id="req_lost")
    world.gateway.answers["req_lost"] = (200, _status_body("req_lost", "COMPLETED"))
    _job(world, "job_stalled", age_seconds=1200, status="COPYING", copy_lease_until=epoch_seconds() - 1)
    _job(world, "job_unknown", age_seconds=1200, status="SUBMITTING")

    world.reconciler.run()

    # The copier has RECONCILE_AFTER_SECONDS to deliver before the next look
    assert _check_at(world, "job_lost") == _epoch(NOW) + SETTINGS.after_seconds
    assert _check_at(world, "job_stalled") == _epoch(NOW) + SETTINGS.after_seconds
    # A submit whose outcome is unknown needs nothing before its maximum age
    created = _epoch(NOW) - 1200
    assert _check_at(world, "job_unknown") == created + SETTINGS.max_age_seconds + 1


def test_run_goes_past_the_old_batch_limit_while_time_remains(world: World) -> None:
    # Given more due jobs than the 500 a run used to take
    jobs = 520
    for n in range(jobs):
        _job(world, f"job_{n:03d}", age_seconds=1200 + n, status="QUEUED", request_id=f"req_{n:03d}")
        world.gateway.answers[f"req_{n:03d}"] = (200, _status_body(f"req_{n:03d}", "QUEUED"))
    _, time_left = _scaled_budget(300)

    # When a run with its full budget goes at them (the time left is far from running out)
    report = world.reconciler.run(time_left=lambda: time_left() + 1000)

    # Then it looks at every one of them in that one run, and none is due any more
    assert report.examined == jobs and report.out_of_time is False
    assert sorted(set(world.gateway.calls)) == [f"req_{n:03d}" for n in range(jobs)]
    assert list(world.store.iter_due(due_by=_epoch(NOW))) == []


def _rate_limited_world(world: World, jobs: int, retry_after: str | None) -> None:
    for n in range(jobs):
        _job(world, f"job_{n:02d}", age_seconds=1200, status="QUEUED", request_id=f"req_{n:02d}", check_at=n)
        world.gateway.answers[f"req_{n:02d}"] = (200, _status_body(f"req_{n:02d}", "QUEUED"))
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    world.gateway.answers["req_00"] = (429, {"error": "Too Many Requests", **headers})


@dataclass
class Ticks:
    """A monotonic clock that moves one second each time it is read."""

    now: float = 0.0
    step: float = 1.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_rate_limit_pause_holds_for_its_retry_after(world: World) -> None:
    # Given a gateway whose first answer is a 429 asking for 30 s, and a clock that does not move
    _rate_limited_world(world, 10, retry_after="30")
    gateway = GatewayClient(
        "https://gateway.pixazo.ai",
        lambda: "test-key",
        httpx.Client(transport=httpx.MockTransport(_with_retry_after(world.gateway))),
    )
    settings = ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=1)
    reconciler = Reconciler(
        world.store, gateway, world.processor, world.queue, settings, now=world.clock, monotonic=lambda: 100.0
    )

    # When the run goes on through the other nine due jobs
    report = reconciler.run()

    # Then none of them is polled, and each is left due, as it was, for a later look
    assert world.gateway.calls == ["req_00"]
    assert report.rate_limited is True and report.actions == {"skipped": 10}
    assert [_check_at(world, f"job_{n:02d}") for n in range(10)] == list(range(10))


def test_polls_resume_once_the_retry_after_has_passed(world: World) -> None:
    # Given the same 429 (30 s), and a clock that moves a second at each look
    _rate_limited_world(world, 40, retry_after="30")
    gateway = GatewayClient(
        "https://gateway.pixazo.ai",
        lambda: "test-key",
        httpx.Client(transport=httpx.MockTransport(_with_retry_after(world.gateway))),
    )
    settings = ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=1)
    reconciler = Reconciler(
        world.store, gateway, world.processor, world.queue, settings, now=world.clock, monotonic=Ticks()
    )

    report = reconciler.run()

    # Then the jobs met in the 30 s after the 429 are skipped, and those after are polled
    polled = world.gateway.calls[1:]
    assert world.gateway.calls[0] == "req_00" and polled
    first_polled = int(polled[0].removeprefix("req_"))
    assert 29 <= first_polled <= 32
    assert polled == [f"req_{n:02d}" for n in range(first_polled, 40)]
    assert report.actions == {"skipped": first_polled, "polled_unchanged": 40 - first_polled}


def test_rate_limit_without_retry_after_pauses_the_rest_of_the_run(world: World) -> None:
    _rate_limited_world(world, 40, retry_after=None)
    settings = ReconcileSettings(after_seconds=600, max_age_seconds=86400, concurrency=1)
    reconciler = world.reconciler_with(settings, monotonic=Ticks(step=3600))

    report = reconciler.run()

    assert world.gateway.calls == ["req_00"]
    assert report.actions == {"skipped": 40}


def _with_retry_after(gateway: FakeGateway) -> Any:
    """The fake gateway, its 429 bodies' Retry-After moved into the header where the gateway sends it."""

    def handle(request: httpx.Request) -> httpx.Response:
        response = gateway.handle(request)
        if response.status_code != 429:
            return response
        body = response.json()
        retry_after = body.pop("Retry-After", None)
        return httpx.Response(429, json=body, headers={"Retry-After": retry_after} if retry_after else {})

    return handle


def test_progress_callback_pushes_the_next_look_only_when_it_is_near(world: World) -> None:
    # Given a job whose look is due in a minute, and one whose look is an hour away
    now = epoch_seconds()
    _job(world, "job_near", age_seconds=0, status="QUEUED", request_id="req_near", check_at=now + 60)
    _job(world, "job_far", age_seconds=0, status="QUEUED", request_id="req_far", check_at=now + 3600)
    writes: list[str] = []
    world.store._client.meta.events.register(
        "before-parameter-build.dynamodb.UpdateItem", lambda params, **_: writes.append(params["Key"]["job_id"]["S"])
    )

    # When sync-mode PROCESSING callbacks show both alive
    for name in ("near", "far"):
        world.processor.process(f"job_{name}", parse_callback(json.dumps(_status_body(f"req_{name}", "PROCESSING"))))

    # Then the near look moves to RECONCILE_AFTER_SECONDS from now (a second write), the far one stays
    assert writes == ["job_near", "job_near", "job_far"]
    assert now + SETTINGS.after_seconds <= _check_at(world, "job_near") <= epoch_seconds() + SETTINGS.after_seconds
    assert _check_at(world, "job_far") == now + 3600


def test_a_job_past_its_deadline_whose_message_was_lost_ends_cancelled_without_a_poll(world: World) -> None:
    # Its deadline message never came (the send failed, or it sits in the dead-letter queue).
    deadline = int(NOW.timestamp()) - 5
    _job(world, "job_late", age_seconds=1200, status="PROCESSING", request_id="req_late", deadline_at=deadline)
    _job(world, "job_ahead", age_seconds=1200, status="PROCESSING", request_id="req_ahead", deadline_at=deadline + 100)
    world.gateway.answers["req_ahead"] = (200, _status_body("req_ahead", "PROCESSING"))

    report = world.reconciler.run()

    assert report.actions == {"deadline_exceeded": 1, "polled_unchanged": 1}
    late = world.store.get("job_late")
    assert late is not None and late["status"] == "CANCELLED" and late["error"]["code"] == "deadline_exceeded"
    assert world.gateway.calls == ["req_ahead"]
    assert world.copy_requests() == ["job_late"]
    # The job still running is looked at again just past its own deadline, not a poll interval away.
    ahead = world.store.get("job_ahead")
    assert ahead is not None and int(ahead["check_at"]) == deadline + 100 + 30


def test_lines_logged_for_a_job_in_the_worker_threads_name_that_job(world: World) -> None:
    # Given jobs whose callbacks were lost, polled by several workers at once, while the handler's
    # thread has a job_id appended (as a container's earlier invocation may leave one)
    for n in range(8):
        _job(world, f"job_{n}", age_seconds=1200 + n, status="QUEUED", request_id=f"req_{n}")
        world.gateway.answers[f"req_{n}"] = (200, _status_body(f"req_{n}", "COMPLETED"))
    world.gateway.delay = 0.02
    buffer = io.StringIO()
    handler = cast(logging.StreamHandler, observability.logger.registered_handler)  # type: ignore[type-arg]
    previous = handler.setStream(buffer)
    observability.logger.append_keys(job_id="job_of_the_handler")
    try:
        # When a run applies their statuses (the state machine logs "callback applied")
        world.reconciler.run()
    finally:
        observability.logger.remove_keys(["job_id"])
        if previous is not None:
            handler.setStream(previous)

    # Then each job's lines carry its own job_id (the request_id the poll's answer names)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    applied = [line for line in lines if line["message"] == "callback applied"]
    assert len(applied) == 8
    moved = {line["job_id"] for line in lines if line["message"] == "job moved by the gateway's status"}
    assert {line["job_id"] for line in applied} == moved == {f"job_{n}" for n in range(8)}
    # And the handler's own keys are untouched by the workers
    assert all(line["job_id"] == "job_of_the_handler" for line in lines if line["message"] == "reconciler run")

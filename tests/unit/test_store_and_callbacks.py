from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from lambda_support import create_jobs_table
from moto import mock_aws
from pixverse_jobs.callbacks import ENQUEUE_FAILED_FLAG, CallbackProcessor, parse_callback
from pixverse_jobs.errors import CallbackRejected, JobAlreadyExists, JobNotFound
from pixverse_jobs.queue import CopyQueue
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import JobStore


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        table = create_jobs_table(ddb)
        queue_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
        yield {"ddb": ddb, "sqs": sqs, "table": table, "queue_url": queue_url}


@pytest.fixture
def store(aws: dict[str, Any]) -> JobStore:
    return JobStore(aws["table"], aws["ddb"])


def _job(job_id: str, status: JobStatus = JobStatus.QUEUED, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "owner": "tester",
        "model": "pixverse-v6-text-to-video",
        "input": {"prompt": "x"},
        "status": str(status),
        "created_at": "2026-11-25T12:00:00.000Z",
        "updated_at": "2026-11-25T12:00:00.000Z",
        **extra,
    }


def _callback(status: str, request_id: str = "req-1", **output: Any) -> bytes:
    body: dict[str, Any] = {"request_id": request_id, "status": status, "model_id": "pixverse-v6-text-to-video"}
    body["error"] = "boom" if status in ("FAILED", "ERROR") else None
    body["output"] = (
        {"media_url": ["https://cdn.r2.dev/v1/x/output.mp4"], "media_type": "video/mp4"}
        if status == "COMPLETED"
        else None
    )
    body.update(output)
    return json.dumps(body).encode()


def _queued_messages(aws: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


# ------------------------------------------------------------------ store
def test_create_refuses_to_overwrite_existing_job(store: JobStore) -> None:
    store.create(_job("j1"))
    with pytest.raises(JobAlreadyExists):
        store.create(_job("j1"))


def test_advance_applies_allowed_transition_and_stores_request_id(store: JobStore) -> None:
    store.create(_job("j1", JobStatus.SUBMITTING))
    result = store.advance("j1", JobStatus.QUEUED, request_id="req-1")
    assert result.applied
    assert result.job["status"] == "QUEUED"
    assert store.get("j1")["request_id"] == "req-1"  # type: ignore[index]


def test_advance_refuses_backward_move_and_changes_nothing(store: JobStore) -> None:
    store.create(_job("j1", JobStatus.COMPLETED, request_id="req-1"))
    before = store.get("j1")
    result = store.advance("j1", JobStatus.PROCESSING, request_id="req-1")
    assert not result.applied
    assert result.job["status"] == "COMPLETED"
    assert store.get("j1") == before


def test_advance_on_missing_job_raises_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.advance("nope", JobStatus.QUEUED)


def test_mark_event_published_only_once(store: JobStore) -> None:
    store.create(_job("j1", JobStatus.DELIVERED))
    assert store.mark_event_published("j1", "e1")
    assert not store.mark_event_published("j1", "e1")


# ------------------------------------------------------------------ callbacks
@pytest.mark.parametrize(
    ("body", "status_code"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (json.dumps({"status": "COMPLETED"}).encode(), 400),
        (json.dumps({"request_id": "r", "status": "DONE"}).encode(), 400),
        (json.dumps({"request_id": "r", "status": "COMPLETED", "output": None}).encode(), 400),
        (json.dumps({"request_id": "r", "status": "COMPLETED", "output": {"media_url": [3]}}).encode(), 400),
        (b"x" * (64 * 1024 + 1), 413),
    ],
    ids=["malformed", "not-object", "no-request-id", "unknown-status", "completed-no-media", "bad-url", "oversize"],
)
def test_parse_callback_rejects_bad_bodies(body: bytes, status_code: int) -> None:
    with pytest.raises(CallbackRejected) as info:
        parse_callback(body)
    assert info.value.status_code == status_code


def test_completed_callback_advances_and_enqueues_once(store: JobStore, aws: dict[str, Any]) -> None:
    store.create(_job("j1", request_id="req-1"))
    processor = CallbackProcessor(store, CopyQueue(aws["queue_url"], aws["sqs"]))
    first = processor.process("j1", parse_callback(_callback("COMPLETED")))
    second = processor.process("j1", parse_callback(_callback("COMPLETED")))
    assert first.applied and not second.applied
    assert _queued_messages(aws) == [{"job_id": "j1"}]
    job = store.get("j1")
    assert job is not None
    assert job["status"] == "COMPLETED"
    assert job["media_urls"] == ["https://cdn.r2.dev/v1/x/output.mp4"]


def test_late_processing_after_completed_changes_nothing(store: JobStore, aws: dict[str, Any]) -> None:
    store.create(_job("j1", request_id="req-1"))
    processor = CallbackProcessor(store, CopyQueue(aws["queue_url"], aws["sqs"]))
    processor.process("j1", parse_callback(_callback("COMPLETED")))
    before = store.get("j1")
    outcome = processor.process("j1", parse_callback(_callback("PROCESSING")))
    assert not outcome.applied
    assert outcome.status is JobStatus.COMPLETED
    assert store.get("j1") == before


def test_callback_for_another_request_is_rejected(store: JobStore, aws: dict[str, Any]) -> None:
    store.create(_job("j1", request_id="req-1"))
    processor = CallbackProcessor(store, CopyQueue(aws["queue_url"], aws["sqs"]))
    before = store.get("j1")
    with pytest.raises(CallbackRejected) as info:
        processor.process("j1", parse_callback(_callback("COMPLETED", request_id="req-OTHER")))
    assert info.value.status_code == 409
    assert store.get("j1") == before
    assert _queued_messages(aws) == []


def test_callback_before_request_id_stored_is_applied(store: JobStore, aws: dict[str, Any]) -> None:
    store.create(_job("j1", JobStatus.SUBMITTING))
    processor = CallbackProcessor(store, CopyQueue(aws["queue_url"], aws["sqs"]))
    outcome = processor.process("j1", parse_callback(_callback("COMPLETED")))
    assert outcome.applied
    assert store.get("j1")["request_id"] == "req-1"  # type: ignore[index]


def test_failed_enqueue_is_retried_by_the_next_duplicate(store: JobStore, aws: dict[str, Any]) -> None:
    store.create(_job("j1", request_id="req-1"))

    class FlakyQueue(CopyQueue):
        calls = 0

        def request_delivery(self, job_id: str) -> None:
            FlakyQueue.calls += 1
            if FlakyQueue.calls == 1:
                raise RuntimeError("SQS unavailable")
            super().request_delivery(job_id)

    processor = CallbackProcessor(store, FlakyQueue(aws["queue_url"], aws["sqs"]))
    with pytest.raises(RuntimeError):
        processor.process("j1", parse_callback(_callback("COMPLETED")))
    assert store.get("j1")[ENQUEUE_FAILED_FLAG] is True  # type: ignore[index]
    processor.process("j1", parse_callback(_callback("COMPLETED")))
    processor.process("j1", parse_callback(_callback("COMPLETED")))
    assert _queued_messages(aws) == [{"job_id": "j1"}]
    assert ENQUEUE_FAILED_FLAG not in store.get("j1")  # type: ignore[operator]


def test_failed_callback_records_error_and_enqueues_delivery(store: JobStore, aws: dict[str, Any]) -> None:
    store.create(_job("j1", request_id="req-1"))
    processor = CallbackProcessor(store, CopyQueue(aws["queue_url"], aws["sqs"]))
    processor.process("j1", parse_callback(_callback("FAILED")))
    job = store.get("j1")
    assert job is not None
    assert job["status"] == "FAILED"
    assert job["error"] == {"code": "generation_failed", "message": "boom"}
    assert _queued_messages(aws) == [{"job_id": "j1"}]


def test_set_request_id_after_callback_keeps_status_and_refuses_another_id(store: JobStore) -> None:
    store.create(_job("j1", JobStatus.SUBMITTING))
    store.advance("j1", JobStatus.PROCESSING)  # a callback outran the submit's own write
    kept = store.set_request_id("j1", "req-1")
    assert kept.applied
    assert kept.job["status"] == "PROCESSING"
    other = store.set_request_id("j1", "req-2")
    assert not other.applied
    assert other.job["request_id"] == "req-1"


def test_callback_moves_on_a_job_whose_submit_outcome_is_unknown(store: JobStore, aws: dict[str, Any]) -> None:
    # Given a job sent to the gateway whose answer never came: SUBMITTING, no request_id
    unknown = {"code": "gateway_unavailable", "message": "no answer from the gateway after sending: ReadTimeout"}
    store.create(_job("j1", JobStatus.SUBMITTING, submit_error=unknown))
    processor = CallbackProcessor(store, CopyQueue(aws["queue_url"], aws["sqs"]))

    # When its sync-mode QUEUED callback, then its COMPLETED one, arrive with the request_id
    queued = processor.process("j1", parse_callback(_callback("QUEUED", "req-late")))
    completed = processor.process("j1", parse_callback(_callback("COMPLETED", "req-late")))

    # Then the job takes the request_id and moves on to its copy; another request's callback is refused
    assert (queued.applied, completed.applied, completed.status) == (True, True, JobStatus.COMPLETED)
    job = store.get("j1")
    assert job is not None and (job["status"], job["request_id"]) == ("COMPLETED", "req-late")
    assert _queued_messages(aws) == [{"job_id": "j1"}]
    with pytest.raises(CallbackRejected) as info:
        processor.process("j1", parse_callback(_callback("FAILED", "req-other")))
    assert info.value.status_code == 409

"""The handlers invoked with the events in events/, against moto (no network). POST /jobs is
followed by SubmitterFunction taking what it queued (``SubmitPath``), as Lambda's SQS poller
would; tests/unit/test_submitter.py holds the submitter's own cases."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from lambda_support import (
    FakeLambdaContext,
    create_jobs_table,
    drain_queue,
    load_event,
    load_function,
    template_resources,
)
from moto import mock_aws
from pixverse_jobs import admission
from pixverse_jobs import jobs as jobs_module
from pixverse_jobs.gateway import GatewayClient, RetryPolicy
from pixverse_jobs.jobs import parse_submit_request
from pixverse_jobs.signing import sign
from pixverse_jobs.store import JobStore, _idempotency_record_id
from slow_gateway import SlowGateway

GATEWAY_KEY = "sk-live-DO-NOT-LOG-0123456789"
SIGNING_SECRET = "w" * 64
JOB_ID = "job_0123456789abcdef0123456789abcdef"
OWNER = "arn:aws:iam::123456789012:user/video-backend"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        secrets = boto3.client("secretsmanager")
        table = create_jobs_table(ddb)
        queue_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
        submit_queue_url = sqs.create_queue(QueueName="submit")["QueueUrl"]
        deadline_queue_url = sqs.create_queue(QueueName="deadline")["QueueUrl"]
        secrets.create_secret(Name="pixverse-jobs/pixazo-api-key", SecretString=GATEWAY_KEY)
        signing_arn = secrets.create_secret(Name="signing", SecretString=SIGNING_SECRET)["ARN"]
        values = {
            "JOBS_TABLE": table,
            "COPY_QUEUE_URL": queue_url,
            "SUBMIT_QUEUE_URL": submit_queue_url,
            "DEADLINE_QUEUE_URL": deadline_queue_url,
            "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
            "PIXAZO_API_KEY_SECRET": "pixverse-jobs/pixazo-api-key",
            "WEBHOOK_SECRET_ARN": signing_arn,
            "WEBHOOK_MODE": "terminal",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "UPLOAD_BUCKET": "media",
        }
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        yield {
            "ddb": ddb,
            "sqs": sqs,
            "table": table,
            "queue_url": queue_url,
            "submit_queue_url": submit_queue_url,
            "deadline_queue_url": deadline_queue_url,
        }


def _gateway(seen: list[httpx.Request], response: httpx.Response) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response

    return httpx.Client(transport=httpx.MockTransport(handler))


class SubmitPath:
    """SubmitFunction, then SubmitterFunction on what it queued: ``handler`` answers as the API
    does and then lets the submitter run, as Lambda's SQS poller would a moment later."""

    def __init__(self, env: dict[str, Any], gateway: httpx.Client) -> None:
        self.env = env
        self.api = load_function("SubmitFunction")
        self.service = self.api.service
        self.submitter_module = load_function("SubmitterFunction")
        self.submitter_module.submitter._gateway = GatewayClient(
            "https://gateway.pixazo.ai", lambda: GATEWAY_KEY, gateway, retry=RetryPolicy(attempts=1)
        )

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.api.handler(event, context)
        self.drain(context)
        return response

    def drain(self, context: Any = None) -> None:
        drain_queue(
            self.env["sqs"], self.env["submit_queue_url"], self.submitter_module.handler, context or FakeLambdaContext()
        )

    def job(self, job_id: str) -> dict[str, Any]:
        stored = JobStore(self.env["table"], self.env["ddb"]).get(job_id)
        assert stored is not None
        return stored


def _queued_messages(env: dict[str, Any]) -> dict[str, int]:
    attributes = env["sqs"].get_queue_attributes(QueueUrl=env["submit_queue_url"], AttributeNames=["All"])["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
    }


def _submit_module(env: dict[str, Any], seen: list[httpx.Request], response: httpx.Response) -> SubmitPath:
    return SubmitPath(env, _gateway(seen, response))


def test_submit_event_records_job_and_submits_with_signed_webhook(
    env: dict[str, Any], lambda_context: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[httpx.Request] = []
    accepted = httpx.Response(202, json={"request_id": "pixverse-v6-text-to-video_1", "status": "QUEUED"})
    module = _submit_module(env, seen, accepted)

    # When the job is POSTed, the API answers at once: recorded, waiting for the gateway
    response = module.api.handler(load_event("submit_job"), lambda_context)
    assert response["statusCode"] == 202
    job = json.loads(response["body"])
    assert (job["status"], job["submit_outcome"], job["request_id"]) == ("ACCEPTED", "waiting", None)
    assert job["metadata"] == {"order": "A-1001"}
    assert seen == []
    assert _queued_messages(env)["visible"] == 1

    # and the submitter then sends it, with the signed webhook URL and the input unchanged
    module.drain(lambda_context)
    stored = module.job(job["job_id"])
    assert (stored["status"], stored["request_id"], stored["owner"]) == ("QUEUED", "pixverse-v6-text-to-video_1", OWNER)
    sent = seen[0]
    assert sent.headers["X-Webhook-URL"] == (
        "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/webhooks/pixazo/"
        f"{job['job_id']}?sig={sign(job['job_id'], SIGNING_SECRET)}"
    )
    assert json.loads(sent.content) == json.loads(load_event("submit_job")["body"])["input"]
    assert _queued_messages(env) == {"visible": 0, "delayed": 0}
    out = capsys.readouterr()
    assert GATEWAY_KEY not in out.out + out.err + caplog.text + response["body"]
    assert SIGNING_SECRET not in out.out + out.err + caplog.text


def test_submit_invalid_body_is_400_and_calls_nothing(env: dict[str, Any], lambda_context: Any) -> None:
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, httpx.Response(202, json={"request_id": "x"}))
    event = load_event("submit_job")
    event["body"] = json.dumps({"model": "pixverse", "input": {"prompt": "x", "duration": 4}})
    response = module.handler(event, lambda_context)
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["code"] == "validation_error"
    assert {d["field"] for d in error["details"]} == {"input.aspect_ratio", "input.resolution", "input.duration"}
    assert seen == []
    assert env["ddb"].scan(TableName=env["table"])["Count"] == 0
    assert _queued_messages(env) == {"visible": 0, "delayed": 0}


def test_submit_malformed_json_is_400(env: dict[str, Any], lambda_context: Any) -> None:
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "x"}))
    event = load_event("submit_job")
    event["body"] = "{nope"
    response = module.handler(event, lambda_context)
    assert response["statusCode"] == 400
    assert "not valid JSON" in json.loads(response["body"])["error"]["message"]


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            402,
            {"error": "Insufficient Balance", "message": "Your wallet does not have enough balance."},
            "insufficient_balance",
        ),
        (429, {"error": "Too Many Requests", "message": "slow down"}, "rate_limited"),
        (401, {"error": "Unauthorized"}, "gateway_auth_error"),
        (500, {"error": "Internal Server Error"}, "gateway_unavailable"),
    ],
    ids=["402", "429", "401", "500"],
)
def test_gateway_not_now_keeps_the_job_waiting_and_queued_again(
    env: dict[str, Any], lambda_context: Any, caplog: pytest.LogCaptureFixture, status: int, body: Any, code: str
) -> None:
    # Given a gateway that says "not now"
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, httpx.Response(status, json=body))

    # When a job is submitted
    response = module.handler(load_event("submit_job"), lambda_context)

    # Then the caller got 202 and the job waits, ACCEPTED, with the gateway's answer, queued again
    # (delayed by the backoff) rather than failed
    assert response["statusCode"] == 202
    job = module.job(json.loads(response["body"])["job_id"])
    assert (job["status"], job["submit_attempts"], job["last_submit_error"]["code"]) == ("ACCEPTED", 1, code)
    assert "submit_claim" not in job
    assert len(seen) == 1
    assert _queued_messages(env) == {"visible": 0, "delayed": 1}
    assert GATEWAY_KEY not in caplog.text


def test_gateway_refusal_ends_the_job_submit_failed_with_its_failed_event(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a gateway that refuses the parameters (400: never) and a table that throttles the
    # first two SUBMIT_FAILED writes
    refusal = {"error": "Bad Request", "message": "prompt refused"}
    module = _submit_module(env, [], httpx.Response(400, json=refusal))
    monkeypatch.setattr(admission, "RECORD_RETRY_DELAY_SECONDS", 0.0)
    store = module.submitter_module.submitter._store
    real_advance = store.advance
    failures = {"left": 2}

    def advance(job_id: str, target: Any, **kwargs: Any) -> Any:
        if target == "SUBMIT_FAILED" and failures["left"]:
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")
        return real_advance(job_id, target, **kwargs)

    monkeypatch.setattr(store, "advance", advance)

    # When the job is submitted
    response = module.handler(load_event("submit_job"), lambda_context)

    # Then the job ends SUBMIT_FAILED with the gateway's reason (not left SUBMITTING, which would
    # read as "outcome unknown" until MaxJobAgeSeconds), and the copier is asked for its failed event
    job_id = json.loads(response["body"])["job_id"]
    job = module.job(job_id)
    assert (job["status"], job["error"]["code"]) == ("SUBMIT_FAILED", "validation_error")
    assert "unfinished" in job  # the copier announces it, then takes it out of the index
    assert failures["left"] == 0
    messages = env["sqs"].receive_message(QueueUrl=env["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"job_id": job_id}]
    assert _queued_messages(env) == {"visible": 0, "delayed": 0}


def test_get_job_of_another_caller_is_404(env: dict[str, Any], lambda_context: Any) -> None:
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "r1"}))
    created = json.loads(module.handler(load_event("submit_job"), lambda_context)["body"])
    event = load_event("get_job")
    event["pathParameters"]["job_id"] = created["job_id"]
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/jobs/{created['job_id']}"
    mine = module.handler(event, lambda_context)
    assert mine["statusCode"] == 200
    assert json.loads(mine["body"])["job_id"] == created["job_id"]
    event["requestContext"]["authorizer"]["iam"]["userArn"] = "arn:aws:iam::123456789012:user/someone-else"
    theirs = module.handler(event, lambda_context)
    assert theirs["statusCode"] == 404


def _webhook_event(sig: str | None, body: dict[str, Any] | str) -> dict[str, Any]:
    event = load_event("webhook_callback")
    if sig is None:
        event.pop("queryStringParameters")
        event["rawQueryString"] = ""
    else:
        event["queryStringParameters"] = {"sig": sig}
        event["rawQueryString"] = f"sig={sig}"
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def _seed_job(env: dict[str, Any], request_id: str) -> None:
    JobStore(env["table"], env["ddb"]).create(
        {
            "job_id": JOB_ID,
            "owner": OWNER,
            "model": "pixverse-v6-text-to-video",
            "input": {"prompt": "x"},
            "status": "QUEUED",
            "request_id": request_id,
            "created_at": "2026-11-25T12:00:00.000Z",
            "updated_at": "2026-11-25T12:00:00.000Z",
        }
    )


def test_webhook_event_with_valid_sig_completes_job_and_enqueues(env: dict[str, Any], lambda_context: Any) -> None:
    module = load_function("WebhookFunction")
    body = json.loads(load_event("webhook_callback")["body"])
    _seed_job(env, body["request_id"])
    response = module.handler(_webhook_event(sign(JOB_ID, SIGNING_SECRET), body), lambda_context)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"job_id": JOB_ID, "status": "COMPLETED", "applied": True}
    msgs = env["sqs"].receive_message(QueueUrl=env["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in msgs] == [{"job_id": JOB_ID}]


@pytest.mark.parametrize("sig", [None, "00" * 32, sign(JOB_ID, "another-secret")], ids=["missing", "zero", "forged"])
def test_webhook_bad_signature_is_401_before_parsing(env: dict[str, Any], lambda_context: Any, sig: str | None) -> None:
    module = load_function("WebhookFunction")
    _seed_job(env, "r1")
    before = JobStore(env["table"], env["ddb"]).get(JOB_ID)
    response = module.handler(_webhook_event(sig, "{definitely not json"), lambda_context)
    assert response["statusCode"] == 401
    assert JobStore(env["table"], env["ddb"]).get(JOB_ID) == before


def test_media_copy_handler_reports_failed_record(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIA_BUCKET", "media")
    monkeypatch.setenv("EVENTS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:events")
    monkeypatch.setenv("EVENT_BUS_NAME", "events")
    monkeypatch.setenv("ALLOWED_MEDIA_HOSTS", "*.r2.dev")
    module = load_function("MediaCopyFunction")

    def deliver(job_id: str) -> Any:
        raise RuntimeError(f"S3 down for {job_id}")

    monkeypatch.setattr(module.service, "deliver", deliver)
    event = load_event("media_copy")
    result = module.handler(event, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_media_copy_handler_drops_malformed_message(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIA_BUCKET", "media")
    monkeypatch.setenv("EVENTS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:events")
    monkeypatch.setenv("EVENT_BUS_NAME", "events")
    monkeypatch.setenv("ALLOWED_MEDIA_HOSTS", "*.r2.dev")
    module = load_function("MediaCopyFunction")
    event = load_event("media_copy")
    event["Records"][0]["body"] = "not json at all"
    assert module.handler(event, lambda_context) == {"batchItemFailures": []}


def test_idempotency_key_repeat_returns_the_job_and_queues_nothing_new(
    env: dict[str, Any], lambda_context: Any
) -> None:
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, httpx.Response(202, json={"request_id": "pixverse-v6-text-to-video_2"}))
    event = load_event("submit_job")
    event["headers"]["idempotency-key"] = "order-A-1001"

    first = module.api.handler(event, lambda_context)
    repeat = module.api.handler(event, lambda_context)

    assert (first["statusCode"], repeat["statusCode"]) == (202, 202)
    assert json.loads(repeat["body"])["job_id"] == json.loads(first["body"])["job_id"]
    assert _queued_messages(env)["visible"] == 1
    module.drain(lambda_context)
    assert len(seen) == 1
    again = module.handler(event, lambda_context)
    assert json.loads(again["body"])["request_id"] == "pixverse-v6-text-to-video_2"
    assert len(seen) == 1


def _idempotent_submit_event(key: str) -> dict[str, Any]:
    event = load_event("submit_job")
    event["headers"]["idempotency-key"] = key
    return event


def _accepted() -> httpx.Response:
    return httpx.Response(202, json={"request_id": "pixverse-v6-text-to-video_9", "status": "QUEUED"})


def _stored_ids(env: dict[str, Any]) -> list[str]:
    items = env["ddb"].scan(TableName=env["table"])["Items"]
    return sorted(item["job_id"]["S"] for item in items)


def test_idempotency_key_is_released_when_the_job_write_fails(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table that refuses the job write once (throttled)
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())
    store = module.service._store
    real_create = store.create
    calls = {"n": 0}

    def create_throttled_once(job: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"
            )
        real_create(job)

    monkeypatch.setattr(store, "create", create_throttled_once)
    event = _idempotent_submit_event("order-B-7")

    # When the first request fails to record its job
    failed = module.handler(event, lambda_context)

    # Then it answers 500, sent nothing, left no key and no job behind
    assert failed["statusCode"] == 500
    assert json.loads(failed["body"])["error"]["code"] == "internal"
    assert seen == []
    assert _stored_ids(env) == []
    # and the caller's retry with the same key submits once
    retried = module.handler(event, lambda_context)
    assert retried["statusCode"] == 202
    assert len(seen) == 1


def test_stale_idempotency_claim_without_a_job_is_taken_over(env: dict[str, Any], lambda_context: Any) -> None:
    # Given a key claimed two minutes ago by a request that died before writing its job
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())
    event = _idempotent_submit_event("order-C-3")
    body_hash = parse_submit_request(json.loads(event["body"])).fingerprint()
    store = module.service._store
    claim = store.claim_idempotency_key(OWNER, "order-C-3", body_hash=body_hash, job_id="job_dead", ttl_seconds=3600)
    assert claim.claimed
    env["ddb"].update_item(
        TableName=env["table"],
        Key={"job_id": {"S": _idempotency_record_id(OWNER, "order-C-3")}},
        UpdateExpression="SET created_at_epoch = created_at_epoch - :age",
        ExpressionAttributeValues={":age": {"N": "120"}},
    )

    # When the caller retries with the same key and body
    response = module.handler(event, lambda_context)

    # Then the retry takes the key over and submits exactly once
    assert response["statusCode"] == 202
    assert len(seen) == 1
    repeat = module.handler(event, lambda_context)
    assert json.loads(repeat["body"])["job_id"] == json.loads(response["body"])["job_id"]
    assert len(seen) == 1


def test_fresh_idempotency_claim_without_a_job_is_409_in_progress(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a key claimed just now by a request still writing its job
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())
    monkeypatch.setattr(jobs_module, "IDEMPOTENT_WAIT_SECONDS", 0.2)
    event = _idempotent_submit_event("order-D-4")
    body_hash = parse_submit_request(json.loads(event["body"])).fingerprint()
    module.service._store.claim_idempotency_key(
        OWNER, "order-D-4", body_hash=body_hash, job_id="job_inflight", ttl_seconds=3600
    )

    # When a repeat arrives
    response = module.handler(event, lambda_context)

    # Then it is told to retry later, and nothing is sent
    assert response["statusCode"] == 409
    assert "in progress" in json.loads(response["body"])["error"]["message"]
    assert seen == []


def _as_jwt_caller(event: dict[str, Any], sub: str) -> dict[str, Any]:
    event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": sub, "iss": "https://issuer"}, "scopes": None}}
    return event


def test_jwt_caller_owns_its_job_and_another_sub_gets_404(env: dict[str, Any], lambda_context: Any) -> None:
    # Given a stack in AuthMode jwt: the authorizer passes the token's claims
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())

    created = module.handler(_as_jwt_caller(load_event("submit_job"), "user-123"), lambda_context)
    assert created["statusCode"] == 202
    job_id = json.loads(created["body"])["job_id"]

    # Then the job belongs to the token's sub
    stored = env["ddb"].get_item(TableName=env["table"], Key={"job_id": {"S": job_id}})["Item"]
    assert stored["owner"]["S"] == "user-123"
    get = load_event("get_job")
    get["pathParameters"] = {"job_id": job_id}
    get["rawPath"] = f"/jobs/{job_id}"
    get["routeKey"] = "GET /jobs/{job_id}"
    assert module.handler(_as_jwt_caller(get, "user-123"), lambda_context)["statusCode"] == 200
    assert module.handler(_as_jwt_caller(get, "user-456"), lambda_context)["statusCode"] == 404


def test_request_id_write_is_retried_after_the_gateway_accepted(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table that refuses the first two writes of the accepted request_id
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())
    monkeypatch.setattr(admission, "RECORD_RETRY_DELAY_SECONDS", 0.0)
    store = module.submitter_module.submitter._store
    real_advance = store.advance
    failures = {"left": 2}

    def advance(job_id: str, target: Any, **kwargs: Any) -> Any:
        if kwargs.get("request_id") and failures["left"]:
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")
        return real_advance(job_id, target, **kwargs)

    monkeypatch.setattr(store, "advance", advance)

    # When the job is submitted
    response = module.handler(load_event("submit_job"), lambda_context)

    # Then the paid request's id is stored, and the job was sent once
    assert response["statusCode"] == 202
    job = module.job(json.loads(response["body"])["job_id"])
    assert (job["request_id"], job["status"]) == ("pixverse-v6-text-to-video_9", "QUEUED")
    assert failures["left"] == 0
    assert len(seen) == 1


# ------------------------------------------------------------------ the invocation's deadline
@dataclass
class ShortLambdaContext(FakeLambdaContext):
    """A Lambda context whose invocation has ``seconds`` left from its creation."""

    seconds: float = 5.0

    def __post_init__(self) -> None:
        self._ends = time.monotonic() + self.seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


@pytest.fixture
def slow_gateway() -> Iterator[SlowGateway]:
    gateway = SlowGateway(delay=30.0)
    yield gateway
    gateway.close()


def _callback_event(job_id: str, body: dict[str, Any]) -> dict[str, Any]:
    event = _webhook_event(sign(job_id, SIGNING_SECRET), body)
    event["pathParameters"] = {"job_id": job_id}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhooks/pixazo/{job_id}"
    return event


def test_gateway_answering_after_the_time_left_leaves_the_outcome_unknown_and_its_callback_completes_it(
    env: dict[str, Any], slow_gateway: SlowGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a gateway that takes the job at once but answers after 30 s, and a submit call bounded at 2 s
    module = SubmitPath(env, httpx.Client())
    module.submitter_module.submitter._gateway = GatewayClient(
        slow_gateway.url, lambda: GATEWAY_KEY, retry=RetryPolicy(attempts=1)
    )
    monkeypatch.setattr(admission, "SUBMIT_CALL_SECONDS", 2.0)
    event = _idempotent_submit_event("order-slow-1")

    # When the job is submitted and the submitter sends it
    started = time.monotonic()
    response = module.handler(event, FakeLambdaContext())
    elapsed = time.monotonic() - started

    # Then the submit gave up by its deadline; the job is SUBMITTING with its outcome unknown
    assert elapsed < 10.0, elapsed
    assert response["statusCode"] == 202, response["body"]
    job_id = json.loads(response["body"])["job_id"]
    stored = module.job(job_id)
    assert (stored["status"], stored.get("request_id"), stored["submit_error"]["code"]) == (
        "SUBMITTING",
        None,
        "gateway_unavailable",
    )
    assert len(slow_gateway.accepted) == 1
    get = load_event("get_job")
    get["pathParameters"]["job_id"] = job_id
    get["rawPath"] = get["requestContext"]["http"]["path"] = f"/jobs/{job_id}"
    assert json.loads(module.api.handler(get, FakeLambdaContext())["body"])["submit_outcome"] == "unknown"

    # and a repeat with the same Idempotency-Key returns that job and sends nothing, even when
    # its submit message comes again (SQS delivers at least once)
    repeat = module.api.handler(event, FakeLambdaContext())
    assert json.loads(repeat["body"])["job_id"] == job_id
    module.submitter_module.submitter._submit_queue.enqueue(job_id, OWNER)
    module.drain()
    assert len(slow_gateway.accepted) == 1

    # When the gateway's signed callback for the request it accepted arrives
    callback = json.loads(load_event("webhook_callback")["body"])
    callback["request_id"] = slow_gateway.accepted[0]["request_id"]
    webhook = load_function("WebhookFunction")
    answer = webhook.handler(_callback_event(job_id, callback), FakeLambdaContext())

    # Then the job takes its request_id and completes; its copy is requested
    assert answer["statusCode"] == 200, answer["body"]
    stored = module.job(job_id)
    assert (stored["status"], stored["request_id"]) == ("COMPLETED", slow_gateway.accepted[0]["request_id"])
    messages = env["sqs"].receive_message(QueueUrl=env["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"job_id": job_id}]
    assert json.loads(module.api.handler(get, FakeLambdaContext())["body"])["submit_outcome"] == "accepted"


def test_no_time_left_for_the_gateway_sends_nothing_and_the_job_waits(env: dict[str, Any]) -> None:
    # Given a submitter invocation with less time left than a submit and its reserve need
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())
    response = module.api.handler(load_event("submit_job"), FakeLambdaContext())

    module.drain(ShortLambdaContext(seconds=admission.SUBMIT_CALL_SECONDS + admission.RESERVE_SECONDS - 1))

    # Then nothing is sent or claimed: the job waits, queued again for the next invocation
    assert seen == []
    job = module.job(json.loads(response["body"])["job_id"])
    assert (job["status"], job.get("submit_attempts")) == ("ACCEPTED", None)
    assert _queued_messages(env) == {"visible": 0, "delayed": 1}


def test_idempotent_wait_ends_by_the_invocations_deadline(env: dict[str, Any]) -> None:
    # Given a key claimed just now by a request still writing its job, and 3.5 s left
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, _accepted())
    event = _idempotent_submit_event("order-E-5")
    body_hash = parse_submit_request(json.loads(event["body"])).fingerprint()
    module.service._store.claim_idempotency_key(
        OWNER, "order-E-5", body_hash=body_hash, job_id="job_inflight", ttl_seconds=3600
    )

    # When a repeat arrives
    started = time.monotonic()
    response = module.handler(event, ShortLambdaContext(seconds=3.5))

    # Then it stops waiting by the deadline (not after IDEMPOTENT_WAIT_SECONDS) and says retry later
    assert time.monotonic() - started < 3.5 - 2.0
    assert response["statusCode"] == 409
    assert seen == []


def test_the_api_timeout_the_submit_function_assumes_is_the_templates(env: dict[str, Any]) -> None:
    module = load_function("SubmitFunction")
    resources = template_resources()
    api_timeout = resources["SubmitIntegration"]["Properties"]["TimeoutInMillis"] / 1000

    assert api_timeout == module.API_INTEGRATION_TIMEOUT_SECONDS
    # Lambda's own timeout is no shorter: the API's, counted from timeEpoch, is the one that bounds
    assert resources["SubmitFunction"]["Properties"]["Timeout"] >= api_timeout


# ------------------------------------------------ other methods: 405 with Allow (issue 13, 2.14)
OTHER_METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "QUERY"]


def _other_method_event(method: str, path: str, route_path: str) -> dict[str, Any]:
    """What API Gateway sends through template.yaml's ``ANY`` route of ``route_path``."""
    event = load_event("get_job")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"ANY {route_path}"
    if "{job_id}" in route_path:
        event["pathParameters"] = {"job_id": path.rsplit("/", 1)[1]}
    else:
        event.pop("pathParameters", None)
    return event


@pytest.mark.parametrize("method", OTHER_METHODS)
@pytest.mark.parametrize(
    ("path", "route_path", "allow"),
    [("/jobs", "/jobs", "GET, POST"), (f"/jobs/{JOB_ID}", "/jobs/{job_id}", "GET")],
    ids=["jobs", "job"],
)
def test_other_method_on_a_job_path_is_405_with_allow(
    env: dict[str, Any], lambda_context: Any, method: str, path: str, route_path: str, allow: str
) -> None:
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, httpx.Response(202, json={"request_id": "r1"}))

    response = module.handler(_other_method_event(method, path, route_path), lambda_context)

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == allow
    assert response["headers"]["Content-Type"] == "application/json"
    error = json.loads(response["body"])["error"]
    assert (error["code"], error["details"]) == ("method_not_allowed", [])
    assert method in error["message"] and allow in error["message"]
    assert seen == [] and _stored_ids(env) == []


def test_other_method_with_a_body_that_is_not_json_is_still_405(env: dict[str, Any], lambda_context: Any) -> None:
    # The body checks are POST's: a PUT's body is never read, whatever it holds.
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "r1"}))
    event = _other_method_event("PUT", "/jobs", "/jobs")
    event["headers"]["content-type"] = "text/plain"
    event["body"] = "not json"

    response = module.handler(event, lambda_context)

    assert (response["statusCode"], response["headers"]["Allow"]) == (405, "GET, POST")


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("PUT", "/jobs/a/b"), ("GET", "/jobs/")])
def test_a_path_of_no_route_is_still_404_not_found(
    env: dict[str, Any], lambda_context: Any, method: str, path: str
) -> None:
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "r1"}))
    event = _other_method_event(method, path, "/jobs")

    response = module.handler(event, lambda_context)

    assert response["statusCode"] == 404
    assert "Allow" not in response["headers"]
    assert json.loads(response["body"])["error"]["code"] == "not_found"


def test_get_of_an_unknown_job_is_still_404_not_found(env: dict[str, Any], lambda_context: Any) -> None:
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "r1"}))

    response = module.handler(load_event("get_job"), lambda_context)

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["message"] == f"job {JOB_ID} not found"


def test_a_caller_at_its_cap_is_answered_429_quota_exceeded(
    env: dict[str, Any], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_JOBS_PER_CALLER", "1")
    module = _submit_module(env, [], _accepted())

    first = module.api.handler(load_event("submit_job"), lambda_context)
    second = module.api.handler(load_event("submit_job"), lambda_context)

    assert first["statusCode"] == 202
    assert (second["statusCode"], second["headers"]["Retry-After"]) == (429, "30")
    error = json.loads(second["body"])["error"]
    assert error["code"] == "quota_exceeded" and "MaxJobsPerCaller" in error["message"]
    assert _queued_messages(env)["visible"] == 1

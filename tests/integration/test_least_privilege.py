"""Least privilege, proven on the local stack: every AWS call each function makes is allowed by
its role as template.yaml defines it, and every write its role grants is one it uses.

A stack of its own (call log and moto's request recording on, ProgressEvents=true, a gateway cap
of two jobs in flight so the submitter's slots are used, a reconciler that looks at jobs after 2 s)
is driven down every path of every function; then the recorded calls are checked against the roles
samtranslator generates from template.yaml (tests/iam_support.py explains how). Two of the submit
function's paths happen only when AWS fails it, so the stack fails exactly those two calls
(``SUBMIT_FAULTS``): a job record that could not be written (its Idempotency-Key freed) and a submit
message that could not be sent (the job flagged for the reconciler). The last tests run the same
checker on altered copies of template.yaml against the same recording, to show it catches a missing
permission, an unused write and a wrong index.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import iam_support as iam
import pytest
from pixverse_jobs.events import JOB_DELIVERED
from pixverse_local.harness import ROOT, EventInbox, LocalClient, StackError, StackProcess

TEMPLATE_PATH = ROOT / "template.yaml"
FUNCTIONS = (
    "SubmitFunction",
    "SubmitterFunction",
    "WebhookFunction",
    "MediaCopyFunction",
    "ReconcileFunction",
    "DeadlineFunction",
)
# GatewayMaxInFlight: the submitter's slot records (PutItem, BatchGetItem) exist only with a cap.
PARAMETER_OVERRIDES = {"ProgressEvents": "true", "GatewayMaxInFlight": "2"}
# The submit function's PutItem and SendMessage calls draw from this seeded sequence in the drive's
# order (its requests are sent one at a time; a POST without a key draws twice: its job record and
# its message, one with a key three times: the key first): draws 0-3 are the two gateway-fault jobs;
# the 6th draw (the third job's record) and the 9th (its retry's message) fail, the next 191 do not
# (random.Random(101512), found by search).
SUBMIT_FAULTS = {
    "LOCAL_AWS_FAULTS": "SubmitFunction:dynamodb.PutItem=0.02,SubmitFunction:sqs.SendMessage=0.02",
    "LOCAL_AWS_FAULT_SEED": "101512",
}
# How long the drive gives the reconciler to queue the job whose submit message was lost.
UNQUEUED_WAIT_SECONDS = 15.0
MODEL = "pixverse-v6-text-to-video"
MiB = 1024 * 1024
# Cut half-way (8.5 MiB, after the first 8 MiB part went up) by an origin without ranges: the copier
# restarts from byte 0, which aborts the first multipart upload, then completes a second one.
MULTIPART_SIZE = 17 * MiB

# What the drive must have made each function do: a path that silently stopped happening would
# otherwise leave its grant unchecked (a read grant is never reported unused).
EXERCISED = {
    "SubmitFunction": {
        ("dynamodb", "PutItem"),
        ("dynamodb", "GetItem"),
        # The flag of a job whose submit message could not be sent.
        ("dynamodb", "UpdateItem"),
        # A freed Idempotency-Key, after its job record could not be written.
        ("dynamodb", "DeleteItem"),
        ("dynamodb", "Query"),
        # GET /jobs fills its page of by_owner_shard keys.
        ("dynamodb", "BatchGetItem"),
        # POST /jobs queues the job for the submitter (and its deadline message); a cancel asks the
        # copier for the cancelled event.
        ("sqs", "SendMessage"),
        # POST /jobs/{job_id}/replay: to SNS and the bus.
        ("sns", "Publish"),
        ("events", "PutEvents"),
        # An s3:// image input checked at POST /jobs: HeadObject, then its first bytes.
        ("s3", "HeadObject"),
        ("s3", "GetObject"),
    },
    "SubmitterFunction": {
        ("dynamodb", "GetItem"),
        # The claim, the outcome, a slot given back.
        ("dynamodb", "UpdateItem"),
        # A gateway slot taken (GatewayMaxInFlight).
        ("dynamodb", "PutItem"),
        # The slots, and their holders, read when every slot looked taken.
        ("dynamodb", "BatchGetItem"),
        # A job queued again after a "not now", and a refused job's failed event asked of the copier.
        ("sqs", "SendMessage"),
        ("secretsmanager", "GetSecretValue"),
    },
    "WebhookFunction": {
        ("dynamodb", "UpdateItem"),
        ("sqs", "SendMessage"),
        ("sns", "Publish"),
        # The same progress events on the EventBridge bus.
        ("events", "PutEvents"),
        ("secretsmanager", "GetSecretValue"),
    },
    "MediaCopyFunction": {
        ("dynamodb", "GetItem"),
        ("dynamodb", "UpdateItem"),
        ("s3", "PutObject"),
        ("s3", "CreateMultipartUpload"),
        ("s3", "UploadPart"),
        ("s3", "CompleteMultipartUpload"),
        ("s3", "PutObjectTagging"),
        ("s3", "AbortMultipartUpload"),
        ("sns", "Publish"),
        ("events", "PutEvents"),
        # The backoff of a copy whose attempt failed.
        ("sqs", "ChangeMessageVisibility"),
        # The copy of a job cancelled while it was made.
        ("s3", "DeleteObject"),
    },
    "ReconcileFunction": {
        ("dynamodb", "Query"),
        # Its candidates, from the keys-only unfinished_by_check index.
        ("dynamodb", "BatchGetItem"),
        ("dynamodb", "UpdateItem"),
        ("sqs", "SendMessage"),
        ("secretsmanager", "GetSecretValue"),
    },
    "DeadlineFunction": {
        ("dynamodb", "GetItem"),
        # The cancel (deadline_exceeded).
        ("dynamodb", "UpdateItem"),
        # The cancelled event asked of the copier, and a deadline message sent again for the time left.
        ("sqs", "SendMessage"),
    },
}

# Read grants no recorded call needs, and why they are still needed.
READS_USED_OUTSIDE_THE_CALL_LOG = {
    # GET /jobs/{job_id} presigns download URLs: no API call, but S3 authorizes each download
    # against the signing role (the drive downloads one to show the URL works).
    ("SubmitFunction", "s3:GetObject"),
    # The submitter sends the gateway a presigned GET of an s3:// image input (the drive's
    # from-upload job: the simulator fetches it).
    ("SubmitterFunction", "s3:GetObject"),
}
# The same for writes: POST /uploads presigns a PUT, which the caller makes (the drive does).
WRITES_USED_OUTSIDE_THE_CALL_LOG = {("SubmitFunction", "s3:PutObject")}


@dataclass
class RecordedRun:
    calls: Counter[iam.Call]
    faulted: Counter[iam.Call]
    requests: list[iam.Request]
    stack: iam.PhysicalStack
    parameters: dict[str, Any]
    # The job whose submit message could not be sent at POST, as the drive last saw it.
    unqueued: dict[str, Any] | None = None

    @property
    def reached(self) -> Counter[iam.Call]:
        """The calls that reached the emulator (a faulted call was failed before it was sent)."""
        return self.calls - self.faulted


# ---------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("PIXAZO_BASE_URL"):
        pytest.skip("needs the local stack's own moto server and gateway simulator")
    workdir = tmp_path_factory.mktemp("least-privilege")
    call_log, recording = workdir / "calls.jsonl", workdir / "moto-recording.jsonl"
    env = {
        "LOCAL_AWS_CALL_LOG": str(call_log),
        # moto server (started by the stack, inheriting this environment) records every request.
        "MOTO_ENABLE_RECORDING": "true",
        "MOTO_RECORDER_FILEPATH": str(recording),
        "RECONCILE_AFTER_SECONDS": "2",
        "LOCAL_RECONCILE_EVERY_SECONDS": "1",
        "LOCAL_TIME_SCALE": "0.001",
        **SUBMIT_FAULTS,
    }
    parameters = iam.template_parameters(TEMPLATE_PATH, PARAMETER_OVERRIDES)
    process = StackProcess(env=env, parameter_overrides=PARAMETER_OVERRIDES, log_path=workdir / "local-stack.log")
    process.start()
    try:
        assert process.ready is not None
        client = LocalClient(process.ready)
        try:
            stack = iam.discover_physical(TEMPLATE_PATH, parameters, process.ready["aws"])
            unqueued = _drive(client)
        finally:
            client.close()
    finally:
        code = process.stop()
    assert code == 0, f"local stack exited {code}; log: {workdir / 'local-stack.log'}"
    # The stack has stopped, so both logs are complete.
    calls, faulted = iam.load_call_log(call_log)
    operations = {(c.service, c.operation) for c in calls}
    requests = iam.load_moto_recording(recording, stack, operations)
    return RecordedRun(calls, faulted, requests, stack, parameters, unqueued)


def _prompt(tag: str, directives: str = "") -> dict[str, Any]:
    return {"model": MODEL, "input": {"prompt": f"least privilege {tag} {uuid.uuid4().hex[:8]} {directives}".strip()}}


def _accepted(response: httpx.Response) -> str:
    assert response.status_code in (200, 202), response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _drive(client: LocalClient) -> dict[str, Any]:
    """Every path of every function, at least once; the job whose submit message was lost."""
    submitted: dict[str, str] = {}
    # First the gateway's faults, while no other job can take them (a submit fault answers whichever
    # submit comes next). "Not now" (402) to the next submit: the job waits and the submitter queues
    # it again. Then a refusal (400): SUBMIT_FAILED, its failed event asked of the copier.
    assert client.gateway is not None
    client.gateway.post("/_sim/faults", json={"submit_status": 402, "count": 1}).raise_for_status()
    submitted["not_now"] = _accepted(client.submit(_prompt("not now")))
    client.wait_sent(submitted["not_now"], timeout=60)
    client.gateway.post("/_sim/faults", json={"submit_status": 400, "count": 1}).raise_for_status()
    submitted["refused"] = _accepted(client.submit(_prompt("refused")))
    client.wait_sent(submitted["refused"], timeout=60)
    # SUBMIT_FAULTS: the job record's PutItem fails, so the key is freed (DeleteItem) and the
    # request answers 5xx; its retry records the job, but its submit message cannot be sent: the
    # job is answered 202 all the same and flagged (UpdateItem) for the reconciler to queue.
    unqueued_body = _prompt("unqueued")
    unqueued_key = {"Idempotency-Key": f"lp-{uuid.uuid4().hex}"}
    failed_record = client.submit(unqueued_body, headers=unqueued_key)
    assert failed_record.status_code >= 500, failed_record.text
    unqueued = _accepted(client.submit(unqueued_body, headers=unqueued_key))
    # POST /jobs with an Idempotency-Key, sync mode: progress events from the webhook.
    key = f"lp-{uuid.uuid4().hex}"
    sync_body = {**_prompt("sync"), "webhook_mode": "sync"}
    submitted["sync"] = _accepted(client.submit(sync_body, headers={"Idempotency-Key": key}))
    # The same key and body: the same job, nothing new sent; another body: 409.
    assert _accepted(client.submit(sync_body, headers={"Idempotency-Key": key})) == submitted["sync"]
    assert client.submit(_prompt("other"), headers={"Idempotency-Key": key}).status_code == 409
    # A second sync job: the progress event needs a PROCESSING callback, which a stalled simulator
    # tick could skip for one job.
    submitted["sync2"] = _accepted(client.submit({**_prompt("sync2"), "webhook_mode": "sync"}))
    # Without a key; duplicate callbacks; a small (PutObject) copy.
    submitted["small"] = _accepted(client.submit(_prompt("small", "[sim:dup=3]")))
    submitted["multipart"] = _accepted(
        client.submit(_prompt("multipart", f"[sim:cut=1] [sim:no-ranges] [sim:size={MULTIPART_SIZE}]"))
    )
    # The callback never comes: the reconciler polls the gateway and enqueues the copy.
    submitted["lost"] = _accepted(client.submit(_prompt("lost", "[sim:no-callback]")))
    submitted["failed"] = _accepted(client.submit(_prompt("failed", "[sim:fail]")))
    submitted["refused_media"] = _accepted(client.submit(_prompt("gone", "[sim:media-status=410]")))
    # A copy whose first attempt fails (six cut downloads): its message is backed off, then delivered.
    submitted["flaky"] = _accepted(client.submit(_prompt("flaky", "[sim:cut=6]")))
    # POST /uploads, the caller's presigned PUT, and an image-to-video job from the upload: the
    # submit function checks the object, the submitter presigns it, the simulator fetches it.
    image = b"\x89PNG\r\n\x1a\n" + bytes(64)
    upload = client.api.post("/uploads", json={"content_type": "image/png", "size": len(image)}).json()
    httpx.put(upload["upload_url"], content=image, headers=upload["headers"], timeout=30).raise_for_status()
    from_upload = {"prompt": f"least privilege upload {uuid.uuid4().hex[:8]}", "image_url": upload["image_url"]}
    submitted["from_upload"] = _accepted(client.submit({"model": "pixverse-v6-image-to-video", "input": from_upload}))
    assert client.submit({"model": MODEL, "input": {}}).status_code == 400
    # Deadlines: one 2 s away ends the job CANCELLED (deadline_exceeded) from the deadline function;
    # one 21 s away is sent round the deadline queue (it is further than a message waits inside an
    # invocation) until its caller cancels it (the submit function asks the copier for its event).
    slow = "[sim:seconds=30]"
    submitted["deadline"] = _accepted(client.submit({**_prompt("deadline", slow), "deadline_seconds": 2}))
    submitted["cancelled"] = _accepted(client.submit({**_prompt("cancelled", slow), "deadline_seconds": 21}))
    client.wait_sent(submitted["cancelled"], timeout=60)
    time.sleep(1.0)
    assert client.api.post(f"/jobs/{submitted['cancelled']}/cancel").status_code == 200

    jobs = {name: client.wait_for(job_id, timeout=60) for name, job_id in submitted.items()}
    expected = {
        "sync": "DELIVERED",
        "sync2": "DELIVERED",
        "small": "DELIVERED",
        "multipart": "DELIVERED",
        "lost": "DELIVERED",
        "failed": "FAILED",
        "refused_media": "DELIVERY_FAILED",
        "flaky": "DELIVERED",
        "not_now": "DELIVERED",
        "refused": "SUBMIT_FAILED",
        "from_upload": "DELIVERED",
        "deadline": "CANCELLED",
        "cancelled": "CANCELLED",
    }
    assert {name: job["status"] for name, job in jobs.items()} == expected, jobs
    assert jobs["not_now"]["last_submit_error"]["code"] == "insufficient_balance", jobs["not_now"]

    # GET /jobs/{job_id} of a delivered job: presigned URLs, which must work.
    delivered = client.get_job(submitted["small"])
    download = httpx.get(delivered["outputs"][0]["download_url"], timeout=30)
    assert download.status_code == 200, download.text[:200]
    assert client.api.get("/jobs/job_00000000000000000000000000000000").status_code == 404
    # GET /jobs, plain and status-filtered (the by_owner_shard index, then BatchGetItem).
    assert client.api.get("/jobs", params={"limit": 3}).status_code == 200
    assert client.api.get("/jobs", params={"status": "DELIVERED", "limit": 3}).status_code == 200
    # A replay of an ended job's event (the submit function publishes it).
    assert client.api.post(f"/jobs/{submitted['small']}/replay").status_code == 200
    # A job cancelled while its media is copied: the copier's GET answers 3 s late (nothing else
    # fetches media now), the job is cancelled meanwhile, so the copier deletes what it wrote.
    client.gateway.post(
        "/_sim/faults", json={"media_get_status": 200, "delay_seconds": 3, "count": 1}
    ).raise_for_status()
    copying = _accepted(client.submit(_prompt("cancelled while copying")))
    _wait_status(client, copying, "COPYING")
    assert client.api.post(f"/jobs/{copying}/cancel").status_code == 200
    ended = client.wait_for(copying, timeout=60)
    assert ended["status"] == "CANCELLED" and ended["outputs"] == []
    # A callback with a wrong signature is refused before anything is written.
    bad = client.api.post(f"/webhooks/pixazo/{submitted['small']}", params={"sig": "00" * 32}, json={})
    assert bad.status_code == 401, bad.text
    # The job whose submit message was lost: the reconciler (every second here) should queue it.
    try:
        return client.wait_for(unqueued, timeout=UNQUEUED_WAIT_SECONDS)
    except StackError:
        return client.get_job(unqueued)


def _wait_status(client: LocalClient, job_id: str, status: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get_job(job_id)["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} never reached {status}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return iam.load_sam_template(TEMPLATE_PATH)


def _roles(
    run: RecordedRun, sam_template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, iam.Role]:
    return iam.expand_roles(
        iam.translate(sam_template),
        FUNCTIONS,
        template_path=TEMPLATE_PATH,
        parameters=run.parameters if parameters is None else parameters,
        physical=run.stack.resources,
    )


@pytest.fixture(scope="module")
def roles(run: RecordedRun, sam_template: dict[str, Any]) -> dict[str, iam.Role]:
    return _roles(run, sam_template)


# ---------------------------------------------------------------- the proof


def test_drive_exercises_every_path_of_every_function(run: RecordedRun) -> None:
    print("\nrecorded AWS calls (function, operation, count):\n" + iam.calls_table(run.calls))
    made = {f: {(c.service, c.operation) for c in run.calls if c.function == f} for f in FUNCTIONS}

    missing = {f: sorted(EXERCISED[f] - made[f]) for f in FUNCTIONS if EXERCISED[f] - made[f]}

    assert missing == {}, "the drive no longer reaches these calls, so their grants go unchecked"
    assert {c.function for c in run.calls} <= set(FUNCTIONS), "calls attributed to an unknown function"
    assert run.faulted == Counter(
        {iam.Call("SubmitFunction", "dynamodb", "PutItem"): 1, iam.Call("SubmitFunction", "sqs", "SendMessage"): 1}
    ), "setup: SUBMIT_FAULTS failed other calls than the drive's third job's record and message"


def test_a_job_whose_submit_message_was_lost_is_queued_by_the_reconciler(run: RecordedRun) -> None:
    # Given the drive's third job: recorded, answered 202, its submit message not sent (SUBMIT_FAULTS)
    assert run.unqueued is not None

    # Then the reconciler (every second, after 2 s) queued it and it was delivered within 15 s,
    # which exercises ReconcileFunction's sqs:SendMessage on the SubmitQueue
    assert run.unqueued["status"] == "DELIVERED", run.unqueued
    assert run.calls[iam.Call("ReconcileFunction", "sqs", "SendMessage")] >= 1


def test_every_recorded_operation_has_an_iam_mapping(run: RecordedRun) -> None:
    unmapped = sorted({(c.service, c.operation) for c in run.calls} - set(iam.ACTIONS_BY_OPERATION))

    assert unmapped == [], "add these to ACTIONS_BY_OPERATION in tests/iam_support.py"


def test_every_call_of_every_function_is_allowed_by_its_role(run: RecordedRun, roles: dict[str, iam.Role]) -> None:
    problems = iam.calls_not_allowed(roles, run.calls)

    assert problems == [], "\n".join(problems)


def test_every_request_goes_to_a_resource_its_function_may_touch(run: RecordedRun, roles: dict[str, iam.Role]) -> None:
    print(
        "\nrequests by resource:\n"
        + "\n".join(
            f"{r.service} {r.operation} {r.target} x{n}" for r, n in sorted(Counter(run.requests).items(), key=str)
        )
    )
    problems = iam.requests_not_attributable(roles, run.reached, run.requests)

    assert problems == [], "\n".join(problems)


def test_every_write_a_role_grants_is_used_by_its_function(run: RecordedRun, roles: dict[str, iam.Role]) -> None:
    problems = [
        p
        for p in iam.unused_write_grants(roles, run.calls)
        if not any(p.startswith(f"{f}'s role grants {a} ") for f, a in WRITES_USED_OUTSIDE_THE_CALL_LOG)
    ]

    assert problems == [], "\n".join(problems)


def test_every_read_a_role_grants_is_used_or_explained(run: RecordedRun, roles: dict[str, iam.Role]) -> None:
    unused = iam.unused_read_grants(roles, run.calls)

    unexplained = sorted(
        (f, action)
        for f, actions in unused.items()
        for action in actions
        if (f, action) not in READS_USED_OUTSIDE_THE_CALL_LOG
    )
    assert unexplained == [], "read grants that no recorded call needed and no allowance explains"


# ---------------------------------------------------------------- the checker catches what it must
# Each test checks the same recorded run against an altered copy of template.yaml and compares the
# findings with those for template.yaml itself: what is new is what the alteration caused.

Check = Callable[[dict[str, iam.Role]], list[str]]


def _altered(
    sam_template: dict[str, Any], function: str, change: Callable[[list[dict[str, Any]]], None]
) -> dict[str, Any]:
    template = copy.deepcopy(sam_template)
    change(template["Resources"][function]["Properties"]["Policies"][0]["Statement"])
    return template


def _without_action(action: str) -> Callable[[list[dict[str, Any]]], None]:
    def remove(statements: list[dict[str, Any]]) -> None:
        before = len(statements)
        statements[:] = [s for s in statements if s.get("Action") != action]
        assert len(statements) == before - 1, f"no statement of exactly {action} to remove"

    return remove


def _without_listed_action(action: str) -> Callable[[list[dict[str, Any]]], None]:
    def remove(statements: list[dict[str, Any]]) -> None:
        (statement,) = [s for s in statements if isinstance(s.get("Action"), list) and action in s["Action"]]
        statement["Action"] = [a for a in statement["Action"] if a != action]

    return remove


def _new_findings(check: Check, roles: dict[str, iam.Role], altered_roles: dict[str, iam.Role]) -> list[str]:
    # Compared without the list of grants a message ends with: that list is what the alteration changes.
    def key(problem: str) -> str:
        return problem.split(" (inline grants: ", 1)[0]

    baseline = {key(p) for p in check(roles)}
    findings = [p for p in check(altered_roles) if key(p) not in baseline]
    print("\n" + "\n".join(findings))
    return findings


def test_checker_reports_the_call_a_removed_statement_was_needed_for(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    # Given template.yaml without the webhook's sqs:SendMessage statement
    altered = _roles(run, _altered(sam_template, "WebhookFunction", _without_action("sqs:SendMessage")))
    sends = run.calls[iam.Call("WebhookFunction", "sqs", "SendMessage")]

    # When the same recorded calls are checked against it
    findings = _new_findings(lambda r: iam.calls_not_allowed(r, run.calls), roles, altered)

    # Then exactly that call is reported
    assert findings == [
        f"WebhookFunction called sqs SendMessage ({'once' if sends == 1 else f'{sends} times'}), which needs "
        "sqs:SendMessage: its role does not allow it (inline grants: dynamodb:UpdateItem, events:PutEvents, "
        "secretsmanager:GetSecretValue, sns:Publish)"
    ]


def test_checker_reports_the_requests_a_removed_statement_was_needed_for(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    altered = _roles(run, _altered(sam_template, "WebhookFunction", _without_action("sqs:SendMessage")))
    queue_arn = run.stack.resources["CopyQueue"].attributes["Arn"]

    findings = _new_findings(lambda r: iam.requests_not_attributable(r, run.reached, run.requests), roles, altered)

    # The reconciler may send to the queue, so no single request is refused; the counts are not.
    # Every finding is that shortfall, for the webhook alone or for a group of senders it is in
    # (with the submit queue's senders, the SubmitFunction + WebhookFunction group falls short too,
    # as the run's timing decides).
    assert findings, "the removed statement went unreported"
    assert findings[0].startswith("sqs SendMessage: WebhookFunction made "), findings
    assert f"{queue_arn} x" in findings[0], findings
    for finding in findings:
        senders = finding.split(" made ")[0].removeprefix("sqs SendMessage: ").split(" + ")
        assert finding.startswith("sqs SendMessage: ") and "WebhookFunction" in senders, finding


def test_checker_reports_an_unused_write_grant(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    # Given a reconciler that may also delete jobs, which it never does
    extra = {"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": {"Fn::GetAtt": ["JobsTable", "Arn"]}}
    altered = _roles(run, _altered(sam_template, "ReconcileFunction", lambda statements: statements.append(extra)))

    findings = _new_findings(lambda r: iam.unused_write_grants(r, run.calls), roles, altered)

    table_arn = run.stack.resources["JobsTable"].attributes["Arn"]
    assert findings == [
        f"ReconcileFunction's role grants dynamodb:DeleteItem (a write) on {table_arn}, "
        "which the function never used during the run"
    ]


def test_checker_reports_a_query_on_an_index_the_role_does_not_grant(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    # Given a submit function allowed the reconciler's index instead of its own
    def swap_index(statements: list[dict[str, Any]]) -> None:
        (query,) = [s for s in statements if s.get("Action") == "dynamodb:Query"]
        query["Resource"] = {"Fn::Sub": "${JobsTable.Arn}/index/unfinished_by_check"}

    altered = _roles(run, _altered(sam_template, "SubmitFunction", swap_index))

    by_action = _new_findings(lambda r: iam.calls_not_allowed(r, run.calls), roles, altered)
    by_resource = _new_findings(lambda r: iam.requests_not_attributable(r, run.reached, run.requests), roles, altered)

    # Action level nothing changed; the resource-level check names the by_owner_shard Queries
    assert by_action == []
    by_owner = run.stack.resources["JobsTable"].attributes["Arn"] + "/index/by_owner_shard"
    assert any(p.startswith(f"dynamodb Query on {by_owner} (") and "SubmitFunction" in p for p in by_resource), (
        by_resource
    )


def test_conditional_grant_follows_the_parameters_the_stack_ran_with(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    # Given the template's default ProgressEvents=false, which leaves the webhook's sns:Publish out
    defaults = _roles(run, sam_template, iam.template_parameters(TEMPLATE_PATH, {}))

    findings = _new_findings(lambda r: iam.calls_not_allowed(r, run.calls), roles, defaults)

    assert defaults["WebhookFunction"].excluded == [
        "sns:Publish (condition PublishProgress is false)",
        "events:PutEvents (condition PublishProgress is false)",
    ]
    assert sorted(f.split(" (", 1)[0] for f in findings) == [
        "WebhookFunction called events PutEvents",
        "WebhookFunction called sns Publish",
    ], findings
    assert all("its role does not allow it" in f for f in findings), findings


def test_checker_reports_the_tagging_calls_a_removed_put_object_tagging_grant_was_needed_for(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    # Given template.yaml with s3:PutObjectTagging taken out of the copier's S3 statement
    altered = _roles(run, _altered(sam_template, "MediaCopyFunction", _without_listed_action("s3:PutObjectTagging")))
    bucket_objects = f"{run.stack.resources['MediaBucket'].attributes['Arn']}/"

    # When the same recorded calls and requests are checked against it
    by_action = _new_findings(lambda r: iam.calls_not_allowed(r, run.calls), roles, altered)
    by_resource = _new_findings(lambda r: iam.requests_not_attributable(r, run.reached, run.requests), roles, altered)

    # Then both the tagged PutObjects (single-part copies) and the PutObjectTaggings (multipart) are
    # reported, at both levels: the recording's x-amz-tagging header marks the PutObjects as tagged
    assert sorted(p.split(" (", 1)[0] for p in by_action) == [
        "MediaCopyFunction called s3 PutObject with Tagging",
        "MediaCopyFunction called s3 PutObjectTagging",
    ], by_action
    assert all("which needs s3:PutObjectTagging: its role does not allow it" in p for p in by_action), by_action
    assert {p.split(" on ", 1)[0] for p in by_resource if "no role of the functions" in p} == {
        "s3 PutObject",
        "s3 PutObjectTagging",
    }, by_resource
    assert all(bucket_objects in p for p in by_resource), by_resource


# ---------------------------------------------------------------- the callback buffer, throttled
# A stack of its own whose webhook and buffer consumer see their DynamoDB UpdateItems fail half
# the time as if the SDK had given up (ThrottlingException, LOCAL_AWS_FAULTS with per-function
# entries: the copier's writes stay healthy, so its 900 s copy lease never stalls the run).
# What is checked: the gateway is never answered 5xx (the webhook buffers what the table refuses),
# every job is delivered exactly once, and the buffer path's calls (the webhook's SendMessage to
# CallbackBufferQueue, CallbackBufferFunction's UpdateItem, SendMessage and ChangeMessageVisibility)
# are allowed by the roles and made on the resources they grant.
BUFFER_FUNCTIONS = ("WebhookFunction", "CallbackBufferFunction")
BUFFER_FAULTS = {
    "LOCAL_AWS_FAULTS": ",".join(f"{function}:dynamodb.UpdateItem=0.5" for function in BUFFER_FUNCTIONS),
    "LOCAL_AWS_FAULT_SEED": "1414",
}
BUFFER_JOBS = 5
BUFFER_EXERCISED = {
    "WebhookFunction": {("dynamodb", "UpdateItem"), ("sqs", "SendMessage")},
    "CallbackBufferFunction": {
        ("dynamodb", "UpdateItem"),
        ("sqs", "SendMessage"),
        ("sqs", "ChangeMessageVisibility"),
    },
}


@dataclass
class BufferedRun:
    recorded: RecordedRun
    jobs: dict[str, dict[str, Any]]
    delivered_events: Counter[str]
    callback_answers: dict[str, list[int | None]]
    submit_answers: list[int]


def _submit_until_accepted(client: LocalClient, body: dict[str, Any], answers: list[int]) -> str:
    """POST /jobs as a careful caller does: the same Idempotency-Key until it is settled."""
    key = f"buffer-{uuid.uuid4().hex}"
    for _ in range(10):
        response = client.submit(body, headers={"Idempotency-Key": key})
        answers.append(response.status_code)
        if response.status_code in (200, 202):
            job_id: str = response.json()["job_id"]
            return job_id
    raise AssertionError(f"submit never accepted: {answers}")


@pytest.fixture(scope="module")
def buffered_run(tmp_path_factory: pytest.TempPathFactory) -> BufferedRun:
    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("PIXAZO_BASE_URL"):
        pytest.skip("needs the local stack's own moto server and gateway simulator")
    workdir = tmp_path_factory.mktemp("callback-buffer")
    call_log, recording = workdir / "calls.jsonl", workdir / "moto-recording.jsonl"
    env = {
        "LOCAL_AWS_CALL_LOG": str(call_log),
        "MOTO_ENABLE_RECORDING": "true",
        "MOTO_RECORDER_FILEPATH": str(recording),
        "RECONCILE_AFTER_SECONDS": "5",
        "LOCAL_RECONCILE_EVERY_SECONDS": "2",
        "LOCAL_TIME_SCALE": "0.001",
        **BUFFER_FAULTS,
    }
    parameters = iam.template_parameters(TEMPLATE_PATH, {})
    process = StackProcess(env=env, log_path=workdir / "local-stack.log")
    process.start()
    try:
        assert process.ready is not None
        client = LocalClient(process.ready)
        inbox = EventInbox(client)
        try:
            stack = iam.discover_physical(TEMPLATE_PATH, parameters, process.ready["aws"])
            submit_answers: list[int] = []
            # Sync mode: a callback on every poll cycle, so many webhook writes meet the faults.
            ids = [
                _submit_until_accepted(client, {**_prompt(f"buffer {n}"), "webhook_mode": "sync"}, submit_answers)
                for n in range(BUFFER_JOBS)
            ]
            jobs = {job_id: client.wait_for(job_id, timeout=120) for job_id in ids}
            events = inbox.collect(wait=3.0)
            delivered = Counter(str(e.get("subject")) for e in events if e.get("type") == JOB_DELIVERED)
            answers = {
                job_id: [c["status_code"] for c in client.simulated_request(job["request_id"])["callbacks"]]
                for job_id, job in jobs.items()
                if job.get("request_id")
            }
        finally:
            inbox.close()
            client.close()
    finally:
        code = process.stop()
    assert code == 0, f"local stack exited {code}; log: {workdir / 'local-stack.log'}"
    calls, faulted = iam.load_call_log(call_log)
    operations = {(c.service, c.operation) for c in calls}
    requests = iam.load_moto_recording(recording, stack, operations)
    return BufferedRun(
        RecordedRun(calls, faulted, requests, stack, parameters), jobs, delivered, answers, submit_answers
    )


def test_throttled_webhook_writes_answer_no_5xx_and_every_job_is_delivered_once(buffered_run: BufferedRun) -> None:
    run = buffered_run.recorded
    webhook_faults = run.faulted[iam.Call("WebhookFunction", "dynamodb", "UpdateItem")]
    print(f"\nwebhook UpdateItems failed: {webhook_faults}; callback answers: {buffered_run.callback_answers}")

    # the faults did meet the webhook (else this proves nothing)
    assert webhook_faults >= 3, "setup: the injected faults did not reach the webhook's writes"
    assert {c.function for c in run.faulted} <= set(BUFFER_FUNCTIONS), "setup: faults reached other functions"
    # every callback the gateway sent was answered 2xx at the first attempt: nothing for it to retry
    assert len(buffered_run.callback_answers) == BUFFER_JOBS
    answers = [code for codes in buffered_run.callback_answers.values() for code in codes]
    assert answers and all(code is not None and 200 <= code < 300 for code in answers), answers
    # every job delivered, with exactly one delivered event
    assert {job["status"] for job in buffered_run.jobs.values()} == {"DELIVERED"}, buffered_run.jobs
    assert buffered_run.delivered_events == Counter(dict.fromkeys(buffered_run.jobs, 1))


def test_buffer_path_calls_are_made_and_allowed(buffered_run: BufferedRun, sam_template: dict[str, Any]) -> None:
    run = buffered_run.recorded
    every = run.calls  # faulted calls included: each needed its permission too
    made = {f: {(c.service, c.operation) for c in every if c.function == f} for f in BUFFER_FUNCTIONS}
    roles = _roles(run, sam_template)
    roles.update(
        iam.expand_roles(
            iam.translate(sam_template),
            ("CallbackBufferFunction",),
            template_path=TEMPLATE_PATH,
            parameters=run.parameters,
            physical=run.stack.resources,
        )
    )

    assert {f: sorted(BUFFER_EXERCISED[f] - made[f]) for f in BUFFER_FUNCTIONS} == {f: [] for f in BUFFER_FUNCTIONS}
    assert iam.calls_not_allowed(roles, every) == []
    # Faulted calls never reached the emulator: only the others have requests to match.
    assert iam.requests_not_attributable(roles, run.calls - run.faulted, run.requests) == []
    unused = [p for p in iam.unused_write_grants(roles, every) if p.startswith(BUFFER_FUNCTIONS)]
    assert unused == []


def test_checker_reports_putevents_on_a_bus_the_role_does_not_grant(
    run: RecordedRun, sam_template: dict[str, Any], roles: dict[str, iam.Role]
) -> None:
    # Given a copier allowed events:PutEvents on another bus than the one it puts events on
    def other_bus(statements: list[dict[str, Any]]) -> None:
        (put,) = [s for s in statements if s.get("Action") == "events:PutEvents"]
        put["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/other"}

    altered = _roles(run, _altered(sam_template, "MediaCopyFunction", other_bus))

    by_action = _new_findings(lambda r: iam.calls_not_allowed(r, run.calls), roles, altered)
    by_resource = _new_findings(lambda r: iam.requests_not_attributable(r, run.reached, run.requests), roles, altered)

    # Action level nothing changed; the resource-level check finds the copier's puts on the stack's bus
    assert by_action == []
    bus_arn = run.stack.resources["EventBus"].attributes["Arn"]
    assert by_resource, "the wrong bus went unreported"
    assert all(p.startswith("events PutEvents: ") and "MediaCopyFunction" in p for p in by_resource), by_resource
    assert f"{bus_arn} x" in by_resource[0], by_resource

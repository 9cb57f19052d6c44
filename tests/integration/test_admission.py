"""Admission on the local stack (issue 14): POST /jobs records the job ACCEPTED and answers 202;
SubmitterFunction feeds the gateway from the submit queue. Proven here, over real HTTP and SQS:

* **Claim before submit.** Submit messages for one job, sent again while its submit is at the gateway
  or several at once, reach the gateway once: the submitter claims the job (ACCEPTED -> SUBMITTING,
  a conditional write) before it calls.
* **"Not now" and "never".** A gateway 429 / 402 / 401 / 403 / 5xx keeps the job waiting ACCEPTED
  (``last_submit_error``, ``submit_attempts``) and it is sent again until the gateway takes it; a 400
  ends it SUBMIT_FAILED with its failed event, sent once.
* **Fairness.** One caller's burst waits in the submit queue behind a slow gateway; a second caller's
  jobs, posted after it, reach the gateway before the burst's backlog does (the submit messages carry
  the caller as MessageGroupId: an SQS fair queue, which the local stack emulates).

A stack of its own: its faults and its burst stay away from the session stack's tests, and its time
scale (0.1) keeps the submit queue's visibility timeout (360 s -> 36 s) longer than the submitter's
slowest batch here, so only the messages a test sends come twice."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import iam_support as iam
import pytest
from gateway_support import (
    add_fault,
    clear_faults,
    gateway_requests,
    gateway_requests_for,
    submit_queue_url,
    submits_received,
    wait_job,
    wait_sent_as,
    wait_submit_queue_drained,
    webhook_job_id,
)
from pixverse_jobs.events import JOB_FAILED
from pixverse_jobs.queue import SubmitQueue
from pixverse_local.aws.sqs_event_source import DEFAULT_WORKERS
from pixverse_local.harness import ROOT, EventInbox, LocalClient, StackProcess

MODEL = "pixverse-v6-text-to-video"
TIME_SCALE = "0.1"
# The most submit messages the local stack's submitter holds at once: its event source's pollers
# (the mapping's MaximumConcurrency, SubmitMaxConcurrency's default, at most the local stack's
# sqs_event_source.DEFAULT_WORKERS) times the BatchSize template.yaml gives SubmitterFunction.
_TEMPLATE = iam.load_sam_template(ROOT / "template.yaml")
_SUBMIT_EVENT = _TEMPLATE["Resources"]["SubmitterFunction"]["Properties"]["Events"]["JobAccepted"]["Properties"]
SUBMITTER_BATCH = int(_SUBMIT_EVENT["BatchSize"])
SUBMITTER_POLLERS = min(
    DEFAULT_WORKERS,
    int(_TEMPLATE["Parameters"][_SUBMIT_EVENT["ScalingConfig"]["MaximumConcurrency"]["Ref"]]["Default"]),
)
IN_FLIGHT = SUBMITTER_POLLERS * SUBMITTER_BATCH


@pytest.fixture(scope="module")
def admission_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackProcess, LocalClient]]:
    log = tmp_path_factory.mktemp("admission") / "local-stack.log"
    process = StackProcess(log_path=log, env={"LOCAL_TIME_SCALE": TIME_SCALE, "LOCAL_RECONCILE_EVERY_SECONDS": "10"})
    process.start()
    assert process.ready is not None
    client = LocalClient(process.ready)
    try:
        yield process, client
    finally:
        client.close()
        code = process.stop()
        assert code == 0, f"local stack exited {code}; log: {log}"


@pytest.fixture
def client(admission_stack: tuple[StackProcess, LocalClient]) -> Iterator[LocalClient]:
    """The admission stack, its gateway without faults and its submit queue empty after each test."""
    _, local = admission_stack
    yield local
    clear_faults(local)
    wait_submit_queue_drained(local)


def _caller(role: str) -> dict[str, str]:
    """A backend role's session, as API Gateway names an assumed-role caller."""
    return {"X-Local-Principal-Arn": f"arn:aws:sts::123456789012:assumed-role/{role}-{uuid.uuid4().hex[:6]}/session"}


def _body(tag: str, directives: str = "") -> dict[str, Any]:
    return {"model": MODEL, "input": {"prompt": f"Admission {tag} {uuid.uuid4().hex[:8]} {directives}".strip()}}


def _admit(client: LocalClient, body: dict[str, Any], caller: dict[str, str]) -> str:
    response = client.submit(body, headers=caller)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert (job["status"], job["submit_outcome"]) == ("ACCEPTED", "waiting"), job
    return str(job["job_id"])


def _owner(client: LocalClient, job_id: str) -> str:
    """The job's owner as recorded (what POST /jobs put in its submit message)."""
    item = client.dynamodb.get_item(TableName=client.ready["table"], Key={"job_id": {"S": job_id}}, ConsistentRead=True)
    return str(item["Item"]["owner"]["S"])


def _send_duplicates(client: LocalClient, job_id: str, copies: int) -> None:
    """``copies`` more submit messages for ``job_id``, as SQS's at-least-once delivery or a
    reconciler's re-queue would bring them, each from its own thread at the same moment."""
    queue = SubmitQueue(submit_queue_url(client), client.sqs)
    owner = _owner(client, job_id)
    start = threading.Barrier(copies)

    def send(_: int) -> None:
        start.wait(timeout=10)
        queue.enqueue(job_id, owner)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        list(pool.map(send, range(copies)))


# ---------------------------------------------------------------- claim before submit
DUPLICATES = 6
SLOW_ANSWER_SECONDS = 3.0


def test_submit_messages_sent_again_while_the_submit_is_at_the_gateway_make_one_submit(client: LocalClient) -> None:
    # Given a gateway that takes the job at once but answers the submitter only 3 s later, and a
    # job whose submit is in that window (the gateway holds it; the submitter waits for the answer)
    caller = _caller("claim")
    received_before = submits_received(client)
    add_fault(client, {"submit_status": 202, "delay_seconds": SLOW_ANSWER_SECONDS, "count": 1})
    job_id = _admit(client, _body("claim in flight", "[sim:no-callback]"), caller)
    wait_job(client, job_id, lambda _: bool(gateway_requests_for(client, job_id)), timeout=30, headers=caller)

    # When six more submit messages for it arrive at once, while that submit is unanswered
    _send_duplicates(client, job_id, DUPLICATES)

    # Then, once the submitter has dealt with every message, the gateway got the job once
    job = wait_job(client, job_id, lambda j: bool(j["request_id"]), timeout=30, headers=caller)
    wait_submit_queue_drained(client)
    records = gateway_requests_for(client, job_id)
    assert len(records) == 1, f"the gateway accepted job {job_id} {len(records)} times"
    assert submits_received(client) - received_before == 1
    assert (job["status"], job["request_id"], job["submit_attempts"]) == ("QUEUED", records[0]["request_id"], 1)


def test_submit_messages_arriving_together_make_one_submit(client: LocalClient) -> None:
    """Duplicates racing the job's first message (SQS delivers at least once). Here the submitter's
    batches mostly take them together and the first one's claim is written before the next is read,
    so this one rarely needs the conditional write itself; the test above is the one that fails
    without the claim (a job left ACCEPTED while its submit is at the gateway)."""
    # Given a job just admitted (its own submit message queued)
    caller = _caller("claim")
    received_before = submits_received(client)
    job_id = _admit(client, _body("claim race", "[sim:no-callback]"), caller)

    # When six more messages for it arrive at the same moment, racing its own
    _send_duplicates(client, job_id, DUPLICATES)

    # Then one of them claimed it and submitted it; the others found it claimed
    job = wait_sent_as(client, job_id, caller)
    wait_submit_queue_drained(client)
    records = gateway_requests_for(client, job_id)
    assert len(records) == 1, f"the gateway accepted job {job_id} {len(records)} times"
    assert submits_received(client) - received_before == 1
    assert (job["request_id"], job["submit_attempts"]) == (records[0]["request_id"], 1)


# ---------------------------------------------------------------- "not now" and "never"
# (status the gateway answers, the error code the job then shows in last_submit_error)
NOT_NOW = [
    pytest.param(429, "rate_limited", id="429"),
    pytest.param(402, "insufficient_balance", id="402"),
    pytest.param(401, "gateway_auth_error", id="401"),
    pytest.param(403, "gateway_auth_error", id="403"),
    pytest.param(500, "gateway_unavailable", id="500"),
]
REFUSALS = 2


@pytest.mark.parametrize(("status", "code"), NOT_NOW)
def test_gateway_not_now_keeps_the_job_waiting_and_it_is_sent_again_until_taken(
    client: LocalClient, status: int, code: str
) -> None:
    # Given a gateway that answers the next two submits "not now" (a 429 with Retry-After: 1)
    caller = _caller("not-now")
    fault: dict[str, Any] = {"submit_status": status, "count": REFUSALS}
    if status == 429:
        fault["retry_after"] = 1
    add_fault(client, fault)
    received_before = submits_received(client)

    # When a job is submitted
    job_id = _admit(client, _body(f"not now {status}"), caller)

    # Then it is sent again after each refusal, and delivered once the gateway takes it: submitted
    # three times, accepted once, and its record says what the gateway last refused it with
    final = wait_job(client, job_id, lambda j: j["status"] == "DELIVERED", timeout=60, headers=caller)
    assert final["submit_attempts"] == REFUSALS + 1, final
    assert final["last_submit_error"]["code"] == code, final
    assert len(gateway_requests_for(client, job_id)) == 1
    assert submits_received(client) - received_before == REFUSALS + 1


def test_insufficient_balance_keeps_the_job_accepted_until_the_balance_is_back(client: LocalClient) -> None:
    # Given a wallet without balance: the gateway answers every submit 402
    caller = _caller("wallet")
    add_fault(client, {"submit_status": 402, "count": 1000})

    # When a job is submitted
    job_id = _admit(client, _body("wallet"), caller)

    # Then it waits ACCEPTED, saying why, and is tried again (not ended SUBMIT_FAILED, no request_id)
    def refused_twice(job: dict[str, Any]) -> bool:
        return job["submit_attempts"] >= 2 and job["status"] == "ACCEPTED"

    waiting = wait_job(client, job_id, refused_twice, timeout=30, headers=caller)
    assert (waiting["submit_outcome"], waiting["request_id"]) == ("waiting", None), waiting
    assert waiting["last_submit_error"]["code"] == "insufficient_balance", waiting
    assert "balance" in waiting["last_submit_error"]["message"], waiting
    assert gateway_requests_for(client, job_id) == []

    # When the balance is topped up (the gateway takes submits again)
    clear_faults(client)

    # Then the job is sent at its next turn, taken once, and delivered
    final = wait_job(client, job_id, lambda j: j["status"] == "DELIVERED", timeout=60, headers=caller)
    assert final["submit_attempts"] > waiting["submit_attempts"]
    assert len(gateway_requests_for(client, job_id)) == 1


def test_gateway_refusal_ends_the_job_submit_failed_with_one_failed_event_sent_once(client: LocalClient) -> None:
    # Given a gateway that refuses the next submit as invalid (400: it never will take it)
    caller = _caller("never")
    add_fault(client, {"submit_status": 400, "count": 1})
    received_before = submits_received(client)
    inbox = EventInbox(client)
    try:
        # When a job is submitted
        job_id = _admit(client, _body("never"), caller)

        # Then it ends SUBMIT_FAILED with the gateway's reason, sent once, and its failed event is published
        final = wait_job(client, job_id, lambda j: j["status"] == "SUBMIT_FAILED", timeout=30, headers=caller)
        events = inbox.for_job(job_id, wait=3.0)
    finally:
        inbox.close()
    assert (final["error"]["code"], final["submit_outcome"], final["submit_attempts"]) == (
        "validation_error",
        "refused",
        1,
    ), final
    assert [e["type"] for e in events] == [JOB_FAILED]
    assert submits_received(client) - received_before == 1


# ---------------------------------------------------------------- fairness between callers
BURST = 90
QUIET = 3
SLOW_SUBMIT_SECONDS = 0.5
# A's jobs not yet at the gateway when B's are admitted, beyond what the submitter already holds:
# below this the run would show little either way.
MIN_BACKLOG = 2 * IN_FLIGHT


def test_a_quiet_callers_jobs_reach_the_gateway_before_a_noisy_callers_backlog_drains(
    client: LocalClient,
) -> None:
    # Given a slow gateway (each submit answered after 0.5 s) and caller A's burst, admitted at
    # once, waiting in the submit queue for it
    noisy, quiet = _caller("burst"), _caller("quiet")
    add_fault(client, {"submit_status": 202, "delay_seconds": SLOW_SUBMIT_SECONDS, "count": BURST + QUIET})
    with ThreadPoolExecutor(max_workers=8) as pool:
        burst = list(pool.map(lambda n: _admit(client, _body(f"burst {n}", "[sim:no-callback]"), noisy), range(BURST)))
    burst_ids = set(burst)
    burst_sent_before = sum(1 for r in gateway_requests(client) if webhook_job_id(r) in burst_ids)
    backlog = BURST - burst_sent_before - IN_FLIGHT

    # When caller B posts three jobs after it
    quiet_ids = {_admit(client, _body(f"quiet {n}", "[sim:no-callback]"), quiet) for n in range(QUIET)}

    # Then (once every job reached the gateway) B's jobs were there before A's backlog drained:
    # more of A's jobs reached the gateway after B's last one than the submitter holds at once.
    # Oldest first (a queue without message groups) would put B's messages behind A's whole
    # backlog: once B's were received, only the A messages other pollers already held (at most
    # IN_FLIGHT - SUBMITTER_BATCH) could still be sent after them.
    wanted = burst_ids | quiet_ids
    wait_job(
        client,
        burst[0],
        lambda _: sum(1 for r in gateway_requests(client) if webhook_job_id(r) in wanted) == len(wanted),
        timeout=BURST * SLOW_SUBMIT_SECONDS + 120,
        headers=noisy,
    )
    order = [webhook_job_id(r) for r in gateway_requests(client) if webhook_job_id(r) in wanted]
    times = {webhook_job_id(r): r["submitted_at"] for r in gateway_requests(client)}
    last_quiet = max(order.index(job_id) for job_id in quiet_ids)
    burst_after_quiet = sum(1 for job_id in order[last_quiet + 1 :] if job_id in burst_ids)
    print(
        f"\nburst {BURST}, sent before B was admitted {burst_sent_before}, backlog beyond the submitter's "
        f"{IN_FLIGHT} {backlog}; B's last at position {last_quiet} ({times[order[last_quiet]]}), "
        f"A's jobs after it {burst_after_quiet}, A's last {times[order[-1]]}"
    )
    assert backlog >= MIN_BACKLOG, f"setup: A's backlog was {backlog} when B's jobs came"
    assert len(order) == len(wanted) == len(set(order)), "a job reached the gateway twice"
    assert max(times[job_id] for job_id in quiet_ids) < max(times[job_id] for job_id in burst_ids)
    assert burst_after_quiet > IN_FLIGHT, (
        f"only {burst_after_quiet} of A's {BURST} jobs reached the gateway after B's last one"
    )

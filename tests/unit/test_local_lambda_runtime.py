"""Lambda invocation in the local stack: timeouts, response size, concurrency and quotas as AWS has them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from pixverse_local.aws.lambda_runtime import (
    MAX_SYNC_RESPONSE_BYTES,
    AccountConcurrency,
    FunctionTimeoutError,
    LocalFunction,
    MarshalError,
    ResponseSizeTooLargeError,
    TooManyRequestsError,
    account_concurrency_setting,
    marshal_response,
)
from pixverse_local.aws.provision import ReservedConcurrencyError, check_reserved_concurrency, provision
from pixverse_local.aws.schedules import Scheduler
from pixverse_local.aws.sqs_event_source import SqsPoller
from pixverse_local.aws.template import (
    CfnTemplate,
    FunctionSpec,
    Resolver,
    ScheduleEventSpec,
    TemplateError,
    read_application,
)
from pixverse_local.errors import LocalStackError


def _function(
    tmp_path: Path,
    source: str,
    *,
    timeout: int = 3,
    reserved: int | None = None,
    concurrency: AccountConcurrency | None = None,
    name: str = "Fn",
) -> LocalFunction:
    code = tmp_path / name
    code.mkdir(exist_ok=True)
    (code / "app.py").write_text(source)
    spec = FunctionSpec(name, f"test-{name}", code, "app.handler", timeout, 128, {}, (), reserved)
    return LocalFunction.load(spec, region="us-east-1", account_id="123456789012", concurrency=concurrency)


# Counts invocations per container (module state survives warm starts only) and sleeps as asked,
# swallowing every Exception as careless product code does.
COUNTING_SLEEPER = """
import time
INVOCATIONS = 0
def handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    deadline = time.monotonic() + event.get("sleep", 0)
    while time.monotonic() < deadline:
        try:
            time.sleep(0.02)
        except Exception:
            pass
    return {"invocations": INVOCATIONS}
"""


# ------------------------------------------------------------------------------------------ timeout
def test_handler_past_its_timeout_fails_as_sandbox_timedout_at_the_deadline(tmp_path: Path) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, timeout=1)
    started = time.monotonic()

    with pytest.raises(FunctionTimeoutError, match=r"Task timed out after 1\.00 seconds") as caught:
        function.invoke({"sleep": 5})

    assert 0.95 < time.monotonic() - started < 1.5
    assert caught.value.error_type == "Sandbox.Timedout"


def test_timed_out_container_is_dropped_and_the_next_invocation_is_a_cold_start(tmp_path: Path) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, timeout=1)
    assert function.invoke({}) == {"invocations": 1}
    assert function.invoke({}) == {"invocations": 2}  # warm: the same container

    with pytest.raises(FunctionTimeoutError):
        function.invoke({"sleep": 5})

    assert function.invoke({}) == {"invocations": 1}  # a new import of the handler


def test_stopped_handler_runs_no_further_though_it_catches_exception(tmp_path: Path) -> None:
    marker = tmp_path / "steps"
    source = f"""
import time
def handler(event, context):
    for step in range(1, 201):
        try:
            time.sleep(0.02)
        except Exception:
            continue
        open({str(marker)!r}, "w").write(str(step))
"""
    function = _function(tmp_path, source, timeout=1)

    with pytest.raises(FunctionTimeoutError):
        function.invoke({})
    time.sleep(0.3)
    stopped_at = int(marker.read_text())
    time.sleep(0.5)

    assert int(marker.read_text()) == stopped_at < 80  # 200 steps take 4 s


def test_context_reports_the_time_left_before_the_timeout(tmp_path: Path) -> None:
    function = _function(tmp_path, "def handler(event, context):\n    return context.get_remaining_time_in_millis()\n")

    assert 2900 < function.invoke({}) <= 3000


def test_sqs_batch_whose_invocation_timed_out_returns_to_the_queue(tmp_path: Path) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, timeout=1)
    sqs = _RecordingSqs()
    poller = SqsPoller(
        name="Fn.Queue", sqs_client=sqs, queue_url="q", queue_arn="arn:aws:sqs:us-east-1:1:q", invoke=function.invoke
    )
    # The body is not the event here: make the handler sleep through its records' count instead.
    poller._invoke = lambda event: function.invoke({"sleep": 5})  # type: ignore[method-assign]

    outcome = poller.process([{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}"}])

    assert outcome.failed == ("m1",) and outcome.succeeded == ()
    # Not deleted, and left alone: it comes back after its visibility timeout, as with Lambda's poller.
    assert sqs.calls == []


def test_scheduled_run_that_times_out_just_ends_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, timeout=1)
    spec = ScheduleEventSpec("Fn", "Every", "Schedule", "rate(5 minutes)", '{"sleep": 5}', True)
    scheduler = Scheduler([(spec, function.invoke)], interval_seconds=0.05)

    with caplog.at_level(logging.ERROR, logger="pixverse_local.aws.schedules"):
        scheduler.start()
        time.sleep(1.4)
        scheduler.stop()

    assert any("scheduled run of Fn failed" in r.getMessage() and r.exc_info for r in caplog.records)
    assert "Sandbox.Timedout" in caplog.text


class _RecordingSqs:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def delete_message_batch(self, **_: Any) -> None:
        self.calls.append("delete_message_batch")

    def change_message_visibility_batch(self, **_: Any) -> None:
        self.calls.append("change_message_visibility_batch")


# ------------------------------------------------------------------------------------------ payload
def test_response_at_the_limit_passes_and_one_byte_more_fails() -> None:
    envelope = len('{"body": ""}')
    at_limit = {"body": "x" * (MAX_SYNC_RESPONSE_BYTES - envelope)}

    assert marshal_response(at_limit) == at_limit
    with pytest.raises(ResponseSizeTooLargeError, match="6291556 bytes") as caught:
        marshal_response({"body": "x" * (MAX_SYNC_RESPONSE_BYTES - envelope + 1)})
    assert caught.value.error_type == "Function.ResponseSizeTooLarge"


def test_response_size_counts_non_ascii_as_utf8_as_the_313_runtime_sends_it() -> None:
    # 4 UTF-8 bytes per emoji, unescaped (json.dumps' default escape would count 12).
    emoji = "\N{FILM FRAMES}" * ((MAX_SYNC_RESPONSE_BYTES - 20) // 4)

    assert marshal_response({"body": emoji})["body"] == emoji


def test_function_returning_over_6_mb_fails_the_invocation(tmp_path: Path) -> None:
    function = _function(tmp_path, "def handler(event, context):\n    return 'x' * 6_291_556\n")

    with pytest.raises(ResponseSizeTooLargeError):
        function.invoke({})


def test_result_that_is_not_json_fails_as_a_marshal_error(tmp_path: Path) -> None:
    function = _function(tmp_path, "def handler(event, context):\n    return {'when': object()}\n")

    with pytest.raises(MarshalError, match="Unable to marshal response"):
        function.invoke({})


# ------------------------------------------------------------------------------------------ concurrency
def _concurrently(count: int, call: Callable[[], Any]) -> list[str]:
    """Run ``call`` ``count`` times at once; each outcome as "ok" or the throttle reason."""
    barrier = threading.Barrier(count)

    def one(_: int) -> str:
        barrier.wait()
        try:
            call()
        except TooManyRequestsError as exc:
            return exc.reason
        return "ok"

    with ThreadPoolExecutor(max_workers=count) as pool:
        return sorted(pool.map(one, range(count)))


def test_invocations_over_the_account_quota_are_throttled(tmp_path: Path) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, concurrency=AccountConcurrency(limit=2))

    outcomes = _concurrently(3, lambda: function.invoke({"sleep": 0.5}))

    assert outcomes == ["ConcurrentInvocationLimitExceeded", "ok", "ok"]
    assert function.concurrency.running("Fn") == 0
    assert function.invoke({}) is not None  # the executions ended and freed their concurrency


def test_invocations_over_reserved_concurrency_are_throttled(tmp_path: Path) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, reserved=1)

    outcomes = _concurrently(2, lambda: function.invoke({"sleep": 0.5}))

    assert outcomes == ["ReservedFunctionConcurrentInvocationLimitExceeded", "ok"]


def test_reserved_concurrency_is_not_taken_from_the_unreserved_pool(tmp_path: Path) -> None:
    account = AccountConcurrency(limit=3)
    reserved = _function(tmp_path, COUNTING_SLEEPER, reserved=2, concurrency=account, name="Reserved")
    other = _function(tmp_path, COUNTING_SLEEPER, concurrency=account, name="Other")

    outcomes = _concurrently(2, lambda: reserved.invoke({"sleep": 0.5}))
    both = _concurrently(2, lambda: other.invoke({"sleep": 0.5}))

    assert outcomes == ["ok", "ok"]
    assert both == ["ConcurrentInvocationLimitExceeded", "ok"]  # 3 - 2 reserved leaves 1


def test_timed_out_invocation_frees_its_concurrency(tmp_path: Path) -> None:
    function = _function(tmp_path, COUNTING_SLEEPER, timeout=1, reserved=1)

    with pytest.raises(FunctionTimeoutError):
        function.invoke({"sleep": 5})

    assert function.invoke({}) == {"invocations": 1}


def test_account_concurrency_setting_must_be_a_positive_integer() -> None:
    assert account_concurrency_setting({}) == 1000
    assert account_concurrency_setting({"LOCAL_ACCOUNT_CONCURRENCY": "10"}) == 10
    for bad in ("ten", "0", "-5", "2.5"):
        with pytest.raises(LocalStackError, match="LOCAL_ACCOUNT_CONCURRENCY"):
            account_concurrency_setting({"LOCAL_ACCOUNT_CONCURRENCY": bad})


# ------------------------------------------------------------------------------------------ quotas
QUOTA_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Reserved: {Type: Number, Default: 1}
Resources:
  Reconciler:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn
      Handler: app.handler
      ReservedConcurrentExecutions: !Ref Reserved
  Api:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: fn, Handler: app.handler}
"""


def _quota_template(tmp_path: Path, reserved: int) -> tuple[CfnTemplate, Resolver]:
    (tmp_path / "template.yaml").write_text(QUOTA_TEMPLATE)
    template = CfnTemplate.load(tmp_path / "template.yaml", {"Reserved": str(reserved)})
    return template, Resolver(template, stack_name="quota")


def _provision(template: CfnTemplate, resolver: Resolver, account_concurrency: int) -> None:
    # The quota is checked before any resource is created, so no endpoint is needed to see a refusal.
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    provision(
        template, resolver, session=session, endpoint_url="http://127.0.0.1:9", account_concurrency=account_concurrency
    )


def test_any_reservation_is_refused_in_an_account_with_a_quota_of_10(tmp_path: Path) -> None:
    template, resolver = _quota_template(tmp_path, reserved=1)

    with pytest.raises(ReservedConcurrencyError) as caught:
        _provision(template, resolver, account_concurrency=10)

    message = str(caught.value)
    assert isinstance(caught.value, LocalStackError)
    assert "Reconciler" in message and "ReservedConcurrentExecutions 1" in message
    assert "minimum value of [100]" in message and "quota 10" in message and "would be 9" in message


def test_reservation_leaving_fewer_than_100_unreserved_is_refused(tmp_path: Path) -> None:
    template, resolver = _quota_template(tmp_path, reserved=901)

    with pytest.raises(ReservedConcurrencyError, match="Reconciler: ReservedConcurrentExecutions 901"):
        _provision(template, resolver, account_concurrency=1000)


def test_reservations_are_applied_in_order_and_the_one_that_breaks_the_quota_is_named() -> None:
    check_reserved_concurrency({"A": 900}, 1000)  # leaves exactly 100
    check_reserved_concurrency({"A": 0, "B": 0}, 10)  # reserving 0 takes nothing

    with pytest.raises(ReservedConcurrencyError, match=r"^B: .*already reserved 850, unreserved would be 50"):
        check_reserved_concurrency({"A": 850, "B": 100, "C": 1}, 1000)


def test_template_reservation_reaches_the_function_spec(tmp_path: Path) -> None:
    template, resolver = _quota_template(tmp_path, reserved=3)

    functions = read_application(template, resolver).functions

    assert functions["Reconciler"].reserved_concurrency == 3
    assert functions["Api"].reserved_concurrency is None


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("Timeout: 0", "Timeout is 0 s; Lambda allows 1 to 900"),
        ("Timeout: 901", "Timeout is 901 s; Lambda allows 1 to 900"),
        ("ReservedConcurrentExecutions: many", "ReservedConcurrentExecutions must be a whole number"),
        (
            "Events: {Get: {Type: HttpApi, Properties: {Method: GET, Path: /x, TimeoutInMillis: 30001}}}",
            "TimeoutInMillis is 30001; an HTTP API integration allows 50 to 30000 ms",
        ),
    ],
)
def test_function_limits_outside_aws_bounds_are_refused(tmp_path: Path, properties: str, message: str) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        f"    Properties:\n      CodeUri: fn\n      Handler: app.handler\n      {properties}\n"
    )
    template = CfnTemplate.load(tmp_path / "template.yaml")

    with pytest.raises(TemplateError, match=message):
        read_application(template, Resolver(template, stack_name="limits"))


def test_local_stack_with_a_small_account_quota_refuses_the_templates_reservation(tmp_path: Path) -> None:
    from pixverse_local.stack import LocalStack

    (tmp_path / "template.yaml").write_text(QUOTA_TEMPLATE)
    stack = LocalStack(tmp_path / "template.yaml", api_port=0, env={"LOCAL_ACCOUNT_CONCURRENCY": "10"})

    with pytest.raises(LocalStackError, match=r"Reconciler: ReservedConcurrentExecutions 1 .*quota 10"):
        stack.start()

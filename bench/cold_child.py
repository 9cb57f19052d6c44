"""One cold start, in this fresh interpreter (started by bench/cold_start.py with the function's
environment and a Lambda-like import path). Nothing is imported before the clock starts but
``time``; the result goes to a file, so whatever the function logs on stdout does not matter.

    python -S bench/cold_child.py app   <function dir> <invocations.json> <out.json>
    python -S bench/cold_child.py floor <function dir> <invocations.json> <out.json> <services> <httpx 0|1> [code]

``app``: import ``functions/<dir>/app.py`` (or ``<dir>/app.py`` for an absolute ``dir``) as Lambda
would (``init``), then invoke its handler with the first event (``first``) and the others (``warm``).
``floor``: import boto3 (and httpx where the function calls out) and create the clients the
function creates, nothing else; with ``code``, also run it (a diagnostic floor: the Powertools
pieces the function uses, say).
"""

import time

_STARTED = time.perf_counter()

import importlib.util  # noqa: E402 - after the clock starts, on purpose
import os  # noqa: E402
import sys  # noqa: E402


class _Context:
    """The fields of Lambda's context object that Powertools and the handlers read."""

    def __init__(self, name: str, memory: str, timeout: float) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(memory)
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "bench"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout
        self.aws_request_id = ""

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _AwsClock:
    """Wall time spent inside AWS calls (botocore's before-call to after-call), so that the first
    invocation's extra time can be split into AWS calls (secret reads, first connections) and
    the rest. Registered on the default session before the function creates its clients.

    Calls made at once from several threads (the reconciler queries the index's 17 keys together
    and its workers write in parallel) count once: the wall time during which at least one call
    is in flight, not the sum of their durations, which exceeds the invocation itself."""

    def __init__(self) -> None:
        import threading

        self.seconds = 0.0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0

    def before(self, context: dict[str, float], **_: object) -> None:
        with self._lock:
            if self._in_flight == 0:
                self._since = time.perf_counter()
            self._in_flight += 1
        context["bench_started"] = 1.0

    def after(self, context: dict[str, float], **_: object) -> None:
        if context.pop("bench_started", None) is None:
            return
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self.seconds += time.perf_counter() - self._since


def _app(function_dir: str, invocations_path: str) -> dict[str, object]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The function imports boto3 first thing anyway; the hooks cost microseconds.
    import boto3

    clock = _AwsClock()
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call", clock.before)
    boto3.DEFAULT_SESSION.events.register("after-call", clock.after)
    boto3.DEFAULT_SESSION.events.register("after-call-error", clock.after)
    directory = function_dir if os.path.isabs(function_dir) else os.path.join(root, "functions", function_dir)
    spec = importlib.util.spec_from_file_location("app", os.path.join(directory, "app.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    init = time.perf_counter() - _STARTED

    import json

    with open(invocations_path) as source:
        events = json.load(source)
    heavy = sorted(name for name in ("httpx", "pydantic") if name in sys.modules)
    durations = []
    aws = []
    answers = []
    for number, event in enumerate(events):
        if number and isinstance(event, dict) and "bench_due_again" in event:
            _due_again(event["bench_due_again"])
        context = _Context(function_dir, os.environ.get("BENCH_MEMORY_MB", "256"), 60.0)
        context.aws_request_id = f"bench-{number}"
        clock.seconds = 0.0
        started = time.perf_counter()
        answer = module.handler(event, context)
        durations.append(time.perf_counter() - started)
        aws.append(clock.seconds)
        answers.append(_summary(answer))
    return {"init_s": init, "invocations_s": durations, "aws_s": aws, "answers": answers, "heavy_modules": heavy}


_reset_client: list[object] = []


def _due_again(job: dict[str, str]) -> None:
    """Make a job the reconciler just looked at due again (its ``check_at`` now), so that each warm
    invocation does the first one's work. Untimed, after the first invocation only, on a client of
    its own botocore session: nothing it loads is what the function's first call would have."""
    import botocore.session

    if not _reset_client:
        _reset_client.append(botocore.session.get_session().create_client("dynamodb"))
    client = _reset_client[0]
    client.update_item(  # type: ignore[attr-defined]
        TableName=job["table"],
        Key={"job_id": {"S": job["job_id"]}},
        UpdateExpression="SET check_at = :now",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()) - 1)}},
    )


def _summary(answer: object) -> object:
    """What tells that an invocation did its real work (status code, failures, counts)."""
    if isinstance(answer, dict):
        if "statusCode" in answer:
            return answer["statusCode"]
        if "batchItemFailures" in answer:
            return {"failures": len(answer["batchItemFailures"])}
        return {k: v for k, v in answer.items() if k in ("examined", "actions")}
    return repr(answer)[:100]


def _floor(services: str, with_httpx: bool, code: str) -> dict[str, object]:
    import boto3

    clients = [boto3.client(service) for service in services.split(",") if service]
    if with_httpx:
        import httpx

        clients.append(httpx.Client(timeout=httpx.Timeout(10.0)))
    if code:
        exec(code, {})  # noqa: S102 - the benchmark's own statements
    init = time.perf_counter() - _STARTED
    return {"init_s": init, "invocations_s": [], "answers": [], "clients": len(clients)}


def main() -> int:
    mode, function_dir, invocations_path, out_path = sys.argv[1:5]
    if mode == "app":
        result = _app(function_dir, invocations_path)
    else:
        result = _floor(sys.argv[5], sys.argv[6] == "1", sys.argv[7] if len(sys.argv) > 7 else "")
    import json

    result["modules"] = len(sys.modules)
    with open(out_path, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

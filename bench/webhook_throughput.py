"""Webhook handling: callbacks per second one process sustains against the emulator, and where the
time goes (our code and the libraries we run on, against time inside AWS calls).

In a fresh process: moto server (its own process) with the template's table, queue and secrets
(see ``backend``); the webhook function imported from functions/webhook/app.py with its template
environment, metrics on (as in AWS; the log goes nowhere); one COMPLETED callback per QUEUED job,
each a signed HTTP API event, invoked one after another (one Lambda container handles one at a
time). Each callback is one conditional UpdateItem and one SendMessage. The two handlers below
take turns in chunks of 25 callbacks, so the machine's load falls on both alike.

Side by side, the same callbacks through a bare handler: the same HMAC check, the same conditional
UpdateItem and SendMessage on plain boto3 clients, no Powertools, no logging. Its rate is the
ceiling the emulator allows; the ratio says what the function's own work costs.

The AWS share comes from timing every AWS call (botocore's before-call to after-call: signing,
sending, waiting for moto, parsing) in the unprofiled runs; a separate cProfile pass splits the
rest by package.

    python bench/webhook_throughput.py --callbacks 300 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import hmac
import importlib.util
import json
import os
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from benchlib import BENCH_DIR, ROOT, median, run_json_child, spread

VARIANTS = ("ours", "bare")
CHUNK = 25


class AwsClock:
    """Wall time inside AWS calls, on clients whose session it is registered on."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls: Counter[str] = Counter()

    def register(self, events: Any) -> None:
        events.register("before-call", self._before)
        events.register("after-call", self._after)

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        started = context.get("bench_started")
        if started is not None:
            self.seconds += time.perf_counter() - started
            self.calls[model.name] += 1


class _Context:
    function_name = "WebhookFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:WebhookFunction"
    log_group_name = "/aws/lambda/WebhookFunction"
    log_stream_name = "bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _import_webhook() -> Any:
    code = ROOT / "functions" / "webhook"
    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location("app", code / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def _bare_handler(
    session: Any, endpoint: str, table: str, queue_url: str, secret: str
) -> Callable[[dict[str, Any]], int]:
    """The same work with nothing around it: verify, one conditional write, one message."""
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    key = secret.encode()

    def handle(event: dict[str, Any]) -> int:
        job_id = event["pathParameters"]["job_id"]
        expected = hmac.new(key, job_id.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, (event.get("queryStringParameters") or {}).get("sig", "")):
            return 401
        body = json.loads(event["body"])
        dynamodb.update_item(
            TableName=table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET #s = :s, updated_at = :now, media_urls = :urls",
            ConditionExpression="#s IN (:q, :p) AND (attribute_not_exists(request_id) OR request_id = :rid)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":s": {"S": "COMPLETED"},
                ":q": {"S": "QUEUED"},
                ":p": {"S": "PROCESSING"},
                ":rid": {"S": body["request_id"]},
                ":now": {"S": "2026-01-01T00:00:00.000Z"},
                ":urls": {"L": [{"S": u} for u in body["output"]["media_url"]]},
            },
            ReturnValues="ALL_OLD",
        )
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": job_id}))
        return 200

    return handle


def _bucket(filename: str, name: str) -> str:
    if filename == "~":
        if any(word in name for word in ("recv", "sendall", "poll", "connect", "select")):
            return "socket I/O (waiting on moto)"
        return "C built-ins (json, hashing, str, ...)"
    if "pixverse_jobs" in filename or "/functions/" in filename:
        return "ours (functions/webhook, pixverse_jobs)"
    if "aws_lambda_powertools" in filename:
        return "Powertools (resolver, Logger, Metrics)"
    if any(part in filename for part in ("botocore", "urllib3", "boto3", "s3transfer", "dateutil", "jmespath")):
        return "AWS SDK (botocore, urllib3)"
    if any(part in filename for part in ("/http/", "/email/", "socket.py", "ssl.py", "selectors.py")):
        return "stdlib HTTP (http.client, email headers)"
    return "stdlib other (logging, json, uuid, ...)"


def _profile(handler: Callable[[], None]) -> dict[str, Any]:
    profile = cProfile.Profile()
    profile.enable()
    handler()
    profile.disable()
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())  # tottime
    buckets: Counter[str] = Counter()
    ours: list[tuple[float, str]] = []
    aws_cumulative = 0.0
    for (filename, line, name), (_, _, tottime, cumtime, _) in raw.items():
        bucket = _bucket(filename, name)
        buckets[bucket] += tottime
        if bucket.startswith(("ours", "Powertools", "stdlib other")):
            short = filename.replace(str(ROOT) + "/", "")
            for marker in ("site-packages/", "bench-lambda/layer/", "layers/shared/python/"):
                short = short.split(marker)[-1]
            if "/lib/python3" in short:
                short = "stdlib " + short.split("/lib/python3", 1)[1].split("/", 1)[-1]
            ours.append((tottime, f"{short}:{line}({name})"))
        if name == "_make_api_call" and filename.endswith("botocore/client.py"):
            aws_cumulative += cumtime
    return {
        "profiled_s": round(total, 4),
        "share_by_package": {k: round(v / total, 3) for k, v in buckets.most_common()},
        "aws_calls_cumulative_share": round(aws_cumulative / total, 3),
        "top_outside_aws_sdk": [f"{t * 1000:.1f} ms {where}" for t, where in sorted(ours, reverse=True)[:12]],
    }


def run_child(callbacks: int, repeats: int) -> dict[str, Any]:
    from backend import Jobs, backend, webhook_event

    runs: list[dict[str, Any]] = []
    with backend() as be, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        os.environ.update(be.function_env["WebhookFunction"])
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
        import boto3

        ours_clock = AwsClock()
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        ours_clock.register(boto3.DEFAULT_SESSION.events)
        app = _import_webhook()
        jobs = Jobs(be)
        secret = be.signing_secret()
        bare_session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
            region_name="us-east-1",
        )
        bare_clock = AwsClock()
        bare_clock.register(bare_session.events)
        bare = _bare_handler(bare_session, be.endpoint, be.table, be.queue_url, secret)
        context = _Context()

        def one(variant: str, event: dict[str, Any]) -> int:
            if variant == "ours":
                return int(app.handler(event, context)["statusCode"])
            return bare(event)

        # Warm-up: both paths once, so neither pays a cold start in the timed runs.
        for variant in VARIANTS:
            for _ in range(5):
                assert one(variant, webhook_event(be, jobs, secret)) == 200
        # Both handlers take turns in chunks of CHUNK callbacks, so a burst of load on the shared
        # machine falls on both; each repeat sums its chunks per handler.
        for repeat in range(repeats):
            pending = {variant: [webhook_event(be, jobs, secret) for _ in range(callbacks)] for variant in VARIANTS}
            totals = {variant: {"elapsed_s": 0.0, "cpu_s": 0.0, "aws_s": 0.0} for variant in VARIANTS}
            calls: dict[str, Counter[str]] = {variant: Counter() for variant in VARIANTS}
            statuses: dict[str, Counter[int]] = {variant: Counter() for variant in VARIANTS}
            turn = 0
            while any(pending.values()):
                for variant in VARIANTS if turn % 2 == 0 else tuple(reversed(VARIANTS)):
                    chunk, pending[variant] = pending[variant][:CHUNK], pending[variant][CHUNK:]
                    clock = ours_clock if variant == "ours" else bare_clock
                    clock.seconds, clock.calls = 0.0, Counter()
                    cpu_before = time.process_time()
                    started = time.perf_counter()
                    statuses[variant].update(one(variant, event) for event in chunk)
                    totals[variant]["elapsed_s"] += time.perf_counter() - started
                    totals[variant]["cpu_s"] += time.process_time() - cpu_before
                    totals[variant]["aws_s"] += clock.seconds
                    calls[variant].update(clock.calls)
                turn += 1
            for variant in VARIANTS:
                runs.append(
                    {
                        "variant": variant,
                        "repeat": repeat,
                        "callbacks": callbacks,
                        **totals[variant],
                        "aws_calls": dict(calls[variant]),
                        "statuses": {str(k): v for k, v in statuses[variant].items()},
                    }
                )
        profile_events = [webhook_event(be, jobs, secret) for _ in range(callbacks)]
        profile = _profile(lambda: [one("ours", event) for event in profile_events] and None)
    return {"runs": runs, "profile": profile}


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for variant in VARIANTS:
        mine = [r for r in raw["runs"] if r["variant"] == variant]
        rates = [r["callbacks"] / r["elapsed_s"] for r in mine]
        per_callback = [r["elapsed_s"] / r["callbacks"] * 1000 for r in mine]
        aws_share = [r["aws_s"] / r["elapsed_s"] for r in mine]
        outside = [(r["elapsed_s"] - r["aws_s"]) / r["callbacks"] * 1000 for r in mine]
        figures[variant] = {
            "callbacks_per_s": spread(rates),
            "ms_per_callback": spread(per_callback),
            "aws_share": spread(aws_share),
            "ms_outside_aws_per_callback": spread(outside),
            "cpu_ms_per_callback": spread([r["cpu_s"] / r["callbacks"] * 1000 for r in mine]),
            "aws_calls_per_callback": {
                op: round(sum(r["aws_calls"].get(op, 0) for r in mine) / sum(r["callbacks"] for r in mine), 2)
                for op in sorted({op for r in mine for op in r["aws_calls"]})
            },
            "all_200": all(set(r["statuses"]) == {"200"} for r in mine),
        }
    ours, bare = figures["ours"], figures["bare"]
    return {
        "by_variant": figures,
        # Per repeat (both handlers took turns within it), then the median.
        "ratio_ours_to_bare_rate": round(
            median(
                [
                    b["elapsed_s"] / o["elapsed_s"]
                    for o in raw["runs"]
                    for b in raw["runs"]
                    if o["variant"] == "ours" and b["variant"] == "bare" and o["repeat"] == b["repeat"]
                ]
            ),
            3,
        ),
        "ours_extra_ms_per_callback": round(ours["ms_per_callback"]["median"] - bare["ms_per_callback"]["median"], 2),
        "profile_ours": raw["profile"],
        "runs": raw["runs"],
    }


def run_webhook(
    callbacks: int = 300, repeats: int = 3, *, timeout: float = 600.0, log: Callable[[str], None] = print
) -> dict[str, Any]:
    out = run_json_child(
        [str(BENCH_DIR / "webhook_throughput.py"), "--child", "--callbacks", str(callbacks), "--repeats", str(repeats)],
        timeout=timeout,
    )
    summary = summarise(out)
    ours = summary["by_variant"]["ours"]
    log(
        f"webhook: {ours['callbacks_per_s']['median']:.0f} callbacks/s "
        f"({ours['ms_per_callback']['median']:.2f} ms each, {ours['aws_share']['median']:.0%} in AWS calls); "
        f"bare handler {summary['by_variant']['bare']['callbacks_per_s']['median']:.0f}/s"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--callbacks", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_child(args.callbacks, args.repeats)
        print(json.dumps(result), flush=True)
        return 0
    summary = run_webhook(args.callbacks, args.repeats, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cold start of each function against its floor, each in a fresh interpreter.

* function: ``bench/cold_child.py app`` imports the handler module (Lambda's init) and invokes it
  once with a real event (the cold invocation), then a few more times (warm). Its cold start is
  ``init + (first invocation - median warm invocation)``: the import plus whatever the first call
  initialises that later calls do not (route compilation, validation models, lazy imports, secret
  reads, connection set-up). Events take the happy path against moto server and the gateway
  simulator (see ``backend``).
* floor: ``bench/cold_child.py floor`` imports boto3 (and httpx where the function calls out) and
  creates the clients the function creates.

Both run with the function's template environment, on a Lambda-like import path (the layer's
pinned packages only, ``python -S``), interleaved, ``repeats`` times each.

    python bench/cold_start.py --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backend import (
    FUNCTIONS,
    MEDIA_BYTES,
    MODEL,
    Backend,
    Jobs,
    LambdaSite,
    backend,
    iso,
    lambda_site,
    load_event,
    webhook_event,
)
from benchlib import BENCH_DIR, ROOT, median, ratio, spread

TARGET_RATIO = 1.2
# Diagnostic floors: the floor plus the Powertools pieces each function imports and creates. They
# tell the function's own cost apart from the libraries it is built on; the target is against the
# plain floor.
_LOGGER_METRICS = "from aws_lambda_powertools import Logger, Metrics\nLogger()\nMetrics()\n"
_RESOLVER = "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\n"
POWERTOOLS = {
    "SubmitFunction": _LOGGER_METRICS + _RESOLVER + "APIGatewayHttpResolver()\n",
    "WebhookFunction": _LOGGER_METRICS,
    "MediaCopyFunction": _LOGGER_METRICS
    + "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType\n"
    + "BatchProcessor(event_type=EventType.SQS)\n",
    "ReconcileFunction": _LOGGER_METRICS,
}
WARM_INVOCATIONS = 4


def _gateway_request(be: Backend) -> str:
    """A request the simulator knows (kept PROCESSING by the backend), without a webhook."""
    import httpx
    from backend import GATEWAY_KEY

    response = httpx.post(
        f"{be.gateway_url}/{MODEL}/v1/{MODEL}-request",
        json={"prompt": "A lighthouse at dusk"},
        headers={"Ocp-Apim-Subscription-Key": GATEWAY_KEY},
        timeout=10.0,
    )
    response.raise_for_status()
    return str(response.json()["request_id"])


def build_invocations(function: str, be: Backend, jobs: Jobs, count: int) -> tuple[list[dict[str, Any]], list[str]]:
    """``count`` events that each take the function's happy path, and the jobs to retire after."""
    events: list[dict[str, Any]] = []
    retire: list[str] = []
    if function == "SubmitFunction":
        template = load_event("submit_job")
        for _ in range(count):
            event = copy.deepcopy(template)
            body = json.dumps({"model": MODEL, "input": {"prompt": "A lighthouse at dusk", "duration": 5}})
            event["body"] = body
            event["headers"]["content-length"] = str(len(body))
            event["requestContext"]["requestId"] = uuid.uuid4().hex
            events.append(event)
    elif function == "WebhookFunction":
        secret = be.signing_secret()
        events.extend(webhook_event(be, jobs, secret) for _ in range(count))
    elif function == "MediaCopyFunction":
        template = load_event("media_copy")
        queue_arn = be.attribute("CopyQueue", "Arn")
        for _ in range(count):
            job_id = jobs.put(
                "COMPLETED",
                request_id=f"{MODEL}_{uuid.uuid4()}",
                media_urls=[f"http://{be.origin}/media/{MEDIA_BYTES}.mp4"],
                media_type="video/mp4",
            )
            event = copy.deepcopy(template)
            record = event["Records"][0]
            record["messageId"] = str(uuid.uuid4())
            record["body"] = json.dumps({"job_id": job_id})
            record["eventSourceARN"] = queue_arn
            events.append(event)
    elif function == "ReconcileFunction":
        # One job older than RECONCILE_AFTER_SECONDS, still PROCESSING at the gateway: every run
        # queries the index, polls its status and refreshes it (the same work each time). Each
        # look pushes the job's next one into the future, so the child makes it due again before
        # each warm invocation (untimed): ``bench_due_again``.
        job_id = jobs.put("QUEUED", request_id=_gateway_request(be), created=datetime.now(UTC) - timedelta(hours=1))
        retire.append(job_id)
        for _ in range(count):
            events.append(
                {
                    "bench_due_again": {"table": be.table, "job_id": job_id},
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": "123456789012",
                    "time": iso(datetime.now(UTC)),
                    "region": "us-east-1",
                    "resources": ["arn:aws:events:us-east-1:123456789012:rule/bench-ReconcileSchedule"],
                    "detail": {},
                }
            )
    else:
        raise ValueError(function)
    return events, retire


def _run_child(
    mode: str,
    function: str,
    be: Backend,
    site: LambdaSite,
    events: list[dict[str, Any]],
    workdir: Path,
    app_dir: str | None = None,
    layer_dir: str | None = None,
) -> dict[str, Any]:
    directory, services, calls_out = FUNCTIONS[function]
    invocations = workdir / f"{function}-{uuid.uuid4().hex}.json"
    invocations.write_text(json.dumps(events))
    out = workdir / f"{invocations.stem}.out.json"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(site.pythonpath(directory) + ([] if site.isolated else sys.path[1:])),
        "BENCH_MEMORY_MB": str(be.memory_mb.get(function, 256)),
        **be.function_env[function],
    }
    if app_dir is not None:
        env["PYTHONPATH"] = ":".join([app_dir, env["PYTHONPATH"]])
    if layer_dir is not None:
        env["PYTHONPATH"] = env["PYTHONPATH"].replace(str(ROOT / "layers" / "shared" / "python"), layer_dir)
    command = [sys.executable, *(["-S"] if site.isolated else []), str(BENCH_DIR / "cold_child.py")]
    command += ["app" if mode == "app" else "floor", app_dir or directory, str(invocations), str(out)]
    if mode != "app":
        code = POWERTOOLS.get(function, "") if mode == "powertools" else ""
        command += [",".join(services), "1" if calls_out else "0", code]
    result = subprocess.run(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cold start child {mode} {function} failed: {result.stderr[-3000:]}")
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def run_cold(
    repeats: int,
    *,
    functions: Sequence[str] = tuple(FUNCTIONS),
    warm: int = WARM_INVOCATIONS,
    app_dirs: dict[str, str] | None = None,
    layer_dir: str | None = None,
    diagnostics: bool = True,
    import_path: str = "lambda",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every function and its floor ``repeats`` times, interleaved; medians, ratios, targets.
    ``app_dirs`` / ``layer_dir`` measure another version of a function or of the layer's package
    (a what-if, or the code before a change) in place of functions/<dir> / layers/shared/python."""
    site = lambda_site() if import_path == "lambda" else LambdaSite(None, "development venv (asked for)")
    log(f"cold start import path: {site.note}")
    runs: list[dict[str, Any]] = []
    with backend(processing_seconds=3600) as be, tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        jobs = Jobs(be)
        workdir = Path(tmp)
        # Repeat -1 is a warm-up, not recorded: bytecode caches and the page cache filled, as the
        # packages' own bytecode already is.
        for repeat in range(-1, repeats):
            for function in functions:
                # Floors first on even repeats, the function first on odd ones.
                modes = ["floor"]
                if diagnostics:
                    modes.append("powertools")
                modes = [*modes, "app"] if repeat % 2 == 0 else ["app", *modes]
                for mode in modes:
                    events, retire = build_invocations(function, be, jobs, 1 + warm) if mode == "app" else ([], [])
                    app_dir = (app_dirs or {}).get(function) if mode == "app" else None
                    child = _run_child(
                        mode, function, be, site, events, workdir, app_dir, layer_dir if mode == "app" else None
                    )
                    for job_id in retire:
                        jobs.retire(job_id)
                    if repeat < 0:
                        continue
                    run = {"function": function, "mode": mode, "repeat": repeat, **child}
                    if mode == "app":
                        invocations, aws = child["invocations_s"], child["aws_s"]
                        own = [total - in_aws for total, in_aws in zip(invocations, aws, strict=True)]
                        run["first_s"] = invocations[0]
                        run["warm_s"] = median(invocations[1:])
                        # The first call's extra time, split: in AWS calls (secret reads, first
                        # connections: calls the floor never makes) and everything else.
                        run["first_extra_s"] = max(0.0, own[0] - median(own[1:]))
                        run["first_extra_aws_s"] = max(0.0, aws[0] - median(aws[1:]))
                        run["cold_s"] = child["init_s"] + run["first_extra_s"]
                        run["cold_with_aws_s"] = run["cold_s"] + run["first_extra_aws_s"]
                        log(
                            f"cold {function:<18} #{repeat + 1}: init {child['init_s'] * 1000:6.1f} ms, first call "
                            f"{run['first_s'] * 1000:6.1f} ms, warm {run['warm_s'] * 1000:6.1f} ms, "
                            f"answers {child['answers']}"
                        )
                    else:
                        log(f"cold {function:<18} #{repeat + 1}: {mode} {child['init_s'] * 1000:6.1f} ms")
                    runs.append(run)
    result = summarise(runs, functions, site, app_dirs or {})
    if layer_dir:
        result["layer_measured_from"] = layer_dir
    return result


def _ok(function: str, answers: Sequence[Any]) -> bool:
    if function in ("SubmitFunction", "WebhookFunction"):
        expected = 202 if function == "SubmitFunction" else 200
        return all(answer == expected for answer in answers)
    if function == "MediaCopyFunction":
        return all(answer == {"failures": 0} for answer in answers)
    return all(isinstance(answer, dict) and answer.get("examined") == 1 for answer in answers)


def summarise(
    runs: Sequence[dict[str, Any]], functions: Sequence[str], site: LambdaSite, app_dirs: dict[str, str]
) -> dict[str, Any]:
    by_function: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for function in functions:
        app = [r for r in runs if r["function"] == function and r["mode"] == "app"]
        floor = [r for r in runs if r["function"] == function and r["mode"] == "floor"]

        def init_ms(mode: str, function: str = function) -> dict[str, float]:
            return spread([r["init_s"] * 1000 for r in runs if r["function"] == function and r["mode"] == mode])

        figures: dict[str, Any] = {
            "init_ms": spread([r["init_s"] * 1000 for r in app]),
            "first_call_ms": spread([r["first_s"] * 1000 for r in app]),
            "warm_call_ms": spread([r["warm_s"] * 1000 for r in app]),
            "first_call_extra_ms": spread([r["first_extra_s"] * 1000 for r in app]),
            "first_call_extra_aws_ms": spread([r["first_extra_aws_s"] * 1000 for r in app]),
            "cold_ms": spread([r["cold_s"] * 1000 for r in app]),
            "cold_with_aws_ms": spread([r["cold_with_aws_s"] * 1000 for r in app]),
            "floor_ms": spread([r["init_s"] * 1000 for r in floor]),
            "heavy_modules": sorted({m for r in app for m in r.get("heavy_modules", [])}),
            "happy_path": all(_ok(function, r["answers"]) for r in app),
        }
        cold, floor_ms = figures["cold_ms"]["median"], figures["floor_ms"]["median"]
        figures["init_ratio"] = ratio(figures["init_ms"]["median"], floor_ms)
        figures["cold_ratio_of_medians"] = ratio(cold, floor_ms)
        # The target's figure: each run's cold start over the floor measured right next to it (same
        # repeat), then the median of those ratios. A burst of load on the shared machine then
        # falls on both sides of a ratio instead of on one median.
        paired = [
            r["cold_s"] / f["init_s"] for r in app for f in floor if f["repeat"] == r["repeat"] and f["init_s"] > 0
        ]
        figures["cold_ratio_paired"] = spread(paired)
        figures["cold_ratio"] = round(median(paired), 3) if paired else figures["cold_ratio_of_medians"]
        figures["cold_with_aws_ratio"] = ratio(figures["cold_with_aws_ms"]["median"], floor_ms)
        # The same ratio of minimums: the least disturbed run of each, for reference.
        figures["cold_ratio_of_minimums"] = ratio(figures["cold_ms"]["min"], figures["floor_ms"]["min"])
        if app_dirs.get(function):
            figures["measured_from"] = app_dirs[function]
        powertools = init_ms("powertools")
        if powertools["n"]:
            # Where the time over the floor goes. Differences of minimums: each part's least
            # disturbed run, which a busy machine can only lengthen (medians of differences of
            # two noisy samples can even come out negative).
            below = powertools["min"]
            parts = {"powertools_ms": round(powertools["min"] - figures["floor_ms"]["min"], 1)}
            figures["floor_powertools_ms"] = powertools
            parts["own_init_ms"] = round(figures["init_ms"]["min"] - below, 1)
            parts["first_call_extra_ms"] = round(figures["first_call_extra_ms"]["median"], 1)
            parts["first_call_extra_aws_ms"] = round(figures["first_call_extra_aws_ms"]["median"], 1)
            figures["over_floor"] = parts
        by_function[function] = figures
        targets[function] = {
            "ratio": figures["cold_ratio"],
            "limit": TARGET_RATIO,
            "met": figures["cold_ratio"] <= TARGET_RATIO,
        }
    if "WebhookFunction" in by_function:
        heavy = by_function["WebhookFunction"]["heavy_modules"]
        targets["webhook_imports_neither_httpx_nor_pydantic"] = {"imported": heavy, "met": not heavy}
    return {
        "import_path": site.note,
        "definition": "cold ÷ floor = the median over runs of each run's cold start over the floor measured next "
        "to it; cold = init (import of the handler module) + the first invocation's extra time over the "
        "median warm one outside AWS calls; cold_with_aws adds the first invocation's extra time inside AWS calls "
        "(secret reads, first connections), which the floor never makes. floor = import boto3 (+ httpx where the "
        "function calls out) and create the function's clients",
        "runs": list(runs),
        "by_function": by_function,
        "targets": targets,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    parser.add_argument(
        "--app-dir",
        action="append",
        default=[],
        metavar="Function=/abs/dir",
        help="measure another version of a function (what-if), e.g. SubmitFunction=/tmp/submit",
    )
    parser.add_argument("--layer-dir", help="measure another copy of layers/shared/python (what-if / before)")
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the Powertools / validation floors")
    parser.add_argument("--import-path", choices=("lambda", "venv"), default="lambda")
    args = parser.parse_args(argv)
    result = run_cold(
        args.repeats,
        functions=[f for f in args.functions.split(",") if f],
        app_dirs=dict(item.split("=", 1) for item in args.app_dir),
        layer_dir=args.layer_dir,
        diagnostics=not args.no_diagnostics,
        import_path=args.import_path,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``make bench``: the benchmarks of issue 7, side by side with their peers, written to
``bench/results.json`` (machine, every run, medians, ratios, targets) and ``bench/results.md``.

    .venv/bin/python bench/run.py                                   # everything (make bench)
    .venv/bin/python bench/run.py --only copy --sizes 64,256 --repeats 3
    .venv/bin/python bench/run.py --only cold,webhook --repeats 5
    .venv/bin/python bench/run.py --only cost --jobs 100
    .venv/bin/python bench/run.py --only capacity --capacity-jobs 50
    .venv/bin/python bench/run.py --only burst --burst-jobs 200 --burst-seconds 10
    .venv/bin/python bench/run.py --only reconcile_backlog --reconcile-jobs 5000
    .venv/bin/python bench/run.py --only deadline --deadline-jobs 30
    .venv/bin/python bench/run.py --only clips --repeats 5

Benchmarks: ``copy`` (media copy against three obvious alternatives, each run in a fresh process),
``cold`` (cold start of each function against the boto3 floor), ``built`` (each handler imported
from ``sam build``'s artifacts as Lambda unpacks them, in callgrind instructions), ``cost`` (AWS and gateway calls,
DynamoDB write units and Lambda cost per delivered job), ``capacity`` (DynamoDB writes per table,
index and partition key, and the ceiling in jobs/s the hottest key allows), ``webhook``
(callbacks per second, and where the time goes), ``reconcile_backlog`` (the reconciler over 5,000
unfinished jobs: gateway status polls per second, time to clear) and ``burst`` (2,000 jobs in 60 s
against a gateway that admits 8 at once: the answers, the gateway's load, delivery, and a quiet
caller's wait) and ``deadline`` (how late a job with ``deadline_seconds`` ends CANCELLED, at AWS's
SQS timings) and ``clips`` (the simulator's MP4 clip generation per resolution, and the copier's box
walker next to its SHA-256). A partial run replaces only its own sections of an existing results.json (the burst
section keeps its ``before`` run next to a new ``after`` one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, machine_info
from report import render_markdown

# The report's order.
BENCHMARKS = (
    "copy",
    "cold",
    "built",
    "cost",
    "webhook",
    "capacity",
    "reconcile_backlog",
    "burst",
    "deadline",
    "clips",
)
# The order they run in: the millisecond measurements first, on a settled machine; the copy
# section last, since it leaves the machine busy for a while (GiBs freed by moto server and the
# peers, page cache): a cold section run right after it measured 1.21x for a function that
# measures 1.12-1.15x on its own (bench/cold_start.py --repeats 9 --functions MediaCopyFunction).
RUN_ORDER = ("cold", "built", "webhook", "cost", "capacity", "reconcile_backlog", "burst", "deadline", "clips", "copy")
DEFAULT_REPEATS = {"copy": 5, "cold": 7, "webhook": 3}


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    repeats = args.repeats or DEFAULT_REPEATS.get(name, 3)
    if name == "copy":
        from copy_bench import run_copy

        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        variants = [v for v in args.copy_variants.split(",") if v.strip()]
        return run_copy(sizes, repeats, variants=variants, log=_log)
    if name == "cold":
        from cold_start import run_cold

        functions = [f for f in args.cold_functions.split(",") if f.strip()]
        return run_cold(
            repeats,
            functions=functions,
            diagnostics=not args.no_cold_diagnostics,
            import_path=args.cold_import_path,
            log=_log,
        )
    if name == "built":
        from built_import import run_built_import

        return run_built_import(log=_log)
    if name == "cost":
        from cost_per_job import run_cost

        return run_cost(args.jobs, log=_log)
    if name == "capacity":
        from capacity import run_capacity

        return run_capacity(args.capacity_jobs, log=_log)
    if name == "burst":
        from burst import run_burst

        previous = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            previous = json.loads((args.out_dir / "results.json").read_text())["benchmarks"]["burst"]["result"]
        return run_burst(previous=previous, log=_log, jobs=args.burst_jobs, seconds=args.burst_seconds)
    if name == "reconcile_backlog":
        from reconcile_backlog import run_reconcile_backlog

        return run_reconcile_backlog(args.reconcile_jobs, latency_ms=args.reconcile_latency_ms, log=_log)
    if name == "deadline":
        from deadline_lateness import run_deadline

        return run_deadline(args.deadline_jobs, log=_log)
    if name == "clips":
        from clip_media import run_clips

        return run_clips(repeats, log=_log)
    if name == "webhook":
        from webhook_throughput import run_webhook

        return run_webhook(args.callbacks, repeats, log=_log)
    raise ValueError(name)


def targets_of(benchmarks: dict[str, Any]) -> dict[str, bool]:
    """Every target, flattened: ``<benchmark>.<target>`` -> met."""
    flat: dict[str, bool] = {}
    for name, section in benchmarks.items():
        for target, verdict in (section.get("result", {}).get("targets") or {}).items():
            if isinstance(verdict, dict) and "met" in verdict:
                flat[f"{name}.{target}"] = bool(verdict["met"])
    return flat


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}")
    parser.add_argument("--repeats", type=int, default=0, help="runs per figure (default: copy 5, cold 7, webhook 3)")
    parser.add_argument("--sizes", default="64,256,1024", help="copy sizes in MiB (default 64,256,1024)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs for the cost count (default 100)")
    parser.add_argument(
        "--capacity-jobs", type=int, default=50, help="jobs per capacity run (4 runs: terminal/sync x typical/largest)"
    )
    parser.add_argument("--callbacks", type=int, default=300, help="callbacks per webhook run (default 300)")
    parser.add_argument("--burst-jobs", type=int, default=2000, help="the burst's jobs from one caller (default 2000)")
    parser.add_argument("--burst-seconds", type=float, default=60.0, help="the window they are POSTed in (default 60)")
    parser.add_argument(
        "--reconcile-jobs", type=int, default=5000, help="unfinished jobs in each reconciler backlog (default 5000)"
    )
    parser.add_argument(
        "--reconcile-latency-ms",
        type=int,
        default=200,
        help="the simulator's answer time per status poll in the reconciler backlog (default 200)",
    )
    parser.add_argument("--deadline-jobs", type=int, default=30, help="jobs with a deadline (default 30)")
    parser.add_argument("--copy-variants", default="ours,memory,tempfile,fileobj", help="copy variants to run")
    parser.add_argument(
        "--cold-functions",
        default="SubmitFunction,WebhookFunction,MediaCopyFunction,ReconcileFunction",
        help="functions whose cold start is measured",
    )
    parser.add_argument("--no-cold-diagnostics", action="store_true", help="skip the Powertools / validation floors")
    parser.add_argument(
        "--cold-import-path",
        choices=("lambda", "venv"),
        default="lambda",
        help="lambda: the layer's pinned packages only, installed once into .venv/bench-lambda (default); "
        "venv: the development venv (no install; its extra packages pad the floor)",
    )
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR, help="where results.json and results.md go")
    parser.add_argument("--fresh", action="store_true", help="drop sections of an earlier results.json")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out_dir / "results.json", args.out_dir / "results.md"
    results: dict[str, Any] = {}
    if json_path.is_file() and not args.fresh:
        results = json.loads(json_path.read_text())
    benchmarks: dict[str, Any] = results.get("benchmarks", {})
    command = " ".join(["python bench/run.py", *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    started = time.monotonic()
    for name in sorted(chosen, key=RUN_ORDER.index):
        _log(f"== {name}")
        began = time.monotonic()
        machine = machine_info()
        result = _run(name, args)
        benchmarks[name] = {
            "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command,
            "seconds": round(time.monotonic() - began, 1),
            "machine": machine,
            "load_average_after": machine_info()["load_average"],
            "result": result,
        }
        _log(f"== {name}: {benchmarks[name]['seconds']} s")
    results = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_command": command,
        "last_run_seconds": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "benchmarks": {name: benchmarks[name] for name in BENCHMARKS if name in benchmarks},
    }
    results["targets"] = targets_of(results["benchmarks"])
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    md_path.write_text(render_markdown(results))
    _log(f"wrote {json_path} and {md_path} in {results['last_run_seconds']} s")
    missed = [name for name, met in results["targets"].items() if not met]
    _log("targets missed: " + (", ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

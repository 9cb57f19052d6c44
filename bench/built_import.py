"""Cold import of each function from what ``sam build`` makes, loaded as Lambda loads it.

``scripts/sam_build.sh`` builds into a temporary directory; the layer is laid out as ``/opt/python``
and each function as ``/var/task`` under a scratch root, every file dated 1980-01-01 (the date SAM
zips files with, which Lambda keeps when it unpacks them). Then, with the Lambda runtime's Python
3.13, ``-S`` (no site-packages: only the layer and the function) and ``-B`` (no bytecode written:
``/opt`` and ``/var/task`` are read-only on Lambda):

* handler: ``import app`` from the function's directory, with its template environment (module-level
  clients and settings made, no AWS call);
* floor: ``import boto3`` from the same layer and create one client (the issue's floor); and the
  function's own floor, boto3 (and httpx where it calls out) with the clients it creates, as
  ``bench/cold_start.py`` defines it. The target (1.2x) is the webhook's handler against the one-client
  floor (the handler whose recompiling the issue measured) and every handler against its own floor.

Each is counted in instructions by ``valgrind --tool=callgrind`` (repeatable to about 0.1%, where wall
time on a shared machine swings by tens of percent); a median wall time of a few runs stands beside it.
A diagnostic repeats the handler import with the layer as it was before its bytecode was made
hash-based: with timestamp-based bytecode, which the 1980 dates make stale, so Python compiles every
module again on each cold start.

    python bench/built_import.py [--build-dir DIR] [--wall-repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backend import FUNCTIONS as FUNCTION_CLIENTS
from benchlib import ROOT

TARGET_RATIO = 1.2
FUNCTIONS = ("SubmitFunction", "WebhookFunction", "MediaCopyFunction", "ReconcileFunction")
# 1980-01-01T00:00:00Z: the earliest date a zip entry can carry, and the one SAM gives every file.
ZIP_EPOCH = 315532800
FLOOR_CODE = "import boto3\nboto3.client('dynamodb')\n"
HANDLER_CODE = "import app\n"

# What template.yaml gives the functions, with stand-in values: enough for every module-level setting
# to validate. Nothing here is called: the imports create clients but make no request.
ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "JOBS_TABLE": "bench-JobsTable",
    "UPLOAD_BUCKET": "bench-media",
    "MEDIA_BUCKET": "bench-media",
    "MEDIA_KEY_PREFIX": "videos",
    "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-events",
    "EVENT_BUS_NAME": "bench-events",
    "EVENT_SOURCE": "urn:pixverse-jobs:bench",
    "COPY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-copy",
    "PIXAZO_BASE_URL": "https://gateway.pixazo.ai",
    "PIXAZO_API_KEY_SECRET": "pixverse-jobs/pixazo-api-key",
    "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-AbCdEf",
    "WEBHOOK_BASE_URL": "",
    "WEBHOOK_MODE": "terminal",
    "ALLOWED_MEDIA_HOSTS": "*.r2.dev",
    "PROGRESS_EVENTS": "false",
    "POWERTOOLS_SERVICE_NAME": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "PixverseJobs",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "PATH": "/usr/bin:/bin",
}


def own_floor_code(function: str) -> str:
    """boto3 (and httpx where the function calls out) and the clients the function creates."""
    _, services, calls_out = FUNCTION_CLIENTS[function]
    lines = ["import boto3", *(["import httpx"] if calls_out else [])]
    lines += [f"boto3.client({service!r})" for service in services]
    return "\n".join(lines) + "\n"


def lambda_python() -> str:
    """The Lambda runtime's Python (3.13), as the build finds it; an error if this machine has none."""
    found = subprocess.run([str(ROOT / "scripts" / "find_python.sh")], capture_output=True, text=True, check=True)
    python = found.stdout.strip()
    probe = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=False
    )
    if probe.stdout.strip() != "(3, 13)":
        raise SystemExit(f"no Python 3.13 on this machine (found {python}): the layer ships no bytecode to measure")
    return python


def build(build_dir: Path, python: str) -> None:
    """``sam build`` as ``make build`` runs it, with bytecode from ``python``."""
    env = {**os.environ, "LAMBDA_PYTHON": python}
    subprocess.run(
        [str(ROOT / "scripts" / "sam_build.sh"), "--build-dir", str(build_dir)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )


def lay_out(build_dir: Path, root: Path, *, layer_bytecode: str = "built") -> dict[str, Path]:
    """``root/opt/python`` and ``root/var/task/<Function>`` from the build, every file dated 1980.

    ``layer_bytecode``: ``built`` keeps the build's (hash-based) bytecode; ``timestamp`` replaces it
    with timestamp-based bytecode compiled before the dates are set (what the build made before)."""
    layer = root / "opt" / "python"
    shutil.copytree(build_dir / "SharedLayer" / "python", layer)
    tasks = {}
    for function in FUNCTIONS:
        tasks[function] = root / "var" / "task" / function
        shutil.copytree(build_dir / function, tasks[function])
    if layer_bytecode == "timestamp":
        for cache in [*layer.rglob("__pycache__"), *root.joinpath("var").rglob("__pycache__")]:
            shutil.rmtree(cache)
        python = lambda_python()
        subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(root)], check=True)
    for path in root.rglob("*"):
        os.utime(path, (ZIP_EPOCH, ZIP_EPOCH), follow_symlinks=False)
    return {"layer": layer, **tasks}


def _command(python: str, paths: Sequence[Path], code: str) -> list[str]:
    prelude = f"import sys\nsys.path[:0] = {[str(p) for p in paths]!r}\n"
    return [python, "-S", "-B", "-c", prelude + code]


def instructions(python: str, paths: Sequence[Path], code: str, cwd: Path) -> int:
    """Instructions the interpreter executes for ``code`` (start-up included), by callgrind."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *_command(python, paths, code)],
        env=ENVIRONMENT,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run failed ({result.returncode}): {result.stderr[-2000:]}")
    return int(match.group(1))


def wall_seconds(python: str, paths: Sequence[Path], code: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(_command(python, paths, code), env=ENVIRONMENT, cwd=cwd, check=True, timeout=120)
    return time.perf_counter() - started


def run_built_import(
    *, build_dir: Path | None = None, wall_repeats: int = 5, log: Callable[[str], None] = print
) -> dict[str, Any]:
    python = lambda_python()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind): it counts the instructions")
    with tempfile.TemporaryDirectory(prefix="bench-built-") as tmp:
        scratch = Path(tmp)
        if build_dir is None:
            build_dir = scratch / "build"
            log("sam build (scripts/sam_build.sh) ...")
            build(build_dir, python)
        built = lay_out(build_dir, scratch / "built")
        stale = lay_out(build_dir, scratch / "stale", layer_bytecode="timestamp")
        floor_paths = [built["layer"]]
        floor = instructions(python, floor_paths, FLOOR_CODE, scratch)
        log(f"floor (import boto3, one client): {floor / 1e6:.1f} M instructions")
        by_function: dict[str, Any] = {}
        targets: dict[str, Any] = {}
        for function in FUNCTIONS:
            paths = [built[function], built["layer"]]
            handler = instructions(python, paths, HANDLER_CODE, built[function])
            stale_handler = instructions(python, [stale[function], stale["layer"]], HANDLER_CODE, stale[function])
            # Wall time, each handler run paired with a floor run next to it.
            pairs = []
            for _ in range(wall_repeats):
                pairs.append(
                    (
                        wall_seconds(python, paths, HANDLER_CODE, built[function]),
                        wall_seconds(python, floor_paths, FLOOR_CODE, scratch),
                    )
                )
            own_floor = instructions(python, floor_paths, own_floor_code(function), scratch)
            figures = {
                "handler_instructions": handler,
                "floor_instructions": floor,
                "ratio": round(handler / floor, 3),
                "own_floor_instructions": own_floor,
                "own_floor_ratio": round(handler / own_floor, 3),
                "stale_bytecode_instructions": stale_handler,
                "stale_bytecode_ratio": round(stale_handler / floor, 3),
                "handler_wall_ms": round(statistics.median(h for h, _ in pairs) * 1000, 1),
                "floor_wall_ms": round(statistics.median(f for _, f in pairs) * 1000, 1),
                "wall_ratio_paired": round(statistics.median(h / f for h, f in pairs), 3),
            }
            log(
                f"{function:<18} handler {handler / 1e6:8.1f} M = {figures['ratio']}x one-client floor, "
                f"{figures['own_floor_ratio']}x own floor (stale bytecode {figures['stale_bytecode_ratio']}x); "
                f"wall {figures['handler_wall_ms']} ms vs {figures['floor_wall_ms']} ms "
                f"({figures['wall_ratio_paired']}x paired)"
            )
            by_function[function] = figures
            targets[f"{function}_own_floor"] = {
                "ratio": figures["own_floor_ratio"],
                "limit": TARGET_RATIO,
                "met": figures["own_floor_ratio"] <= TARGET_RATIO,
            }
        webhook = by_function["WebhookFunction"]["ratio"]
        targets["WebhookFunction_one_client_floor"] = {"ratio": webhook, "limit": TARGET_RATIO, "met": webhook <= 1.2}
    return {
        "python": python,
        "definition": "instructions (valgrind callgrind, interpreter start-up included) of `import app` from the "
        "built function and layer, every file dated 1980 as Lambda unpacks them, python3.13 -S -B; floor: "
        "`import boto3` and one client from the same layer. stale_bytecode: the same with timestamp-based "
        "bytecode, as the build made it before",
        "by_function": by_function,
        "targets": targets,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--build-dir", type=Path, help="an existing `sam build` output (default: build one)")
    parser.add_argument("--wall-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = run_built_import(
        build_dir=args.build_dir, wall_repeats=args.wall_repeats, log=lambda line: print(line, file=sys.stderr)
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

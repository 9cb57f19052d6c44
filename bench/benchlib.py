"""What the benchmarks share: sizes, statistics, machine facts, memory and disk measurement of the
current process, the media origin (its own process) and child processes that answer in JSON.

The machine is shared and noisy: every figure is taken several times, side by side with its
peers in the same run, and reported as a median and as a ratio to a peer, never as one time."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
MiB = 1024 * 1024
MEDIA_ID = "bench"

_SIZE_RE = re.compile(r"^(\d+)\s*(b|kib|mib|gib)?$", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1024, "mib": MiB, "gib": 1024 * MiB}


def parse_size(text: str) -> int:
    """``1GiB``, ``16MiB``, ``1048576`` -> bytes."""
    match = _SIZE_RE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 16MiB, 1048576)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


# ------------------------------------------------------------------ statistics
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a sample (rounded for the report)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": round(median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def ratio(value: float, reference: float) -> float:
    return round(value / reference, 3) if reference > 0 else float("inf")


# ------------------------------------------------------------------ the machine
def machine_info() -> dict[str, Any]:
    """What the figures were taken on, including how busy the machine was."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    versions: dict[str, str] = {}
    for package in ("boto3", "botocore", "httpx", "moto", "aws_lambda_powertools", "pydantic"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package.replace("_", "-"))
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_total / 1024**3, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


# ------------------------------------------------------------------ this process's memory and disk
def _status_kib(field: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is None:
        raise RuntimeError("no VmRSS in /proc/self/status: this benchmark needs Linux")
    return kib * 1024


def hwm_bytes() -> int:
    return (_status_kib("VmHWM") or 0) * 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


def disk_write_bytes() -> int | None:
    """Bytes this process caused to be written to storage (``write_bytes`` of /proc/self/io)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """The largest RSS seen, sampled every ``interval`` seconds on a thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


# ------------------------------------------------------------------ the media origin (own process)
class _Origin(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class _OriginHandler(BaseHTTPRequestHandler):
    """``GET /media/<bytes>.mp4``: that many deterministic bytes, Range honoured."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        from pixverse_local.gateway_sim.media import iter_media_chunks

        match = re.fullmatch(r"/media/(\d+)\.mp4", self.path)
        if match is None:
            self.send_error(404)
            return
        size = int(match.group(1))
        start, end = 0, size
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and ranged.endswith("-") and ranged[6:-1].isdigit():
            start = min(int(ranged[6:-1]), size)
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for chunk in iter_media_chunks(MEDIA_ID, 0, size, start, end):
                self.wfile.write(chunk)


def serve_origin() -> None:
    """Serve media on a free loopback port until killed; print ``origin: <port>`` first."""
    server = _Origin(("127.0.0.1", 0), _OriginHandler)
    print(f"origin: {server.server_address[1]}", flush=True)
    server.serve_forever()


def media_url(origin: str, size: int) -> str:
    return f"http://{origin}/media/{size}.mp4"


def expected_sha256(size: int) -> str:
    from pixverse_local.gateway_sim.media import media_sha256

    return media_sha256(MEDIA_ID, 0, size)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmark child: the packages importable whether installed or not."""
    paths = [str(ROOT / "layers" / "shared" / "python"), str(ROOT / "local"), str(BENCH_DIR)]
    existing = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *([existing] if existing else [])])}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def origin_process() -> Iterator[str]:
    """The origin in a child process; yields its ``host:port``."""
    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "benchlib.py"), "--serve-origin"],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("origin: "):
            raise RuntimeError(f"origin did not start: {line!r}")
        yield f"127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """moto server in its own process (as the local stack starts it); yields its URL."""
    from pixverse_local.stack import MotoServer

    moto = MotoServer()
    url = moto.start()
    try:
        yield url
    finally:
        moto.stop()


def run_json_child(args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``python <args>`` and return the JSON object on its last stdout line."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(env) if env is not None else child_env(),
        cwd=ROOT,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child {' '.join(args)} failed ({result.returncode}) after "
            f"{time.monotonic() - started:.1f}s: {(result.stderr or result.stdout)[-3000:]}"
        )
    loaded: dict[str, Any] = json.loads(lines[-1])
    return loaded


def dummy_aws_env(endpoint: str | None = None) -> dict[str, str]:
    """Credentials and region that can never reach a real account."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-origin"]:
        serve_origin()

"""Peak memory of a streaming media copy: how much the copying process's RSS grows while
MediaCopier moves a large file (default 1 GiB) from an HTTP origin into S3.

* origin: this script in ``--serve-origin`` mode, in its own process: deterministic bytes
  (``pixverse_local.simulator_media``) generated block by block, never held whole, with Range
  support;
* S3: moto server in its own process (as the local stack starts it); it keeps the object in
  *its* memory, which is not measured;
* the copier: this process. Its RSS is sampled every few milliseconds from /proc/self/status
  (and VmHWM, reset through /proc/self/clear_refs where the kernel allows it) after a warm-up
  copy has loaded every lazily imported module; the figure is peak minus the RSS just before.

Run: ``.venv/bin/python bench/copy_memory.py`` (``--size 16MiB`` for a quick look). Exits 1 when
the growth exceeds ``--max-growth-mib`` (64) or the copy's SHA-256 is not the origin's.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
MEDIA_ID = "bench"
_SIZE_RE = re.compile(r"^(\d+)\s*(b|kib|mib|gib)?$", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1024, "mib": MiB, "gib": 1024 * MiB}


def parse_size(text: str) -> int:
    match = _SIZE_RE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 16MiB, 1048576)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


# ------------------------------------------------------------------ origin (own process)
class _Origin(ThreadingHTTPServer):
    daemon_threads = True


class _OriginHandler(BaseHTTPRequestHandler):
    """``GET /media/<bytes>.mp4``: that many deterministic bytes, Range honoured."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        from pixverse_local.simulator_media import iter_media_chunks

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
    server = _Origin(("127.0.0.1", 0), _OriginHandler)
    print(f"origin: {server.server_address[1]}", flush=True)
    server.serve_forever()


@contextlib.contextmanager
def origin_process() -> Iterator[str]:
    """The origin in a child process; yields its ``host:port``."""
    process = subprocess.Popen([sys.executable, __file__, "--serve-origin"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("origin: "):
            raise RuntimeError(f"origin did not start: {line!r}")
        yield f"127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


# ------------------------------------------------------------------ measurement
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


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


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


# ------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from pixverse_jobs.media import MediaCopier
    from pixverse_local.simulator_media import media_sha256
    from pixverse_local.stack import MotoServer

    moto = MotoServer()
    endpoint = moto.start()
    try:
        with origin_process() as origin:
            s3 = boto3.session.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
                region_name="us-east-1",
            ).client(
                "s3",
                endpoint_url=endpoint,
                config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=8),
            )
            s3.create_bucket(Bucket="bench")
            copier = MediaCopier(
                [origin],
                s3_client=s3,
                part_size=args.part_size,
                parts_in_flight=args.parts_in_flight,
                max_bytes=max(args.size, 2 * args.part_size + 1),
            )
            # Warm-up: a multipart copy through the same copier loads every lazy import, the
            # botocore models and the connection pools before the baseline is taken.
            warm_size = args.part_size * 2 + 1
            copier.copy(
                f"http://{origin}/media/{warm_size}.mp4",
                bucket="bench",
                key="warm",
                media_type="video/mp4",
                metadata={},
            )
            s3.delete_object(Bucket="bench", Key="warm")
            gc.collect()

            baseline = rss_bytes()
            hwm_reset = reset_peak()
            deadline = time.monotonic() + args.timeout
            with RssSampler() as sampler:
                started = time.monotonic()
                copied = copier.copy(
                    f"http://{origin}/media/{args.size}.mp4",
                    bucket="bench",
                    key="copy.mp4",
                    media_type="video/mp4",
                    metadata={"job_id": "bench"},
                    deadline=deadline,
                )
                elapsed = time.monotonic() - started
            hwm = (_status_kib("VmHWM") or 0) * 1024 if hwm_reset else 0
            peak = max(sampler.peak, hwm)
            expected = media_sha256(MEDIA_ID, 0, args.size)
    finally:
        moto.stop()
    return {
        "size_bytes": args.size,
        "part_size_bytes": args.part_size,
        "parts_in_flight": args.parts_in_flight,
        "parts_in_flight_peak": copier.last_peak_parts_in_flight,
        "elapsed_seconds": round(elapsed, 2),
        "throughput_mib_s": round(args.size / MiB / elapsed, 1),
        "baseline_rss_mib": round(baseline / MiB, 1),
        "peak_rss_mib": round(peak / MiB, 1),
        "peak_rss_growth_mib": round((peak - baseline) / MiB, 1),
        "peak_source": "VmHWM and sampling" if hwm_reset else "sampling every 2 ms",
        "sha256_ok": copied.sha256 == expected and copied.size == args.size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=1024 * MiB, help="bytes to copy (default 1GiB)")
    parser.add_argument("--part-size", type=parse_size, default=8 * MiB, help="multipart part size (default 8MiB)")
    parser.add_argument("--parts-in-flight", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--max-growth-mib", type=float, default=64.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--serve-origin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_origin:
        serve_origin()
        return 0
    result = run(args)
    print(
        f"copy_memory: {result['size_bytes'] / MiB:.0f} MiB in {result['elapsed_seconds']} s"
        f" ({result['throughput_mib_s']} MiB/s), peak RSS growth {result['peak_rss_growth_mib']} MiB"
        f" (baseline {result['baseline_rss_mib']} MiB, peak {result['peak_rss_mib']} MiB, {result['peak_source']}),"
        f" parts in flight <= {result['parts_in_flight_peak']}, sha256 {'ok' if result['sha256_ok'] else 'WRONG'}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["sha256_ok"] and result["peak_rss_growth_mib"] <= args.max_growth_mib else 1


if __name__ == "__main__":
    raise SystemExit(main())

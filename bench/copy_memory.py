"""Peak memory of a streaming media copy: how much the copying process's RSS grows while
MediaCopier moves a large file (default 1 GiB) from an HTTP origin into S3.

* origin: ``bench/benchlib.py --serve-origin``, in its own process: deterministic bytes
  (``pixverse_local.gateway_sim.media``) generated block by block, never held whole, with Range
  support;
* S3: moto server in its own process (as the local stack starts it); it keeps the object in
  *its* memory, which is not measured;
* the copier: this process. Its RSS is sampled every few milliseconds from /proc/self/status
  (and VmHWM, reset through /proc/self/clear_refs where the kernel allows it) after a warm-up
  copy has loaded every lazily imported module; the figure is peak minus the RSS just before.

Run: ``.venv/bin/python bench/copy_memory.py`` (``--size 16MiB`` for a quick look). Exits 1 when
the growth exceeds ``--max-growth-mib`` (64) or the copy's SHA-256 is not the origin's. The same
measurement, side by side with the obvious alternatives and at several sizes, is
``bench/copy_bench.py`` (part of ``make bench``); the pieces both use are in ``bench/benchlib.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import (
    MEDIA_ID,
    MiB,
    RssSampler,
    hwm_bytes,
    origin_process,
    parse_size,
    reset_peak,
    rss_bytes,
    serve_origin,
)

__all__ = ["MEDIA_ID", "main", "parse_size", "run"]


# ------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from pixverse_jobs.media import MediaCopier
    from pixverse_local.gateway_sim.media import media_sha256
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
            hwm = hwm_bytes() if hwm_reset else 0
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

"""Media copy, side by side: our streaming copier against the obvious ways to put a URL into S3.

Variants (each run in a fresh process, so RSS is clean; the origin and moto server run in their
own processes and are not measured):

* ``ours``: ``MediaCopier.copy`` (8 MiB parts, <= 3 in flight, SHA-256 of the file and of each
  part, S3's composite checksum compared on completion, the file's SHA-256 as the object's
  ``sha256`` tag: one PutObjectTagging after CompleteMultipartUpload);
* ``memory``: (a) the whole body into memory with ``httpx.get``, then one ``put_object``;
* ``tempfile``: (b) the body streamed to a temporary file, then ``upload_file`` with the default
  TransferConfig (8 MiB parts, 10 threads);
* ``fileobj``: (c) ``upload_fileobj`` reading the streaming httpx response (default TransferConfig).

Every variant downloads with httpx and uploads with a boto3 S3 client, so the difference is how
the bytes get from one to the other. Per run: wall time, CPU time, peak RSS growth of the copying
process (sampled every 2 ms and VmHWM), bytes written to disk by it (/proc/self/io).

    python bench/copy_bench.py --sizes 64,256 --repeats 3          # the comparison
    python bench/copy_bench.py --child --variant ours --size 64MiB ...   # one run (internal)
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benchlib import (
    BENCH_DIR,
    MiB,
    RssSampler,
    disk_write_bytes,
    dummy_aws_env,
    expected_sha256,
    hwm_bytes,
    media_url,
    median,
    moto_process,
    origin_process,
    parse_size,
    ratio,
    reset_peak,
    rss_bytes,
    run_json_child,
    spread,
)

VARIANTS = ("ours", "memory", "tempfile", "fileobj")
PEERS = ("memory", "tempfile", "fileobj")
BUCKET = "bench"
DESCRIPTIONS = {
    "ours": "MediaCopier: streaming multipart, 8 MiB parts, <= 3 in flight, SHA-256 checked, sha256 object tag",
    "memory": "(a) httpx.get into memory + put_object",
    "tempfile": "(b) stream to a temp file + upload_file (default TransferConfig)",
    "fileobj": "(c) upload_fileobj on the streaming httpx response (default TransferConfig)",
}
# Targets (issue 7): at the largest size our peak growth <= 64 MiB, flat across sizes, no disk,
# wall time <= 1.1x the fastest peer.
MAX_GROWTH_MIB = 64.0
MAX_WALL_RATIO = 1.1
# Flat: the peak growth must not scale with the file. Between the smallest and the largest size it
# may rise by at most 2% of the added bytes (a copier that buffers the file rises by >= 100%). The
# peak itself is a worst case of buffers in flight at one moment, reached more often over more
# parts, so a fixed spread would judge luck rather than design.
MAX_FLAT_SLOPE = 0.02


# ------------------------------------------------------------------ the variants (child side)
class _ResponseReader(io.RawIOBase):
    """A streaming httpx response as a readable file (what ``upload_fileobj`` takes)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        taken = min(len(view), len(self._pending))
        view[:taken] = self._pending[:taken]
        self._pending = self._pending[taken:]
        return taken


def _s3_client(endpoint: str, *, production: bool) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        region_name="us-east-1",
    )
    if production:
        # As functions/media_copy/app.py creates it.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=8)
        return session.client("s3", endpoint_url=endpoint, config=config)
    return session.client("s3", endpoint_url=endpoint)


def _copier(origin: str, s3: Any, size: int, part_size: int, parts_in_flight: int) -> Callable[[str, str], str | None]:
    from pixverse_jobs.media import MediaCopier

    copier = MediaCopier(
        [origin], s3_client=s3, part_size=part_size, parts_in_flight=parts_in_flight, max_bytes=max(size, 64 * MiB)
    )

    def copy(url: str, key: str) -> str | None:
        copied = copier.copy(url, bucket=BUCKET, key=key, media_type="video/mp4", metadata={"job_id": "bench"})
        return copied.sha256

    return copy


def _memory(s3: Any) -> Callable[[str, str], str | None]:
    import httpx

    http = httpx.Client(timeout=httpx.Timeout(30.0))

    def copy(url: str, key: str) -> str | None:
        response = http.get(url)
        response.raise_for_status()
        s3.put_object(Bucket=BUCKET, Key=key, Body=response.content, ContentType="video/mp4")
        return None

    return copy


def _tempfile(s3: Any) -> Callable[[str, str], str | None]:
    import httpx

    http = httpx.Client(timeout=httpx.Timeout(30.0))

    def copy(url: str, key: str) -> str | None:
        with tempfile.NamedTemporaryFile(prefix="bench-copy-") as spool:
            with http.stream("GET", url) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    spool.write(chunk)
            spool.flush()
            s3.upload_file(spool.name, BUCKET, key, ExtraArgs={"ContentType": "video/mp4"})
        return None

    return copy


def _fileobj(s3: Any) -> Callable[[str, str], str | None]:
    import httpx

    http = httpx.Client(timeout=httpx.Timeout(30.0))

    def copy(url: str, key: str) -> str | None:
        with http.stream("GET", url) as response:
            response.raise_for_status()
            s3.upload_fileobj(
                _ResponseReader(response.iter_bytes()), BUCKET, key, ExtraArgs={"ContentType": "video/mp4"}
            )
        return None

    return copy


class _S3Clock:
    """Seconds inside each S3 operation (summed over threads for concurrent parts)."""

    def __init__(self, s3: Any) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        s3.meta.events.register("before-call.s3", self._before)
        s3.meta.events.register("after-call.s3", self._after)

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        started = context.get("bench_started")
        if started is not None:
            with self._lock:
                self.seconds[model.name] = self.seconds.get(model.name, 0.0) + time.perf_counter() - started


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """One copy of ``args.size`` bytes by ``args.variant``, measured, in this (fresh) process."""
    s3 = _s3_client(args.endpoint, production=args.variant == "ours")
    clock = _S3Clock(s3)
    if args.variant == "ours":
        copy = _copier(args.origin, s3, args.size, args.part_size, args.parts_in_flight)
    else:
        copy = {"memory": _memory, "tempfile": _tempfile, "fileobj": _fileobj}[args.variant](s3)
    # Warm-up: a multipart-sized copy down the same path loads every lazy import, the botocore
    # models and the connection pools before the baseline is taken.
    warm_key = f"{args.key}.warm"
    copy(media_url(args.origin, 2 * args.part_size + 1), warm_key)
    s3.delete_object(Bucket=BUCKET, Key=warm_key)
    gc.collect()
    clock.seconds.clear()

    baseline = rss_bytes()
    hwm_reset = reset_peak()
    disk_before = disk_write_bytes()
    cpu_before = os.times()
    with RssSampler() as sampler:
        started = time.perf_counter()
        sha256 = copy(media_url(args.origin, args.size), args.key)
        elapsed = time.perf_counter() - started
    cpu_after = os.times()
    disk_after = disk_write_bytes()
    peak = max(sampler.peak, hwm_bytes() if hwm_reset else 0)
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "variant": args.variant,
        "size_bytes": args.size,
        "wall_s": round(elapsed, 3),
        "cpu_s": round(cpu, 3),
        "mib_per_s": round(args.size / MiB / elapsed, 1),
        "baseline_rss_mib": round(baseline / MiB, 1),
        "peak_rss_growth_mib": round((peak - baseline) / MiB, 1),
        "disk_write_mib": round((disk_after - disk_before) / MiB, 1)
        if disk_before is not None and disk_after is not None
        else None,
        "peak_source": "VmHWM and sampling" if hwm_reset else "sampling every 2 ms",
        "sha256": sha256,
        "s3_s": {op: round(seconds, 3) for op, seconds in sorted(clock.seconds.items())},
    }


# ------------------------------------------------------------------ the comparison (parent side)
def _clean_bucket(s3: Any) -> None:
    """Delete what a run left (objects, open multipart uploads): moto keeps them otherwise."""
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])


def run_copy(
    sizes_mib: Sequence[int],
    repeats: int,
    *,
    variants: Sequence[str] = VARIANTS,
    part_size: int = 8 * MiB,
    parts_in_flight: int = 3,
    timeout: float = 900.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every variant ``repeats`` times per size, variants interleaved (the order rotates each
    repeat), each in a fresh process; figures, medians, ratios and the targets."""
    runs: list[dict[str, Any]] = []
    with moto_process() as endpoint, origin_process() as origin:
        s3 = _s3_client(endpoint, production=False)
        s3.create_bucket(Bucket=BUCKET)
        for size_mib in sizes_mib:
            size = size_mib * MiB
            sha_expected = expected_sha256(size) if "ours" in variants else ""
            for repeat in range(repeats):
                order = list(variants[repeat % len(variants) :]) + list(variants[: repeat % len(variants)])
                for variant in order:
                    key = f"{variant}-{size_mib}-{repeat}.mp4"
                    result = run_json_child(
                        [
                            str(BENCH_DIR / "copy_bench.py"),
                            "--child",
                            "--variant",
                            variant,
                            "--size",
                            str(size),
                            "--endpoint",
                            endpoint,
                            "--origin",
                            origin,
                            "--key",
                            key,
                            "--part-size",
                            str(part_size),
                            "--parts-in-flight",
                            str(parts_in_flight),
                        ],
                        timeout=timeout,
                    )
                    stored = s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
                    result["size_ok"] = stored == size
                    if variant == "ours":
                        # The hash the job records and the one the object's sha256 tag carries.
                        tagging = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
                        tagged = {t["Key"]: t["Value"] for t in tagging}.get("sha256")
                        result["sha256_ok"] = result["sha256"] == sha_expected == tagged
                    result.pop("sha256", None)
                    result["repeat"] = repeat
                    runs.append(result)
                    log(
                        f"copy {size_mib:>5} MiB {variant:<8} #{repeat + 1}: {result['wall_s']:7.2f} s, "
                        f"cpu {result['cpu_s']:6.2f} s, peak +{result['peak_rss_growth_mib']:7.1f} MiB, "
                        f"disk {result['disk_write_mib']} MiB"
                    )
                    _clean_bucket(s3)
    return summarise(runs, sizes_mib, variants)


def summarise(runs: Sequence[dict[str, Any]], sizes_mib: Sequence[int], variants: Sequence[str]) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for size_mib in sizes_mib:
        size_runs = [r for r in runs if r["size_bytes"] == size_mib * MiB]
        figures: dict[str, Any] = {}
        for variant in variants:
            mine = [r for r in size_runs if r["variant"] == variant]
            figures[variant] = {
                "wall_s": spread([r["wall_s"] for r in mine]),
                "cpu_s": spread([r["cpu_s"] for r in mine]),
                "peak_rss_growth_mib": spread([r["peak_rss_growth_mib"] for r in mine]),
                "disk_write_mib": spread([r["disk_write_mib"] or 0.0 for r in mine]),
                "mib_per_s": round(size_mib / median([r["wall_s"] for r in mine]), 1) if mine else None,
                "s3_s": {
                    op: round(median([r.get("s3_s", {}).get(op, 0.0) for r in mine]), 3)
                    for op in sorted({op for r in mine for op in r.get("s3_s", {})})
                },
                "all_ok": all(r.get("size_ok") and r.get("sha256_ok", True) for r in mine),
            }
        entry: dict[str, Any] = {"variants": figures}
        peers = [v for v in variants if v in PEERS]
        if "ours" in figures and peers:
            fastest = min(peers, key=lambda v: figures[v]["wall_s"]["median"])
            entry["fastest_peer"] = fastest
            entry["wall_ratio_vs_fastest_peer"] = ratio(
                figures["ours"]["wall_s"]["median"], figures[fastest]["wall_s"]["median"]
            )
            entry["wall_ratio_vs_peer"] = {
                v: ratio(figures["ours"]["wall_s"]["median"], figures[v]["wall_s"]["median"]) for v in peers
            }
            entry["cpu_ratio_vs_peer"] = {
                v: ratio(figures["ours"]["cpu_s"]["median"], figures[v]["cpu_s"]["median"]) for v in peers
            }
            # Diagnostic, not a target: the wall time without the final PutObjectTagging (the sha256
            # tag of a multipart object; a single-part object gets it inline; no peer tags).
            without_tagging = median(
                [
                    r["wall_s"] - r.get("s3_s", {}).get("PutObjectTagging", 0.0)
                    for r in size_runs
                    if r["variant"] == "ours"
                ]
            )
            entry["ours_tagging_s"] = round(
                median([r.get("s3_s", {}).get("PutObjectTagging", 0.0) for r in size_runs if r["variant"] == "ours"]),
                3,
            )
            entry["wall_ratio_vs_fastest_peer_without_tagging"] = ratio(
                without_tagging, figures[fastest]["wall_s"]["median"]
            )
            entry["peak_ratio_vs_peer"] = {
                v: ratio(figures["ours"]["peak_rss_growth_mib"]["median"], figures[v]["peak_rss_growth_mib"]["median"])
                for v in peers
            }
        by_size[str(size_mib)] = entry
    return {"description": DESCRIPTIONS, "runs": list(runs), "by_size_mib": by_size, "targets": targets(by_size)}


def targets(by_size: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted(by_size, key=int)
    if not sizes or "ours" not in by_size[sizes[-1]]["variants"]:
        return {}
    largest = by_size[sizes[-1]]
    growth = [by_size[s]["variants"]["ours"]["peak_rss_growth_mib"]["median"] for s in sizes]
    disk = [by_size[s]["variants"]["ours"]["disk_write_mib"]["max"] for s in sizes]
    wall_ratio = largest.get("wall_ratio_vs_fastest_peer")
    added_mib = int(sizes[-1]) - int(sizes[0])
    slope = round((growth[-1] - growth[0]) / added_mib, 4) if added_mib else 0.0
    return {
        "largest_size_mib": int(sizes[-1]),
        "peak_growth_at_largest": {
            "value_mib": growth[-1],
            "limit_mib": MAX_GROWTH_MIB,
            "met": growth[-1] <= MAX_GROWTH_MIB,
        },
        "peak_growth_flat": {
            "values_mib": growth,
            "slope": slope,
            "limit_slope": MAX_FLAT_SLOPE,
            "met": slope <= MAX_FLAT_SLOPE,
        },
        "no_disk": {"max_write_mib": max(disk), "met": max(disk) < 1.0},
        "wall_vs_fastest_peer": {
            "ratio": wall_ratio,
            "fastest_peer": largest.get("fastest_peer"),
            "limit": MAX_WALL_RATIO,
            "met": wall_ratio is not None and wall_ratio <= MAX_WALL_RATIO,
        },
        "integrity": {"met": all(by_size[s]["variants"]["ours"]["all_ok"] for s in sizes)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, default="ours")
    parser.add_argument("--size", type=parse_size, default=64 * MiB)
    parser.add_argument("--endpoint", help="S3 endpoint (child)")
    parser.add_argument("--origin", help="origin host:port (child)")
    parser.add_argument("--key", default="copy.mp4")
    parser.add_argument("--part-size", type=parse_size, default=8 * MiB)
    parser.add_argument("--parts-in-flight", type=int, default=3)
    parser.add_argument("--sizes", default="64,256,1024", help="MiB, comma-separated (comparison)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.child:
        os.environ.update({k: v for k, v in dummy_aws_env().items() if k not in os.environ})
        print(json.dumps(run_child(args)), flush=True)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    variants = [v for v in args.variants.split(",") if v.strip()]
    result = run_copy(
        sizes,
        args.repeats,
        variants=variants,
        part_size=args.part_size,
        parts_in_flight=args.parts_in_flight,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

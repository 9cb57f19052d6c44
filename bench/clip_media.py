"""``clips``: what real MP4 media costs. The simulator's clip generation (PyAV, libx264 ultrafast,
10 frames/s) per resolution, each made afresh (the cache bypassed), and the copier's box walker
over a large item next to the SHA-256 the copier computes anyway, both fed the same 64 KiB chunks
as a download delivers them: the walker's share of the copy's CPU."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from typing import Any

RESOLUTIONS = ("360p", "720p", "1080p")
DURATION = 5
WALK_BYTES = 256 * 1024 * 1024


def run_clips(repeats: int = 3, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    from pixverse_jobs.mp4 import Mp4Walker
    from pixverse_local.gateway_sim.clips import FRAME_RATE, ClipSpec, frame_size, render_clip
    from pixverse_local.gateway_sim.media import MediaItem

    clips = []
    for resolution in RESOLUTIONS:
        width, height = frame_size(resolution, "16:9")
        spec = ClipSpec(width, height, DURATION, f"bench clip {resolution} a lighthouse in a storm")
        times, size = [], 0
        for _ in range(repeats):
            began = time.perf_counter()
            size = len(render_clip(spec))
            times.append(time.perf_counter() - began)
        clips.append(
            {
                "resolution": resolution,
                "width": width,
                "height": height,
                "seconds": DURATION,
                "frame_rate": FRAME_RATE,
                "bytes": size,
                "make_seconds_median": round(statistics.median(times), 3),
                "make_seconds_all": [round(t, 3) for t in times],
            }
        )
        log(f"clip {resolution} {width}x{height} {DURATION} s: {clips[-1]['make_seconds_median']} s, {size} bytes")

    item = MediaItem("bench-walk", 0, WALK_BYTES, ClipSpec(1280, 720, DURATION, "walk"))
    chunks = list(item.chunks(0, 64 * 1024 * 1024))  # 64 MiB held once, fed four times
    walk_times, hash_times = [], []
    for _ in range(repeats):
        walker = Mp4Walker()
        began = time.perf_counter()
        for _ in range(WALK_BYTES // (64 * 1024 * 1024)):
            for chunk in chunks:
                walker.feed(chunk)
        walk_times.append(time.perf_counter() - began)
        digest = hashlib.sha256()
        began = time.perf_counter()
        for _ in range(WALK_BYTES // (64 * 1024 * 1024)):
            for chunk in chunks:
                digest.update(chunk)
        hash_times.append(time.perf_counter() - began)
    walk, hashed = statistics.median(walk_times), statistics.median(hash_times)
    mib = WALK_BYTES / 1024 / 1024
    result = {
        "method": (
            f"render_clip() for {DURATION} s 16:9 clips, {repeats} runs each, cache bypassed; Mp4Walker.feed() and "
            f"hashlib.sha256().update() over the same {int(mib)} MiB in 64 KiB chunks (a clip, a free box, filler)"
        ),
        "clips": clips,
        "walker": {
            "mib": int(mib),
            "walker_mib_per_s": round(mib / walk, 1),
            "sha256_mib_per_s": round(mib / hashed, 1),
            "walker_share_of_sha256": round(walk / hashed, 4),
        },
    }
    log(f"walker {result['walker']}")
    return result

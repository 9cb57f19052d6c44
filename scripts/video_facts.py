"""Show an MP4's facts two ways, FFmpeg's (through PyAV) and the copier's box walker, and render one
frame to PNG: ``.venv/bin/python scripts/video_facts.py FILE [--frame OUT.png] [--at SECONDS]``.
Exits 1 if the two readings disagree. A development tool (PyAV is a dev dependency)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
from pixverse_jobs.mp4 import read_facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--frame", type=Path, help="write the frame at --at seconds to this PNG")
    parser.add_argument("--at", type=float, default=2.0)
    args = parser.parse_args()
    data = args.file.read_bytes()
    walker = read_facts(data)
    with av.open(str(args.file)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        duration = round((container.duration or 0) / 1_000_000, 3)
        print(
            f"ffmpeg (PyAV {av.__version__}): format={container.format.name} duration={duration} s "
            f"codec={context.name} ({context.codec_tag}) profile={context.profile} {stream.width}x{stream.height} "
            f"pix_fmt={context.pix_fmt} frames={stream.frames} rate={stream.average_rate} "
            f"bit_rate={container.bit_rate} size={len(data)} bytes"
        )
        frame = None
        for decoded in container.decode(stream):
            frame = decoded
            if decoded.time is not None and decoded.time >= args.at:
                break
    print(f"box walker: duration={walker.duration_seconds} s codec={walker.codec} {walker.width}x{walker.height}")
    if args.frame is not None and frame is not None:
        with av.open(str(args.frame), "w", format="image2") as out:
            png = out.add_stream("png")
            png.width, png.height, png.pix_fmt = frame.width, frame.height, "rgb24"
            for packet in png.encode(frame.reformat(format="rgb24")):
                out.mux(packet)
            for packet in png.encode(None):
                out.mux(packet)
        print(f"frame at {frame.time} s written to {args.frame}")
    agree = (walker.duration_seconds, walker.width, walker.height, walker.codec) == (
        duration,
        stream.width,
        stream.height,
        context.codec_tag,
    )
    print("the two readings agree" if agree else "THE TWO READINGS DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

"""make demo: start the local stack, run one text-to-video and one image-to-video job through
the whole pipeline, print each job's final record, its S3 object and its SNS event, save each
video where it can be played (the local stack's S3 is gone once the demo stops) and print its facts
(duration, width x height, codec, as the copier read them from the MP4), stop everything. Exits 0
only if both jobs are DELIVERED, each object's sha256 equals what the gateway simulator served,
each output carries its video facts, and each job produced exactly one event."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pixverse_local.harness import EventInbox, LocalClient, StackProcess

JOBS = [
    {
        "model": "pixverse-v6-text-to-video",
        "input": {
            "prompt": "A cat sitting by a window watching birds outside, warm afternoon sunlight, cinematic",
            "negative_prompt": "blurry, low quality, pixelated",
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "style": "cyberpunk",
            "generate_audio_switch": True,
        },
        "metadata": {"demo": "text-to-video"},
    },
    {
        "model": "pixverse-i2v",
        "input": {
            "prompt": "A fierce dragon breathing fire across a stormy night sky, lightning flashing, dark fantasy",
            "resolution": "720p",
            "duration": "5",
            "image_url": "https://imagesai.appypie.com/7686410/ZU2sxXLmgRF6dgSktn9o_017731475651251.png",
        },
        "metadata": {"demo": "image-to-video"},
    },
]


VIDEOS_DIR = Path(tempfile.gettempdir()) / "pixverse-demo-videos"


def video_line(output: dict[str, Any]) -> str:
    """``5 s, 1280x720, avc1``: the facts the copier read from the MP4 container."""
    return f"{output['duration_seconds']:g} s, {output['width']}x{output['height']}, {output['codec']}"


def main() -> int:
    log = Path(tempfile.gettempdir()) / "pixverse-local-demo.log"
    print(f"starting the local stack (its log: {log}) ...", flush=True)
    failures: list[str] = []
    with StackProcess(log_path=log) as stack:
        assert stack.ready is not None
        print(f"ready: api={stack.ready['api']} aws={stack.ready['aws']} gateway={stack.ready['gateway']}")
        client = LocalClient(stack.ready)
        inbox = EventInbox(client)
        submitted = []
        for body in JOBS:
            response = client.submit(body)
            if response.status_code != 202:
                failures.append(f"{body['model']}: POST /jobs answered {response.status_code} {response.text}")
                continue
            job = response.json()
            print(f"submitted {job['job_id']} ({job['model']}): {job['status']}")
            submitted.append(job["job_id"])
        for job_id in submitted:
            job = client.wait_for(job_id, timeout=60)
            print(f"\n=== job {job_id}: {job['status']}")
            print(json.dumps(job, indent=2))
            if job["status"] != "DELIVERED":
                failures.append(f"{job_id} ended {job['status']}")
                continue
            served = client.simulated_request(job["request_id"])["media"]  # in media_url order
            for index, output in enumerate(job["outputs"]):
                size, sha256 = client.object_sha256(output["bucket"], output["key"])
                expected = served[index]
                match = sha256 == expected["sha256"] and size == expected["size"]
                print(
                    f"S3 object: {output['s3_uri']}  size={size}  sha256={sha256}  "
                    f"{'== served by the gateway' if match else '!= served by the gateway ' + expected['sha256']}"
                )
                if not match:
                    failures.append(f"{job_id}: object {output['key']} differs from the served media")
                if any(output.get(name) is None for name in ("duration_seconds", "width", "height", "codec")):
                    failures.append(f"{job_id}: output {index} carries no video facts")
                    continue
                saved = VIDEOS_DIR / job_id / Path(output["key"]).name
                saved.parent.mkdir(parents=True, exist_ok=True)
                body = client.s3.get_object(Bucket=output["bucket"], Key=output["key"])["Body"].read()
                saved.write_bytes(body)
                print(f"video: {video_line(output)}  saved to {saved} (play it with any video player)")
            events = inbox.for_job(job_id, wait=2.0)
            for event in events:
                print(f"SNS event: {json.dumps(event, indent=2)}")
            if len(events) != 1:
                failures.append(f"{job_id}: {len(events)} events instead of exactly one")
        inbox.close()
        client.close()
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"\ndemo OK: {len(submitted)} jobs DELIVERED, objects match the served media, one event per job")
    print(
        f"the videos are in {VIDEOS_DIR}/<job_id>/ (on a deployed stack: GET /jobs/<job_id> gives each output's "
        "download_url, or `aws s3 cp <s3_uri> .`)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

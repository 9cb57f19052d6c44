"""The gateway simulator serves real MP4 clips shaped by the request, pads them to a [sim:size],
and serves an HTML page as video/mp4 on [sim:media-body=html]."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from typing import Any

import av
import httpx
import pytest
from pixverse_jobs.mp4 import VideoFacts, read_facts
from pixverse_local.gateway_sim import GatewaySimulator, parse_directives
from pixverse_local.gateway_sim.clips import frame_size

API_KEY = "sim-video-key-0123456789"
HEADERS = {"Ocp-Apim-Subscription-Key": API_KEY}
V6_T2V = "/pixverse-v6-text-to-video/v1/pixverse-v6-text-to-video-request"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    simulator = GatewaySimulator(api_key=API_KEY, queue_seconds=0.0, processing_seconds=0.02)
    simulator.start()
    with httpx.Client(base_url=simulator.url, timeout=10.0) as http:
        yield http
    simulator.stop()


def _media(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, dict[str, Any]]:
    request_id = client.post(V6_T2V, json=body, headers=HEADERS).json()["request_id"]
    deadline = time.monotonic() + 5
    while True:
        status = client.get(f"/v2/requests/status/{request_id}", headers=HEADERS).json()
        if status["status"] == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    record = client.get(f"/_sim/requests/{request_id}").json()
    return client.get(status["output"]["media_url"][0]), record


def test_media_is_a_playable_clip_of_the_requested_size_and_duration(client: httpx.Client) -> None:
    response, record = _media(
        client, {"prompt": "Bars and a timer", "resolution": "360p", "aspect_ratio": "4:3", "duration": 2}
    )

    assert response.headers["content-type"] == "video/mp4"
    assert read_facts(response.content) == VideoFacts(2.0, 480, 360, "avc1")
    with av.open(io.BytesIO(response.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 2 * 10  # FRAME_RATE frames a second
    assert record["media"][0]["size"] == len(response.content)
    assert record["media"][0]["sha256"] == hashlib.sha256(response.content).hexdigest()


def test_sized_media_is_the_clip_padded_with_a_free_box_and_still_plays(client: httpx.Client) -> None:
    response, _ = _media(client, {"prompt": "Padded [sim:size=300000]", "resolution": "360p", "duration": 1})

    assert len(response.content) == 300_000
    assert read_facts(response.content) == VideoFacts(1.0, 640, 360, "avc1")
    with av.open(io.BytesIO(response.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_media_smaller_than_the_clip_keeps_the_facts(client: httpx.Client) -> None:
    response, _ = _media(client, {"prompt": "Tiny [sim:size=2048]", "resolution": "1080p", "aspect_ratio": "9:16"})

    assert len(response.content) == 2048
    assert read_facts(response.content) == VideoFacts(5.0, 1080, 1920, "avc1")


def test_html_media_body_is_an_html_page_labelled_video_mp4(client: httpx.Client) -> None:
    response, record = _media(client, {"prompt": "Broken CDN [sim:media-body=html]"})

    assert response.headers["content-type"] == "video/mp4"
    assert response.content.startswith(b"<!DOCTYPE html>")
    assert record["directives"]["media_body"] == "html"


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "size"),
    [
        ("360p", "16:9", (640, 360)),
        ("540p", "16:9", (960, 540)),
        ("720p", "16:9", (1280, 720)),
        ("1080p", "16:9", (1920, 1080)),
        ("720p", "9:16", (720, 1280)),
        ("720p", "1:1", (720, 720)),
        ("360p", "21:9", (840, 360)),
        ("480p", "16:9", (854, 480)),
    ],
)
def test_frame_size_short_side_is_the_resolution(resolution: str, aspect_ratio: str, size: tuple[int, int]) -> None:
    assert frame_size(resolution, aspect_ratio) == size


def test_media_body_directive_takes_video_or_html() -> None:
    assert parse_directives("x [sim:media-body=html]").media_body == "html"
    assert parse_directives("x").media_body == "video"
    with pytest.raises(ValueError, match="needs one of video, html"):
        parse_directives("x [sim:media-body=json]")

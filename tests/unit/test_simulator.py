"""The gateway simulator behaves as pixazo-pixverse-api.txt documents, plus its test hooks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pixverse_local.gateway_sim import GatewaySimulator, media_sha256
from pixverse_local.gateway_sim.clips import clip_spec_for
from pixverse_local.gateway_sim.media import iter_media_chunks, media_bytes

API_KEY = "sim-test-key-0123456789"
KEY_HEADERS = {"Ocp-Apim-Subscription-Key": API_KEY}
MEDIA_SIZE = 200_000
STATUS_FIELDS = {
    "request_id",
    "status",
    "model_id",
    "error",
    "output",
    "created_at",
    "updated_at",
    "completed_at",
}

# The doc's own example requests, copied verbatim (example / minimum / full per model).
V6_T2V_EXAMPLE = {
    "prompt": "A cat sitting by a window watching birds outside, warm afternoon sunlight, cinematic",
    "negative_prompt": "blurry, low quality, pixelated",
    "aspect_ratio": "16:9",
    "resolution": "720p",
    "duration": 5,
    "style": "cyberpunk",
    "generate_audio_switch": True,
}
_SNOW_PROMPT = (
    "A gentle snowfall begins around the snow-covered tree, with soft flakes drifting down while the "
    "branches sway slightly in the winter breeze. The camera slowly orbits the tree, cinematic, peaceful "
    "winter atmosphere."
)
V6_I2V_MINIMUM = {
    "prompt": _SNOW_PROMPT,
    "resolution": "720p",
    "duration": 5,
    "image_url": "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/f1.png",
}
V6_I2V_FULL = {
    **V6_I2V_MINIMUM,
    "negative_prompt": (
        "blurry, low quality, low resolution, pixelated, noisy, grainy, out of focus, poorly lit, poorly "
        "exposed, poorly composed, poorly framed, poorly cropped, poorly color corrected, poorly color graded"
    ),
}
C1_I2V_EXAMPLE = {
    "prompt": "A woman warrior with her hammer walking with her glacier wolf, cinematic camera move",
    "image_url": "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/Image.jpeg",
    "resolution": "720p",
    "duration": 5,
    "generate_audio_switch": True,
}
V56_T2V_MINIMUM = {
    "prompt": (
        "A golden sunset timelapse over a coastal city, waves crashing against the pier, seagulls flying, "
        "warm cinematic lighting, aerial drone perspective"
    ),
    "aspect_ratio": "16:9",
    "resolution": "720p",
    "duration": 5,
}
V56_T2V_FULL = {
    **V56_T2V_MINIMUM,
    "negative_prompt": (
        "blurry, low quality, low resolution, pixelated, noisy, grainy, out of focus, poorly lit, poorly "
        "exposed, poorly composed, poorly framed, poorly cropped, poorly color corrected, poorly color graded"
    ),
}
V56_I2V_MINIMUM = {
    "prompt": (
        "A fierce dragon breathing fire across a stormy night sky, lightning flashing in the background, "
        "cinematic dark fantasy"
    ),
    "resolution": "720p",
    "duration": "5",
    "image_url": "https://imagesai.appypie.com/7686410/ZU2sxXLmgRF6dgSktn9o_017731475651251.png",
}
V56_I2V_FULL = {**V56_I2V_MINIMUM, "negative_prompt": "blurry, low quality, low resolution, pixelated, noisy, grainy"}

DOC_EXAMPLES = [
    ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE),
    ("pixverse-v6-image-to-video", V6_I2V_MINIMUM),
    ("pixverse-v6-image-to-video", V6_I2V_FULL),
    ("pixverse-c1-text-to-video", V6_T2V_EXAMPLE),
    ("pixverse-c1-image-to-video", C1_I2V_EXAMPLE),
    ("pixverse", V56_T2V_MINIMUM),
    ("pixverse", V56_T2V_FULL),
    ("pixverse-i2v", V56_I2V_MINIMUM),
    ("pixverse-i2v", V56_I2V_FULL),
]


# --- a tiny callback receiver --------------------------------------------------------------------


class CallbackReceiver:
    """Collects webhook POSTs on 127.0.0.1; answers scripted status codes (then 200)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.codes: deque[int] = deque()
        self.delay_seconds = 0.0
        self._condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._condition:
                    receiver.bodies.append(body)
                    receiver.arrivals.append(arrived)
                    code = receiver.codes.popleft() if receiver.codes else 200
                    receiver._condition.notify_all()
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` callbacks arrived; return all received so far."""
        with self._condition:
            self._condition.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    callback_receiver = CallbackReceiver()
    yield callback_receiver
    callback_receiver.close()


@pytest.fixture
def sim() -> Iterator[GatewaySimulator]:
    simulator = GatewaySimulator(
        api_key=API_KEY,
        allow_http_webhooks_on_loopback=True,
        queue_seconds=0.05,
        processing_seconds=0.15,
        poll_interval_seconds=0.05,
        media_size=MEDIA_SIZE,
        callback_timeout_seconds=2.0,
    )
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim: GatewaySimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        yield http


def submit(
    client: httpx.Client,
    model: str,
    body: object,
    *,
    webhook_url: str | None = None,
    mode: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = dict(KEY_HEADERS if headers is None else headers)
    if webhook_url is not None:
        all_headers["X-Webhook-URL"] = webhook_url
    if mode is not None:
        all_headers["X-Webhook-Mode"] = mode
    return client.post(f"/{model}/v1/{model}-request", json=body, headers=all_headers)


def prompt_with(directives: str) -> dict[str, Any]:
    return {**V6_T2V_EXAMPLE, "prompt": f"{V6_T2V_EXAMPLE['prompt']} {directives}"}


def wait_terminal(client: httpx.Client, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        payload: dict[str, Any] = client.get(f"/v2/requests/status/{request_id}", headers=KEY_HEADERS).json()
        if payload["status"] in ("COMPLETED", "FAILED", "ERROR") or time.monotonic() > deadline:
            return payload
        time.sleep(0.02)


def sim_record(client: httpx.Client, request_id: str) -> dict[str, Any]:
    record: dict[str, Any] = client.get(f"/_sim/requests/{request_id}").json()
    return record


# --- submit --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "body"), DOC_EXAMPLES)
def test_doc_example_request_accepted_with_documented_shape(
    sim: GatewaySimulator, client: httpx.Client, model: str, body: dict[str, Any]
) -> None:
    response = submit(client, model, body)

    assert response.status_code == 202
    payload = response.json()
    assert set(payload) == {"request_id", "status", "polling_url"}
    assert payload["status"] == "QUEUED"
    assert payload["request_id"].startswith(f"{model}_")
    assert payload["polling_url"] == f"{sim.url}/v2/requests/status/{payload['request_id']}"


@pytest.mark.parametrize("headers", [{}, {"Ocp-Apim-Subscription-Key": "wrong-key"}])
def test_submit_without_valid_key_unauthorized(client: httpx.Client, headers: dict[str, str]) -> None:
    response = submit(client, "pixverse", V56_T2V_MINIMUM, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert API_KEY not in response.text and "wrong-key" not in response.text


_REMOVE = object()


@pytest.mark.parametrize(
    ("model", "base", "name", "value"),
    [
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "prompt", _REMOVE),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "prompt", "   "),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "duration", "5"),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "duration", 5.0),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "duration", True),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "duration", 16),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "duration", 0),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "resolution", "480p"),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "style", "noir"),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "generate_audio_switch", "true"),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, "fps", 24),
        ("pixverse-v6-image-to-video", V6_I2V_MINIMUM, "image_url", _REMOVE),
        ("pixverse-v6-image-to-video", V6_I2V_MINIMUM, "image_url", "ftp://example.com/a.png"),
        ("pixverse-v6-image-to-video", V6_I2V_MINIMUM, "aspect_ratio", "16:9"),
        ("pixverse-v6-image-to-video", V6_I2V_MINIMUM, "resolution", "2160p"),
        ("pixverse-c1-text-to-video", V6_T2V_EXAMPLE, "thinking_type", "maybe"),
        ("pixverse-c1-text-to-video", V6_T2V_EXAMPLE, "aspect_ratio", "5:4"),
        ("pixverse-c1-image-to-video", C1_I2V_EXAMPLE, "seed", "42"),
        ("pixverse-c1-image-to-video", C1_I2V_EXAMPLE, "style", "anime"),
        ("pixverse-c1-image-to-video", C1_I2V_EXAMPLE, "resolution", "480p"),
        ("pixverse", V56_T2V_MINIMUM, "aspect_ratio", _REMOVE),
        ("pixverse", V56_T2V_MINIMUM, "duration", _REMOVE),
        ("pixverse", V56_T2V_MINIMUM, "duration", 4),
        ("pixverse", V56_T2V_MINIMUM, "duration", "5"),
        ("pixverse", V56_T2V_MINIMUM, "resolution", "540p"),
        ("pixverse-i2v", V56_I2V_MINIMUM, "duration", 5),
        ("pixverse-i2v", V56_I2V_MINIMUM, "duration", "7"),
        ("pixverse-i2v", V56_I2V_MINIMUM, "resolution", _REMOVE),
        ("pixverse-i2v", V56_I2V_MINIMUM, "negative_prompt", None),
    ],
)
def test_invalid_parameter_rejected_naming_field(
    client: httpx.Client, model: str, base: dict[str, Any], name: str, value: object
) -> None:
    body = {key: item for key, item in base.items() if key != name}
    if value is not _REMOVE:
        body[name] = value

    response = submit(client, model, body)

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert response.json()["message"].startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("model", "base", "changes"),
    [
        ("pixverse-v6-image-to-video", V6_I2V_MINIMUM, {"resolution": "480p"}),
        ("pixverse-v6-image-to-video", V6_I2V_MINIMUM, {"resolution": "540p"}),
        ("pixverse-v6-text-to-video", V6_T2V_EXAMPLE, {"duration": 1, "seed": 7, "thinking_type": "auto"}),
        ("pixverse-c1-text-to-video", V6_T2V_EXAMPLE, {"duration": 15, "aspect_ratio": "21:9"}),
        ("pixverse", V56_T2V_MINIMUM, {"duration": 10, "resolution": "2160p"}),
        ("pixverse-i2v", V56_I2V_MINIMUM, {"duration": "10", "resolution": "1080p"}),
    ],
)
def test_documented_edge_values_accepted(
    client: httpx.Client, model: str, base: dict[str, Any], changes: dict[str, Any]
) -> None:
    response = submit(client, model, {**base, **changes})

    assert response.status_code == 202, response.text


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{not json", b"", b'{"prompt": NaN}'])
def test_non_object_body_rejected(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/pixverse/v1/pixverse-request",
        content=raw,
        headers={**KEY_HEADERS, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith("body: ")


def test_unknown_model_answers_model_not_found(client: httpx.Client) -> None:
    response = submit(client, "pixverse-v9-text-to-video", V6_T2V_EXAMPLE)

    assert response.status_code == 400
    assert response.json() == {
        "error": "Model not found",
        "message": "Model 'pixverse-v9-text-to-video' not found or is disabled",
    }


def test_bad_directive_rejected_naming_prompt(client: httpx.Client) -> None:
    response = submit(client, "pixverse-v6-text-to-video", prompt_with("[sim:dup=many]"))

    assert response.status_code == 400
    assert response.json()["message"].startswith("prompt: ")


# --- webhook headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://example.com/hook", "http://10.0.0.5/hook", "ftp://127.0.0.1/hook"])
def test_webhook_url_not_https_rejected(client: httpx.Client, url: str) -> None:
    response = submit(client, "pixverse", V56_T2V_MINIMUM, webhook_url=url)

    assert response.status_code == 400
    assert response.json()["message"].startswith("X-Webhook-URL: ")


def test_http_loopback_webhook_rejected_without_opt_in() -> None:
    with (
        GatewaySimulator(api_key=API_KEY) as strict,
        httpx.Client(base_url=strict.url, timeout=5.0) as http,
    ):
        response = submit(http, "pixverse", V56_T2V_MINIMUM, webhook_url="http://127.0.0.1:9/hook")
        accepted = submit(http, "pixverse", V56_T2V_MINIMUM, webhook_url="https://hooks.example.com/cb")

    assert response.status_code == 400
    assert accepted.status_code == 202


def test_invalid_webhook_mode_rejected(client: httpx.Client, receiver: CallbackReceiver) -> None:
    response = submit(client, "pixverse", V56_T2V_MINIMUM, webhook_url=receiver.url, mode="always")

    assert response.status_code == 400
    assert response.json()["message"].startswith("X-Webhook-Mode: ")


# --- lifecycle and callbacks ---------------------------------------------------------------------


def test_terminal_mode_one_completed_callback_with_doc_shape(
    client: httpx.Client, receiver: CallbackReceiver, sim: GatewaySimulator
) -> None:
    request_id = submit(client, "pixverse-v6-text-to-video", V6_T2V_EXAMPLE, webhook_url=receiver.url).json()[
        "request_id"
    ]

    receiver.wait_for(1)
    time.sleep(0.3)  # room for a wrong extra callback to show up

    assert len(receiver.bodies) == 1
    callback = receiver.bodies[0]
    assert set(callback) == STATUS_FIELDS
    assert callback["request_id"] == request_id
    assert callback["status"] == "COMPLETED"
    assert callback["model_id"] == "pixverse-v6-text-to-video"
    assert callback["error"] is None
    assert callback["created_at"].endswith("Z") and callback["completed_at"].endswith("Z")
    assert callback["output"] == {
        "media_url": [f"http://{sim.media_host}/media/{request_id}/0.mp4"],
        "media_type": "video/mp4",
    }
    media = client.get(callback["output"]["media_url"][0])
    assert media.headers["content-type"] == "video/mp4"
    assert len(media.content) == MEDIA_SIZE
    clip = clip_spec_for(V6_T2V_EXAMPLE)
    assert hashlib.sha256(media.content).hexdigest() == media_sha256(request_id, 0, MEDIA_SIZE, clip=clip)


def test_status_endpoint_matches_callback_payload(client: httpx.Client, receiver: CallbackReceiver) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM, webhook_url=receiver.url).json()["request_id"]

    callback = receiver.wait_for(1)[0]
    status = client.get(f"/v2/requests/status/{request_id}", headers=KEY_HEADERS)

    assert status.status_code == 200
    assert status.json() == callback


def test_sync_mode_several_callbacks_ending_completed(client: httpx.Client, receiver: CallbackReceiver) -> None:
    request_id = submit(client, "pixverse-i2v", V56_I2V_MINIMUM, webhook_url=receiver.url, mode="sync").json()[
        "request_id"
    ]

    status = wait_terminal(client, request_id)
    bodies = receiver.wait_for(99, timeout=0.5)

    statuses = [body["status"] for body in bodies]
    assert status["status"] == "COMPLETED"
    assert len(statuses) >= 3
    assert statuses[-1] == "COMPLETED" and statuses.count("COMPLETED") == 1
    assert set(statuses[:-1]) <= {"QUEUED", "PROCESSING"}
    assert "PROCESSING" in statuses
    assert all(body["output"] is None for body in bodies[:-1])


@pytest.mark.parametrize(
    ("directive", "status", "error"),
    [("[sim:fail]", "FAILED", "Generation failed: content policy"), ("[sim:error]", "ERROR", None)],
)
def test_failure_directive_ends_in_that_status(
    client: httpx.Client, receiver: CallbackReceiver, directive: str, status: str, error: str | None
) -> None:
    request_id = submit(client, "pixverse-c1-text-to-video", prompt_with(directive), webhook_url=receiver.url).json()[
        "request_id"
    ]

    callback = receiver.wait_for(1)[0]

    assert callback["request_id"] == request_id
    assert callback["status"] == status
    assert callback["output"] is None
    assert isinstance(callback["error"], str) and callback["error"]
    if error is not None:
        assert callback["error"] == error
    assert client.get(f"/media/{request_id}/0.mp4").status_code == 404


def test_dup_directive_delivers_three_concurrent_callbacks(client: httpx.Client, receiver: CallbackReceiver) -> None:
    receiver.delay_seconds = 0.4  # sequential delivery would space arrivals >= 0.4 s apart
    submit(client, "pixverse", {**V56_T2V_MINIMUM, "prompt": "sunset [sim:dup=3]"}, webhook_url=receiver.url)

    bodies = receiver.wait_for(3)
    time.sleep(0.5)

    assert len(receiver.bodies) == 3
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["status"] == "COMPLETED"
    assert max(receiver.arrivals) - min(receiver.arrivals) < 0.3


def test_no_callback_directive_sends_nothing_but_status_completes(
    client: httpx.Client, receiver: CallbackReceiver
) -> None:
    request_id = submit(
        client, "pixverse", {**V56_T2V_MINIMUM, "prompt": "sunset [sim:no-callback]"}, webhook_url=receiver.url
    ).json()["request_id"]

    status = wait_terminal(client, request_id)
    time.sleep(0.2)

    assert status["status"] == "COMPLETED"
    assert receiver.bodies == []
    assert sim_record(client, request_id)["callbacks"] == []


def test_callback_retried_after_500_then_delivered(client: httpx.Client, receiver: CallbackReceiver) -> None:
    receiver.codes.extend([500])
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM, webhook_url=receiver.url).json()["request_id"]

    bodies = receiver.wait_for(2)
    time.sleep(0.1)

    assert len(bodies) == 2 and bodies[0] == bodies[1]
    attempts = sim_record(client, request_id)["callbacks"]
    assert [attempt["status_code"] for attempt in attempts] == [500, 200]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2]


def test_callback_given_up_after_four_failed_attempts(client: httpx.Client, receiver: CallbackReceiver) -> None:
    receiver.codes.extend([503] * 10)
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM, webhook_url=receiver.url).json()["request_id"]

    receiver.wait_for(4)
    time.sleep(1.2)  # longer than the last backoff: a fifth attempt would have arrived

    attempts = sim_record(client, request_id)["callbacks"]
    assert len(receiver.bodies) == 4
    assert [attempt["status_code"] for attempt in attempts] == [503, 503, 503, 503]


def test_callback_to_closed_port_recorded_as_error(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM, webhook_url="http://127.0.0.1:9/hook").json()["request_id"]

    wait_terminal(client, request_id)
    deadline = time.monotonic() + 3
    attempts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not attempts:
        attempts = sim_record(client, request_id)["callbacks"]
        time.sleep(0.05)

    assert attempts and attempts[0]["status_code"] is None
    assert attempts[0]["error"]


# --- status --------------------------------------------------------------------------------------


def test_status_unknown_request_not_found(client: httpx.Client) -> None:
    response = client.get("/v2/requests/status/pixverse_00000000-0000-0000-0000-000000000000", headers=KEY_HEADERS)

    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


def test_status_without_key_unauthorized(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM).json()["request_id"]

    response = client.get(f"/v2/requests/status/{request_id}")

    assert response.status_code == 401


def test_status_moves_from_queued_to_completed(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM).json()["request_id"]

    first = client.get(f"/v2/requests/status/{request_id}", headers=KEY_HEADERS).json()
    final = wait_terminal(client, request_id)

    assert first["status"] == "QUEUED" and first["completed_at"] is None and first["output"] is None
    assert final["status"] == "COMPLETED" and final["completed_at"] is not None


# --- media ---------------------------------------------------------------------------------------


def test_media_before_completion_not_found(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM).json()["request_id"]

    response = client.get(f"/media/{request_id}/0.mp4")

    assert response.status_code == 404


def test_cut_directive_first_download_short_second_complete(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", {**V56_T2V_MINIMUM, "prompt": "sunset [sim:cut=1]"}).json()["request_id"]
    url = wait_terminal(client, request_id)["output"]["media_url"][0]

    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url)
    second = client.get(url)

    clip = clip_spec_for({**V56_T2V_MINIMUM, "prompt": "sunset"})
    assert hashlib.sha256(second.content).hexdigest() == media_sha256(request_id, 0, MEDIA_SIZE, clip=clip)


def test_size_and_media_directives_shape_outputs(client: httpx.Client) -> None:
    request_id = submit(
        client, "pixverse", {**V56_T2V_MINIMUM, "prompt": "sunset [sim:size=70000] [sim:media=2]"}
    ).json()["request_id"]

    urls = wait_terminal(client, request_id)["output"]["media_url"]
    record = sim_record(client, request_id)

    assert len(urls) == 2
    contents = [client.get(url).content for url in urls]
    assert [len(content) for content in contents] == [70000, 70000]
    assert contents[0] != contents[1]
    assert [item["sha256"] for item in record["media"]] == [hashlib.sha256(content).hexdigest() for content in contents]
    assert [item["url"] for item in record["media"]] == urls


def test_media_range_request_returns_partial_content(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM).json()["request_id"]
    url = wait_terminal(client, request_id)["output"]["media_url"][0]

    response = client.get(url, headers={"Range": "bytes=100000-"})

    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100000-{MEDIA_SIZE - 1}/{MEDIA_SIZE}"
    assert response.content == media_bytes(request_id, 0, MEDIA_SIZE, clip=clip_spec_for(V56_T2V_MINIMUM))[100000:]


def test_media_chunks_for_ranges_join_to_whole() -> None:
    size = 3 * 65536 + 123
    whole = media_bytes("pixverse_x", 1, size)

    pieces = b"".join(
        b"".join(iter_media_chunks("pixverse_x", 1, size, start, end))
        for start, end in [(0, 1000), (1000, 65537), (65537, size)]
    )

    assert len(whole) == size
    assert pieces == whole
    assert hashlib.sha256(whole).hexdigest() == media_sha256("pixverse_x", 1, size)
    assert whole[:65536] != whole[65536:131072]


# --- control API ---------------------------------------------------------------------------------


def test_fault_429_answers_retry_after_then_recovers(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"submit_status": 429, "count": 1, "retry_after": 7})

    limited = submit(client, "pixverse", V56_T2V_MINIMUM)
    recovered = submit(client, "pixverse", V56_T2V_MINIMUM)

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["error"] == "Too Many Requests"
    assert recovered.status_code == 202


def test_fault_402_answers_doc_body(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"submit_status": 402, "count": 2})

    responses = [submit(client, "pixverse", V56_T2V_MINIMUM) for _ in range(3)]

    assert [response.status_code for response in responses] == [402, 402, 202]
    assert responses[0].json() == {
        "error": "Insufficient Balance",
        "message": "Your wallet does not have enough balance.",
    }


def test_fault_delete_clears_pending_faults(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"submit_status": 500, "count": 5})

    cleared = client.delete("/_sim/faults")
    response = submit(client, "pixverse", V56_T2V_MINIMUM)

    assert cleared.status_code == 200
    assert response.status_code == 202


def test_fault_with_delay_times_out_client_after_acceptance(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"submit_status": 202, "count": 1, "delay_seconds": 0.6})

    with pytest.raises(httpx.ReadTimeout):
        client.post("/pixverse/v1/pixverse-request", json=V56_T2V_MINIMUM, headers=KEY_HEADERS, timeout=0.2)
    records = client.get("/_sim/requests").json()

    assert len(records) == 1
    assert records[0]["body"] == V56_T2V_MINIMUM


def test_fault_202_with_delay_accepts_at_once_and_calls_back_before_answering(
    client: httpx.Client, receiver: CallbackReceiver
) -> None:
    # "A gateway that answers the submit only after 35 s, having accepted the job at once", scaled
    # down: the job's lifecycle and its callbacks run while the submit's answer is still held back.
    client.post("/_sim/faults", json={"submit_status": 202, "count": 1, "delay_seconds": 1.5}).raise_for_status()
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(submit, client, "pixverse", V56_T2V_MINIMUM, webhook_url=receiver.url)
        callbacks = receiver.wait_for(1, timeout=5.0)
        records_meanwhile = client.get("/_sim/requests").json()
        answered_while_calling_back = pending.done()
        response = pending.result(timeout=5.0)
    answered = time.monotonic()

    assert response.status_code == 202
    assert not answered_while_calling_back
    assert [body["status"] for body in callbacks] == ["COMPLETED"]
    assert callbacks[0]["request_id"] == response.json()["request_id"]
    assert [(r["request_id"], r["status"]) for r in records_meanwhile] == [(response.json()["request_id"], "COMPLETED")]
    assert receiver.arrivals[0] < answered - 1.0
    assert answered - started >= 1.5
    assert client.get("/_sim/stats").json()["submits_accepted"] == 1


def test_fault_invalid_spec_rejected(client: httpx.Client) -> None:
    response = client.post("/_sim/faults", json={"submit_status": 418})

    assert response.status_code == 400
    assert response.json()["message"].startswith("submit_status: ")


def test_request_record_keeps_submission_details(client: httpx.Client, receiver: CallbackReceiver) -> None:
    request_id = submit(client, "pixverse-c1-image-to-video", C1_I2V_EXAMPLE, webhook_url=receiver.url, mode="sync")
    request_id_value = request_id.json()["request_id"]

    records = client.get("/_sim/requests").json()

    assert [record["request_id"] for record in records] == [request_id_value]
    record = records[0]
    assert record["model"] == "pixverse-c1-image-to-video"
    assert record["body"] == C1_I2V_EXAMPLE
    assert record["webhook_url"] == receiver.url
    assert record["webhook_mode"] == "sync"
    assert record["submitted_at"].endswith("Z")
    assert client.get("/_sim/requests/nope").status_code == 404


def test_stats_and_reset_count_then_clear(client: httpx.Client) -> None:
    request_id = submit(client, "pixverse", V56_T2V_MINIMUM).json()["request_id"]
    submit(client, "pixverse", {"prompt": "missing fields"})
    wait_terminal(client, request_id)
    client.get(f"/media/{request_id}/0.mp4")

    stats = client.get("/_sim/stats").json()
    client.post("/_sim/reset")

    assert stats["submits_received"] == 2 and stats["submits_accepted"] == 1
    assert stats["status_polls"] >= 1 and stats["media_gets"] == 1
    assert client.get("/_sim/requests").json() == []
    assert client.get("/_sim/stats").json()["submits_received"] == 0


@pytest.mark.parametrize("status", ["PROCESSING", "COMPLETED", "FAILED"])
def test_seeded_requests_stand_at_their_status_and_never_call_back(client: httpx.Client, status: str) -> None:
    seeded = client.post("/_sim/requests", json={"model": "pixverse", "status": status, "count": 3})

    assert seeded.status_code == 201
    ids = seeded.json()["request_ids"]
    time.sleep(0.3)  # longer than the fixture's whole lifecycle: a seeded request does not move
    answers = [client.get(f"/v2/requests/status/{i}", headers=KEY_HEADERS).json() for i in ids]
    assert len(set(ids)) == 3 and all(i.startswith("pixverse_") for i in ids)
    assert [a["status"] for a in answers] == [status] * 3
    assert all((a["output"] is not None) == (status == "COMPLETED") for a in answers)
    assert all((a["error"] is not None) == (status == "FAILED") for a in answers)
    assert all(sim_record(client, i)["callbacks"] == [] for i in ids)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"model": "nope", "status": "QUEUED", "count": 1}, "model"),
        ({"model": "pixverse", "status": "SUBMITTING", "count": 1}, "status"),
        ({"model": "pixverse", "status": "QUEUED", "count": 0}, "count"),
    ],
)
def test_seeding_names_the_bad_field(client: httpx.Client, spec: dict[str, Any], field: str) -> None:
    response = client.post("/_sim/requests", json=spec)

    assert response.status_code == 400 and response.json()["message"].startswith(f"{field}:")
    assert client.get("/_sim/requests").json() == []


def test_concurrent_submits_all_accepted_with_unique_ids(client: httpx.Client) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: submit(client, "pixverse", V56_T2V_MINIMUM), range(40)))

    assert {response.status_code for response in responses} == {202}
    assert len({response.json()["request_id"] for response in responses}) == 40
    assert client.get("/_sim/stats").json()["submits_accepted"] == 40


# --- lifecycle of the simulator itself -------------------------------------------------------------


def test_stop_returns_promptly_with_callback_in_flight(receiver: CallbackReceiver) -> None:
    receiver.delay_seconds = 3.0
    simulator = GatewaySimulator(
        api_key=API_KEY,
        allow_http_webhooks_on_loopback=True,
        queue_seconds=0.01,
        processing_seconds=0.01,
    )
    simulator.start()
    with httpx.Client(base_url=simulator.url, timeout=5.0) as http:
        submit(http, "pixverse", V56_T2V_MINIMUM, webhook_url=receiver.url)
    receiver.wait_for(1)

    started = time.monotonic()
    simulator.stop()
    simulator.stop()

    assert time.monotonic() - started < 2.0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{simulator.url}/_sim/stats", timeout=1.0)


def test_standalone_prints_banner_and_exits_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "local")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pixverse_local.gateway_sim", "--port", "0", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().strip()
        url = banner.removeprefix("simulator: ")
        stats = httpx.get(f"{url}/_sim/stats", timeout=2.0)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=5)

    assert banner.startswith("simulator: http://127.0.0.1:")
    assert stats.status_code == 200
    assert code == 0

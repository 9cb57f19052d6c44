"""The simulator fetches image_url as the doc requires ("a valid HTTP/HTTPS link to a JPEG, PNG,
or WebP image"): a request whose image cannot be fetched, or is no such image, ends FAILED with
the reason; what it fetched is recorded for comparison (gateway_sim/images.py)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pixverse_local.gateway_sim import GatewaySimulator
from test_simulator import API_KEY, sim_record, submit, wait_terminal

MODEL = "pixverse-v6-image-to-video"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
FILES = {"/still.png": PNG, "/page.png": b"<html>not an image</html>"}


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FILES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    sim = GatewaySimulator(api_key=API_KEY, queue_seconds=0.02, processing_seconds=0.05, poll_interval_seconds=0.02)
    sim.start()
    with httpx.Client(base_url=sim.url, timeout=10.0) as http:
        yield http
    sim.stop()


def _run(client: httpx.Client, image_url: str) -> tuple[dict[str, object], dict[str, object]]:
    answer = submit(client, MODEL, {"prompt": "Snow falls", "image_url": image_url})
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]
    return wait_terminal(client, request_id), sim_record(client, request_id)


def test_a_loopback_image_is_fetched_and_its_bytes_recorded(client: httpx.Client, origin: str) -> None:
    final, record = _run(client, f"{origin}/still.png")

    assert final["status"] == "COMPLETED"
    assert record["image"] == {
        "outcome": "fetched",
        "host": "127.0.0.1",
        "size": len(PNG),
        "sha256": hashlib.sha256(PNG).hexdigest(),
        "content_type": "image/png",
        "error": None,
    }


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/page.png", "image_url is not a JPEG, PNG or WebP image"),
        ("/missing.png", "image_url could not be fetched: HTTP 404"),
    ],
)
def test_an_image_that_is_not_one_fails_the_request(client: httpx.Client, origin: str, path: str, error: str) -> None:
    final, _ = _run(client, f"{origin}{path}")

    assert (final["status"], final["error"], final["output"]) == ("FAILED", error, None)


def test_a_host_it_cannot_reach_fails_the_request(client: httpx.Client) -> None:
    final, record = _run(client, "https://images.example.com/still.png")

    assert (final["status"], final["error"]) == ("FAILED", "image_url could not be fetched: host not reachable")
    assert isinstance(record["image"], dict) and record["image"]["outcome"] == "failed"


def test_the_docs_example_image_is_presumed_served(client: httpx.Client) -> None:
    final, record = _run(client, "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/f1.png")

    assert final["status"] == "COMPLETED"
    assert isinstance(record["image"], dict) and record["image"]["outcome"] == "presumed"

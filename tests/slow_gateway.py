"""A loopback gateway that accepts every submit at once and answers it late: the gateway that
takes the job (and will bill it) while its caller's time runs out. A real socket, so httpx's
timeouts apply as they do against the real gateway (a MockTransport ignores them)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SlowGateway:
    """Records each POST (path, headers, body, when) as accepted, then answers 202 with a
    request_id after ``delay`` seconds (or at ``close``)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted: list[dict[str, Any]] = []
        self._stop = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request_id = f"slow_{len(gateway.accepted) + 1}"
                gateway.accepted.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(body or b"{}"),
                        "request_id": request_id,
                        "at": time.monotonic(),
                    }
                )
                gateway._stop.wait(gateway.delay)
                answer = json.dumps({"request_id": request_id, "status": "QUEUED"}).encode()
                try:
                    self.send_response(202)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the caller gave up waiting and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

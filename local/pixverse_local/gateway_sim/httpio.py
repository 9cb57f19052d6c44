"""HTTP plumbing the routes share: JSON answers, reading a body, the key check, loopback clients."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, Final, cast

__all__ = ["API_KEY_HEADER", "BadRequest", "JsonHandler", "is_loopback_host", "key_matches", "parse_json_object"]

# The doc's "Authentication": every submit and status request carries this header.
API_KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"
MAX_BODY_BYTES: Final = 1024 * 1024


class BadRequest(Exception):
    """A request rejected with 400 and ``{"error": "Bad Request", "message": ...}``."""


def key_matches(supplied: str | None, expected: bytes) -> bool:
    """Whether ``supplied`` is the gateway key (compared in constant time)."""
    return supplied is not None and hmac.compare_digest(supplied.encode(), expected)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object; ``BadRequest`` naming the body otherwise (NaN and Infinity refused)."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("body: must be valid JSON") from exc
    if not isinstance(value, dict):
        raise BadRequest("body: must be a JSON object")
    return cast(dict[str, Any], value)


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON, as the gateway does."""

    def send_json(self, status: int, payload: object, headers: Mapping[str, str] | None = None) -> None:
        """Answer ``status`` with ``payload`` as JSON (headers only for HEAD)."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_body(self, status: int, error: str, message: str) -> None:
        """Answer ``status`` with the gateway's ``{"error", "message"}`` body."""
        self.send_json(status, {"error": error, "message": message})

    def not_found(self, message: str = "Resource not found") -> None:
        """Answer 404."""
        self.send_error_body(404, "Not Found", message)

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 400 when it cannot be read."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self.send_error_body(400, "Bad Request", "body: chunked transfer encoding is not supported")
            return None
        raw_length = self.headers.get("Content-Length", "0")
        if not raw_length.isdigit():
            self.close_connection = True
            self.send_error_body(400, "Bad Request", "body: invalid Content-Length")
            return None
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_error_body(400, "Bad Request", f"body: larger than {MAX_BODY_BYTES} bytes")
            return None
        return self.rfile.read(length) if length else b""

    def loopback_client(self) -> bool:
        """Whether the client connects from this machine."""
        return is_loopback_host(str(self.client_address[0]))

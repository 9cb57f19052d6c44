"""``image_url`` fetched as the gateway must fetch it: the doc's image-to-video models take a
"Publicly accessible URL of the input image. Must be a valid HTTP/HTTPS link to a JPEG, PNG, or
WebP image." (pixazo-pixverse-api.txt). The simulator fetches it when it accepts the request and,
if it cannot (an error answer, a timeout, more than MAX_IMAGE_BYTES, bytes that are no JPEG, PNG or
WebP), the request ends FAILED with the reason in ``error``, the doc's "Failed - check error field"
shape. What it fetched (sha256, size, the type its bytes show) is kept on the request and shown by
``GET /_sim/requests``, so a test can compare it with the bytes it put in S3.

Which hosts it reaches. The simulator runs without the internet, so it fetches only loopback hosts
(the local S3 endpoint, a test's own server). The doc's own example images
(``DOC_EXAMPLE_IMAGE_HOSTS``, which the tests and the demo submit as the doc does) cannot be
reached offline: those hosts are *presumed* to serve an image, recorded as ``presumed`` with
nothing fetched. Every other host fails the request, as an unreachable URL fails it at the gateway:
the least forgiving choice that keeps the doc's examples usable. ``presumed_hosts`` (the
simulator's setting) replaces the list.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "DOC_EXAMPLE_IMAGE_HOSTS",
    "FETCH_TIMEOUT_SECONDS",
    "MAX_IMAGE_BYTES",
    "ImageFetch",
    "fetch_image",
    "image_type",
]

# The hosts of the image URLs pixazo-pixverse-api.txt's own examples use.
DOC_EXAMPLE_IMAGE_HOSTS: Final = frozenset({"pub-582b7213209642b9b995c96c95a30381.r2.dev", "imagesai.appypie.com"})
# Bounded, so that a slow or endless origin cannot hold a submit's answer.
FETCH_TIMEOUT_SECONDS: Final = 5.0
# PixVerse's own image upload takes less than 20MB (https://docs.platform.pixverse.ai/upload-image-13016631e0).
MAX_IMAGE_BYTES: Final = 20_000_000


@dataclass(frozen=True)
class ImageFetch:
    """What became of one image_url: ``fetched`` (with its bytes' facts), ``presumed`` (a doc
    example host, not reachable offline) or ``failed`` (with the reason the request fails for)."""

    outcome: str
    host: str
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None  # the type its bytes show, not the one the origin declared
    error: str | None = None

    def view(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "host": self.host,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "error": self.error,
        }


def image_type(head: bytes) -> str | None:
    """JPEG, PNG or WebP by its signature, else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_image(url: str, presumed_hosts: frozenset[str] = DOC_EXAMPLE_IMAGE_HOSTS) -> ImageFetch:
    """Fetch ``url`` as the gateway would (a redirect is not followed: its target would have to pass
    the same host rule, and the doc says nothing of following them). The timeout bounds each
    connect and read."""
    host = (urlsplit(url).hostname or "").lower()
    if host in presumed_hosts:
        return ImageFetch("presumed", host)
    if not _is_loopback(host):
        return ImageFetch("failed", host, error="image_url could not be fetched: host not reachable")
    digest = hashlib.sha256()
    size = 0
    head = b""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    # http.client, not httpx: httpx logs every request's URL at INFO, and in the local stack the
    # simulator's log is the functions' log, where a presigned URL must never appear.
    kind_of = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind_of(parts.hostname or "", parts.port, timeout=FETCH_TIMEOUT_SECONDS)
    try:
        connection.request("GET", target, headers={"Host": parts.netloc})
        response = connection.getresponse()
        if response.status != 200:
            return ImageFetch("failed", host, error=f"image_url could not be fetched: HTTP {response.status}")
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            if size > MAX_IMAGE_BYTES:
                return ImageFetch("failed", host, error=f"image_url is larger than {MAX_IMAGE_BYTES} bytes")
            if len(head) < 16:
                head += chunk[: 16 - len(head)]
            digest.update(chunk)
    except (OSError, http.client.HTTPException) as exc:
        return ImageFetch("failed", host, error=f"image_url could not be fetched: {type(exc).__name__}")
    finally:
        connection.close()
    kind = image_type(head)
    if kind is None:
        return ImageFetch(
            "failed", host, size=size, sha256=digest.hexdigest(), error="image_url is not a JPEG, PNG or WebP image"
        )
    return ImageFetch("fetched", host, size=size, sha256=digest.hexdigest(), content_type=kind)

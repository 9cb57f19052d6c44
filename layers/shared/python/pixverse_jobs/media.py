"""Streaming media copy: an httpx streaming download piped into S3 (one PUT for small files,
a multipart upload otherwise), never holding the whole file in memory and never touching
/tmp. A failed copy aborts its multipart upload, so no partial object appears."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from botocore.exceptions import BotoCoreError, ClientError

from pixverse_jobs.errors import PermanentDeliveryError, TransientDeliveryError

PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB (but for the last part)
DOWNLOAD_CHUNK = 1024 * 1024
DOWNLOAD_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


@dataclass(frozen=True)
class CopiedObject:
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str

    def as_output(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "s3_uri": f"s3://{self.bucket}/{self.key}",
            "size": self.size,
            "media_type": self.content_type,
            "sha256": self.sha256,
        }


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    host, _, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
    if not host:
        return netloc.lower(), None
    return host.lower(), int(port) if port.isdigit() else None


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether the URL's host (and port) matches one of ``patterns``: ``host``,
    ``*.domain`` (any subdomain, not the domain itself) or either with ``:port``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    for pattern in patterns:
        p_host, p_port = _split_host_port(pattern.strip().lower())
        if p_port is not None and p_port != port:
            continue
        if p_host.startswith("*."):
            if host.endswith(p_host[1:]) and host != p_host[2:]:
                return True
        elif host == p_host:
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MediaCopier:
    """Copies a media URL into S3, streaming."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        s3_client: Any = None,
        http_client: httpx.Client | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self._allowed = tuple(allowed_hosts)
        self._s3 = s3_client or boto3.client("s3")
        self._http = http_client or httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=False)
        self._part_size = part_size

    def check_url(self, url: str) -> None:
        """Refuse URLs the copier must never fetch (PermanentDeliveryError)."""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise PermanentDeliveryError(f"media URL is not an http(s) URL: {url[:200]}")
        if not host_allowed(url, self._allowed):
            raise PermanentDeliveryError(f"media host {parts.netloc} is not in ALLOWED_MEDIA_HOSTS")
        # Plain http only for loopback hosts, which only the local stack allows.
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise PermanentDeliveryError(f"media URL must be https: {parts.netloc}")

    def copy(
        self,
        url: str,
        *,
        bucket: str,
        key: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> CopiedObject:
        """Stream ``url`` into ``s3://bucket/key``; the object appears only when complete."""
        self.check_url(url)
        try:
            with self._http.stream("GET", url) as response:
                _check_response(response)
                expected = _content_length(response)
                return self._upload(response.iter_bytes(DOWNLOAD_CHUNK), expected, bucket, key, content_type, metadata)
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"download of media failed: {type(exc).__name__}") from exc

    def _upload(
        self,
        chunks: Iterable[bytes],
        expected: int | None,
        bucket: str,
        key: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> CopiedObject:
        digest = hashlib.sha256()
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[Any] = []
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= self._part_size:
                    if upload_id is None:
                        upload_id = self._s3.create_multipart_upload(
                            Bucket=bucket, Key=key, ContentType=content_type, Metadata=dict(metadata)
                        )["UploadId"]
                    parts.append(self._upload_part(bucket, key, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if expected is not None and size != expected:
                raise TransientDeliveryError(f"download ended after {size} of {expected} bytes")
            sha256 = digest.hexdigest()
            if upload_id is None:
                self._s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=bytes(buffer),
                    ContentType=content_type,
                    Metadata={**metadata, "sha256": sha256},
                )
            else:
                if buffer:
                    parts.append(self._upload_part(bucket, key, upload_id, len(parts) + 1, bytes(buffer)))
                self._s3.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException as exc:
            if upload_id is not None:
                self._abort(bucket, key, upload_id)
            if isinstance(exc, ClientError | BotoCoreError):
                raise TransientDeliveryError(f"S3 upload failed: {type(exc).__name__}") from exc
            raise
        return CopiedObject(bucket=bucket, key=key, size=size, sha256=sha256, content_type=content_type)

    def _upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        resp = self._s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        # If even the abort fails, the bucket's abort-incomplete-multipart rule is the backstop.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _check_response(response: httpx.Response) -> None:
    code = response.status_code
    if code == 200:
        return
    if code in (408, 425, 429) or code >= 500:
        raise TransientDeliveryError(f"media server answered HTTP {code}")
    raise PermanentDeliveryError(f"media server answered HTTP {code}")


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    return int(raw) if raw and raw.isdigit() else None


def extension_for(media_type: str, url: str) -> str:
    """File extension of a delivered object: from the URL path, else the media type."""
    path = urlsplit(url).path
    last = path.rsplit("/", 1)[-1]
    if "." in last:
        ext = last.rsplit(".", 1)[-1].lower()
        if ext.isalnum() and len(ext) <= 5:
            return ext
    return {"video/mp4": "mp4", "video/webm": "webm", "video/quicktime": "mov"}.get(media_type, "bin")

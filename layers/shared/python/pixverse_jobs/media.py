"""Streaming media copy: an httpx streaming download piped into S3, in bounded memory, no /tmp.

Memory: a file at most one part long (``PART_SIZE``, 8 MiB) goes up in one PutObject; a longer
one becomes a multipart upload whose parts are uploaded by a small thread pool while the
download goes on. At most ``parts_in_flight`` (3) parts are being uploaded at once; when all
slots are busy the download waits, so the copier holds about ``(parts_in_flight + 1) *
part_size`` bytes whatever the file's size. Parts grow past 8 MiB only when a file would need
more than S3's 10,000 parts.

Integrity: the SHA-256 of the whole file is computed while it streams and the byte count is
checked against Content-Length. S3 verifies every request body: PutObject and each UploadPart
carry ``ChecksumSHA256`` (S3 refuses a body whose hash differs with BadDigest; moto server
stores but does not verify them). A multipart upload is created with
``ChecksumAlgorithm=SHA256``, so CompleteMultipartUpload answers with S3's composite checksum,
``base64(sha256(part 1's digest + part 2's digest + ...))-<parts>``; the copier computes the
same from the digests of the parts it sent and a difference fails the copy. That proves S3
assembled exactly the parts the copier hashed, in order and none missing, at no extra request;
S3 never hashes the whole stored object (moto omits ``ChecksumSHA256`` from that answer, so on
the local stack the comparison is skipped). Every delivered object carries the whole-file hash
as the object tag ``sha256=<hex>``: inline on PutObject (``Tagging``), by one PutObjectTagging
after CompleteMultipartUpload (a multipart object's metadata is fixed when the upload starts,
before the hash is known, and changing it would mean copying the data). A single-part object
also keeps it in its ``sha256`` metadata; the job's outputs hold it either way. So an object
under a job's key without the tag is not a delivered one (see Failure).

Failure: anything that stops a copy aborts its multipart upload after waiting for the parts in
flight, so no partial object ever appears under the final key (an object appears only on
PutObject / CompleteMultipartUpload) and no upload is left open (if even the abort fails, the
bucket's abort-incomplete-multipart lifecycle rule is the backstop). A failure after
CompleteMultipartUpload (the composite checksum differs, PutObjectTagging fails) is transient too:
the complete object stays under the key without its ``sha256`` tag and is not recorded on the job
(the copier has no s3:DeleteObject); the message's retry writes the key again, replacing object
and tags, and if no retry follows the job ends DELIVERY_FAILED and no event names the object.

Retries within the invocation (``RetryPolicy``) are for the download only: a connection error,
timeout, cut body or 5xx / 408 / 425 / 429 answer is retried after a jittered backoff, resuming
with ``Range: bytes=<received>-`` (and ``If-Range`` when the origin gave a validator) if the
origin advertised ``Accept-Ranges: bytes``, else restarting from byte 0 (the hash and the upload
start over too). S3 calls are retried by botocore's own retry mode (throttling, 5xx, resets) per
call, so a throttled part does not restart the download; an S3 error that survives those
retries fails the copy (TransientDeliveryError) and the message's retry takes over.
Permanent failures (disallowed URL or address, 4xx such as 404/410, wrong content type, file
larger than ``MAX_MEDIA_BYTES``) raise PermanentDeliveryError at once.

Content type: the callback's ``media_type`` names the family the file must belong to
(``video`` or ``video/mp4`` -> ``video/*``). ``application/octet-stream`` (or
``binary/octet-stream``, or no Content-Type) from the origin is accepted as unspecific: object
stores serve files uploaded without a type that way and the gateway's own doc reports
octet-stream outputs. Anything else (an HTML error page, JSON, an image where a video was
promised) is refused. The stored Content-Type is the origin's ``<family>/*`` type, else the
callback's specific type, else ``application/octet-stream``.

Container: the declared type is not trusted alone (the V5.6 models declare octet-stream; an HTML
error page can come as ``video/mp4``). Every chunk also goes through an ISO-BMFF box walker
(``pixverse_jobs.mp4``, bounded memory, no extra request): a file whose first box is not ``ftyp`` is
refused as soon as its first 8 bytes arrive, one with no ``moov`` video track by its end is refused
before the object is made to appear; both raise MediaNotVideo (a PermanentDeliveryError, the job's
error code ``media_not_video``), the multipart upload is aborted and no object is left. The facts it
reads (duration, width, height, codec) go into the job's outputs.

URLs are never logged or put in errors with their path or query (CDN URLs are often signed);
only the host is.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import httpx
from botocore.exceptions import BotoCoreError, ClientError

from pixverse_jobs.errors import (
    DeliveryError,
    MediaDownloadInterrupted,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from pixverse_jobs.mp4 import Mp4Walker, VideoFacts
from pixverse_jobs.netguard import MediaUrlPolicy, Resolver, guarded_client, host_allowed
from pixverse_jobs.observability import logger

__all__ = [
    "CopiedObject",
    "MediaCopier",
    "RetryPolicy",
    "accepted_content_type",
    "composite_sha256",
    "extension_for",
    "host_allowed",
]

MiB = 1024 * 1024
PART_SIZE = 8 * MiB  # S3's minimum is 5 MiB (but for the last part)
MAX_PARTS = 10_000  # S3's limit per multipart upload
PARTS_IN_FLIGHT = 3
MAX_REDIRECTS = 3
DEFAULT_MAX_BYTES = 5 * 1024**3
SHA256_TAG = "sha256"  # the object tag (and single-part metadata key) holding the file's SHA-256 in hex
DOWNLOAD_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
UNSPECIFIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})
MEDIA_FAMILIES = frozenset({"video", "image", "audio"})
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class CopiedObject:
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    video: VideoFacts | None = None

    def as_output(self) -> dict[str, Any]:
        """The job's ``outputs`` entry: where the object is, its hash, and the video's facts
        (``duration_seconds``, ``width``, ``height``, ``codec``) as its container states them."""
        output: dict[str, Any] = {
            "bucket": self.bucket,
            "key": self.key,
            "s3_uri": f"s3://{self.bucket}/{self.key}",
            "size": self.size,
            "media_type": self.content_type,
            "sha256": self.sha256,
        }
        if self.video is not None:
            output.update(self.video.as_output())
        return output


@dataclass(frozen=True)
class RetryPolicy:
    """Download retries within one invocation: give up after ``attempts`` attempts in a row
    that moved the download no further, or ``max_attempts`` requests in all; wait a jittered
    exponential backoff between them (or the server's Retry-After, capped at ``max_delay``)."""

    attempts: int = 3
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 4.0

    def delay(self, stalled: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2 ** max(0, stalled - 1))
        jittered = random.uniform(backoff / 2, backoff)  # noqa: S311 - jitter, not a secret
        return min(self.max_delay, max(jittered, retry_after or 0.0))


def accepted_content_type(expected: str | None, served: str | None) -> str:
    """The Content-Type to store for a response served as ``served`` when the callback said
    ``expected``; PermanentDeliveryError when the response is not that kind of media."""
    served_type = (served or "").split(";", 1)[0].strip().lower()
    expected_type = (expected or "").split(";", 1)[0].strip().lower()
    family = expected_type.split("/", 1)[0] if expected_type not in UNSPECIFIC_TYPES else ""
    if served_type in UNSPECIFIC_TYPES:
        return expected_type if "/" in expected_type and family else "application/octet-stream"
    served_family = served_type.split("/", 1)[0]
    wanted = f"{family}/*" if family else "video/*, image/* or audio/*"
    if (family and served_family != family) or (not family and served_family not in MEDIA_FAMILIES):
        raise PermanentDeliveryError(f"media server answered Content-Type {served_type!r}, expected {wanted}")
    return served_type


def extension_for(media_type: str, url: str) -> str:
    """File extension of a delivered object: from the URL path, else the media type."""
    path = urlsplit(url).path
    last = path.rsplit("/", 1)[-1]
    if "." in last:
        ext = last.rsplit(".", 1)[-1].lower()
        if ext.isalnum() and len(ext) <= 5:
            return ext
    return {"video/mp4": "mp4", "video/webm": "webm", "video/quicktime": "mov"}.get(media_type, "bin")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_sha256(part_checksums: Sequence[str]) -> str:
    """S3's checksum of a multipart object whose parts carried ``ChecksumSHA256`` (a COMPOSITE
    checksum): the SHA-256 of the parts' raw digests concatenated in part order, in base64,
    then ``-<number of parts>``. ``part_checksums`` are the parts' base64 digests, in order."""
    joined = b"".join(base64.b64decode(checksum) for checksum in part_checksums)
    return f"{_b64(hashlib.sha256(joined).digest())}-{len(part_checksums)}"


def _s3_error(operation: str, exc: ClientError | BotoCoreError) -> TransientDeliveryError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "error")
        return TransientDeliveryError(f"S3 {operation} failed: {code}")
    return TransientDeliveryError(f"S3 {operation} failed: {type(exc).__name__}")


def _check_deadline(deadline: float | None, reserve: float = 0.0) -> None:
    if deadline is not None and time.monotonic() + reserve > deadline:
        # Stopping here leaves time to abort the upload and record the outcome; Lambda's own
        # timeout would kill the process with the multipart upload still open.
        raise TransientDeliveryError("media copy stopped before the function's timeout")


# ------------------------------------------------------------------ download state
@dataclass
class _Download:
    """What is known about one file while it streams."""

    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0
    total: int | None = None
    resumable: bool = False
    validator: str | None = None
    content_type: str = "application/octet-stream"
    container: Mp4Walker = field(default_factory=Mp4Walker)

    def restart(self, *, total: int | None, resumable: bool, validator: str | None, content_type: str) -> None:
        self.digest = hashlib.sha256()
        self.container = Mp4Walker()
        self.received = 0
        self.total = total
        self.resumable = resumable
        self.validator = validator
        self.content_type = content_type


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("Content-Length", "").strip()
    return int(raw) if raw.isdigit() else None


def _validator(response: httpx.Response) -> str | None:
    # If-Range takes a strong ETag or a Last-Modified date; a weak ETag cannot be used.
    etag = str(response.headers.get("ETag") or "")
    if etag and not etag.startswith("W/"):
        return etag
    return str(response.headers.get("Last-Modified") or "") or None


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "").strip()
    return float(raw) if raw.isdigit() else None


def _status_error(response: httpx.Response) -> DeliveryError:
    code = response.status_code
    if code in (408, 425, 429) or code >= 500:
        return MediaDownloadInterrupted(f"media server answered HTTP {code}", retry_after=_retry_after(response))
    return PermanentDeliveryError(f"media server answered HTTP {code}")


# ------------------------------------------------------------------ upload side
class _S3Sink:
    """Where the downloaded bytes go: one PutObject for a file up to one part long, else a
    multipart upload whose parts go up on a small pool while the download continues."""

    def __init__(
        self,
        s3: Any,
        *,
        bucket: str,
        key: str,
        metadata: Mapping[str, str],
        part_size: int,
        parts_in_flight: int,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._metadata = dict(metadata)
        self._min_part_size = part_size
        self._part_size = part_size
        self._parts_in_flight = parts_in_flight
        self._slots = threading.BoundedSemaphore(parts_in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._content_type = "application/octet-stream"
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._upload_id: str | None = None
        self._futures: list[Future[dict[str, Any]]] = []
        self._failed = threading.Event()
        self._lock = threading.Lock()
        # A restart (start()) begins a new generation: a part of the previous one that ends
        # late must not mark the new upload failed.
        self._generation = 0
        self.peak_in_flight = 0  # the bound, observed (tests and the benchmark read it)
        self._in_flight = 0

    # -- lifecycle
    def start(self, *, content_type: str, size_limit: int) -> None:
        """(Re)start from byte 0: drop anything written so far."""
        self.abort()
        with self._lock:
            self._generation += 1
            self._failed.clear()
        self._content_type = content_type
        self._chunks, self._buffered = [], 0
        self._futures = []
        # S3 takes at most 10,000 parts: grow parts (in whole MiB) for files that would need more.
        needed = math.ceil(size_limit / MAX_PARTS / MiB) * MiB
        self._part_size = max(self._min_part_size, needed)

    def write(self, chunk: bytes) -> None:
        if self._failed.is_set():
            self._raise_part_failure()
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= self._part_size:
            self._send_part()

    def complete(self, digest: bytes) -> None:
        """Make the object appear, tagged with ``digest``: PutObject, or the last part,
        CompleteMultipartUpload (its composite checksum checked) and PutObjectTagging."""
        sha256_hex = digest.hex()
        if self._upload_id is None:
            body = b"".join(self._chunks)
            self._chunks = []
            try:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=body,
                    ContentType=self._content_type,
                    Metadata={**self._metadata, SHA256_TAG: sha256_hex},
                    Tagging=urlencode({SHA256_TAG: sha256_hex}),
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
            except (ClientError, BotoCoreError) as exc:
                raise _s3_error("PutObject", exc) from exc
            return
        if self._chunks:
            self._send_part()  # the last part may be smaller than 5 MiB
        parts = [self._part_result(future) for future in self._futures]
        try:
            response = self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error("CompleteMultipartUpload", exc) from exc
        self._upload_id = None  # completed: nothing left to abort
        # From here on the object is under the key: a failure leaves it untagged (module docstring).
        self._check_completed(response, parts, digest)
        self._tag(sha256_hex)

    def abort(self) -> None:
        """Stop: let the parts in flight finish (an abort racing them could leave parts
        behind), then abort the multipart upload, if any."""
        for future in self._futures:
            future.cancel()
        wait_for_futures(self._futures)
        self._futures = []
        self._chunks, self._buffered = [], 0
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
            except (ClientError, BotoCoreError) as exc:
                # The bucket's abort-incomplete-multipart lifecycle rule removes it later.
                logger.warning("abort of a multipart upload failed", extra={"key": self._key, "error": str(exc)})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- parts
    def _send_part(self) -> None:
        if self._upload_id is None:
            try:
                self._upload_id = self._s3.create_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    ContentType=self._content_type,
                    Metadata=self._metadata,
                    ChecksumAlgorithm="SHA256",
                )["UploadId"]
            except (ClientError, BotoCoreError) as exc:
                raise _s3_error("CreateMultipartUpload", exc) from exc
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._parts_in_flight, thread_name_prefix="s3-part")
        # Wait for a free slot before joining the chunks, so a waiting part is held once, not twice.
        self._slots.acquire()
        try:
            if self._failed.is_set():
                self._raise_part_failure()
            body = b"".join(self._chunks)
            self._chunks, self._buffered = [], 0
            number = len(self._futures) + 1
            future = self._pool.submit(self._upload_part, self._upload_id, number, body)
        except BaseException:
            self._slots.release()
            raise
        del body
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        future.add_done_callback(functools.partial(self._part_done, self._generation))
        self._futures.append(future)

    def _upload_part(self, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        checksum = _b64(hashlib.sha256(body).digest())
        response = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

    def _part_done(self, generation: int, future: Future[dict[str, Any]]) -> None:
        with self._lock:
            self._in_flight -= 1
            if generation == self._generation and (future.cancelled() or future.exception() is not None):
                self._failed.set()
        self._slots.release()

    def _part_result(self, future: Future[dict[str, Any]]) -> dict[str, Any]:
        try:
            return future.result()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error("UploadPart", exc) from exc

    def _raise_part_failure(self) -> None:
        for future in self._futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                self._part_result(future)
        raise TransientDeliveryError("S3 UploadPart failed")

    def _check_completed(self, response: Mapping[str, Any], parts: Sequence[Mapping[str, Any]], digest: bytes) -> None:
        """Compare S3's checksum of the completed object with the one its parts give."""
        stored = str(response.get("ChecksumSHA256") or "")
        if not stored:
            # moto (5.2.x, in process and as a server) leaves ChecksumSHA256 out of this answer, so
            # on the local stack there is nothing to compare; S3 returns it for an upload created
            # with ChecksumAlgorithm=SHA256.
            return
        # "<base64>-<parts>" is S3's composite checksum (the only type S3 offers for SHA-256); a
        # plain value would be a full-object SHA-256, comparable with the file's own.
        expected = composite_sha256([str(p["ChecksumSHA256"]) for p in parts]) if "-" in stored else _b64(digest)
        if stored != expected:
            logger.warning(
                "S3's checksum of a completed multipart object differs from its parts'; left untagged",
                extra={"key": self._key, "parts": len(parts), "s3_checksum": stored, "expected_checksum": expected},
            )
            raise TransientDeliveryError(
                "S3's checksum of the completed multipart object differs from its parts' SHA-256s"
            )

    def _tag(self, sha256_hex: str) -> None:
        """Tag the completed object with the file's SHA-256: no data is copied, unlike a metadata change."""
        try:
            self._s3.put_object_tagging(
                Bucket=self._bucket,
                Key=self._key,
                Tagging={"TagSet": [{"Key": SHA256_TAG, "Value": sha256_hex}]},
            )
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error("PutObjectTagging", exc) from exc


# ------------------------------------------------------------------ the copier
class MediaCopier:
    """Copies media URLs into S3, streaming (see the module docstring)."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        s3_client: Any = None,
        http_client: httpx.Client | None = None,
        part_size: int = PART_SIZE,
        parts_in_flight: int = PARTS_IN_FLIGHT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retry: RetryPolicy | None = None,
        resolver: Resolver | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("part_size must be at least 5 MiB (S3's smallest part)")
        self._policy = MediaUrlPolicy(allowed_hosts, resolver=resolver)
        self._s3 = s3_client or boto3.client("s3")
        self._http = http_client or guarded_client(self._policy, DOWNLOAD_TIMEOUT)
        self._part_size = part_size
        self._parts_in_flight = max(1, parts_in_flight)
        self._max_bytes = max_bytes
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self.last_peak_parts_in_flight = 0

    def remove(self, *, bucket: str, key: str) -> None:
        """Delete an object this copier wrote (a copy for a job cancelled meanwhile)."""
        self._s3.delete_object(Bucket=bucket, Key=key)

    def check_url(self, url: str) -> None:
        """Refuse URLs the copier must never fetch (MediaAddressRefused, a PermanentDeliveryError)."""
        self._policy.check_url(url)

    def copy(
        self,
        url: str,
        *,
        bucket: str,
        key: str,
        media_type: str | None,
        metadata: Mapping[str, str],
        deadline: float | None = None,
    ) -> CopiedObject:
        """Stream ``url`` into ``s3://bucket/key``; the object appears only when complete.

        ``media_type`` is the callback's; ``deadline`` (``time.monotonic()``) is when the copy
        must give up to leave the invocation time to clean up."""
        # Hosts and schemes first, before anything is set up; every hop, this one included, is
        # checked in full (addresses too) right before its request.
        source = self._policy.check_url(url, resolve=False)
        download = _Download()
        sink = _S3Sink(
            self._s3,
            bucket=bucket,
            key=key,
            metadata=metadata,
            part_size=self._part_size,
            parts_in_flight=self._parts_in_flight,
        )
        try:
            self._download(source, media_type, download, sink, deadline)
            video = download.container.finish()  # MediaNotVideo: nothing is made to appear
            _check_deadline(deadline)
            sink.complete(download.digest.digest())
        except BaseException:
            sink.abort()
            raise
        finally:
            sink.close()
            self.last_peak_parts_in_flight = sink.peak_in_flight
        return CopiedObject(
            bucket=bucket,
            key=key,
            size=download.received,
            sha256=download.digest.hexdigest(),
            content_type=download.content_type,
            video=video,
        )

    # -- download with retries
    def _download(
        self, source: httpx.URL, media_type: str | None, download: _Download, sink: _S3Sink, deadline: float | None
    ) -> None:
        stalled = 0
        attempt = 0
        while True:
            attempt += 1
            before = download.received
            try:
                self._fetch(source, media_type, download, sink, deadline)
                return
            except MediaDownloadInterrupted as exc:
                stalled = 0 if download.received > before else stalled + 1
                if stalled >= self._retry.attempts or attempt >= self._retry.max_attempts:
                    raise TransientDeliveryError(f"media download failed after {attempt} attempts: {exc}") from exc
                delay = self._retry.delay(stalled + 1, exc.retry_after)
                _check_deadline(deadline, reserve=delay)
                logger.info(
                    "media download interrupted; retrying",
                    extra={
                        "host": source.host,
                        "attempt": attempt,
                        "received": download.received,
                        "resume": download.resumable,
                        "reason": str(exc),
                        "delay": round(delay, 3),
                    },
                )
                self._sleep(delay)

    def _fetch(
        self, source: httpx.URL, media_type: str | None, download: _Download, sink: _S3Sink, deadline: float | None
    ) -> None:
        # identity: Content-Length and ranges then count the file's own bytes.
        headers = {"Accept-Encoding": "identity"}
        resuming = download.received > 0 and download.resumable
        if resuming:
            headers["Range"] = f"bytes={download.received}-"
            if download.validator:
                headers["If-Range"] = download.validator
        response = self._open(source, headers, deadline)
        try:
            if response.status_code in (200, 206):
                encoding = response.headers.get("Content-Encoding", "").strip().lower()
                if encoding not in ("", "identity"):
                    raise PermanentDeliveryError(
                        f"media server sent Content-Encoding {encoding!r} although asked for identity"
                    )
            if resuming and response.status_code == 206:
                self._check_resumed(response, download)
            elif response.status_code == 200:
                if download.received:
                    logger.info("media origin sent the whole file again; restarting", extra={"host": source.host})
                self._begin(response, media_type, download, sink)
            elif resuming and response.status_code == 416:
                download.resumable = False
                raise MediaDownloadInterrupted("media server refused the resume range")
            else:
                raise _status_error(response)
            self._stream(response, download, sink, deadline)
        finally:
            response.close()

    def _open(self, source: httpx.URL, headers: Mapping[str, str], deadline: float | None) -> httpx.Response:
        """Send the GET, following at most MAX_REDIRECTS redirects by hand, each hop checked
        against the policy before anything is sent to it."""
        url = source
        for hop in range(MAX_REDIRECTS + 1):
            url = self._policy.check_url(url)
            _check_deadline(deadline)
            request = self._http.build_request("GET", url, headers=headers)
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise MediaDownloadInterrupted(f"request to {url.host} failed: {type(exc).__name__}") from exc
            if response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise PermanentDeliveryError(f"media server answered HTTP {response.status_code} without a Location")
            try:
                url = url.join(location)
            except httpx.InvalidURL as exc:
                raise PermanentDeliveryError("media server redirected to an invalid URL") from exc
            logger.info("following a media redirect", extra={"hop": hop + 1, "to_host": url.host})
        raise PermanentDeliveryError(f"media URL redirected more than {MAX_REDIRECTS} times")

    def _begin(self, response: httpx.Response, media_type: str | None, download: _Download, sink: _S3Sink) -> None:
        """Checks on a whole-file (200) answer, then start from byte 0."""
        content_type = accepted_content_type(media_type, response.headers.get("Content-Type"))
        total = _content_length(response)
        if total is not None and total > self._max_bytes:
            raise PermanentDeliveryError(f"media is {total} bytes, more than MAX_MEDIA_BYTES ({self._max_bytes})")
        ranges = response.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        download.restart(
            total=total,
            resumable=ranges and total is not None,
            validator=_validator(response),
            content_type=content_type,
        )
        sink.start(content_type=content_type, size_limit=total if total is not None else self._max_bytes)

    @staticmethod
    def _check_resumed(response: httpx.Response, download: _Download) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if (
            match is None
            or int(match.group(1)) != download.received
            or (match.group(3) != "*" and int(match.group(3)) != download.total)
        ):
            # Not the rest of the same file: the next attempt starts over.
            download.resumable = False
            raise MediaDownloadInterrupted("media server answered the resume with another byte range")

    def _stream(self, response: httpx.Response, download: _Download, sink: _S3Sink, deadline: float | None) -> None:
        try:
            # iter_bytes, not iter_raw: with Content-Encoding refused it yields the same bytes, and
            # it also serves a body a transport has already read.
            for chunk in response.iter_bytes():
                download.received += len(chunk)
                if download.received > self._max_bytes:
                    raise PermanentDeliveryError(f"media is larger than MAX_MEDIA_BYTES ({self._max_bytes})")
                download.digest.update(chunk)
                download.container.feed(chunk)  # MediaNotVideo at once if the first box is not ftyp
                sink.write(chunk)
                _check_deadline(deadline)
        except httpx.TransportError as exc:
            raise MediaDownloadInterrupted(
                f"download broke off after {download.received} bytes: {type(exc).__name__}"
            ) from exc
        if download.total is not None and download.received != download.total:
            raise MediaDownloadInterrupted(f"download ended after {download.received} of {download.total} bytes")

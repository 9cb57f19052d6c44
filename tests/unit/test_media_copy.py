"""MediaCopier: streaming download into S3 (moto in-process), against an origin behind
httpx.MockTransport, so every request the copier sends is recorded."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse
from pixverse_jobs.errors import MediaAddressRefused, PermanentDeliveryError, TransientDeliveryError
from pixverse_jobs.media import MediaCopier, RetryPolicy, accepted_content_type, composite_sha256
from pixverse_local.gateway_sim.media import media_bytes

MiB = 1024 * 1024
PART = 5 * MiB
CHUNK = 64 * 1024
BUCKET = "media"
URL = "https://pub-1.r2.dev/v1/job/output.mp4"
PUBLIC_ADDRESSES = {"pub-1.r2.dev": ["104.16.0.1"], "pub-2.r2.dev": ["104.16.0.2"], "internal.r2.dev": ["10.1.2.3"]}


def body_of(size: int) -> bytes:
    # Every 64 KiB block differs, so a resume at a wrong offset changes the hash.
    return media_bytes("unit", 0, size)


def resolver(host: str, port: int) -> list[str]:
    return PUBLIC_ADDRESSES.get(host, ["104.16.0.99"])


class Origin:
    """A media server: serves ``body`` in 64 KiB chunks, honours ``Range`` (unless told not
    to), can cut the first downloads, answer given statuses first, or redirect."""

    def __init__(
        self,
        body: bytes,
        *,
        content_type: str = "video/mp4",
        ranges: bool = True,
        honour_range: bool = True,
        cut_first: int = 0,
        cut_with_reset: bool = False,
        statuses: list[int] | None = None,
        content_length: bool = True,
        redirects: dict[str, str] | None = None,
        pause_after: int | None = None,
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.ranges = ranges
        self.honour_range = honour_range
        self.cuts = cut_first
        self.cut_with_reset = cut_with_reset
        self.statuses = list(statuses or [])
        self.content_length = content_length
        self.redirects = redirects or {}
        self.pause_after = pause_after
        self.requests: list[httpx.Request] = []
        self.yielded = 0
        self.on_chunk: Any = None

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url) in self.redirects:
            return httpx.Response(302, headers={"Location": self.redirects[str(request.url)]})
        if self.statuses:
            return httpx.Response(self.statuses.pop(0), headers={"Retry-After": "0"}, json={"error": "x"})
        start = 0
        header = request.headers.get("Range")
        if header and self.ranges and self.honour_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
        cut = self.cuts > 0
        self.cuts -= 1 if cut else 0
        headers = {"Content-Type": self.content_type, "ETag": '"v1"'}
        if self.ranges:
            headers["Accept-Ranges"] = "bytes"
        if self.content_length:
            headers["Content-Length"] = str(len(self.body) - start)
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"
        stop = start + (len(self.body) - start) // 2 if cut else len(self.body)
        return httpx.Response(status, headers=headers, content=self._stream(start, stop, cut))

    def _stream(self, start: int, stop: int, cut: bool) -> Iterator[bytes]:
        for offset in range(start, stop, CHUNK):
            chunk = self.body[offset : min(offset + CHUNK, stop)]
            self.yielded += len(chunk)
            if self.on_chunk is not None:
                self.on_chunk()
            if self.pause_after is not None and offset >= self.pause_after:
                time.sleep(0.3)
            yield chunk
        if cut and self.cut_with_reset:
            raise httpx.ReadError("connection reset by peer")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))
        client.create_bucket(Bucket=BUCKET)
        yield client


def copier(s3: Any, origin: Origin, **kwargs: Any) -> tuple[MediaCopier, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("part_size", PART)
    made = MediaCopier(
        ["*.r2.dev"], s3_client=s3, http_client=origin.client(), resolver=resolver, sleep=sleeps.append, **kwargs
    )
    return made, sleeps


def copy(made: MediaCopier, url: str = URL, *, key: str = "v/0.mp4", media_type: str = "video/mp4") -> Any:
    return made.copy(url, bucket=BUCKET, key=key, media_type=media_type, metadata={"job_id": "j1"})


def stored(s3: Any, key: str = "v/0.mp4") -> bytes:
    data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def assert_nothing_left(s3: Any) -> None:
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def tags(s3: Any, key: str = "v/0.mp4") -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}


def record_calls(s3: Any) -> list[str]:
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def record_parts(s3: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    s3.meta.events.register("provide-client-params.s3.UploadPart", lambda params, **_: parts.append(dict(params)))
    return parts


def s3_composite(parts: list[dict[str, Any]]) -> str:
    """What S3 answers CompleteMultipartUpload with for these parts, written out from its definition
    (not with the code under test): base64(sha256(the parts' raw digests, in order))-<parts>."""
    return composite_of([p["Body"] for p in sorted(parts, key=lambda p: int(p["PartNumber"]))])


def composite_of(bodies: list[bytes]) -> str:
    joined = b"".join(hashlib.sha256(body).digest() for body in bodies)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(bodies)}"


def complete_answers(s3: Any, checksum: Callable[[], str]) -> None:
    """Make CompleteMultipartUpload's answer carry ``checksum()`` as S3's (moto leaves it out)."""

    def answer(parsed: dict[str, Any], **_: Any) -> None:
        parsed["ChecksumSHA256"] = checksum()

    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", answer)


# ------------------------------------------------------------------ happy paths and integrity
def test_small_file_is_one_put_with_sha256_metadata_tag_and_s3_checksum(s3: Any) -> None:
    body = body_of(300_000)
    calls = record_calls(s3)

    made, _ = copier(s3, Origin(body))
    copied = copy(made)
    assert calls == ["PutObject"]  # the tag goes inline: no second call

    head = s3.head_object(Bucket=BUCKET, Key="v/0.mp4", ChecksumMode="ENABLED")
    assert stored(s3) == body
    assert copied.sha256 == hashlib.sha256(body).hexdigest() == head["Metadata"]["sha256"]
    assert tags(s3) == {"sha256": hashlib.sha256(body).hexdigest()}
    assert head["ChecksumSHA256"] == sha256_b64(body)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["job_id"] == "j1"


def test_large_file_is_multipart_with_part_checksums_and_sha256_tag(s3: Any) -> None:
    body = body_of(12 * MiB + 123)
    parts = record_parts(s3)

    made, _ = copier(s3, Origin(body))
    copied = copy(made)

    head = s3.head_object(Bucket=BUCKET, Key="v/0.mp4")
    assert stored(s3) == body
    assert copied.size == len(body)
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    assert sorted(p["PartNumber"] for p in parts) == [1, 2, 3]  # uploaded in parallel, any order
    # Each part carries its own SHA-256, which S3 checks against the bytes it receives.
    assert all(p["ChecksumSHA256"] == sha256_b64(p["Body"]) for p in parts)
    # The whole file's SHA-256 is a tag; the metadata, fixed before the hash was known, lacks it.
    assert tags(s3) == {"sha256": hashlib.sha256(body).hexdigest()}
    assert head["Metadata"] == {"job_id": "j1"}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_multipart_copy_makes_no_copy_object_call(s3: Any) -> None:
    calls = record_calls(s3)

    made, _ = copier(s3, Origin(body_of(12 * MiB + 123)))
    copy(made)

    assert "CopyObject" not in calls
    assert calls == ["CreateMultipartUpload", *["UploadPart"] * 3, "CompleteMultipartUpload", "PutObjectTagging"]


def test_parts_in_flight_never_exceed_three_and_download_waits_for_them(s3: Any) -> None:
    body = body_of(12 * PART)
    origin = Origin(body)
    lock = threading.Lock()
    state = {"uploading": 0, "peak": 0, "done": 0, "max_held": 0}

    def before(**_: Any) -> None:
        with lock:
            state["uploading"] += 1
            state["peak"] = max(state["peak"], state["uploading"])
        time.sleep(0.05)  # a slow S3, so the download would run ahead if nothing held it back

    def after(**_: Any) -> None:
        with lock:
            state["uploading"] -= 1
            state["done"] += 1

    def on_chunk() -> None:
        # Bytes read from the origin but not yet in S3: what the copier holds in memory.
        with lock:
            state["max_held"] = max(state["max_held"], origin.yielded - state["done"] * PART)

    origin.on_chunk = on_chunk
    s3.meta.events.register("before-call.s3.UploadPart", before)
    s3.meta.events.register("after-call.s3.UploadPart", after)

    made, _ = copier(s3, origin)
    copy(made)

    assert state["peak"] == 3  # parallel, and bounded
    assert made.last_peak_parts_in_flight == 3
    assert state["max_held"] <= 4 * PART + CHUNK  # three uploading, one being filled
    assert hashlib.sha256(stored(s3)).digest() == hashlib.sha256(body).digest()


@pytest.mark.parametrize(
    ("expected", "served", "stored_as"),
    [
        ("video/mp4", "video/mp4", "video/mp4"),
        ("video", "video/webm", "video/webm"),
        ("video/mp4", "video/mp4; codecs=avc1", "video/mp4"),
        ("video/mp4", "application/octet-stream", "video/mp4"),
        ("video/mp4", None, "video/mp4"),
        ("application/octet-stream", "video/mp4", "video/mp4"),
        ("application/octet-stream", "binary/octet-stream", "application/octet-stream"),
        (None, "image/png", "image/png"),
    ],
)
def test_accepted_content_type_stores_the_most_specific_media_type(
    expected: str | None, served: str | None, stored_as: str
) -> None:
    assert accepted_content_type(expected, served) == stored_as


# ------------------------------------------------------------------ retries
def test_download_cut_half_way_resumes_with_range_and_keeps_the_hash(s3: Any) -> None:
    body = body_of(12 * MiB)
    origin = Origin(body, cut_first=1)

    made, sleeps = copier(s3, origin)
    copied = copy(made)

    assert len(origin.requests) == 2
    assert origin.requests[1].headers["Range"] == f"bytes={6 * MiB}-"
    assert origin.requests[1].headers["If-Range"] == '"v1"'
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    assert stored(s3) == body
    assert len(sleeps) == 1


def test_connection_reset_mid_body_resumes(s3: Any) -> None:
    body = body_of(7 * MiB)
    origin = Origin(body, cut_first=1, cut_with_reset=True)

    made, _ = copier(s3, origin)
    copy(made)

    assert [r.headers.get("Range") for r in origin.requests] == [None, f"bytes={len(body) // 2}-"]
    assert stored(s3) == body


def test_cut_download_without_range_support_restarts_from_zero(s3: Any) -> None:
    body = body_of(12 * MiB)
    origin = Origin(body, ranges=False, cut_first=1)

    made, _ = copier(s3, origin)
    copied = copy(made)

    assert [r.headers.get("Range") for r in origin.requests] == [None, None]
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    assert stored(s3) == body
    # The first attempt's multipart upload was aborted when the download started over.
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_origin_answering_a_range_with_the_whole_file_restarts_cleanly(s3: Any) -> None:
    body = body_of(12 * MiB)
    origin = Origin(body, honour_range=False, cut_first=1)

    made, _ = copier(s3, origin)
    copied = copy(made)

    assert origin.requests[1].headers["Range"] == f"bytes={6 * MiB}-"
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    assert stored(s3) == body


def test_5xx_then_success_is_retried_within_the_copy(s3: Any) -> None:
    body = body_of(100_000)
    origin = Origin(body, statuses=[503, 502])

    made, sleeps = copier(s3, origin, retry=RetryPolicy(base_delay=0.5, max_delay=4.0))
    copy(made)

    assert len(origin.requests) == 3
    assert len(sleeps) == 2 and all(0 < s <= 4.0 for s in sleeps)
    assert stored(s3) == body


def test_persistent_5xx_gives_up_after_three_attempts_as_transient(s3: Any) -> None:
    origin = Origin(b"x", statuses=[503] * 10)

    made, sleeps = copier(s3, origin)
    with pytest.raises(TransientDeliveryError, match="after 3 attempts: media server answered HTTP 503"):
        copy(made)

    assert len(origin.requests) == 3
    assert sum(sleeps) <= 2 * RetryPolicy().max_delay
    assert_nothing_left(s3)


def test_download_that_keeps_getting_cut_stops_after_max_attempts(s3: Any) -> None:
    body = body_of(8 * MiB)
    origin = Origin(body, cut_first=100)

    made, _ = copier(s3, origin, retry=RetryPolicy(attempts=3, max_attempts=4))
    with pytest.raises(TransientDeliveryError, match="after 4 attempts"):
        copy(made)

    assert len(origin.requests) == 4
    assert_nothing_left(s3)


@pytest.mark.parametrize("status", [404, 410, 403])
def test_client_error_status_fails_permanently_without_retry(s3: Any, status: int) -> None:
    origin = Origin(b"x", statuses=[status])

    made, sleeps = copier(s3, origin)
    with pytest.raises(PermanentDeliveryError, match=f"HTTP {status}"):
        copy(made)

    assert len(origin.requests) == 1
    assert sleeps == []


# ------------------------------------------------------------------ size cap and content type
def test_content_length_over_the_cap_is_refused_before_any_upload(s3: Any) -> None:
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    origin = Origin(body_of(2 * MiB))

    made, _ = copier(s3, origin, max_bytes=MiB)
    with pytest.raises(PermanentDeliveryError, match="more than MAX_MEDIA_BYTES"):
        copy(made)

    assert calls == []
    assert origin.yielded <= CHUNK  # the body was not streamed
    assert len(origin.requests) == 1


def test_streamed_bytes_over_the_cap_are_refused_and_the_upload_aborted(s3: Any) -> None:
    origin = Origin(body_of(7 * MiB), content_length=False)  # chunked: no size up front

    made, _ = copier(s3, origin, max_bytes=6 * MiB)
    with pytest.raises(PermanentDeliveryError, match="larger than MAX_MEDIA_BYTES"):
        copy(made)

    assert origin.yielded <= 6 * MiB + CHUNK
    assert_nothing_left(s3)


@pytest.mark.parametrize("served", ["text/html; charset=utf-8", "application/json", "image/png"])
def test_wrong_content_type_fails_permanently(s3: Any, served: str) -> None:
    origin = Origin(b"<html>Access denied</html>", content_type=served)

    made, _ = copier(s3, origin)
    with pytest.raises(PermanentDeliveryError, match="Content-Type"):
        copy(made, media_type="video/mp4")

    assert len(origin.requests) == 1
    assert_nothing_left(s3)


# ------------------------------------------------------------------ S3 failures
def _failing_upload_part(number: int) -> Any:
    def hook(params: dict[str, Any], **_: Any) -> Any:
        if str(params.get("query_string", {}).get("partNumber")) == str(number):
            error = {
                "Error": {"Code": "AccessDenied", "Message": "injected"},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
            return AWSResponse("https://s3", 403, {}, None), error
        return None

    return hook


def test_s3_failure_mid_upload_leaves_no_object_and_no_open_upload(s3: Any) -> None:
    s3.meta.events.register("before-call.s3.UploadPart", _failing_upload_part(2))
    origin = Origin(body_of(30 * MiB))

    made, _ = copier(s3, origin)
    with pytest.raises(TransientDeliveryError, match="S3 UploadPart failed: AccessDenied"):
        copy(made)

    assert_nothing_left(s3)
    assert len(origin.requests) == 1  # S3 errors are not download errors: no new download
    assert origin.yielded < len(origin.body)  # stopped early, did not stream the rest


def test_s3_throttling_is_retried_per_call_without_restarting_the_download(s3: Any) -> None:
    throttled: list[str] = []

    def slow_down(request: Any, **_: Any) -> Any:
        if not throttled:
            throttled.append(request.url)
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            return AWSResponse(request.url, 503, {}, MockRawResponse(body))
        return None

    s3.meta.events.register_first("before-send.s3.UploadPart", slow_down)
    body = body_of(12 * MiB)
    origin = Origin(body)

    made, _ = copier(s3, origin)
    copy(made)

    assert len(throttled) == 1
    assert len(origin.requests) == 1
    assert stored(s3) == body


def test_composite_checksum_is_written_as_s3_defines_it() -> None:
    parts = [{"PartNumber": n, "Body": body_of(n * 1000)} for n in (1, 2, 3)]

    assert composite_sha256([sha256_b64(p["Body"]) for p in parts]) == s3_composite(parts)


def test_completed_object_whose_s3_composite_checksum_matches_is_tagged(s3: Any) -> None:
    # Given an S3 that answers CompleteMultipartUpload with the composite checksum of the parts
    body = body_of(12 * MiB + 123)
    parts = record_parts(s3)
    complete_answers(s3, lambda: s3_composite(parts))

    made, _ = copier(s3, Origin(body))
    copy(made)

    assert tags(s3) == {"sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda bodies: composite_of([*bodies[:-1], b"other bytes"]), id="a-part-differs"),
        pytest.param(lambda bodies: composite_of([bodies[1], bodies[0], *bodies[2:]]), id="parts-reordered"),
        pytest.param(lambda bodies: composite_of(bodies[:-1]), id="a-part-missing"),
        pytest.param(lambda bodies: composite_of(bodies).replace("-3", "-2"), id="wrong-part-count"),
        pytest.param(lambda bodies: sha256_b64(b"other bytes"), id="full-object-checksum-differs"),
    ],
)
def test_completed_object_whose_s3_checksum_differs_fails_the_copy_as_transient_and_stays_untagged(
    s3: Any, answer: Callable[[list[bytes]], str]
) -> None:
    # Given an S3 whose checksum of the completed object is not the one the parts give
    parts = record_parts(s3)
    complete_answers(s3, lambda: answer([p["Body"] for p in sorted(parts, key=lambda p: int(p["PartNumber"]))]))
    calls = record_calls(s3)

    made, _ = copier(s3, Origin(body_of(12 * MiB + 123)))
    with pytest.raises(TransientDeliveryError, match="checksum of the completed multipart object differs"):
        copy(made)

    # Then the object is left under the key untagged (the retry rewrites it) and nothing is open
    assert "PutObjectTagging" not in calls
    assert tags(s3) == {}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_s3_full_object_checksum_equal_to_the_file_sha256_is_accepted(s3: Any) -> None:
    body = body_of(12 * MiB + 123)
    complete_answers(s3, lambda: sha256_b64(body))

    made, _ = copier(s3, Origin(body))
    copy(made)

    assert tags(s3) == {"sha256": hashlib.sha256(body).hexdigest()}


def test_put_object_tagging_failure_fails_the_copy_as_transient_and_a_retry_tags_the_rewritten_object(
    s3: Any,
) -> None:
    # Given a PutObjectTagging that fails once, after botocore's own retries
    failures: list[str] = []

    def unavailable(**_: Any) -> Any:
        if failures:
            return None
        failures.append("PutObjectTagging")
        error = {"Error": {"Code": "ServiceUnavailable", "Message": "injected"}, "ResponseMetadata": {}}
        return AWSResponse("https://s3", 503, {}, None), error

    s3.meta.events.register("before-call.s3.PutObjectTagging", unavailable)
    body = body_of(11 * MiB)
    origin = Origin(body)
    made, _ = copier(s3, origin)

    # When the copy runs: it fails transiently, the object stays untagged and no upload is open
    with pytest.raises(TransientDeliveryError, match="S3 PutObjectTagging failed: ServiceUnavailable"):
        copy(made)
    assert stored(s3) == body and tags(s3) == {}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    # Then the message's retry copies the file again under the same key and tags it
    copy(made)
    assert len(origin.requests) == 2
    assert stored(s3) == body
    assert tags(s3) == {"sha256": hashlib.sha256(body).hexdigest()}


def test_put_object_with_tag_refused_fails_the_copy_as_transient(s3: Any) -> None:
    # Given a role without s3:PutObjectTagging: S3 refuses the tagged PutObject as a whole
    def denied(**_: Any) -> Any:
        error = {"Error": {"Code": "AccessDenied", "Message": "no s3:PutObjectTagging"}, "ResponseMetadata": {}}
        return AWSResponse("https://s3", 403, {}, None), error

    s3.meta.events.register("before-call.s3.PutObject", denied)
    made, _ = copier(s3, Origin(body_of(1000)))

    with pytest.raises(TransientDeliveryError, match="S3 PutObject failed: AccessDenied"):
        copy(made)

    assert_nothing_left(s3)


# ------------------------------------------------------------------ redirects and SSRF
def test_redirect_to_another_allowed_host_is_followed(s3: Any) -> None:
    body = body_of(1000)
    target = "https://pub-2.r2.dev/signed/output.mp4?token=abc"
    origin = Origin(body, redirects={URL: target})

    made, _ = copier(s3, origin)
    copy(made)

    assert origin.hosts() == ["pub-1.r2.dev", "pub-2.r2.dev"]
    assert stored(s3) == body


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("https://evil.example/x.mp4", "not in ALLOWED_MEDIA_HOSTS"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254:80 must be https"),
        ("https://169.254.169.254/latest/meta-data/", "not in ALLOWED_MEDIA_HOSTS"),
        ("https://10.0.0.1/x.mp4", "not in ALLOWED_MEDIA_HOSTS"),
        ("https://internal.r2.dev/x.mp4", "private address"),
        ("http://pub-2.r2.dev/x.mp4", "must be https"),
    ],
)
def test_redirect_to_a_refused_target_sends_nothing_there(s3: Any, target: str, reason: str) -> None:
    origin = Origin(b"x", redirects={URL: target})

    made, sleeps = copier(s3, origin)
    with pytest.raises(MediaAddressRefused, match=reason):
        copy(made)

    assert origin.hosts() == ["pub-1.r2.dev"]
    assert sleeps == []
    assert_nothing_left(s3)


def test_more_than_three_redirects_are_refused(s3: Any) -> None:
    chain = [f"https://pub-1.r2.dev/hop/{i}" for i in range(5)]
    origin = Origin(b"x", redirects={URL: chain[0], **{chain[i]: chain[i + 1] for i in range(4)}})

    made, _ = copier(s3, origin)
    with pytest.raises(PermanentDeliveryError, match="more than 3 times"):
        copy(made)

    assert len(origin.requests) == 4  # the URL and three redirects; the fourth is not followed


def test_relative_redirect_is_resolved_against_the_current_url(s3: Any) -> None:
    origin = Origin(body_of(1000), redirects={URL: "/v1/job/real.mp4"})

    made, _ = copier(s3, origin)
    copy(made)

    assert str(origin.requests[1].url) == "https://pub-1.r2.dev/v1/job/real.mp4"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/a.mp4",
        "http://pub.r2.dev/a.mp4",
        "ftp://pub.r2.dev/a",
        "https://169.254.169.254/latest/meta-data",
        "https://user:pw@pub.r2.dev/a.mp4",
        "https://internal.r2.dev/a.mp4",
    ],
)
def test_refused_media_url_sends_no_request(s3: Any, url: str) -> None:
    origin = Origin(b"x")

    made, _ = copier(s3, origin)
    with pytest.raises(MediaAddressRefused):
        copy(made, url)

    assert origin.requests == []


def test_error_messages_name_the_host_but_never_the_signed_path(s3: Any) -> None:
    origin = Origin(b"x", statuses=[404], redirects={URL: "https://evil.example/a.mp4?X-Amz-Signature=secret"})

    made, _ = copier(s3, origin)
    with pytest.raises(MediaAddressRefused) as refused:
        copy(made)

    assert "evil.example" in str(refused.value)
    assert "secret" not in str(refused.value)


# ------------------------------------------------------------------ time budget
def test_copy_past_its_deadline_stops_and_aborts_the_upload(s3: Any) -> None:
    origin = Origin(body_of(16 * MiB), pause_after=6 * MiB)

    made, _ = copier(s3, origin)
    with pytest.raises(TransientDeliveryError, match="before the function's timeout"):
        made.copy(
            URL, bucket=BUCKET, key="v/0.mp4", media_type="video/mp4", metadata={}, deadline=time.monotonic() + 0.2
        )

    assert origin.yielded < len(origin.body)
    assert_nothing_left(s3)

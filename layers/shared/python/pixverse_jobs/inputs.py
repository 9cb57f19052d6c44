"""Input images kept in S3: ``image_url`` as ``s3://BUCKET/KEY`` and the uploads of POST /uploads.

The gateway takes only a public http(s) image URL (pixazo-pixverse-api.txt, ``image_url``). A job
may name an object in S3 instead, in a bucket the stack is allowed to read (parameter
``InputBuckets``) or among the caller's own uploads (``UPLOAD_KEY_PREFIX`` of the media bucket):

* **POST /jobs** checks the object before the job is recorded (``InputImages.check``): the bucket
  is allowed, an upload is the caller's own, the object exists, is at most MAX_INPUT_IMAGE_BYTES,
  and its first bytes are a JPEG, PNG or WebP. The job record keeps the ``s3://`` URI: GET, the
  listing and the events show it, never a presigned URL.
* **The submitter** sends the gateway a presigned GET of the object instead (``presigned_input``),
  made at each submit and never stored or logged.

The type is decided by the bytes, not by the object's Content-Type: S3 keeps whatever the uploader
declared (``aws s3 cp`` guesses from the file name, an SDK PutObject without one stores
``binary/octet-stream``), so the declared type would refuse good images and pass misnamed files,
and the gateway decodes bytes. A ranged GET of the first bytes costs one request more than the
HeadObject the size needs.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from pixverse_jobs.errors import FieldError, RequestRejected
from pixverse_jobs.queue import caller_group

# The types the gateway documents for image_url ("a JPEG, PNG, or WebP image").
ACCEPTED_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# PixVerse's own image upload takes "file size less than 20MB" (and 4000x4000 pixels) in png, webp,
# jpeg (https://docs.platform.pixverse.ai/upload-image-13016631e0); the Pixazo doc states no limit,
# so the stack holds inputs to the model vendor's: 20,000,000 bytes, the smaller reading of 20MB.
MAX_INPUT_IMAGE_BYTES = 20_000_000
# Where POST /uploads puts objects, in the media bucket: ``uploads/<caller hash>/<id>.<ext>``.
UPLOAD_KEY_PREFIX = "uploads"
# How long an upload URL may be used: the caller PUTs right after asking for it.
UPLOAD_URL_EXPIRY_SECONDS = 900
# The presigned GET the gateway receives. It must outlive the gateway's queue, but a presigned URL
# dies with the credentials that signed it, whatever its X-Amz-Expires says, and a Lambda function
# signs with its execution role's temporary credentials, whose remaining lifetime Lambda does not
# state ("Services that assume a role, such as the AWS Lambda execution role, don't necessarily
# comply with the role's session duration settings": AWS knowledge center, "Why is my presigned URL
# for an Amazon S3 bucket expiring before the expiration time that I specified?",
# https://repost.aws/knowledge-center/presigned-url-s3-bucket-expiration). One hour, the shortest
# role session STS grants (and DownloadUrlExpirySeconds' ceiling for the same reason), is the most
# the URL can be promised. It is made at each submit, after the job's wait in the stack's own submit
# queue, so the hour starts when the gateway takes the job, and a job the gateway said "not now" to
# gets a fresh one when it is sent again. (The gateway doc states no queue time.)
INPUT_URL_EXPIRY_SECONDS = 3600
# Enough for every signature below (WebP's is 12 bytes).
SNIFF_BYTES = 16
IMAGE_FIELD = "input.image_url"
S3_SCHEME = "s3://"
# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a
# letter or digit (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# An object key is at most 1,024 bytes of UTF-8 (same guide, "Naming Amazon S3 objects").
MAX_KEY_BYTES = 1024
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def sniff_image_type(head: bytes) -> str | None:
    """The image type ``head`` (an object's first bytes) starts with: PNG's 8-byte signature,
    JPEG's SOI marker followed by a marker, WebP's RIFF container with the WEBP form type."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


# A presigned S3 URL (SigV4 in the query): a bearer credential for its object.
_PRESIGNED_URL = re.compile(r"https?://[^\s\"'<>]*X-Amz-Signature=[^\s\"'<>]*", re.IGNORECASE)


def redact_presigned(text: str) -> str:
    """``text`` with every presigned URL in it replaced: what the gateway says about an input
    (a refusal's message may quote the image_url it was sent) is stored on the job and published
    in its events, where the URL must not appear."""
    return _PRESIGNED_URL.sub("[presigned URL of the s3:// image_url]", text)


def is_s3_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(S3_SCHEME)


def parse_s3_uri(value: str) -> tuple[str, str] | None:
    """(bucket, key) of ``s3://BUCKET/KEY``; None when it is not one. The key is taken as written
    (no percent-decoding), as the AWS CLI takes it."""
    if not value.startswith(S3_SCHEME):
        return None
    bucket, _, key = value[len(S3_SCHEME) :].partition("/")
    if not BUCKET_NAME.fullmatch(bucket) or not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return None
    return bucket, key


def owner_prefix(owner: str) -> str:
    """The key prefix of ``owner``'s uploads: a hash of the caller (the submit queue's group id),
    never the caller itself (an IAM ARN in a key would show the account and role to anyone who
    sees the key)."""
    return f"{UPLOAD_KEY_PREFIX}/{caller_group(owner)}/"


def _limits() -> str:
    return f"a JPEG, PNG or WebP image ({', '.join(ACCEPTED_IMAGE_TYPES)}) of 1 to {MAX_INPUT_IMAGE_BYTES} bytes"


class InputImages:
    """Checks ``s3://`` image inputs (POST /jobs) and presigns them for the gateway (submitter).

    ``input_buckets``: the buckets of the ``InputBuckets`` parameter; ``upload_bucket``: the media
    bucket, whose ``uploads/`` keys are the callers' uploads. Every other key of the upload bucket
    is refused (delivered videos are not inputs)."""

    def __init__(self, input_buckets: tuple[str, ...], upload_bucket: str, s3_client: Any) -> None:
        self._input_buckets = input_buckets
        self._upload_bucket = upload_bucket
        self._s3 = s3_client

    def allowed(self) -> str:
        """The allowed locations, as an error message names them."""
        named = ", ".join(b for b in self._input_buckets if b != self._upload_bucket)
        uploads = f"s3://{self._upload_bucket}/{UPLOAD_KEY_PREFIX}/ (your own POST /uploads)"
        return f"{named} (parameter InputBuckets) or {uploads}" if named else uploads

    def check(self, params: dict[str, Any], *, owner: str) -> None:
        """RequestRejected naming ``input.image_url`` unless its ``s3://`` object may be used by
        ``owner``: allowed bucket, own upload, present, an accepted image within the size limit.
        An http(s) image_url, or none, passes untouched (the catalog has checked its form)."""
        value = params.get("image_url")
        if not is_s3_uri(value):
            return
        assert isinstance(value, str)
        location = parse_s3_uri(value)
        if location is None:
            self._reject("must be s3://BUCKET/KEY with a valid bucket name and a key of at most 1024 bytes")
        assert location is not None
        bucket, key = location
        if bucket == self._upload_bucket and key.startswith(f"{UPLOAD_KEY_PREFIX}/"):
            # Checked even when InputBuckets names the media bucket: uploads are their caller's.
            if not key.startswith(owner_prefix(owner)):
                # Another caller's upload, or none: one answer, before any read, the key not repeated.
                self._reject("is not one of your uploads (use the image_url POST /uploads gave you)")
        elif bucket == self._upload_bucket and bucket not in self._input_buckets:
            self._reject(f"bucket {bucket!r} is read only for uploads; allowed: {self.allowed()}")
        elif bucket not in self._input_buckets:
            self._reject(f"bucket {bucket!r} is not allowed; allowed: {self.allowed()}")
        self._check_object(value, bucket, key)

    def _check_object(self, uri: str, bucket: str, key: str) -> None:
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                self._reject(f"{uri} does not exist; it must be {_limits()}")
            if code in ("403", "AccessDenied", "Forbidden"):
                # S3 answers a missing key with 403 to a role without s3:ListBucket (these roles
                # have none), so a 403 is either; the bucket's own policy may also deny the role.
                self._reject(
                    f"{uri} does not exist, or this stack may not read it (S3 answered 403); it must be "
                    f"{_limits()} in {self.allowed()}"
                )
            raise
        size = int(head.get("ContentLength") or 0)
        if not 1 <= size <= MAX_INPUT_IMAGE_BYTES:
            self._reject(f"{uri} is {size} bytes; it must be {_limits()}")
        first = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SNIFF_BYTES - 1}")
        with first["Body"] as body:
            kind = sniff_image_type(body.read(SNIFF_BYTES))
        if kind is None:
            self._reject(f"{uri} is not {_limits()}: its first bytes are no JPEG, PNG or WebP signature")

    @staticmethod
    def _reject(message: str) -> None:
        raise RequestRejected("request is invalid", [FieldError(IMAGE_FIELD, message)])

    def presigned_input(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as the gateway must receive them: an ``s3://`` image_url replaced by a
        presigned https GET of the object (INPUT_URL_EXPIRY_SECONDS). The result holds a bearer
        URL: send it, never store or log it."""
        value = params.get("image_url")
        location = parse_s3_uri(value) if isinstance(value, str) else None
        if location is None:
            return params
        bucket, key = location
        url = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=INPUT_URL_EXPIRY_SECONDS
        )
        return {**params, "image_url": url}


class Uploads:
    """POST /uploads: a presigned PUT of one input image under the caller's upload prefix."""

    def __init__(self, bucket: str, s3_client: Any, *, expiry_seconds: int = UPLOAD_URL_EXPIRY_SECONDS) -> None:
        self._bucket = bucket
        self._s3 = s3_client
        self._expiry = expiry_seconds

    def create(self, body: Any, *, owner: str) -> dict[str, Any]:
        """``{upload_url, headers, image_url, expires_at}`` for a body
        ``{"content_type", "size"}``; RequestRejected naming every bad field.

        The Content-Type and Content-Length are signed headers of the URL: S3 refuses a PUT whose
        headers differ (SignatureDoesNotMatch), so the object is exactly the declared type and
        size. The bytes are checked again by POST /jobs (``InputImages.check``)."""
        content_type, size = parse_upload_request(body)
        key = f"{owner_prefix(owner)}{uuid.uuid4().hex}.{_EXTENSIONS[content_type]}"
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        url = self._s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            ExpiresIn=self._expiry,
        )
        expires_at = datetime.now(UTC) + timedelta(seconds=self._expiry)
        return {
            "upload_url": url,
            "headers": headers,
            "image_url": f"{S3_SCHEME}{self._bucket}/{key}",
            "expires_at": expires_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }


UPLOAD_FIELDS = ("content_type", "size")


def parse_upload_request(body: Any) -> tuple[str, int]:
    """(content_type, size) of a POST /uploads body; RequestRejected naming every bad field."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    errors = [
        FieldError(name, f"unknown field; allowed: {', '.join(UPLOAD_FIELDS)}")
        for name in body
        if name not in UPLOAD_FIELDS
    ]
    content_type = body.get("content_type")
    if content_type not in ACCEPTED_IMAGE_TYPES:
        shown = "missing" if content_type is None else repr(content_type)[:60]
        errors.append(FieldError("content_type", f"must be one of {', '.join(ACCEPTED_IMAGE_TYPES)}, got {shown}"))
    size = body.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_INPUT_IMAGE_BYTES:
        shown = "missing" if size is None else repr(size)[:40]
        errors.append(
            FieldError("size", f"must be a whole number of bytes from 1 to {MAX_INPUT_IMAGE_BYTES}, got {shown}")
        )
    if errors:
        raise RequestRejected("request is invalid", errors)
    assert isinstance(content_type, str) and isinstance(size, int)
    return content_type, size

"""Images from S3 and uploads in the functions, against moto (pixverse_jobs.inputs): POST /uploads
signs the type and size into its PUT, POST /jobs checks an s3:// image_url before recording the
job, and the submitter sends the gateway a presigned GET while the job keeps the s3:// URI."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from lambda_support import load_event
from pixverse_jobs.callbacks import parse_callback
from pixverse_jobs.catalog import get_model
from pixverse_jobs.errors import RequestRejected
from pixverse_jobs.inputs import (
    INPUT_URL_EXPIRY_SECONDS,
    MAX_INPUT_IMAGE_BYTES,
    InputImages,
    owner_prefix,
    redact_presigned,
    sniff_image_type,
)
from pixverse_jobs.queue import caller_group
from test_handlers import OWNER, _submit_module, env  # noqa: F401 - env is the moto fixture

MODEL = "pixverse-v6-image-to-video"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)
INPUTS = "customer-stills"


@pytest.fixture
def buckets(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    monkeypatch.setenv("INPUT_BUCKETS", INPUTS)
    s3 = boto3.client("s3")
    for bucket in ("media", INPUTS):
        s3.create_bucket(Bucket=bucket)
    return s3


def _job_event(image_url: str) -> dict[str, Any]:
    event = load_event("submit_job")
    event["body"] = json.dumps({"model": MODEL, "input": {"prompt": "Snow falls", "image_url": image_url}})
    return event


def _error_details(response: dict[str, Any]) -> list[dict[str, str]]:
    assert response["statusCode"] == 400, response["body"]
    details: list[dict[str, str]] = json.loads(response["body"])["error"]["details"]
    return details


def test_create_upload_signs_type_and_size_under_the_callers_prefix(
    env: dict[str, Any],  # noqa: F811
    buckets: Any,
    lambda_context: Any,
) -> None:
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "x"}))

    response = module.api.handler(load_event("create_upload"), lambda_context)

    assert response["statusCode"] == 201, response["body"]
    upload = json.loads(response["body"])
    assert set(upload) == {"upload_url", "headers", "image_url", "expires_at"}
    assert upload["headers"] == {"Content-Type": "image/png", "Content-Length": "48213"}
    query = parse_qs(urlsplit(upload["upload_url"]).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert upload["image_url"].startswith(f"s3://media/uploads/{caller_group(OWNER)}/")
    assert upload["image_url"].endswith(".png")


@pytest.mark.parametrize(
    ("image_url", "expected"),
    [
        ("s3://elsewhere/still.png", "bucket 'elsewhere' is not allowed; allowed: customer-stills"),
        ("s3://media/videos/m/job/0.mp4", "bucket 'media' is read only for uploads"),
        ("s3://media/uploads/0123456789abcdef0123456789abcdef/x.png", "is not one of your uploads"),
        (f"s3://{INPUTS}/missing.png", "does not exist"),
        ("s3://Bad_Bucket/x.png", "must be s3://BUCKET/KEY"),
    ],
    ids=["other-bucket", "media-not-uploads", "foreign-upload", "missing", "bad-uri"],
)
def test_an_s3_image_url_that_may_not_be_used_is_a_400_naming_it_and_nothing_is_recorded(
    env: dict[str, Any],  # noqa: F811
    buckets: Any,
    lambda_context: Any,
    image_url: str,
    expected: str,
) -> None:
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "x"}))

    details = _error_details(module.api.handler(_job_event(image_url), lambda_context))

    assert [d["field"] for d in details] == ["input.image_url"]
    assert expected in details[0]["message"]
    assert env["ddb"].scan(TableName=env["table"])["Count"] == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"GIF89a" + bytes(32), "its first bytes are no JPEG, PNG or WebP signature"),
        (b"", "is 0 bytes"),
        (b"\xff\xd8\xff" + bytes(MAX_INPUT_IMAGE_BYTES - 2), f"is {MAX_INPUT_IMAGE_BYTES + 1} bytes"),
    ],
    ids=["gif", "empty", "too-large"],
)
def test_an_object_that_is_no_accepted_image_is_a_400(
    env: dict[str, Any],  # noqa: F811
    buckets: Any,
    lambda_context: Any,
    body: bytes,
    expected: str,
) -> None:
    # Declared image/png: the bytes decide
    buckets.put_object(Bucket=INPUTS, Key="still.png", Body=body, ContentType="image/png")
    module = _submit_module(env, [], httpx.Response(202, json={"request_id": "x"}))

    details = _error_details(module.api.handler(_job_event(f"s3://{INPUTS}/still.png"), lambda_context))

    assert expected in details[0]["message"]


def test_the_gateway_gets_a_presigned_get_and_the_job_keeps_the_s3_uri(
    env: dict[str, Any],  # noqa: F811
    buckets: Any,
    lambda_context: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a PNG its uploader stored without an image type
    buckets.put_object(Bucket=INPUTS, Key="dir/still", Body=PNG, ContentType="binary/octet-stream")
    seen: list[httpx.Request] = []
    module = _submit_module(env, seen, httpx.Response(202, json={"request_id": f"{MODEL}_1", "status": "QUEUED"}))

    response = module.handler(_job_event(f"s3://{INPUTS}/dir/still"), lambda_context)

    assert response["statusCode"] == 202, response["body"]
    job = module.job(json.loads(response["body"])["job_id"])
    assert job["input"]["image_url"] == f"s3://{INPUTS}/dir/still"
    sent = json.loads(seen[0].content)["image_url"]
    parts = urlsplit(sent)
    assert parts.scheme == "https" and parts.path.endswith("/dir/still")
    assert parse_qs(parts.query)["X-Amz-Expires"] == [str(INPUT_URL_EXPIRY_SECONDS)]
    assert parse_qs(parts.query)["X-Amz-Signature"][0] not in caplog.text + json.dumps(job, default=str)


def test_a_gateway_refusal_quoting_the_presigned_url_is_stored_without_it(
    env: dict[str, Any],  # noqa: F811
    buckets: Any,
    lambda_context: Any,
) -> None:
    buckets.put_object(Bucket=INPUTS, Key="still.png", Body=PNG)
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        url = json.loads(request.content)["image_url"]
        return httpx.Response(400, json={"error": "Bad Request", "message": f"cannot fetch image_url {url}"})

    module = _submit_module(env, seen, httpx.Response(202))
    module.submitter_module.submitter._gateway._client = httpx.Client(transport=httpx.MockTransport(refuse))

    response = module.handler(_job_event(f"s3://{INPUTS}/still.png"), lambda_context)

    job = module.job(json.loads(response["body"])["job_id"])
    assert job["status"] == "SUBMIT_FAILED"
    assert "X-Amz-Signature" not in json.dumps(job, default=str)
    assert job["error"]["message"] == "cannot fetch image_url [presigned URL of the s3:// image_url]"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"<html>", None),
    ],
)
def test_sniffing_reads_the_signature(head: bytes, kind: str | None) -> None:
    assert sniff_image_type(head) == kind


def test_only_image_url_takes_s3_and_the_schema_says_so() -> None:
    model = get_model(MODEL)
    assert model is not None
    image_url = model.param("image_url")
    assert image_url is not None and image_url.check("s3://b-1/k.png") is None
    assert image_url.check("gs://b/k.png") == "must be an http:// or https:// URL or s3://BUCKET/KEY"
    assert image_url.json_schema()["pattern"] == "^(https?|s3)://"


def test_redaction_and_prefix_never_show_a_signature_or_the_caller() -> None:
    text = "fetch failed: https://b.s3.amazonaws.com/k?X-Amz-Credential=a&X-Amz-Signature=abc123 (403)"
    assert redact_presigned(text) == "fetch failed: [presigned URL of the s3:// image_url] (403)"
    assert OWNER not in owner_prefix(OWNER) and owner_prefix(OWNER).startswith("uploads/")


def test_a_callback_error_quoting_the_presigned_url_is_kept_without_it() -> None:
    body = {
        "request_id": f"{MODEL}_1",
        "status": "FAILED",
        "error": "could not download https://b.s3.amazonaws.com/k.png?X-Amz-Expires=3600&X-Amz-Signature=ab12",
        "output": None,
    }

    callback = parse_callback(json.dumps(body).encode())

    assert callback.error == "could not download [presigned URL of the s3:// image_url]"


def test_a_403_from_s3_reads_as_missing_or_unreadable() -> None:
    # S3 answers HeadObject of a missing key with 403 to a role without s3:ListBucket.
    class Denying:
        def head_object(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    images = InputImages((INPUTS,), "media", Denying())

    with pytest.raises(RequestRejected) as refused:
        images.check({"image_url": f"s3://{INPUTS}/gone.png"}, owner=OWNER)

    (detail,) = refused.value.details
    assert detail.field == "input.image_url"
    assert "does not exist, or this stack may not read it (S3 answered 403)" in detail.message

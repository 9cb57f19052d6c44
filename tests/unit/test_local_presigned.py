"""The local S3 refuses presigned requests as S3 does (pixverse_local/aws/presigned.py): moto
alone answered 200 to a PUT with another Content-Type or size than was signed, to a wrong
signature and to an expired URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from pixverse_local.aws.presigned import check_presigned, local_secrets

ENDPOINT = "http://127.0.0.1:4566"
SECRETS = local_secrets({})


def _s3(secret: str = "testing") -> Any:  # noqa: S107 - moto's dummy credentials
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=secret,
        endpoint_url=ENDPOINT,
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )


def _environ(url: str, method: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    parts = urlsplit(url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "RAW_URI": f"{parts.path}?{parts.query}",
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "HTTP_HOST": parts.netloc,
    }
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name.lower() == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _upload_url(content_type: str = "image/png", size: int = 10, expires: int = 900) -> str:
    url: str = _s3().generate_presigned_url(
        "put_object",
        Params={"Bucket": "media", "Key": "uploads/abc/one.png", "ContentType": content_type, "ContentLength": size},
        ExpiresIn=expires,
    )
    return url


def test_put_with_the_signed_type_and_size_passes() -> None:
    environ = _environ(_upload_url(), "PUT", {"Content-Type": "image/png", "Content-Length": "10"})

    assert check_presigned(environ, SECRETS) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "image/jpeg", "Content-Length": "10"},
        {"Content-Type": "image/png", "Content-Length": "11"},
        {"Content-Length": "10"},
    ],
    ids=["other-type", "other-size", "no-type"],
)
def test_put_with_other_headers_than_signed_is_signature_does_not_match(headers: dict[str, str]) -> None:
    refusal = check_presigned(_environ(_upload_url(), "PUT", headers), SECRETS)

    assert refusal is not None
    assert (refusal.status, refusal.code) == (403, "SignatureDoesNotMatch")


def test_a_signature_made_with_another_secret_is_refused() -> None:
    url = _s3(secret="not-the-stack-secret").generate_presigned_url(
        "get_object", Params={"Bucket": "media", "Key": "a.png"}, ExpiresIn=60
    )

    refusal = check_presigned(_environ(url, "GET"), SECRETS)

    assert refusal is not None and refusal.code == "SignatureDoesNotMatch"


def test_an_expired_url_is_access_denied() -> None:
    url = _upload_url(expires=60)
    later = datetime.now(UTC) + timedelta(seconds=61)

    refusal = check_presigned(
        _environ(url, "PUT", {"Content-Type": "image/png", "Content-Length": "10"}), SECRETS, later
    )

    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.message) == (403, "AccessDenied", "Request has expired")


def test_get_of_a_key_that_needs_encoding_passes() -> None:
    url = _s3().generate_presigned_url(
        "get_object", Params={"Bucket": "inputs", "Key": "dir/a b+c (1) é.png"}, ExpiresIn=60
    )

    assert check_presigned(_environ(url, "GET"), SECRETS) is None


def test_a_request_without_a_query_signature_is_left_to_moto() -> None:
    assert check_presigned({"REQUEST_METHOD": "GET", "QUERY_STRING": "list-type=2"}, SECRETS) is None

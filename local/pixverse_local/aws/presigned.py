"""S3 presigned URLs held to what S3 checks, for the local stack's moto server.

moto (5.2.x) serves a presigned S3 request without looking at its query signature: a PUT with
another Content-Type or size than was signed, a wrong signature and an expired URL all answer 200
(measured against the local moto server). S3 refuses each (S3 API reference, "Authenticating
Requests: Using Query Parameters (AWS Signature Version 4)",
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html):

* every header named in ``X-Amz-SignedHeaders`` is part of the signature, so a request whose
  header differs from the signed value (POST /uploads signs Content-Type and Content-Length) or
  lacks it computes another signature: 403 ``SignatureDoesNotMatch``;
* after ``X-Amz-Date`` + ``X-Amz-Expires``: 403 ``AccessDenied`` "Request has expired";
* ``X-Amz-Expires`` over 604,800 s (7 days): 400 ``AuthorizationQueryParametersError``;
* an access key S3 does not know: 403 ``InvalidAccessKeyId``.

``check_presigned`` recomputes the signature of a request whose query carries one, with the
secret of its access key (the local stack's credentials: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` of the server's environment, or moto's ``testing``); requests signed in
the Authorization header are left to moto as before. The payload of a presigned request is
``UNSIGNED-PAYLOAD``, as the SDKs presign S3 URLs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

MAX_EXPIRES_SECONDS = 604_800
ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class PresignedRefusal(Exception):
    """What S3 answers a presigned request it refuses: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def xml(self) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{self.message}</Message></Error>"
        ).encode()


def local_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """Access key -> secret key of the credentials the local stack signs with."""
    secrets = {"testing": "testing"}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        secrets[env["AWS_ACCESS_KEY_ID"]] = env["AWS_SECRET_ACCESS_KEY"]
    return secrets


def _encode(value: str) -> str:
    # SigV4's URI encoding: every byte but the unreserved characters A-Z a-z 0-9 - _ . ~
    return quote(value, safe="-_.~")


def _header(environ: Mapping[str, Any], name: str) -> str | None:
    if name == "content-type":
        value = environ.get("CONTENT_TYPE")
    elif name == "content-length":
        value = environ.get("CONTENT_LENGTH")
    else:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
    if value in (None, ""):
        return None
    return " ".join(str(value).split())


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def check_presigned(
    environ: Mapping[str, Any], secrets: Mapping[str, str], now: datetime | None = None
) -> PresignedRefusal | None:
    """The refusal S3 would answer the presigned S3 request ``environ`` (a WSGI environ), or
    None when it is no presigned S3 request or its signature holds."""
    query = str(environ.get("QUERY_STRING") or "")
    if "X-Amz-Signature=" not in query:
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    scope = params.get("X-Amz-Credential", "").split("/")
    if len(scope) != 5 or scope[3] != "s3" or scope[4] != "aws4_request":
        return None  # not S3's (or not SigV4): moto's own handling
    access_key, date, region, service, terminator = scope
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        return PresignedRefusal(
            400, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports AWS4-HMAC-SHA256"
        )
    try:
        signed_at = datetime.strptime(params.get("X-Amz-Date", ""), _AMZ_DATE).replace(tzinfo=UTC)
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        return PresignedRefusal(400, "AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed")
    if not 1 <= expires <= MAX_EXPIRES_SECONDS:
        return PresignedRefusal(
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds",
        )
    if (now or datetime.now(UTC)) > signed_at + timedelta(seconds=expires):
        return PresignedRefusal(403, "AccessDenied", "Request has expired")
    secret = secrets.get(access_key)
    if secret is None:
        return PresignedRefusal(
            403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        )
    signed_headers = params.get("X-Amz-SignedHeaders", "")
    canonical_headers = ""
    for name in signed_headers.split(";"):
        value = _header(environ, name)
        if value is None:
            return _mismatch()
        canonical_headers += f"{name}:{value}\n"
    raw_uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/")
    path = raw_uri.split("?", 1)[0] or "/"
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in pairs if k != "X-Amz-Signature")
    )
    payload = params.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
    canonical_request = "\n".join(
        [str(environ.get("REQUEST_METHOD", "GET")), path, canonical_query, canonical_headers, signed_headers, payload]
    )
    credential_scope = f"{date}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(
        [ALGORITHM, params["X-Amz-Date"], credential_scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), terminator)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return _mismatch()
    return None


def _mismatch() -> PresignedRefusal:
    return PresignedRefusal(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def checking_presigned_urls(app: Callable[..., Any], secrets: Mapping[str, str]) -> Callable[..., Any]:
    """``app`` (a WSGI application) answering refused presigned S3 requests as S3 does."""

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        refusal = check_presigned(environ, secrets)
        if refusal is None:
            return app(environ, start_response)
        body = refusal.xml()
        reason = {400: "Bad Request", 403: "Forbidden"}[refusal.status]
        start_response(
            f"{refusal.status} {reason}",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return checked

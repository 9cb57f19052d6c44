"""HTTP access to a pixverse-jobs API: a deployed stack (SigV4 with the caller's AWS credentials,
or a JWT bearer token) or the local stack (loopback, no signing)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from pixverse_jobs.netguard import is_loopback_host

API_URL_ENV = "PIXVERSE_JOBS_API_URL"
TOKEN_ENV = "PIXVERSE_JOBS_TOKEN"  # noqa: S105 - the name of a variable, not a token


class CliError(Exception):
    """A failure the CLI reports in one message and an exit code."""

    def __init__(self, message: str, exit_code: int, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = details or []


# Exit codes (documented in the README and `pixverse-jobs --help`).
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2  # bad arguments or a 400 validation_error from the API
EXIT_API = 3  # another 4xx: not found, conflict, auth
EXIT_SERVER = 4  # 5xx: gateway or service trouble
EXIT_TIMEOUT = 5  # --wait / wait gave up
EXIT_NETWORK = 6  # the API could not be reached


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def api_url_from_stack(stack_name: str, region: str | None) -> str:
    """The ApiUrl output of a deployed stack."""
    import boto3

    outputs = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack_name)["Stacks"][0]
    for output in outputs.get("Outputs", []):
        if output["OutputKey"] == "ApiUrl":
            return str(output["OutputValue"])
    raise CliError(f"stack {stack_name} has no ApiUrl output", EXIT_USAGE)


class SigV4Auth(httpx.Auth):
    """Signs each request for API Gateway (service execute-api) with the default AWS credentials."""

    def __init__(self, region: str | None) -> None:
        import boto3

        session = boto3.session.Session(region_name=region)
        credentials = session.get_credentials()
        if credentials is None:
            raise CliError("no AWS credentials found to sign the request (SigV4); configure them or use --token", 3)
        self._credentials = credentials.get_frozen_credentials()
        self._region = session.region_name or "us-east-1"

    def auth_flow(self, request: httpx.Request) -> Any:
        from botocore.auth import SigV4Auth as BotoSigV4
        from botocore.awsrequest import AWSRequest

        # Only the headers API Gateway sees: hop-by-hop ones may be rewritten on the way.
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("connection", "accept-encoding")}
        aws_request = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
        BotoSigV4(self._credentials, "execute-api", self._region).add_auth(aws_request)
        for name, value in aws_request.headers.items():
            request.headers[name] = value
        yield request


@dataclass
class ApiClient:
    base_url: str
    http: httpx.Client

    @classmethod
    def connect(cls, base_url: str, *, token: str | None, region: str | None, timeout: float = 30.0) -> ApiClient:
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif not is_loopback(base_url):
            auth = SigV4Auth(region)
        http = httpx.Client(base_url=base_url.rstrip("/"), auth=auth, headers=headers, timeout=timeout)
        return cls(base_url.rstrip("/"), http)

    def request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None, headers: Any = None
    ) -> Any:
        try:
            response = self.http.request(
                method,
                path,
                content=json.dumps(body) if body is not None else None,
                params=dict(params or {}),
                headers={"Content-Type": "application/json", **(headers or {})} if body is not None else headers,
            )
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}", EXIT_NETWORK) from exc
        if response.is_success:
            return response.json()
        raise _api_error(response)

    def close(self) -> None:
        self.http.close()


def _api_error(response: httpx.Response) -> CliError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    code = error.get("code") or f"http_{response.status_code}"
    message = error.get("message") or (response.text[:200] or response.reason_phrase)
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        message += f" (retry after {retry_after} s)"
    status = response.status_code
    exit_code = EXIT_USAGE if status in (400, 413) else EXIT_SERVER if status >= 500 else EXIT_API
    return CliError(f"{status} {code}: {message}", exit_code, list(error.get("details") or []))

"""HTTP access to a pixverse-jobs API: a deployed stack (SigV4 with the caller's AWS credentials,
or a JWT bearer token) or the local stack (loopback, no signing)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
EXIT_NOT_API = 7  # something answered, but not as the pixverse-jobs API does (a wrong URL)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

# Said whenever the URL looks wrong: the local stack's ready: line prints several URLs.
URL_HINT = "use the api= URL of the local stack's ready: line, or the ApiUrl output of the deployed stack"


def check_api_url(url: str, source: str, hint: str = URL_HINT) -> str:
    """``url`` without its trailing slash, once it is an http(s) URL with a host; ``source`` names
    where it came from (``--api-url``, the environment variable, a stack output) in the error.

    A URL without a scheme would otherwise be taken by httpx as a path with no host, and signed
    by botocore, which fails with a traceback far from the mistake."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        if "://" not in text:
            scheme = "http" if is_loopback_host(text.split(":")[0].split("/")[0]) else "https"
            raise CliError(f"{source} {text!r} has no scheme: did you mean {scheme}://{text}? ({hint})", EXIT_USAGE)
        raise CliError(f"{source} {text!r} is not an http:// or https:// URL ({hint})", EXIT_USAGE)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise CliError(f"{source} {text!r} has a bad port: {exc}", EXIT_USAGE) from exc
    return text.rstrip("/")


@contextmanager
def aws_errors(what: str, endpoint: str | None = None) -> Iterator[None]:
    """botocore's failures (no credentials, no region, a refused call, no endpoint) as one-line
    CLI errors that say what was being done. ``endpoint``: a custom AWS endpoint, named when what
    answers there is not AWS (AWS's APIs answer no call with a bare 404)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise CliError(
            f"{what}: no AWS credentials found (configure them: aws configure, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
            EXIT_API,
        ) from exc
    except NoRegionError as exc:
        raise CliError(f"{what}: no AWS region: pass --region or set AWS_REGION", EXIT_USAGE) from exc
    except EndpointConnectionError as exc:
        raise CliError(f"{what}: cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}", EXIT_NETWORK) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
        if endpoint and status == 404 and error.get("Code") in ("404", None, ""):
            raise CliError(
                f"{what}: {endpoint} is not an AWS endpoint (404 {error.get('Message', '')}); "
                "for the local stack use the aws= URL of its ready: line",
                EXIT_NOT_API,
            ) from exc
        code = EXIT_SERVER if status >= 500 else EXIT_API
        raise CliError(f"{what}: {error.get('Code', '?')}: {error.get('Message', '')}", code) from exc
    except BotoCoreError as exc:
        raise CliError(f"{what}: {exc}", EXIT_API) from exc


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def api_url_from_stack(stack_name: str, region: str | None) -> str:
    """The ApiUrl output of a deployed stack."""
    return stack_output(stack_name, region, "ApiUrl")


def stack_output(stack_name: str, region: str | None, key: str) -> str:
    """One output of a deployed CloudFormation stack."""
    import boto3

    with aws_errors(f"reading stack {stack_name}'s outputs"):
        stacks = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack_name)["Stacks"]
    for output in stacks[0].get("Outputs", []) if stacks else []:
        if output["OutputKey"] == key:
            return str(output["OutputValue"])
    raise CliError(f"stack {stack_name} has no {key} output (is it a pixverse-jobs stack?)", EXIT_USAGE)


class SigV4Auth(httpx.Auth):
    """Signs each request for API Gateway (service execute-api) with the default AWS credentials."""

    def __init__(self, region: str | None) -> None:
        import boto3

        with aws_errors("signing requests (SigV4)"):
            session = boto3.session.Session(region_name=region)
            credentials = session.get_credentials()
            if credentials is None:
                raise CliError(
                    "no AWS credentials found to sign requests to a deployed stack (SigV4): configure them "
                    "(aws configure, AWS_PROFILE) or pass --token for a stack in AuthMode jwt",
                    EXIT_API,
                )
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
        """A client for ``base_url``, which the caller has checked with ``check_api_url``."""
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif not is_loopback(base_url):
            auth = SigV4Auth(region)
        http = httpx.Client(base_url=base_url.rstrip("/"), auth=auth, headers=headers, timeout=timeout)
        return cls(base_url.rstrip("/"), http)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Any = None,
        expect: tuple[str, ...] = (),
    ) -> Any:
        """The JSON object the API answered; ``expect`` names keys its answer must have, so that
        another service answering at a wrong URL is said to be one, not met with a KeyError."""
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
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success:
            if isinstance(answer, dict) and all(key in answer for key in expect):
                return answer
            raise _not_api(self.base_url, method, path, response)
        raise _api_error(self.base_url, method, path, response, answer)

    def close(self) -> None:
        self.http.close()


def _not_api(base_url: str, method: str, path: str, response: httpx.Response) -> CliError:
    """The error for an answer that is not this API's: which URL, what came back, what to use."""
    kind = (response.headers.get("Content-Type") or "no content type").split(";")[0]
    sample = " ".join(response.text[:80].split())
    return CliError(
        f"{base_url} is not the pixverse-jobs API: {method} {path} answered {response.status_code} "
        f"({kind}: {sample!r}); {URL_HINT}",
        EXIT_NOT_API,
    )


def _api_error(base_url: str, method: str, path: str, response: httpx.Response, answer: Any) -> CliError:
    status = response.status_code
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error: dict[str, Any] = answer["error"]
    elif isinstance(answer, dict) and set(answer) == {"message"} and isinstance(answer["message"], str):
        # API Gateway's own answers ("Missing Authentication Token", "Forbidden") carry only a message.
        error = {"message": f"API Gateway: {answer['message']}"}
    elif status >= 500 and answer is None:
        # A proxy's or load balancer's error page in front of the API: trouble, not a wrong URL.
        kind = (response.headers.get("Content-Type") or "no content type").split(";")[0]
        return CliError(f"{base_url} answered {status} ({kind}, not JSON): server trouble, try again", EXIT_SERVER)
    else:
        return _not_api(base_url, method, path, response)
    code = error.get("code") or f"http_{status}"
    message = str(error.get("message") or response.reason_phrase)
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        message += f" (retry after {retry_after} s)"
    exit_code = EXIT_USAGE if status in (400, 413) else EXIT_SERVER if status >= 500 else EXIT_API
    return CliError(f"{status} {code}: {message}", exit_code, list(error.get("details") or []))

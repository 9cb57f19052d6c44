"""The local HTTP API: template routes, API Gateway payload 2.0 events, responses as API Gateway gives them."""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pixverse_local.aws.apigateway import MAX_BODY_BYTES, LocalHttpApi, Router, translate_result
from pixverse_local.aws.template import CfnTemplate, FunctionSpec, HttpRoute, Resolver, read_application
from pixverse_local.stack import LocalFunction

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 6
    MemorySize: 384
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        EnableIamAuthorizer: true
        DefaultAuthorizer: AWS_IAM
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/echo
      Handler: app.handler
      Events:
        GetItem: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/items/{item_id}"}}
        PostItem: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: /items}}
        Hook:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: "/hooks/{hook_id}", Auth: {Authorizer: NONE}}
  ShapeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/shape
      Handler: app.handler
      Events:
        Respond: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: /respond}}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/boom
      Handler: app.handler
      Events:
        Boom: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /boom}}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/slow
      Handler: app.handler
      Events:
        Slow: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /slow}}
        # The integration gives up before the function does.
        Impatient:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /impatient, TimeoutInMillis: 200}
  SleepyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sleepy
      Handler: app.handler
      Timeout: 1
      Events:
        Sleepy: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /sleepy}}
  BigFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/big
      Handler: app.handler
      Events:
        Big: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /big}}
  SingleFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/slow
      Handler: app.handler
      ReservedConcurrentExecutions: 1
      Events:
        Single: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /single}}
  JwtApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: {issuer: "https://issuer.example", audience: [jobs]}
  MeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/echo
      Handler: app.handler
      Events:
        Me: {Type: HttpApi, Properties: {ApiId: !Ref JwtApi, Method: GET, Path: /me}}
"""

HANDLERS = {
    # Every module is called app.py, as in the real project.
    "echo": """
import json
def handler(event, context):
    seen = {"function_name": context.function_name, "memory": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis(), "arn": context.invoked_function_arn}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "context": seen})}
""",
    "shape": """
import json
def handler(event, context):
    return json.loads(event["body"])
""",
    "boom": """
def handler(event, context):
    raise RuntimeError("boom")
""",
    "slow": """
import time
def handler(event, context):
    time.sleep(0.5)
    return {"statusCode": 200, "body": "done"}
""",
    # Counts its steps into the file the query names; swallows every Exception, as careless code does.
    "sleepy": """
import time
from pathlib import Path
def handler(event, context):
    marker = Path(event["queryStringParameters"]["marker"])
    for step in range(1, 101):
        try:
            time.sleep(0.05)
        except Exception:
            pass
        marker.write_text(str(step))
    return {"statusCode": 200, "body": "finished"}
""",
    # One byte over Lambda's 6,291,556-byte synchronous response limit once serialised.
    "big": """
def handler(event, context):
    envelope = len('{"statusCode": 200, "body": ""}')
    return {"statusCode": 200, "body": "x" * (6_291_556 - envelope + 1)}
""",
}


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("api")
    (root / "template.yaml").write_text(TEMPLATE)
    for name, source in HANDLERS.items():
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / "app.py").write_text(source)
    template = CfnTemplate.load(root / "template.yaml")
    app = read_application(template, Resolver(template, stack_name="apitest"))
    functions = {
        lid: LocalFunction.load(spec, region="us-east-1", account_id="123456789012")
        for lid, spec in app.functions.items()
    }
    api = LocalHttpApi(app.routes, port=0)
    api.start({lid: fn.invoke for lid, fn in functions.items()})
    yield api.url
    api.stop()


def echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


# ------------------------------------------------------------------------------------------ events
def test_get_route_event_has_payload_v2_fields(api_url: str) -> None:
    response = httpx.get(f"{api_url}/items/abc", params={"status": "QUEUED"}, headers={"User-Agent": "t/1"})

    event = echo(response)["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{item_id}"
    assert event["rawPath"] == "/items/abc"
    assert event["rawQueryString"] == "status=QUEUED"
    assert event["queryStringParameters"] == {"status": "QUEUED"}
    assert event["pathParameters"] == {"item_id": "abc"}
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["routeKey"] == "GET /items/{item_id}"
    assert context["stage"] == "$default"
    assert context["http"] == {
        "method": "GET",
        "path": "/items/abc",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "t/1",
    }
    assert context["domainName"] == api_url.removeprefix("http://")
    assert abs(context["timeEpoch"] - time.time() * 1000) < 60_000
    assert context["requestId"] and context["apiId"] and context["accountId"]
    assert response.headers["apigw-requestid"] == context["requestId"]


def test_path_parameter_is_decoded_and_raw_path_is_not(api_url: str) -> None:
    event = echo(httpx.get(f"{api_url}/items/a%20b"))["event"]

    assert event["pathParameters"] == {"item_id": "a b"}
    assert event["rawPath"] == "/items/a%20b"


def test_repeated_query_values_and_headers_are_comma_joined(api_url: str) -> None:
    event = echo(
        httpx.get(f"{api_url}/items/x?tag=a&tag=b", headers=[("X-Multi", "1"), ("x-multi", "2"), ("X-Case", "v")])
    )["event"]

    assert event["queryStringParameters"] == {"tag": "a,b"}
    assert event["headers"]["x-multi"] == "1,2"
    assert event["headers"]["x-case"] == "v"
    assert all(name == name.lower() for name in event["headers"])


def test_cookies_move_from_headers_to_cookies_field(api_url: str) -> None:
    event = echo(httpx.get(f"{api_url}/items/x", headers={"Cookie": "a=1; b=2"}))["event"]

    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]


def test_iam_route_without_principal_header_gets_the_local_caller(api_url: str) -> None:
    event = echo(httpx.get(f"{api_url}/items/x"))["event"]

    iam = event["requestContext"]["authorizer"]["iam"]
    assert iam["callerId"] == iam["userArn"] == iam["userId"] == "local"
    assert iam["accountId"] == "000000000000"
    assert iam["accessKey"] == "LOCAL"
    assert iam["cognitoIdentity"] is None and iam["principalOrgId"] is None


def _iam_as(api_url: str, arn: str) -> dict[str, Any]:
    event = echo(httpx.get(f"{api_url}/items/x", headers={"X-Local-Principal-Arn": arn}))["event"]
    assert "x-local-principal-arn" not in event["headers"]  # local only: API Gateway never sees it
    return dict(event["requestContext"]["authorizer"]["iam"])


def test_user_arn_header_gives_the_iam_user_identity_api_gateway_gives(api_url: str) -> None:
    iam = _iam_as(api_url, "arn:aws:iam::123456789012:user/alice")

    assert iam["userArn"] == "arn:aws:iam::123456789012:user/alice"
    assert iam["accountId"] == "123456789012"
    assert re.fullmatch(r"AIDA[A-Z2-7]{17}", iam["userId"])
    assert iam["callerId"] == iam["userId"]
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", iam["accessKey"])


def test_assumed_role_sessions_share_the_role_id_and_keep_their_session(api_url: str) -> None:
    first = _iam_as(api_url, "arn:aws:sts::123456789012:assumed-role/Worker/task-1")
    second = _iam_as(api_url, "arn:aws:sts::123456789012:assumed-role/Worker/task-2")
    other_role = _iam_as(api_url, "arn:aws:sts::123456789012:assumed-role/Other/task-1")

    assert first["userArn"] == "arn:aws:sts::123456789012:assumed-role/Worker/task-1"
    role_id, session = first["userId"].split(":")
    assert re.fullmatch(r"AROA[A-Z2-7]{17}", role_id) and session == "task-1"
    assert first["callerId"] == first["userId"]
    assert second["userId"] == f"{role_id}:task-2"
    assert not other_role["userId"].startswith(role_id)
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", first["accessKey"])  # a session's temporary key


@pytest.mark.parametrize(
    "arn",
    [
        "alice",
        "arn:aws:iam::123456789012:role/Worker",  # a role is assumed, never a caller itself
        "arn:aws:sts::123456789012:user/alice",
        "arn:aws:iam::123456789012:assumed-role/Worker/s1",
        "arn:aws:sts::12345:assumed-role/Worker/s1",
        "arn:aws:sts::123456789012:assumed-role/Worker",
    ],
)
def test_malformed_principal_arn_is_refused_403_like_a_bad_signature(api_url: str, arn: str) -> None:
    response = httpx.get(f"{api_url}/items/x", headers={"X-Local-Principal-Arn": arn})

    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


def test_jwt_route_passes_the_bearer_tokens_claims(api_url: str) -> None:
    token = _unsigned_jwt({"sub": "user-123", "iss": "https://issuer.example", "exp": time.time() + 60, "scope": "a b"})

    event = echo(httpx.get(f"{api_url}/me", headers={"Authorization": f"Bearer {token}"}))["event"]

    jwt = event["requestContext"]["authorizer"]["jwt"]
    assert jwt["claims"]["sub"] == "user-123"
    assert jwt["claims"]["iss"] == "https://issuer.example"
    assert jwt["scopes"] == ["a", "b"]
    assert "iam" not in event["requestContext"]["authorizer"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-jwt", "Bearer a.b.c", _unsigned_jwt({"sub": "late", "exp": 1})],
)
def test_jwt_route_without_a_valid_token_answers_401(api_url: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = httpx.get(f"{api_url}/me", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_none_route_has_no_authorizer(api_url: str) -> None:
    event = echo(httpx.post(f"{api_url}/hooks/h1?sig=ab", content=b"{}"))["event"]

    assert "authorizer" not in event["requestContext"]
    assert event["pathParameters"] == {"hook_id": "h1"}


def test_text_body_is_passed_as_is(api_url: str) -> None:
    event = echo(httpx.post(f"{api_url}/items", json={"model": "pixverse"}))["event"]

    assert json.loads(event["body"]) == {"model": "pixverse"}
    assert event["isBase64Encoded"] is False
    assert event["headers"]["content-type"] == "application/json"


def test_binary_body_is_base64_encoded(api_url: str) -> None:
    payload = bytes(range(256))

    event = echo(httpx.post(f"{api_url}/items", content=payload))["event"]

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_handler_gets_context_from_template_settings(api_url: str) -> None:
    seen = echo(httpx.get(f"{api_url}/items/x"))["context"]

    assert seen["function_name"] == "apitest-EchoFunction"
    assert seen["memory"] == 384
    assert 0 < seen["remaining"] <= 6000
    assert seen["arn"].endswith(":function:apitest-EchoFunction")


# ------------------------------------------------------------------------------------------ responses
def test_response_fields_become_http(api_url: str) -> None:
    result = {
        "statusCode": 201,
        "headers": {"x-one": "1", "content-type": "text/plain"},
        "multiValueHeaders": {"x-many": ["a", "b"]},
        "cookies": ["c=1; Path=/", "d=2"],
        "body": base64.b64encode(b"\x00binary").decode(),
        "isBase64Encoded": True,
    }

    response = httpx.post(f"{api_url}/respond", json=result)

    assert response.status_code == 201
    assert response.headers["x-one"] == "1"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers.get_list("x-many") == ["a", "b"]
    assert response.headers.get_list("set-cookie") == ["c=1; Path=/", "d=2"]
    assert response.content == b"\x00binary"


def test_result_without_status_code_becomes_json_200(api_url: str) -> None:
    response = httpx.post(f"{api_url}/respond", json={"job": "x"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"job": "x"}


def test_plain_string_result_becomes_json_string(api_url: str) -> None:
    response = httpx.post(f"{api_url}/respond", content=b'"hello"')

    assert response.status_code == 200
    assert response.json() == "hello"


def test_invalid_status_code_answers_500() -> None:
    with pytest.raises(Exception, match="statusCode"):
        translate_result({"statusCode": "teapot"})


def test_unknown_route_answers_404(api_url: str) -> None:
    response = httpx.get(f"{api_url}/nothing/here")

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_wrong_method_answers_404(api_url: str) -> None:
    assert httpx.delete(f"{api_url}/items/x").status_code == 404


def test_handler_exception_answers_500(api_url: str) -> None:
    response = httpx.get(f"{api_url}/boom")

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_body_over_10_mb_answers_413(api_url: str) -> None:
    host, port = api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST /items HTTP/1.1\r\nHost: {host}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]

    assert b" 413 " in status_line


# ------------------------------------------------------------------------------------------ Lambda limits
def test_function_past_its_timeout_answers_500_and_is_stopped(api_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "steps"
    started = time.monotonic()

    response = httpx.get(f"{api_url}/sleepy", params={"marker": str(marker)}, timeout=10)

    # Then API Gateway answers the function error at the function's 1 s Timeout...
    elapsed = time.monotonic() - started
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert 0.9 < elapsed < 3.0
    # ...and the handler (which swallows every Exception) ran no further: 100 steps take 5 s.
    time.sleep(0.5)
    stopped_at = int(marker.read_text())
    time.sleep(0.5)
    assert int(marker.read_text()) == stopped_at < 40


def test_integration_timeout_answers_503_before_the_function_ends(api_url: str) -> None:
    started = time.monotonic()

    response = httpx.get(f"{api_url}/impatient", timeout=10)

    assert response.status_code == 503
    assert response.json() == {"message": "Service Unavailable"}
    assert time.monotonic() - started < 0.5  # TimeoutInMillis 200; the function takes 500 ms


def test_response_over_lambdas_6_mb_answers_500(api_url: str) -> None:
    response = httpx.get(f"{api_url}/big", timeout=30)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_invocation_over_reserved_concurrency_is_throttled_and_answers_500(api_url: str) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(lambda _: httpx.get(f"{api_url}/single", timeout=10).status_code, range(2)))

    assert statuses == [200, 500]
    assert httpx.get(f"{api_url}/single", timeout=10).status_code == 200  # the slot is free again


# ------------------------------------------------------------------------------------------ malformed requests
def _raw(api_url: str, request: bytes) -> bytes:
    """Send ``request`` as is; return what the API answered before closing (at most 5 s)."""
    host, port = api_url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                    break
        except TimeoutError:
            pass
    return answer


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1e3", b"5, 6"])
def test_unframeable_content_length_answers_400_json(api_url: str, length: bytes) -> None:
    answer = _raw(api_url, b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}")

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1]) == {"message": "Bad Request"}


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND"])
def test_unrouted_method_answers_404_json(api_url: str, method: str) -> None:
    response = httpx.request(method, f"{api_url}/items/x")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "Not Found"}


def test_broken_request_line_answers_400_json(api_url: str) -> None:
    answer = _raw(api_url, b"GET /items/x HTTP/1.1 extra\r\nHost: x\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.0 400 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"message": "Bad Request"}


def test_concurrent_requests_are_served_in_parallel(api_url: str) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: httpx.get(f"{api_url}/slow", timeout=10).status_code, range(6)))

    assert statuses == [200] * 6
    assert time.monotonic() - started < 2.0  # six 0.5 s handlers one after another would take 3 s


# ------------------------------------------------------------------------------------------ routing
def _route(method: str, path: str, function_id: str) -> HttpRoute:
    return HttpRoute(function_id, "E", "Api", method, path, None, None)


def test_router_prefers_exact_then_parameter_then_greedy_then_default() -> None:
    router = Router(
        [
            _route("ANY", "$default", "default"),
            _route("GET", "/{proxy+}", "greedy"),
            _route("GET", "/jobs/{job_id}", "param"),
            _route("GET", "/jobs/mine", "exact"),
        ]
    )

    def target(method: str, path: str) -> str | None:
        found = router.match(method, path)
        return found[0].function_id if found else None

    assert target("GET", "/jobs/mine") == "exact"
    assert target("GET", "/jobs/j-1") == "param"
    assert target("GET", "/jobs/j-1/extra") == "greedy"
    assert target("POST", "/jobs/j-1") == "default"


def test_router_greedy_parameter_keeps_slashes() -> None:
    router = Router([_route("ANY", "/files/{key+}", "f")])

    found = router.match("PUT", "/files/a/b/c.mp4")
    assert found is not None and found[1] == {"key": "a/b/c.mp4"}


def test_local_function_modules_do_not_collide(tmp_path: Path) -> None:
    # Two functions whose handler module and sibling module share names, as every app.py does.
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "helpers.py").write_text(f"WHO = {name!r}\n")
        (tmp_path / name / "app.py").write_text(
            "import helpers\ndef handler(event, context):\n    return helpers.WHO\n"
        )
    loaded = [
        LocalFunction.load(
            FunctionSpec(name, name, tmp_path / name, "app.handler", 3, 128, {}, ()),
            region="us-east-1",
            account_id="123456789012",
        )
        for name in ("one", "two")
    ]

    assert [fn.invoke({}) for fn in loaded] == ["one", "two"]
    assert "helpers" not in sys.modules

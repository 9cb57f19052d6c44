"""A local API Gateway HTTP API: template routes -> payload format 2.0 events -> function handlers.

Requests are matched against the template's HttpApi routes with API Gateway's precedence (exact
paths, then ``{param}`` paths, then greedy ``{proxy+}`` paths, then ``$default``), turned into the
version 2.0 event API Gateway builds, and the function's result is translated back to HTTP as API
Gateway does it.

Local deviations, on purpose:

* Authorization is not enforced. Routes behind the API's (IAM) authorizer get the requestContext
  ``authorizer`` of a fixed local caller, ``local``; the local-only request header
  ``X-Local-Caller: NAME`` makes the caller NAME so owner scoping can be exercised. That header is
  not passed on to the function. ``Authorizer: NONE`` routes get no authorizer.
* The 30 s integration timeout is not enforced (a thread cannot be interrupted); the function's
  context still reports its remaining time from the template's Timeout.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pixverse_local.template import HttpRoute, local_api_id

LOG = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
LOCAL_CALLER_HEADER = "x-local-caller"
DEFAULT_CALLER = "local"
LOCAL_ACCOUNT_ID = "000000000000"

_NOT_FOUND = (HTTPStatus.NOT_FOUND, {"message": "Not Found"})
_TOO_LARGE = (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Entity Too Large"})
_INTERNAL = (HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})


# ------------------------------------------------------------------------------------------ routing
@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str] | None  # None: $default
    parameter_names: tuple[str, ...]
    precedence: tuple[int, int, int, int]


def _compile(route: HttpRoute) -> _CompiledRoute:
    if route.path == "$default":
        return _CompiledRoute(route, None, (), (3, 0, 0, 1))
    regex = ""
    names: list[str] = []
    greedy = params = 0
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        match = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
        if match is None:
            regex += "/" + re.escape(segment)
            continue
        names.append(match.group(1))
        group = f"p{len(names) - 1}"
        if match.group(2):
            greedy += 1
            regex += f"/(?P<{group}>.+)"
        else:
            params += 1
            regex += f"/(?P<{group}>[^/]+)"
    pattern = re.compile(regex or "/")
    tier = 2 if greedy else (1 if params else 0)
    return _CompiledRoute(route, pattern, tuple(names), (tier, params, int(route.method == "ANY"), -len(regex)))


class Router:
    """Finds the route, and its path parameters, for a method and raw path."""

    def __init__(self, routes: Sequence[HttpRoute]) -> None:
        self._routes = sorted((_compile(r) for r in routes), key=lambda c: c.precedence)

    def match(self, method: str, raw_path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for compiled in self._routes:
            route = compiled.route
            if route.method not in ("ANY", method):
                continue
            if compiled.pattern is None:
                return route, {}
            found = compiled.pattern.fullmatch(raw_path)
            if found is not None:
                values = {name: unquote(found.group(f"p{i}")) for i, name in enumerate(compiled.parameter_names)}
                return route, values
        return None


# ------------------------------------------------------------------------------------------ events
@dataclass(frozen=True)
class IncomingRequest:
    """What the HTTP server read, before it becomes an event."""

    method: str
    target: str  # path and query as sent
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str


def authorizer_context(route: HttpRoute, caller: str) -> dict[str, Any] | None:
    """requestContext.authorizer for a route: the local caller, or None for unauthorized routes."""
    if route.authorizer_kind is None:
        return None
    if route.authorizer_kind == "jwt":
        return {"jwt": {"claims": {"sub": caller, "iss": "local"}, "scopes": None}}
    if route.authorizer_kind == "lambda":
        return {"lambda": {"principalId": caller}}
    return {
        "iam": {
            "accessKey": "LOCAL",
            "accountId": LOCAL_ACCOUNT_ID,
            "callerId": caller,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": caller,
            "userId": caller,
        }
    }


def build_event(
    request: IncomingRequest,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    *,
    account_id: str,
    request_id: str,
    server_port: int,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for one request."""
    split = urlsplit(request.target)
    raw_path = split.path or "/"
    raw_query = split.query

    headers: dict[str, str] = {}
    cookies: list[str] = []
    caller = DEFAULT_CALLER
    for name, value in request.headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        if lower == LOCAL_CALLER_HEADER:
            caller = value.strip() or DEFAULT_CALLER
            continue
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-port", str(server_port))
    headers.setdefault("x-forwarded-proto", "http")

    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    host = headers.get("host", f"127.0.0.1:{server_port}")
    domain_name = host
    now = time.time()
    api_id = local_api_id(route.api_id)
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    authorizer = authorizer_context(route, caller)
    if authorizer is not None:
        context["authorizer"] = authorizer

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = context
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        try:
            event["body"] = request.body.decode("utf-8")
            event["isBase64Encoded"] = False
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InvalidResponseError(Exception):
    """The function returned something API Gateway would answer 500 for."""


def translate_result(result: Any) -> HttpResponse:
    """A payload 2.0 function result as API Gateway turns it into HTTP."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway assumes 200 and a JSON body made of the whole result.
        body = json.dumps(result).encode()
        return HttpResponse(200, [("content-type", "application/json")], body)
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidResponseError(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), _header_value(v)) for v in (values or []))
    headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=True)
        except ValueError as exc:
            raise InvalidResponseError("isBase64Encoded body is not base64") from exc
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode()
    return HttpResponse(status, headers, body)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------------------------------ server
class _RequestHandler(BaseHTTPRequestHandler):
    # Answer at once on kept-alive connections (as API Gateway does): with Nagle's algorithm each
    # response waited ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: _ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)

    def _serve(self) -> None:
        self.server.owner.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _ApiServer(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when a test or a burst of gateway
    # callbacks connects many at once; API Gateway accepts them all.
    request_queue_size = 128
    daemon_threads = True
    owner: LocalHttpApi


class LocalHttpApi:
    """The local HTTP API server: bind at construction, :meth:`start` with one invoker per function."""

    def __init__(
        self,
        routes: Sequence[HttpRoute],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str = LOCAL_ACCOUNT_ID,
    ) -> None:
        self.router = Router(routes)
        self.account_id = account_id
        self._invokers: dict[str, Invoke] = {}
        self._server = _ApiServer((host, port), _RequestHandler)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    def start(self, invokers: Mapping[str, Invoke]) -> None:
        """Serve in a background thread; ``invokers`` maps function logical id -> invoke(event)."""
        missing = {r.function_id for r in self.router_routes()} - set(invokers)
        if missing:
            raise ValueError(f"no invoker for routed function(s): {', '.join(sorted(missing))}")
        self._invokers = dict(invokers)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-http-api", daemon=True)
        self._thread.start()
        LOG.info("local HTTP API listening on %s", self.url)

    def router_routes(self) -> list[HttpRoute]:
        return [compiled.route for compiled in self.router._routes]

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    # -- one request --------------------------------------------------------------------------
    def handle(self, handler: _RequestHandler) -> None:
        request_id = base64.b64encode(secrets.token_bytes(12)).decode().rstrip("=")
        try:
            body = self._read_body(handler)
        except _BodyTooLargeError:
            handler.close_connection = True
            self._write(handler, request_id, _json_response(*_TOO_LARGE))
            return
        method = handler.command.upper()
        target = handler.path
        matched = self.router.match(method, urlsplit(target).path or "/")
        if matched is None:
            self._write(handler, request_id, _json_response(*_NOT_FOUND))
            return
        route, path_parameters = matched
        request = IncomingRequest(
            method=method,
            target=target,
            headers=list(handler.headers.items()),
            body=body,
            source_ip=handler.client_address[0],
            protocol=handler.request_version,
        )
        event = build_event(
            request,
            route,
            path_parameters,
            account_id=self.account_id,
            request_id=request_id,
            server_port=self.port,
        )
        try:
            response = translate_result(self._invokers[route.function_id](event))
        except Exception:
            LOG.exception("%s (%s) failed", route.function_id, route.route_key)
            response = _json_response(*_INTERNAL)
        self._write(handler, request_id, response)

    @staticmethod
    def _read_body(handler: _RequestHandler) -> bytes:
        if "chunked" in handler.headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                length = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    raise _BodyTooLargeError
                chunks.append(handler.rfile.read(length))
                handler.rfile.readline()
        length = int(handler.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise _BodyTooLargeError
        return handler.rfile.read(length) if length else b""

    @staticmethod
    def _write(handler: _RequestHandler, request_id: str, response: HttpResponse) -> None:
        handler.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                handler.send_header(name, value)
        handler.send_header("apigw-requestid", request_id)
        handler.send_header("content-length", str(len(response.body)))
        handler.end_headers()
        if handler.command.upper() != "HEAD":
            handler.wfile.write(response.body)


class _BodyTooLargeError(Exception):
    pass


def _json_response(status: HTTPStatus, payload: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(int(status), [("content-type", "application/json")], json.dumps(payload).encode())

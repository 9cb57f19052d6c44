"""A local API Gateway HTTP API: template routes -> payload format 2.0 events -> function handlers.

Requests are matched against the template's HttpApi routes with API Gateway's precedence (exact
paths, then ``{param}`` paths, then greedy ``{proxy+}`` paths, then ``$default``), turned into the
version 2.0 event API Gateway builds, and the function's result is translated back to HTTP as API
Gateway does it.

Callers (see :mod:`pixverse_local.aws.authorizers`): on routes behind the API's IAM authorizer the
local-only request header ``X-Local-Principal-Arn: <IAM user, assumed-role or root ARN>`` makes the
caller that principal, with ``requestContext.authorizer.iam`` filled as API Gateway fills it for a
SigV4 signer (``userArn``, ``accountId``, ``userId``/``callerId`` as ``AIDA...`` or
``AROA...:SESSION``, ``accessKey``); a header that is not such an ARN answers 403
``{"message": "Forbidden"}`` as a bad signature does. The header exists only locally and is not
passed to the function; without it the caller is ``local``. On JWT routes an
``Authorization: Bearer <jwt>`` token (unsigned is fine locally) gives ``authorizer.jwt.claims``; a
missing or unreadable token answers 401 ``{"message": "Unauthorized"}``. ``Authorizer: NONE`` routes
get no authorizer.

Failures answer as API Gateway answers them:

* the function raised, timed out (its template ``Timeout``), returned more than Lambda's 6 MB or a
  result API Gateway cannot read: 500 ``{"message": "Internal Server Error"}``
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html);
* Lambda throttled the invocation (reserved or account concurrency, see
  :mod:`pixverse_local.aws.lambda_runtime`): 500 as well, "If the Lambda API rejects the invocation
  request, API Gateway returns a 500 error code"
  (https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html);
* the integration did not answer within its ``TimeoutInMillis`` (template; at most and by default
  30 s, https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html): 503
  ``{"message": "Service Unavailable"}`` at that moment, while the function runs on until its own
  timeout. An HTTP API answers an integration timeout with 503 Service Unavailable (reported in
  https://github.com/serverless/serverless/issues/11222 and
  https://github.com/sst/sst/issues/2232; AWS's knowledge-center page on 504s describes REST APIs);
* no route for the method and path (TRACE, CONNECT or any other method included): 404
  ``{"message": "Not Found"}``;
* a request API Gateway cannot frame (a Content-Length that is not a non-negative integer, or
  several that disagree; a malformed chunk size; a broken request line): 400
  ``{"message": "Bad Request"}``, and the connection is closed;
* a body over the HTTP API's 10 MB payload limit: 413 ``{"message": "Request Entity Too Large"}``.
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

from pixverse_local.aws.authorizers import (
    LOCAL_ACCOUNT_ID,
    LOCAL_PRINCIPAL_HEADER,
    AuthorizationError,
    iam_caller,
    jwt_context,
)
from pixverse_local.aws.lambda_runtime import TooManyRequestsError
from pixverse_local.aws.template import HttpRoute, local_api_id

LOG = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit

_NOT_FOUND = (HTTPStatus.NOT_FOUND, {"message": "Not Found"})
_TOO_LARGE = (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Entity Too Large"})
_INTERNAL = (HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})
_BAD_REQUEST = (HTTPStatus.BAD_REQUEST, {"message": "Bad Request"})
_INTEGRATION_TIMEOUT = (HTTPStatus.SERVICE_UNAVAILABLE, {"message": "Service Unavailable"})
_CONTENT_LENGTH = re.compile(r"[0-9]+")


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


def authorizer_context(route: HttpRoute, headers: Mapping[str, str]) -> dict[str, Any] | None:
    """requestContext.authorizer for a route and the (lower-cased) request headers.

    None for routes without authorization; :class:`AuthorizationError` when API Gateway would refuse
    the caller (a malformed ``X-Local-Principal-Arn`` on an IAM route, a bad token on a JWT route).
    """
    if route.authorizer_kind is None:
        return None
    if route.authorizer_kind == "jwt":
        return jwt_context(headers.get("authorization"))
    if route.authorizer_kind == "lambda":
        return {"lambda": {"principalId": iam_caller(headers).user_arn}}
    return iam_caller(headers).context()


def _joined_headers(raw: Sequence[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Headers as API Gateway passes them (lower-cased, repeats comma-joined) and the cookies apart."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in raw:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    return headers, cookies


def build_event(
    request: IncomingRequest,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    *,
    account_id: str,
    request_id: str,
    server_port: int,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for one request.

    Raises :class:`AuthorizationError` when API Gateway would refuse the caller before the function.
    """
    split = urlsplit(request.target)
    raw_path = split.path or "/"
    raw_query = split.query

    headers, cookies = _joined_headers(request.headers)
    authorizer = authorizer_context(route, headers)
    # Local only: API Gateway never sees this header, so the function must not either.
    headers.pop(LOCAL_PRINCIPAL_HEADER, None)
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

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler answers a method without a do_<METHOD> with an HTML 501; API
        # Gateway routes every method (TRACE, CONNECT, ...) and answers 404 where no route takes it.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server finds itself (a broken request line, headers too long) as JSON, as API Gateway."""
        status = HTTPStatus(code)
        LOG.info("%s: %d %s", self.address_string(), code, message or status.phrase)
        body = json.dumps({"message": status.phrase}).encode()
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # An unparsed request line leaves http.server's default, which sends a bare body.
            self.request_version = "HTTP/1.1"
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("connection", "close")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


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
        except _BadFramingError as exc:
            # Where the body ends is unknown: answer and close, as a front end must.
            LOG.info("bad request framing: %s", exc)
            handler.close_connection = True
            self._write(handler, request_id, _json_response(*_BAD_REQUEST))
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
        try:
            event = build_event(
                request,
                route,
                path_parameters,
                account_id=self.account_id,
                request_id=request_id,
                server_port=self.port,
            )
        except AuthorizationError as exc:
            LOG.info("%s refused: %d %s", route.route_key, exc.status, exc)
            self._write(handler, request_id, _json_response(HTTPStatus(exc.status), {"message": exc.message}))
            return
        self._write(handler, request_id, self._integrate(route, event))

    def _integrate(self, route: HttpRoute, event: dict[str, Any]) -> HttpResponse:
        """Invoke the route's function and answer within the integration's timeout."""
        invoke = self._invokers[route.function_id]
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def call() -> None:
            try:
                outcome["result"] = invoke(event)
            except BaseException as exc:  # reported to the client below, whatever it is
                outcome["error"] = exc
            finally:
                finished.set()

        threading.Thread(target=call, name=f"integration-{route.function_id}", daemon=True).start()
        if not finished.wait(route.integration_timeout_ms / 1000):
            LOG.warning(
                "%s (%s): no answer within the integration timeout (%d ms); the function runs on",
                route.function_id,
                route.route_key,
                route.integration_timeout_ms,
            )
            return _json_response(*_INTEGRATION_TIMEOUT)
        error = outcome.get("error")
        if isinstance(error, TooManyRequestsError):
            LOG.warning("%s (%s) throttled: %s (%s)", route.function_id, route.route_key, error, error.reason)
            return _json_response(*_INTERNAL)
        if error is not None:
            LOG.error("%s (%s) failed", route.function_id, route.route_key, exc_info=error)
            return _json_response(*_INTERNAL)
        try:
            return translate_result(outcome.get("result"))
        except InvalidResponseError:
            LOG.exception("%s (%s) returned what API Gateway cannot answer", route.function_id, route.route_key)
            return _json_response(*_INTERNAL)

    @staticmethod
    def _read_body(handler: _RequestHandler) -> bytes:
        if "chunked" in handler.headers.get("transfer-encoding", "").lower():
            return LocalHttpApi._read_chunked(handler)
        lengths = {value.strip() for value in handler.headers.get_all("content-length") or []}
        if not lengths:
            return b""
        if len(lengths) > 1 or not all(_CONTENT_LENGTH.fullmatch(value) for value in lengths):
            # RFC 9110 8.6: Content-Length = 1*DIGIT; a negative or non-numeric one cannot frame a body.
            raise _BadFramingError(f"Content-Length {sorted(lengths)!r} is not one non-negative integer")
        length = int(lengths.pop())
        if length > MAX_BODY_BYTES:
            raise _BodyTooLargeError
        return handler.rfile.read(length) if length else b""

    @staticmethod
    def _read_chunked(handler: _RequestHandler) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = handler.rfile.readline(1024).split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", line):
                raise _BadFramingError(f"chunk size {line[:20]!r} is not hexadecimal")
            length = int(line, 16)
            if length == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            size += length
            if size > MAX_BODY_BYTES:
                raise _BodyTooLargeError
            chunks.append(handler.rfile.read(length))
            handler.rfile.readline()

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


class _BadFramingError(Exception):
    """The request's body cannot be framed (Content-Length or chunk sizes)."""


def _json_response(status: HTTPStatus, payload: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(int(status), [("content-type", "application/json")], json.dumps(payload).encode())

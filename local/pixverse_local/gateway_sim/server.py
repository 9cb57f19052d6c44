"""``GatewaySimulator``: its settings, ``start()``/``stop()``, and the HTTP server whose handler routes
each path to the module that answers it (``submit``, ``lifecycle`` for status, ``media``, ``control``)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

from pixverse_local.gateway_sim.admission import AdmissionBook
from pixverse_local.gateway_sim.control import control_delete, control_get, control_post
from pixverse_local.gateway_sim.httpio import BadRequest, JsonHandler, key_matches
from pixverse_local.gateway_sim.images import DOC_EXAMPLE_IMAGE_HOSTS
from pixverse_local.gateway_sim.lifecycle import STATUS_PATH_RE, GatewayState, Lifecycle, get_status
from pixverse_local.gateway_sim.media import MEDIA_PATH_RE, serve_media
from pixverse_local.gateway_sim.submit import SUBMIT_PATH_RE, submit
from pixverse_local.gateway_sim.webhooks import CallbackSender

__all__ = ["GatewaySimulator"]

logger = logging.getLogger(__name__)

_STOP_DEADLINE_SECONDS: Final = 1.5
# How long stop() waits for a callback already on the wire (it cannot be interrupted, only abandoned).
_STOP_CALLBACK_GRACE_SECONDS: Final = 0.3
_HANDLER_IDLE_TIMEOUT_SECONDS: Final = 60.0


class GatewaySimulator:
    """An in-process HTTP server that behaves like the Pixazo gateway for the PixVerse models."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str,
        allow_http_webhooks_on_loopback: bool = False,
        queue_seconds: float = 0.2,
        processing_seconds: float = 0.6,
        poll_interval_seconds: float = 0.2,
        media_size: int | None = None,
        callback_timeout_seconds: float = 5.0,
        max_in_flight: int | None = None,
        retry_after_seconds: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        presumed_image_hosts: frozenset[str] = DOC_EXAMPLE_IMAGE_HOSTS,
    ) -> None:
        """Configure the simulator; nothing listens until ``start()``.

        ``max_in_flight`` admits only that many requests at once (QUEUED or PROCESSING) and answers
        429 beyond it, with ``Retry-After: retry_after_seconds`` if given (see ``admission``); ``clock``
        is the monotonic clock the request timings run on (tests move it by hand);
        ``presumed_image_hosts``: the image_url hosts taken to serve an image without a fetch
        (images.py: every other host but loopback fails the request)."""
        if not api_key:
            raise ValueError("api_key must not be empty")
        if min(queue_seconds, processing_seconds) < 0 or poll_interval_seconds <= 0:
            raise ValueError("timings must be >= 0 and poll_interval_seconds > 0")
        if (media_size is not None and media_size < 0) or callback_timeout_seconds <= 0:
            raise ValueError("media_size must be >= 0 and callback_timeout_seconds > 0")
        self._bind_host = host
        self._port = port
        self._api_key = api_key.encode()
        #: Whether ``X-Webhook-URL`` may be plain http:// to a loopback host (the local stack's API).
        self.allow_http_webhooks_on_loopback = allow_http_webhooks_on_loopback
        try:
            admission = AdmissionBook(max_in_flight, retry_after_seconds)
        except BadRequest as exc:
            raise ValueError(str(exc)) from None
        #: Requests, faults and counters, shared by the routes and the worker threads.
        self.state = GatewayState(admission)
        self._callbacks = CallbackSender(self.state, timeout_seconds=callback_timeout_seconds)
        #: Accepts submits and moves each request through its statuses.
        self.lifecycle = Lifecycle(
            self.state,
            queue_seconds=queue_seconds,
            processing_seconds=processing_seconds,
            poll_interval_seconds=poll_interval_seconds,
            media_size=media_size,
            send=self._callbacks.enqueue,
            clock=clock,
            presumed_image_hosts=presumed_image_hosts,
        )

        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._url = ""

    def start(self) -> str:
        """Start the HTTP server, the lifecycle worker and the callback senders; return the base URL."""
        with self._lifecycle_lock:
            if self._started:
                raise RuntimeError("GatewaySimulator can only be started once")
            self._started = True
        server_class = _Server6 if ":" in self._bind_host else _Server
        self._server = server_class((self._bind_host, self._port), self)
        port = int(self._server.server_address[1])
        connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._bind_host, self._bind_host)  # noqa: S104
        host_part = f"[{connect_host}]" if ":" in connect_host else connect_host
        self.state.media_host = f"{host_part}:{port}"
        self._url = f"http://{self.state.media_host}"
        delivery_threads = self._callbacks.open()
        server = self._server
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-http", daemon=True),
            threading.Thread(target=self.lifecycle.run, name="sim-lifecycle", daemon=True),
            *delivery_threads,
        ]
        for thread in self._threads:
            thread.start()
        logger.info("gateway simulator listening", extra={"url": self._url})
        return self._url

    def stop(self) -> None:
        """Stop serving, abandon pending callbacks and join the threads; returns within about a second.

        A callback already waiting on a slow receiver gets a short grace, then its (daemon) thread is left
        to end on its own: it makes no further attempt once the simulator is stopped.
        """
        with self._lifecycle_lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
        self.state.stop.set()
        deadline = time.monotonic() + _STOP_DEADLINE_SECONDS
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
        self._callbacks.release_workers()
        service_threads, delivery_threads = self._threads[:2], self._threads[2:]
        for thread in service_threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        grace_deadline = min(deadline, time.monotonic() + _STOP_CALLBACK_GRACE_SECONDS)
        for thread in delivery_threads:
            thread.join(timeout=max(0.0, grace_deadline - time.monotonic()))
        lingering = [thread.name for thread in self._threads if thread.is_alive()]
        if lingering:
            # Only a callback blocked in a slow receiver can linger; it is a daemon and gives up alone.
            logger.debug("simulator threads still finishing", extra={"threads": lingering})
        self._callbacks.close()
        logger.info("gateway simulator stopped")

    def __enter__(self) -> GatewaySimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the gateway, e.g. ``http://127.0.0.1:PORT`` (empty before ``start()``)."""
        return self._url

    @property
    def media_host(self) -> str:
        """``host:port`` that media URLs point at (for an allowed-media-hosts setting)."""
        return self.state.media_host

    def check_key(self, supplied: str | None) -> bool:
        """Whether ``supplied`` is the gateway key this simulator expects."""
        return key_matches(supplied, self._api_key)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops bursts of connects, which then wait a 1 s SYN retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: GatewaySimulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open client connection, waking handler threads blocked on them."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(JsonHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PixazoGatewaySimulator/1.0"
    timeout = _HANDLER_IDLE_TIMEOUT_SECONDS
    # Headers and body go out in separate writes; Nagle + delayed ACK would stall each answer ~40 ms.
    disable_nagle_algorithm = True

    @property
    def _sim(self) -> GatewaySimulator:
        return cast(_Server, self.server).simulator

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).track(self.connection, open_=True)

    def finish(self) -> None:
        cast(_Server, self.server).track(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s", format % args)

    def _path(self) -> str:
        return unquote(urlsplit(self.path).path)

    def _dispatch(self, route: Callable[[], None]) -> None:
        try:
            route()
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            self.close_connection = True
            logger.debug("client went away", extra={"error": repr(exc)})
        except Exception:
            logger.exception("simulator handler failed", extra={"path": self.path})
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_error_body(500, "Internal Server Error", "simulator failure")

    def do_GET(self) -> None:
        """Status, media and control reads."""
        self._dispatch(self._route_get)

    def do_HEAD(self) -> None:
        """Media metadata without the body."""
        self._dispatch(self._route_get)

    def do_POST(self) -> None:
        """Submits and control writes."""
        self._dispatch(self._route_post)

    def do_DELETE(self) -> None:
        """Control: clear faults."""
        self._dispatch(self._route_delete)

    def _route_get(self) -> None:
        path = self._path()
        if match := STATUS_PATH_RE.match(path):
            get_status(self, self._sim, match.group(1))
        elif match := MEDIA_PATH_RE.match(path):
            serve_media(self, self._sim.state, match.group(1), int(match.group(2)))
        elif path.startswith("/_sim/"):
            control_get(self, self._sim, path)
        else:
            self.not_found()

    def _route_post(self) -> None:
        body = self.read_body()
        if body is None:
            return
        path = self._path()
        if match := SUBMIT_PATH_RE.match(path):
            submit(self, self._sim, match.group(1), match.group(2), body)
        elif path.startswith("/_sim/"):
            control_post(self, self._sim, path, body)
        else:
            self.not_found()

    def _route_delete(self) -> None:
        body = self.read_body()
        if body is None:
            return
        path = self._path()
        if path.startswith("/_sim/"):
            control_delete(self, self._sim, path)
        else:
            self.not_found()

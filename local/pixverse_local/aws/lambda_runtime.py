"""Lambda invocation as AWS runs it: containers, the function's timeout, the response size, concurrency.

A :class:`LocalFunction` is one template function loaded from its CodeUri and Handler. Every caller
(the local HTTP API, the SQS pollers, the schedules) invokes it through :meth:`LocalFunction.invoke`,
which fails the invocation where Lambda fails it:

* **Timeout.** The handler runs in a worker thread; at the function's ``Timeout`` (template.yaml,
  1-900 s, SAM's default 3 s) the invocation fails with Lambda's ``Sandbox.Timedout`` error, "Task
  timed out after N.00 seconds" (:class:`FunctionTimeoutError`), and the execution environment is
  thrown away: the next invocation is a cold start, as after a timeout on AWS.
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html and
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html (a timeout resets the
  environment). A thread cannot be killed, so at the deadline the worker gets an asynchronous
  :class:`TaskTimedOut` (a ``BaseException``: ``except Exception`` in product code cannot swallow
  it, as nothing in the function survives a real timeout). Local limits of that emulation: the
  exception lands when the thread next runs Python code (a blocking C call, e.g. a socket read,
  finishes first) and threads the handler started keep running until they end.
* **Response size.** The result is serialised as Lambda's Python 3.12+ runtime does (JSON with
  non-ASCII characters unescaped, a Decimal as a number: awslambdaric's
  ``lambda_runtime_marshaller``); over 6,291,556 bytes the invocation fails with
  ``Function.ResponseSizeTooLarge`` (:class:`ResponseSizeTooLargeError`), a result that is not
  JSON with ``Runtime.MarshalError``. The caller gets the result as it went through JSON.
  https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html ("Invocation payload
  (request and response): 6 MB each for request and response (synchronous)"; the error names the
  exact 6,291,556 bytes).
* **Concurrency.** An :class:`AccountConcurrency` holds the account's concurrent-executions quota
  and the functions' ``ReservedConcurrentExecutions``: a function with a reservation runs at most
  that many at once, the others share what is not reserved. Over the limit an invocation is
  throttled before it starts: :class:`TooManyRequestsError` (Lambda's 429
  ``TooManyRequestsException``, reason ``ReservedFunctionConcurrentInvocationLimitExceeded`` or
  ``ConcurrentInvocationLimitExceeded``).
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html and
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html

* **Logs.** Each container is an execution environment with its own Powertools logger keys and
  cold start (:mod:`pixverse_local.aws.lambda_logs`): a line names the function and invocation that
  logged it, as in CloudWatch, though every function shares one process here.

Settings (environment of the local stack):

* ``LOCAL_ACCOUNT_CONCURRENCY``: the account's Lambda "Concurrent executions" quota, default 1000
  (AWS's default; new accounts may get as few as 10). Tests set it small. Provisioning refuses
  reservations that leave fewer than 100 unreserved executions, as ``PutFunctionConcurrency``
  does (see :func:`pixverse_local.aws.provision.check_reserved_concurrency`).

Local deviations, on purpose: a function keeps at most ``max_containers`` (16) execution
environments and queues invocations beyond them (Lambda would start more); Lambda's burst scaling
rate and the init phase's own 10 s limit are not emulated.
"""

from __future__ import annotations

import ctypes
import decimal
import heapq
import importlib.util
import itertools
import json
import logging
import queue
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pixverse_local.aws.client_hooks import acting_as
from pixverse_local.aws.lambda_logs import EnvironmentLogs
from pixverse_local.aws.template import FunctionSpec
from pixverse_local.errors import LocalStackError

LOG = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]

ACCOUNT_CONCURRENCY_ENV = "LOCAL_ACCOUNT_CONCURRENCY"
# Lambda's default "Concurrent executions" quota per account and Region.
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
DEFAULT_ACCOUNT_CONCURRENCY = 1000
# PutFunctionConcurrency: "you can reserve concurrency for as many functions as you like, as long as
# you leave at least 100 simultaneous executions unreserved".
# https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html
MINIMUM_UNRESERVED_CONCURRENCY = 100
# The synchronous response limit as Lambda enforces it ("Response payload size exceeded maximum
# allowed payload size (6291556 bytes)"): the 6 MB of the quotas page.
MAX_SYNC_RESPONSE_BYTES = 6_291_556
DEFAULT_MAX_CONTAINERS = 16


# ------------------------------------------------------------------------------------------ errors
class TaskTimedOut(BaseException):
    """Raised asynchronously inside a handler whose invocation reached the function's timeout.

    A BaseException so that product code's ``except Exception`` cannot catch it and carry on: on
    AWS nothing of the function runs after its timeout."""


class LambdaInvocationError(Exception):
    """An invocation Lambda failed or refused; ``error_type`` is Lambda's name for the failure."""

    error_type = "Unhandled"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class FunctionTimeoutError(LambdaInvocationError):
    """The function ran past its Timeout (Lambda's ``Sandbox.Timedout``)."""

    error_type = "Sandbox.Timedout"


class ResponseSizeTooLargeError(LambdaInvocationError):
    """The function's result serialised to more than Lambda's synchronous payload limit."""

    error_type = "Function.ResponseSizeTooLarge"


class MarshalError(LambdaInvocationError):
    """The function's result is not JSON (Lambda's Python runtime cannot marshal it)."""

    error_type = "Runtime.MarshalError"


class TooManyRequestsError(LambdaInvocationError):
    """Lambda throttled the invocation: no concurrency left for the function (HTTP 429)."""

    error_type = "TooManyRequestsException"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------------ context
@dataclass
class LambdaContext:
    """The fields of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_seconds: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# ------------------------------------------------------------------------------------------ concurrency
def account_concurrency_setting(env: Mapping[str, str]) -> int:
    """``LOCAL_ACCOUNT_CONCURRENCY`` from ``env`` (default 1000), refused unless a positive integer."""
    raw = (env.get(ACCOUNT_CONCURRENCY_ENV) or "").strip()
    if not raw:
        return DEFAULT_ACCOUNT_CONCURRENCY
    if not raw.isdigit() or int(raw) < 1:
        raise LocalStackError(
            f"{ACCOUNT_CONCURRENCY_ENV} must be a whole number of concurrent executions (Lambda's account "
            f"quota) of at least 1, got {raw!r}"
        )
    return int(raw)


class AccountConcurrency:
    """Lambda's concurrent executions in one account and Region: the quota, reservations, what runs.

    A function with reserved concurrency has that many executions to itself and no more; every
    other function draws from the unreserved rest of the quota."""

    def __init__(self, limit: int = DEFAULT_ACCOUNT_CONCURRENCY, reserved: Mapping[str, int] | None = None) -> None:
        self.limit = limit
        self._reserved: dict[str, int] = dict(reserved or {})
        self._running: dict[str, int] = {}
        self._unreserved_running = 0
        self._lock = threading.Lock()

    def reserve(self, function_id: str, executions: int) -> None:
        """Give ``function_id`` its reserved concurrency (checked against the quota by provisioning)."""
        with self._lock:
            self._reserved[function_id] = executions

    @property
    def unreserved_limit(self) -> int:
        return self.limit - sum(self._reserved.values())

    def acquire(self, function_id: str) -> None:
        """Count one more execution of ``function_id``, or raise :class:`TooManyRequestsError`."""
        with self._lock:
            reserved = self._reserved.get(function_id)
            if reserved is not None:
                if self._running.get(function_id, 0) >= reserved:
                    raise TooManyRequestsError("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded")
            elif self._unreserved_running >= self.limit - sum(self._reserved.values()):
                raise TooManyRequestsError("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
            else:
                self._unreserved_running += 1
            self._running[function_id] = self._running.get(function_id, 0) + 1

    def release(self, function_id: str) -> None:
        """One execution of ``function_id`` ended."""
        with self._lock:
            self._running[function_id] -= 1
            if function_id not in self._reserved:
                self._unreserved_running -= 1

    def running(self, function_id: str) -> int:
        """Executions of ``function_id`` counted right now."""
        with self._lock:
            return self._running.get(function_id, 0)


# ------------------------------------------------------------------------------------------ payload
def _decimal_as_number(value: Any) -> Any:
    # Lambda's Python runtime (awslambdaric) writes a Decimal in a result as a JSON number.
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def marshal_response(result: Any) -> Any:
    """The result as the caller receives it from Lambda: through JSON, within the payload limit."""
    try:
        # ensure_ascii=False: the python3.12 and python3.13 runtimes send non-ASCII text unescaped
        # (awslambdaric lambda_runtime_marshaller.Encoder), so it counts its UTF-8 bytes.
        payload = json.dumps(result, ensure_ascii=False, default=_decimal_as_number)
    except (TypeError, ValueError) as exc:
        raise MarshalError(f"Unable to marshal response: {exc}") from None
    size = len(payload.encode("utf-8"))
    if size > MAX_SYNC_RESPONSE_BYTES:
        raise ResponseSizeTooLargeError(
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            f"({MAX_SYNC_RESPONSE_BYTES} bytes)."
        )
    return json.loads(payload)


# ------------------------------------------------------------------------------------------ invocation
def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """Schedule ``exception`` in another thread (None: clear one still pending)."""
    argument = None if exception is None else ctypes.py_object(exception)  # None is passed as NULL
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), argument)


class _Watchdog:
    """One thread that calls each invocation's expiry at its deadline (a Timer per invocation cost
    a thread start, ~0.2 ms, on every warm invocation)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, callback: Callable[[], None]) -> list[Callable[[], None] | None]:
        """Call ``callback`` in ``delay`` seconds; the returned handle cancels it (:meth:`cancel`)."""
        handle: list[Callable[[], None] | None] = [callback]
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambda-timeouts", daemon=True)
                self._thread.start()
            if self._heap[0][2] is handle:  # the earliest deadline now: the thread must wait less
                self._condition.notify()
        return handle

    @staticmethod
    def cancel(handle: list[Callable[[], None] | None]) -> None:
        handle[0] = None

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap or self._heap[0][2][0] is None:
                    if self._heap:
                        heapq.heappop(self._heap)  # cancelled
                        continue
                    self._condition.wait()
                deadline, _, handle = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._heap)
            callback = handle[0]
            if callback is not None:
                try:
                    callback()
                except Exception:  # one expiry must not stop the others
                    LOG.exception("stopping a timed-out invocation failed")


_WATCHDOG = _Watchdog()
_RUNNING, _DONE, _TIMED_OUT = "running", "done", "timed out"


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    stopped: bool = False


@dataclass(eq=False)
class Container:
    """One execution environment of a function: its import of the handler module, and its logger
    state (:class:`~pixverse_local.aws.lambda_logs.EnvironmentLogs`), both kept across warm starts."""

    handler: Handler
    logs: EnvironmentLogs


class Invocation:
    """One invocation in flight: :meth:`wait` for it with a bound, :meth:`result` for its outcome."""

    def __init__(self, function: LocalFunction, container: Container, event: Any, context: LambdaContext) -> None:
        self._function = function
        self._container = container
        self._handler = container.handler
        self._event = event
        self.context = context
        self._lock = threading.Lock()
        self._state = _RUNNING
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._stop_delivered = False
        self._thread = threading.Thread(
            target=self._run, name=f"lambda-{function.spec.logical_id}-{context.aws_request_id[:8]}", daemon=True
        )
        self._deadline: list[Callable[[], None] | None] = [None]

    def _start(self) -> None:
        # The deadline first: a handler that ends at once must find it to cancel.
        self._deadline = _WATCHDOG.schedule(self.context.timeout_seconds, self._expire)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the invocation ended (succeeded, failed or timed out) within ``timeout`` seconds."""
        return self._done.wait(timeout)

    def result(self) -> Any:
        """Wait for the end; return the function's result or raise why the invocation failed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value

    # -- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        outcome: _Outcome | None = None
        # The timeout may land anywhere, once, including after the handler returned: every step
        # after it is repeatable, so the loop absorbs the exception wherever it lands.
        while True:
            try:
                if outcome is None:
                    outcome = self._call()
                self._finish(outcome)
                return
            except TaskTimedOut:
                self._stop_delivered = True
                if outcome is None:
                    outcome = _Outcome(stopped=True)

    def _call(self) -> _Outcome:
        try:
            with self._container.logs.active(), acting_as(self._function.spec.logical_id):
                value = self._handler(self._event, self.context)
            return _Outcome(value=marshal_response(value))
        except TaskTimedOut:
            raise
        except BaseException as exc:  # any failure of the function is the invocation's
            return _Outcome(error=exc)

    def _finish(self, outcome: _Outcome) -> None:
        with self._lock:
            timed_out = self._state == _TIMED_OUT
            if not timed_out:
                self._state = _DONE
                self._value, self._error = outcome.value, outcome.error
        if timed_out:
            if not self._stop_delivered:
                _raise_in_thread(threading.get_ident(), None)  # the handler ended before it landed
                self._stop_delivered = True
            return
        _WATCHDOG.cancel(self._deadline)
        self._function._release(self._container, keep=True)
        self._done.set()

    def _expire(self) -> None:
        with self._lock:
            if self._state != _RUNNING:
                return
            self._state = _TIMED_OUT
            timeout = self.context.timeout_seconds
            self._error = FunctionTimeoutError(
                f"RequestId: {self.context.aws_request_id} Error: Task timed out after {timeout:.2f} seconds"
            )
            if self._thread.ident is not None:
                _raise_in_thread(self._thread.ident, TaskTimedOut)
        LOG.warning("%s: %s", self._function.spec.logical_id, self._error)
        # The environment is reset and its concurrency freed at the deadline, as on AWS.
        self._function._release(self._container, keep=False)
        self._done.set()


# ------------------------------------------------------------------------------------------ functions
_module_counter = 0
_import_lock = threading.Lock()


class LocalFunction:
    """A template function loaded from its CodeUri and Handler, invokable with an event.

    Like Lambda, it runs each invocation in a "container" that serves one invocation at a
    time: a separate import of the handler module, with its own module-level state
    (Powertools resolver and batch processor, clients) and its own logger keys
    (:mod:`pixverse_local.aws.lambda_logs`). Concurrent invocations get separate
    containers, up to ``max_containers``; idle ones are reused (warm starts); a container whose
    invocation timed out is dropped."""

    def __init__(
        self,
        spec: FunctionSpec,
        container: Container,
        *,
        region: str,
        account_id: str,
        max_containers: int = DEFAULT_MAX_CONTAINERS,
        concurrency: AccountConcurrency | None = None,
    ):
        self.spec = spec
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{spec.name}"
        self._idle: queue.LifoQueue[Container] = queue.LifoQueue()
        self._idle.put(container)
        self._containers = 1
        self._max = max(1, max_containers)
        self._lock = threading.Lock()
        self.concurrency = concurrency if concurrency is not None else AccountConcurrency()
        if spec.reserved_concurrency is not None:
            self.concurrency.reserve(spec.logical_id, spec.reserved_concurrency)

    @classmethod
    def load(
        cls,
        spec: FunctionSpec,
        *,
        region: str,
        account_id: str,
        max_containers: int = DEFAULT_MAX_CONTAINERS,
        concurrency: AccountConcurrency | None = None,
    ) -> LocalFunction:
        """Load the first container (a cold start that surfaces import errors at once)."""
        return cls(
            spec,
            cls._load_container(spec),
            region=region,
            account_id=account_id,
            max_containers=max_containers,
            concurrency=concurrency,
        )

    @classmethod
    def _load_container(cls, spec: FunctionSpec) -> Container:
        """A new execution environment: the handler imported with the environment's logger state
        active, so what the module logs or appends at import belongs to it, as its init phase would."""
        logs = EnvironmentLogs()
        with logs.active():
            return Container(cls._load_handler(spec), logs)

    @staticmethod
    def _load_handler(spec: FunctionSpec) -> Handler:
        """Import ``<CodeUri>/<module>.py`` under a unique module name and find the handler in it.

        Every function's module is called ``app``; sibling modules of the CodeUri are importable while
        the handler module loads and are then removed from ``sys.modules`` so the next function's
        siblings of the same name do not collide.
        """
        global _module_counter  # noqa: PLW0603 - module names must stay unique per process
        module_path, _, attribute = spec.handler.rpartition(".")
        if not module_path or not attribute:
            raise LocalStackError(f"{spec.logical_id}: Handler {spec.handler!r} is not <module>.<function>")
        source = spec.code_uri.joinpath(*module_path.split(".")).with_suffix(".py")
        if not source.is_file():
            raise LocalStackError(f"{spec.logical_id}: handler module {source} does not exist")
        with _import_lock:
            _module_counter += 1
            name = f"_pixverse_local_fn_{spec.logical_id}_{_module_counter}"
            before = set(sys.modules)
            sys.path.insert(0, str(spec.code_uri))
            try:
                module_spec = importlib.util.spec_from_file_location(name, source)
                if module_spec is None or module_spec.loader is None:
                    raise LocalStackError(f"{spec.logical_id}: cannot import {source}")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                with acting_as(spec.logical_id):
                    module_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(spec.code_uri))
                for added in set(sys.modules) - before - {name}:
                    if is_module_under(sys.modules[added], spec.code_uri):
                        del sys.modules[added]
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise LocalStackError(f"{spec.logical_id}: {source} has no callable {attribute!r}")
        return cast(Handler, handler)

    @property
    def containers(self) -> int:
        """How many containers (separate imports) this function has now."""
        return self._containers

    def _acquire(self) -> Container:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._containers < self._max
            if grow:
                self._containers += 1
        if grow:
            try:
                return self._load_container(self.spec)
            except BaseException:
                with self._lock:
                    self._containers -= 1
                raise
        return self._idle.get()

    def _release(self, container: Container, *, keep: bool) -> None:
        """An invocation ended: free its concurrency; keep its container warm, or drop it."""
        self.concurrency.release(self.spec.logical_id)
        if keep:
            self._idle.put(container)
        else:
            with self._lock:
                self._containers -= 1

    def start(self, event: Any) -> Invocation:
        """Begin an invocation (throttled at once when no concurrency is left); see :class:`Invocation`."""
        self.concurrency.acquire(self.spec.logical_id)
        try:
            container = self._acquire()
        except BaseException:
            self.concurrency.release(self.spec.logical_id)
            raise
        context = LambdaContext(
            function_name=self.spec.name,
            memory_limit_in_mb=self.spec.memory_size,
            invoked_function_arn=self.arn,
            aws_request_id=str(uuid.uuid4()),
            timeout_seconds=self.spec.timeout,
        )
        invocation = Invocation(self, container, event, context)
        invocation._start()
        return invocation

    def invoke(self, event: Any) -> Any:
        """A synchronous invocation (``RequestResponse``): the result, or the error Lambda would report."""
        return self.start(event).result()


def is_module_under(module: types.ModuleType | None, directory: Path) -> bool:
    """Whether ``module`` was loaded from a file under ``directory``."""
    location = getattr(module, "__file__", None)
    return bool(location) and Path(str(location)).resolve().is_relative_to(directory)

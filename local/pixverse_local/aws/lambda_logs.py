"""CloudWatch Logs as each function writes them: the logger's keys belong to one execution environment.

On AWS every execution environment of a function is its own process, so the Powertools Logger's
keys (``function_name``, ``cold_start``, ``function_request_id``, ``correlation_id``, and what the
code appends, such as ``job_id``) are the keys of the invocation that logs the line; they last from
one warm invocation to the next of that environment and ``clear_state=True`` clears them there
alone. https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html

The local stack runs every function in one process, and Powertools keeps one formatter per service
name (a ``logging`` logger), whose ``log_format`` dict holds those keys: all the functions would
share it, so a line logged by the webhook would carry the submitter's name, and one function's
``clear_state`` would drop another's ``job_id``. Here each execution environment
(:class:`EnvironmentLogs`, one per container of :mod:`pixverse_local.aws.lambda_runtime`) holds
its own keys, found through a context variable that the runtime sets in the invocation's thread;
the product code runs unchanged, as it would on AWS.

* Threads an invocation starts (the reconciler's and the copier's pools) share their environment's
  keys, as threads share a process's memory on AWS; nothing else of the context is carried over
  (Powertools' ``thread_safe_append_keys`` stay per thread, as on Lambda's Python 3.13 runtime:
  https://docs.powertools.aws.dev/lambda/python/latest/core/logger/#thread-safe-keys).
* ``cold_start`` is true on each environment's first invocation (Powertools counts one per process).
* Lines logged outside any invocation (the stack's own threads) use the formatter's own keys.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.logging import logger as powertools_logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.shared import constants

_ACTIVE: ContextVar[EnvironmentLogs | None] = ContextVar("pixverse_local_environment_logs", default=None)
_install_lock = threading.Lock()
_installed = False


class EnvironmentLogs:
    """The logger state of one execution environment: its keys per formatter, and its cold start."""

    def __init__(self) -> None:
        self.log_formats: weakref.WeakKeyDictionary[LambdaPowertoolsFormatter, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self.cold = True

    @contextmanager
    def active(self) -> Iterator[None]:
        """Log with this environment's keys in the current thread (and the threads it starts)."""
        install()
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)


def _fresh_keys(formatter: LambdaPowertoolsFormatter) -> dict[str, Any]:
    # What a new process starts with: the formatter's keys before anything is appended (the same
    # as LambdaPowertoolsFormatter.__init__ and clear_state build).
    keys: dict[str, Any] = dict.fromkeys(formatter.log_record_order)
    keys.update(formatter.keys_combined)
    return keys


def _get_log_format(formatter: LambdaPowertoolsFormatter) -> dict[str, Any]:
    environment = _ACTIVE.get()
    if environment is None:
        return formatter.__dict__["log_format"]  # type: ignore[no-any-return]
    keys = environment.log_formats.get(formatter)
    if keys is None:
        keys = environment.log_formats[formatter] = _fresh_keys(formatter)
    return keys


def _set_log_format(formatter: LambdaPowertoolsFormatter, value: dict[str, Any]) -> None:
    environment = _ACTIVE.get()
    if environment is None:
        formatter.__dict__["log_format"] = value
        return
    if "log_format" not in formatter.__dict__:
        # The formatter's __init__ (its first Logger imported in an invocation's environment):
        # keep the fresh keys as its own too, for lines logged outside any invocation.
        formatter.__dict__["log_format"] = dict(value)
    environment.log_formats[formatter] = value


def _is_cold_start(original: Callable[[], bool]) -> Callable[[], bool]:
    def is_cold_start() -> bool:
        environment = _ACTIVE.get()
        if environment is None:
            return original()
        cold, environment.cold = environment.cold, False
        # Powertools reports no cold start under provisioned concurrency, which says so here.
        return cold and os.getenv(constants.LAMBDA_INITIALIZATION_TYPE) != "provisioned-concurrency"

    return is_cold_start


def _thread_start(original: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    # A new thread starts with an empty context on Python 3.13 (3.14 can inherit it): the threads
    # an invocation starts are given its environment, and only that, at their start.
    def start(thread: threading.Thread) -> None:
        environment = _ACTIVE.get()
        if environment is not None:
            run = thread.run

            def run_in_environment() -> None:
                _ACTIVE.set(environment)
                run()

            thread.run = run_in_environment  # type: ignore[method-assign]
        original(thread)

    return start


def install() -> None:
    """Give Powertools' formatter per-environment keys and cold starts (idempotent).

    ``log_format`` becomes a property of the formatter class: every read and write of the keys
    (``append_keys``, ``remove_keys``, ``clear_state``, formatting a line) goes through it."""
    global _installed  # noqa: PLW0603 - once per process
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        LambdaPowertoolsFormatter.log_format = property(_get_log_format, _set_log_format)  # type: ignore[assignment]
        powertools_logger._is_cold_start = _is_cold_start(powertools_logger._is_cold_start)
        threading.Thread.start = _thread_start(threading.Thread.start)  # type: ignore[method-assign,assignment]
        _installed = True

"""Test-only: narrows the local stack's LOCAL_AWS_FAULTS to the functions named in
LOCAL_AWS_FAULT_FUNCTIONS (comma-separated logical ids).

The local stack draws its injected faults per operation (``dynamodb.UpdateItem``), for every
function alike (pixverse_local/aws/client_hooks.py). test_least_privilege's throttled-webhook run
needs them on WebhookFunction and CallbackBufferFunction only: a copier whose DELIVERED write
fails twice keeps its 900 s copy lease, which would stall the run for reasons that are not the
callback buffer's. The stack's process finds this module through PYTHONPATH (Python imports
``sitecustomize`` at start-up), and its faults then apply only while a named function runs
(``client_hooks.current_function``, set around each invocation).

The lasting fix belongs in client_hooks.py (a ``Function:service.Operation=P`` entry form);
until then this shim keeps the change out of the local stack's code."""

from __future__ import annotations

import os

_FUNCTIONS = frozenset(n.strip() for n in os.environ.get("LOCAL_AWS_FAULT_FUNCTIONS", "").split(",") if n.strip())

if _FUNCTIONS:
    from typing import Any

    from pixverse_local.aws import client_hooks

    _should_fail = client_hooks.FaultInjector.should_fail

    def _should_fail_for_named_functions(self: Any, service: str, operation: str) -> bool:
        if client_hooks.current_function.get() not in _FUNCTIONS:
            return False
        return _should_fail(self, service, operation)

    client_hooks.FaultInjector.should_fail = _should_fail_for_named_functions  # type: ignore[method-assign]

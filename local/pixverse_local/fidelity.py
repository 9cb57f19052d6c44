"""Two guarantees of AWS the emulated pieces lack under concurrency, restored for the local stack.
Found by the reliability suite (tests/reliability), which measured both.

1. DynamoDB serializes the writes to an item; moto (5.2.x) checks a write's ConditionExpression and
   then applies it with no lock in between, so two concurrent conditional UpdateItems can both pass
   the same condition (measured: 328 QUEUED -> COMPLETED transitions for 320 jobs whose callbacks
   came three times at once). ``python -m pixverse_local.fidelity`` runs moto server with its
   DynamoDB writes under one lock.

2. Lambda runs one invocation per execution environment; the local stack runs each function's
   "containers" as threads of one process. Powertools' API resolver keeps the current event on its
   *class*, shared by every resolver in the process, so a handler could read another request's
   event (measured: two different POST /jobs answered with one job). ``event_per_resolver`` makes
   ``resolve`` set the event and context on the resolver *instance* (one per container) first.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


def atomic_dynamodb_writes() -> None:
    """Serialize moto's DynamoDB writes, as DynamoDB serializes the writes to an item."""
    from moto.dynamodb import models

    lock = threading.RLock()
    backend = models.DynamoDBBackend
    for name in _DYNAMODB_WRITES:
        original = getattr(backend, name, None)
        if original is None or getattr(original, "_serialized", False):
            continue

        def serialized(self: Any, *args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        serialized._serialized = True  # type: ignore[attr-defined]
        setattr(backend, name, serialized)


def event_per_resolver() -> None:
    """Keep each API resolver's current event on the instance, not on the shared class."""
    from aws_lambda_powertools.event_handler import api_gateway
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

    resolver = api_gateway.ApiGatewayResolver
    original = resolver.resolve
    if getattr(original, "_per_instance", False):
        return

    def resolve(self: Any, event: Any, context: Any) -> Any:
        raw = event.raw_event if isinstance(event, BaseProxyEvent) else event
        # Instance attributes shadow the class-level ones for every read through this resolver.
        self.current_event = self._to_proxy_event(raw)
        self.lambda_context = context
        return original(self, event, context)

    resolve._per_instance = True  # type: ignore[attr-defined]
    resolver.resolve = resolve  # type: ignore[method-assign]


def main() -> None:
    """moto server (same arguments as ``python -m moto.server``) with atomic DynamoDB writes."""
    atomic_dynamodb_writes()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()

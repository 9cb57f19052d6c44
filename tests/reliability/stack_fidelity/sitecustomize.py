"""Two guarantees of AWS that the local stack does not give under concurrency, restored for the
reliability suite's stacks (this directory is first on their PYTHONPATH, so every Python process they
start, the stack and its ``python -m moto.server``, imports this module at start-up). Nothing is
patched until the module concerned is imported.

1. DynamoDB serializes the writes to an item; moto (5.2.x) checks a write's ConditionExpression and
   then applies it with no lock in between, so under load two conditional UpdateItems can both pass
   the same condition. Measured on the local stack, 320 jobs with every final callback sent three
   times at once: 328 "QUEUED -> COMPLETED" transitions applied and 328 copy requests sent, where
   DynamoDB allows 320 (and with this patch: 320). Here the backend's writes take one lock.

2. Lambda runs one invocation per execution environment; the local stack runs every function's
   "containers" as threads of one process. Powertools' API resolver keeps the current event on its
   *class* (``BaseRouter.current_event = ...`` in ``ApiGatewayResolver.resolve``), shared by every
   resolver in the process, so a handler can read another request's event: measured, two POST
   /jobs with different bodies and Idempotency-Keys both answered 202 with one job (the second
   body was never submitted). Here ``resolve`` first sets the event and context on the resolver
   *instance* (one per container), which is where the handlers and Powertools' own routing and
   validation read them from.

Both are defects of the local stack, not of the pipeline; they belong fixed in pixverse_local (a lock
around moto's DynamoDB writes in its MotoServer, and an event per container)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_write_lock = threading.RLock()


def _serialized(original: Callable[..., Any]) -> Callable[..., Any]:
    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _write_lock:
            return original(self, *args, **kwargs)

    write.__name__ = getattr(original, "__name__", "write")
    write.__doc__ = original.__doc__
    return write


def _atomic_dynamodb_writes(module: ModuleType) -> None:
    backend = getattr(module, "DynamoDBBackend", None)
    for name in _DYNAMODB_WRITES if backend is not None else ():
        original = getattr(backend, name, None)
        if original is not None:
            setattr(backend, name, _serialized(original))


def _event_per_resolver(module: ModuleType) -> None:
    resolver = getattr(module, "ApiGatewayResolver", None)
    proxy_event = getattr(module, "BaseProxyEvent", None)
    if resolver is None or proxy_event is None:
        return
    original = resolver.resolve

    def resolve(self: Any, event: Any, context: Any) -> Any:
        raw = event.raw_event if isinstance(event, proxy_event) else event
        # Instance attributes shadow the class-level ones for every read through this resolver.
        self.current_event = self._to_proxy_event(raw)
        self.lambda_context = context
        return original(self, event, context)

    resolve.__doc__ = original.__doc__
    resolver.resolve = resolve


_PATCHES: Mapping[str, Callable[[ModuleType], None]] = {
    "moto.dynamodb.models": _atomic_dynamodb_writes,
    "aws_lambda_powertools.event_handler.api_gateway": _event_per_resolver,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        sys.meta_path.remove(self)  # find the real module without finding ourselves
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


sys.meta_path.insert(0, _PatchOnImport())

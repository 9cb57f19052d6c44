"""botocore hooks the local stack puts on the functions' AWS clients: a per-function record of
every AWS call (for the least-privilege test) and injected AWS faults (for the reliability suite).

A client belongs to the function whose container created it (module import, or a call during an
invocation); clients the local stack itself creates (provisioning, the SQS poller) are neither
recorded nor faulted. Attribution happens when a client is created, so calls the function makes
from its own worker threads (e.g. multipart part uploads) are attributed too.

Environment (read by the local stack):

* ``LOCAL_AWS_CALL_LOG=PATH``: append one JSON line ``{"function", "service", "operation",
  "parameters"}`` per call (service = the IAM prefix, e.g. ``dynamodb``, ``s3``; parameters = the
  names, never the values, of the API parameters the call was given: some decide the IAM actions
  it needs, e.g. PutObject with ``Tagging``), with ``"fault": true`` when the call was failed on
  purpose.
* ``LOCAL_AWS_FAULTS=service.Operation=P,...``: fail that operation with probability P (0-1)
  as if the SDK had given up: a ClientError (``ThrottlingException`` for DynamoDB,
  ``ServiceUnavailable`` otherwise) raised to the function. ``LOCAL_AWS_FAULT_SEED`` makes the
  sequence repeatable. Counts of injected faults are in ``FaultInjector.injected``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders

current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_function", default=None)

# IAM action prefixes where the endpoint prefix differs.
_IAM_PREFIX = {"email": "ses", "monitoring": "cloudwatch", "events": "events"}
# Where a call's parameter names wait (in botocore's per-call context) for its before-call record.
_PARAMETERS = "local_aws_call_parameters"


@contextlib.contextmanager
def acting_as(function_id: str) -> Iterator[None]:
    """Attribute the clients created (and calls made) inside the block to ``function_id``."""
    token = current_function.set(function_id)
    try:
        yield
    finally:
        current_function.reset(token)


class CallRecorder:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def record(
        self, function: str, service: str, operation: str, parameters: Sequence[str] = (), *, fault: bool = False
    ) -> None:
        entry: dict[str, Any] = {
            "function": function,
            "service": service,
            "operation": operation,
            "parameters": sorted(parameters),
        }
        if fault:
            entry["fault"] = True
        line = json.dumps(entry)
        with self._lock, self._path.open("a") as out:
            out.write(line + "\n")


class FaultInjector:
    """Fails function AWS calls on purpose, by operation, optionally only in one function:
    ``LOCAL_AWS_FAULTS=dynamodb.UpdateItem=0.1,WebhookFunction:sqs.SendMessage=0.5``."""

    def __init__(self, rates: Mapping[str, float], seed: int | None = None) -> None:
        # "service.Operation" (every function) or "Function:service.Operation" -> rate
        self._rates = dict(rates)
        self._random = random.Random(seed)  # noqa: S311 - a fault schedule, not a secret
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    @classmethod
    def parse(cls, spec: str, seed: int | None = None) -> FaultInjector:
        """``[Function:]service.Operation=P,...``; ValueError naming the bad entry."""
        rates: dict[str, float] = {}
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            name, _, raw = entry.partition("=")
            function, _, call = name.rpartition(":")
            service, _, operation = call.partition(".")
            try:
                rate = float(raw)
            except ValueError:
                rate = -1.0
            if not service or not operation or not 0 <= rate <= 1 or (function == "" and ":" in name):
                raise ValueError(
                    f"LOCAL_AWS_FAULTS entry {entry!r} is not [Function:]service.Operation=P with 0 <= P <= 1"
                )
            rates[f"{function}:{service}.{operation}" if function else f"{service}.{operation}"] = rate
        return cls(rates, seed)

    def should_fail(self, service: str, operation: str) -> bool:
        call = f"{service}.{operation}"
        # The function's own rate, if the spec names it, else the rate for every function.
        rate = self._rates.get(f"{current_function.get()}:{call}", self._rates.get(call, 0.0))
        if rate <= 0:
            return False
        with self._lock:
            fail = self._random.random() < rate
            if fail:
                self.injected[call] += 1
        return fail


def _fault_response(service: str) -> tuple[AWSResponse, dict[str, Any]]:
    code = "ThrottlingException" if service == "dynamodb" else "ServiceUnavailable"
    status = 400 if service == "dynamodb" else 503
    parsed = {
        "Error": {"Code": code, "Message": "fault injected by the local stack"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return AWSResponse("http://fault.local", status, HTTPHeaders(), None), parsed


def _note_parameters(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Keep the names of the parameters the caller gave (before botocore adds its own) for the record."""
    context[_PARAMETERS] = list(params)


class FunctionClientHooks:
    """Installs the hooks on boto3's default session, which the functions' clients come from."""

    def __init__(self, recorder: CallRecorder | None, faults: FaultInjector | None) -> None:
        self.recorder = recorder
        self.faults = faults

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FunctionClientHooks | None:
        log = env.get("LOCAL_AWS_CALL_LOG", "").strip()
        spec = env.get("LOCAL_AWS_FAULTS", "").strip()
        if not log and not spec:
            return None
        seed_text = env.get("LOCAL_AWS_FAULT_SEED", "").strip()
        return cls(
            CallRecorder(Path(log)) if log else None,
            FaultInjector.parse(spec, int(seed_text) if seed_text.isdigit() else None) if spec else None,
        )

    def install(self, session: boto3.session.Session | None = None) -> None:
        session = session or boto3._get_default_session()
        session.events.register("creating-client-class", self._attribute_new_client)

    def _attribute_new_client(self, class_attributes: dict[str, Any], base_classes: list[type], **_: Any) -> None:
        hooks = self

        class AttributedClient:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                function = current_function.get()
                if function is not None:
                    self.meta.events.register("provide-client-params", _note_parameters)  # type: ignore[attr-defined]
                    self.meta.events.register("before-call", hooks._before_call_for(function))  # type: ignore[attr-defined]

        base_classes.insert(0, AttributedClient)

    def _before_call_for(self, function: str) -> Any:
        def before_call(model: Any, context: Mapping[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            service_model = model.service_model
            prefix = service_model.signing_name or service_model.endpoint_prefix
            service = _IAM_PREFIX.get(prefix, prefix)
            fault = self.faults is not None and self.faults.should_fail(service, model.name)
            if self.recorder is not None:
                self.recorder.record(function, service, model.name, context.get(_PARAMETERS, ()), fault=fault)
            return _fault_response(service) if fault else None

        return before_call

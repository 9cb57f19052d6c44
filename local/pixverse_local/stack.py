"""The local stack: AWS emulator, resources, gateway simulator, HTTP API and event sources in one.

``LocalStack`` starts moto server in its own process (unless ``AWS_ENDPOINT_URL`` names an endpoint),
creates the template's resources there, starts the gateway simulator (unless ``PIXAZO_BASE_URL`` names
a gateway), loads every function of template.yaml from its CodeUri and Handler, and serves them
through the local HTTP API, the SQS pollers and the schedules::

    with LocalStack(template="template.yaml") as stack:
        httpx.post(f"{stack.api_url}/jobs", json=...)

Local deviations, on purpose:

* All functions share one process, hence one ``os.environ``: the union of their template variables
  is applied before any handler is imported (two functions giving one name different values is an
  error), and restored on stop.
* Each start is a cold start: the layer's modules are dropped from ``sys.modules`` so settings cached
  by an earlier import (an earlier stack or a test) are read again.
* moto server runs in its own session (Ctrl-C reaches only this process, which stops the pollers
  before moto) and, on Linux, dies with the thread that started it: start the stack from a thread
  that lives as long as the stack.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pixverse_local.aws.apigateway import LocalHttpApi
from pixverse_local.aws.client_hooks import FunctionClientHooks
from pixverse_local.aws.lambda_runtime import AccountConcurrency, account_concurrency_setting, is_module_under
from pixverse_local.aws.lambda_runtime import LocalFunction as LocalFunction  # noqa: PLC0414 - re-exported
from pixverse_local.aws.moto_server import event_per_resolver
from pixverse_local.aws.provision import BUCKET, QUEUE, TABLE, TOPIC, provision
from pixverse_local.aws.schedules import ScheduleError, Scheduler
from pixverse_local.aws.sqs_event_source import DEFAULT_WORKERS, SqsPoller
from pixverse_local.aws.template import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    Application,
    CfnTemplate,
    FunctionSpec,
    PhysicalResource,
    Resolver,
    read_application,
)
from pixverse_local.aws.timescale import TimeScaleError, time_scale_from
from pixverse_local.errors import LocalStackError as LocalStackError  # noqa: PLC0414 - re-exported

LOG = logging.getLogger(__name__)

DEFAULT_STACK_NAME = "pixverse-local"
DEFAULT_API_PORT = 3000
DEFAULT_API_KEY = "local-dev-key"
GATEWAY_KEY_PARAMETER = "GatewayApiKeySecretName"

# Variables the caller's environment may set to replace what template.yaml gives the functions.
PASS_THROUGH = (
    "PIXAZO_BASE_URL",
    "ALLOWED_MEDIA_HOSTS",
    "WEBHOOK_MODE",
    "WEBHOOK_BASE_URL",
    "RECONCILE_AFTER_SECONDS",
    "POWERTOOLS_LOG_LEVEL",
)


# ------------------------------------------------------------------------------------------ moto
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """moto server in its own process on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, time_scale: float = 1.0) -> None:
        self.host = host
        self.time_scale = time_scale  # SQS delays in the server (moto_server.py, timescale.py)
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Start the process and wait until it answers HTTP; return its URL."""
        # moto server with DynamoDB's per-item write serialization restored (see moto_server.py).
        command = [sys.executable, "-m", "pixverse_local.aws.moto_server", "-H", self.host, "-p", str(self.port)]
        command += ["--time-scale", repr(self.time_scale)]
        # Its own session: a terminal's Ctrl-C reaches only us, and we stop it after the pollers that
        # use it; the parent-death signal keeps it from outliving a killed parent (Linux).
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,  # noqa: PLW1509 - runs before any thread starts in the child
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalStackError(f"moto server exited with {self._process.returncode}: {self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310 - loopback
                    LOG.info("moto server ready on %s (pid %d)", self.url, self._process.pid)
                    return self.url
            except urllib.error.HTTPError:
                return self.url  # it answered
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise LocalStackError(f"moto server did not answer on {self.url} within {timeout}s: {self._tail()}")

    def stop(self) -> None:
        """Terminate the process and wait for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._log.close()

    def _tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace")


def _terminate_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the child may outlive a SIGKILLed parent
        pass


_PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------------------------------ functions
def _hook_kinds(hooks: FunctionClientHooks) -> set[str]:
    return {kind for kind, on in (("call log", hooks.recorder), ("faults", hooks.faults)) if on is not None}


def function_environment(functions: Mapping[str, FunctionSpec], overrides: Mapping[str, str]) -> dict[str, str]:
    """The union of every function's variables, with ``overrides`` on top.

    Functions share one process locally, so one name must mean one value; names in ``overrides`` are
    exempt because the local value replaces every function's.
    """
    union: dict[str, str] = {}
    owner: dict[str, str] = {}
    for logical_id, spec in functions.items():
        for name, value in spec.environment.items():
            if name in overrides:
                continue
            if name in union and union[name] != value:
                raise LocalStackError(
                    f"{owner[name]} and {logical_id} set {name} to different values "
                    f"({union[name]!r} vs {value!r}); functions share one process locally"
                )
            union[name] = value
            owner.setdefault(name, logical_id)
    return {**union, **overrides}


def _simulator_admission(env: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``SIM_MAX_IN_FLIGHT`` and ``SIM_RETRY_AFTER_SECONDS``: a simulated gateway that admits only N jobs
    at once, 429 beyond (gateway_sim/admission.py); ``ValueError`` naming a bad one."""
    from pixverse_local.gateway_sim.admission import admission_from_env  # the simulator loads only when used

    return admission_from_env(env)


# ------------------------------------------------------------------------------------------ stack
class LocalStack:
    """The whole pipeline on one machine. Use as a context manager or call start() / stop()."""

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        api_port: int | None = None,
        env: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        poller_workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.template_path = Path(template)
        self.stack_name = stack_name
        self._env = dict(os.environ if env is None else env)
        self._api_port = api_port if api_port is not None else int(self._env.get("LOCAL_API_PORT") or DEFAULT_API_PORT)
        self._parameter_overrides = dict(parameter_overrides or {})
        if self._env.get("INPUT_BUCKETS") and "InputBuckets" not in self._parameter_overrides:
            # INPUT_BUCKETS is the template's InputBuckets parameter, so that the functions' env and
            # their roles' s3:GetObject grants (tests/iam_support.py) name the same buckets.
            self._parameter_overrides["InputBuckets"] = self._env["INPUT_BUCKETS"].replace(" ", "")
        self._poller_workers = poller_workers

        self.api_url = ""
        self.aws_endpoint = ""
        self.gateway_url = ""
        self.region = DEFAULT_REGION
        self.account_id = DEFAULT_ACCOUNT_ID
        self.resources: dict[str, PhysicalResource] = {}
        self.application: Application | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.concurrency = AccountConcurrency()
        self.environment: dict[str, str] = {}

        self._moto: MotoServer | None = None
        self._simulator: Any = None
        self._api: LocalHttpApi | None = None
        self._pollers: list[SqsPoller] = []
        self._scheduler: Scheduler | None = None
        self.time_scale = 1.0  # LOCAL_TIME_SCALE, read at start (timescale.py)
        self._saved_environ: dict[str, str | None] = {}
        self._session: boto3.session.Session | None = None
        self._resolver: Resolver | None = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- start
    def start(self) -> LocalStack:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        env = self._env
        template = CfnTemplate.load(self.template_path, self._parameter_overrides)

        # AWS side: the endpoint, region and credentials the functions and boto3 will use.
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        try:
            self.time_scale = time_scale_from(env)
            # SIM_MAX_IN_FLIGHT / SIM_RETRY_AFTER_SECONDS, checked before anything starts.
            admission = _simulator_admission(env)
        except (TimeScaleError, ValueError) as exc:
            raise LocalStackError(str(exc)) from None
        if env.get("AWS_ENDPOINT_URL"):
            self.aws_endpoint = env["AWS_ENDPOINT_URL"].rstrip("/")
        else:
            self._moto = MotoServer(time_scale=self.time_scale)
            self.aws_endpoint = self._moto.start()
        self._session = boto3.session.Session(
            region_name=self.region,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or "testing",
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or "testing",
            aws_session_token=env.get("AWS_SESSION_TOKEN") if env.get("AWS_ACCESS_KEY_ID") else None,
        )
        self.account_id = self._account_id()

        resolver = Resolver(template, stack_name=self.stack_name, region=self.region, account_id=self.account_id)
        self._resolver = resolver
        api_key = env.get("PIXAZO_API_KEY") or DEFAULT_API_KEY
        key_secret_name = template.parameters.get(GATEWAY_KEY_PARAMETER)
        extra_secrets = {str(key_secret_name): api_key} if key_secret_name else {}
        self.concurrency = AccountConcurrency(account_concurrency_setting(env))
        self.resources = provision(
            template,
            resolver,
            session=self._session,
            endpoint_url=self.aws_endpoint,
            extra_secrets=extra_secrets,
            account_concurrency=self.concurrency.limit,
        )
        self._create_input_buckets(str(template.parameters.get("InputBuckets") or ""))
        self.application = application = read_application(template, resolver)

        media_host = self._start_gateway(api_key, admission)

        # The API binds first: its URL is the functions' WEBHOOK_BASE_URL.
        self._api = LocalHttpApi(application.routes, port=self._api_port, account_id=self.account_id)
        self.api_url = self._api.url

        self.environment = function_environment(application.functions, self._overrides(media_host))
        self._check_event_bus()
        self._apply_environ(self.environment)
        # One event per container, as in Lambda (see moto_server.py), before any handler is imported.
        event_per_resolver()
        hooks = FunctionClientHooks.from_env(self._env)
        if hooks is not None:
            # Before the first function import: its clients must be created with the hooks.
            hooks.install()
            LOG.info("AWS call hooks on the functions' clients: %s", ", ".join(sorted(_hook_kinds(hooks))))
        self._cold_start(application)
        self.functions = {
            lid: LocalFunction.load(spec, region=self.region, account_id=self.account_id, concurrency=self.concurrency)
            for lid, spec in application.functions.items()
        }
        invokers = {lid: fn.invoke for lid, fn in self.functions.items()}
        self._api.start(invokers)
        self._start_pollers(application)
        self._start_scheduler(application)

    def _start_gateway(self, api_key: str, admission: tuple[int | None, int | None]) -> str:
        """The simulator unless a real (or other) gateway is named; the host media comes from ("" if unknown)."""
        if self._env.get("PIXAZO_BASE_URL"):
            self.gateway_url = self._env["PIXAZO_BASE_URL"].rstrip("/")
            return ""
        from pixverse_local.gateway_sim import GatewaySimulator

        max_in_flight, retry_after = admission
        self._simulator = GatewaySimulator(
            host="127.0.0.1",
            port=0,
            api_key=api_key,
            allow_http_webhooks_on_loopback=True,
            max_in_flight=max_in_flight,
            retry_after_seconds=retry_after,
        )
        self.gateway_url = str(self._simulator.start()).rstrip("/")
        media_host = str(self._simulator.media_host)
        LOG.info("gateway simulator on %s (media from %s)", self.gateway_url, media_host)
        if max_in_flight is not None:
            LOG.info("gateway simulator admits %d jobs at once (SIM_MAX_IN_FLIGHT)", max_in_flight)
        return media_host

    def _create_input_buckets(self, buckets: str) -> None:
        """The InputBuckets (INPUT_BUCKETS) in the emulator: on AWS they are buckets the user already
        has, which the stack only reads; locally they start empty, for ``aws s3 cp`` or a test to fill."""
        if not buckets or self._moto is None:
            return  # another endpoint (AWS_ENDPOINT_URL) holds its own buckets
        assert self._session is not None
        s3 = self._session.client("s3", endpoint_url=self.aws_endpoint, region_name=self.region)
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in buckets.split(","):
            if bucket and bucket not in existing:
                s3.create_bucket(Bucket=bucket)
                LOG.info("input bucket %s created in the emulator (InputBuckets)", bucket)

    def _account_id(self) -> str:
        assert self._session is not None
        try:
            sts = self._session.client("sts", endpoint_url=self.aws_endpoint, region_name=self.region)
            return str(sts.get_caller_identity()["Account"])
        except Exception:  # an endpoint without STS: moto's default account
            LOG.debug("no STS at %s; using account %s", self.aws_endpoint, DEFAULT_ACCOUNT_ID)
            return DEFAULT_ACCOUNT_ID

    def _overrides(self, media_host: str) -> dict[str, str]:
        env = self._env
        overrides = {name: env[name] for name in PASS_THROUGH if env.get(name)}
        overrides.setdefault("PIXAZO_BASE_URL", self.gateway_url)
        if media_host:
            overrides.setdefault("ALLOWED_MEDIA_HOSTS", media_host)
        overrides.setdefault("WEBHOOK_BASE_URL", self.api_url)
        overrides["AWS_ENDPOINT_URL"] = self.aws_endpoint
        overrides["AWS_REGION"] = overrides["AWS_DEFAULT_REGION"] = self.region
        if not env.get("AWS_ACCESS_KEY_ID"):
            overrides["AWS_ACCESS_KEY_ID"] = "testing"
            overrides["AWS_SECRET_ACCESS_KEY"] = "testing"  # noqa: S105 - moto's dummy credentials
        # EMF metrics would flood the local log; set POWERTOOLS_METRICS_DISABLED=false to see them.
        overrides["POWERTOOLS_METRICS_DISABLED"] = env.get("POWERTOOLS_METRICS_DISABLED") or "true"
        return overrides

    def _check_event_bus(self) -> None:
        """The bus the functions put events on must exist, or every publish fails: the stack's own
        is provisioned; one the EventBusName parameter names must already be in the endpoint (moto
        server starts with only ``default``)."""
        name = self.environment.get("EVENT_BUS_NAME")
        if not name:
            return
        assert self._session is not None
        events = self._session.client("events", endpoint_url=self.aws_endpoint, region_name=self.region)
        try:
            events.describe_event_bus(Name=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            raise LocalStackError(
                f"EVENT_BUS_NAME {name!r} (the EventBusName parameter) names no event bus in {self.aws_endpoint}: "
                "leave EventBusName empty for the stack's own bus, or name one that exists there (default)"
            ) from None

    def _apply_environ(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            if name not in self._saved_environ:
                self._saved_environ[name] = os.environ.get(name)
            os.environ[name] = value

    def _cold_start(self, application: Application) -> None:
        """Make the layer importable and forget modules an earlier import loaded from it."""
        for layer in application.layer_paths.values():
            if str(layer) not in sys.path:
                sys.path.insert(0, str(layer))
            for name, module in list(sys.modules.items()):
                if is_module_under(module, layer):
                    del sys.modules[name]

    def _start_pollers(self, application: Application) -> None:
        assert self._session is not None
        # Few retries and short timeouts: a poller must notice a stop, not back off for seconds.
        sqs = self._session.client(
            "sqs",
            endpoint_url=self.aws_endpoint,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10),
        )
        # A failed message comes back after its visibility timeout (the queue's, or what the function
        # set), scaled by LOCAL_TIME_SCALE inside moto server: nothing to configure here.
        for event in application.sqs_events:
            if not event.enabled:
                continue
            queue = self.resources[event.queue_id]
            poller = SqsPoller(
                name=f"{event.function_id}.{event.event_id}",
                sqs_client=sqs,
                queue_url=queue.attributes["QueueUrl"],
                queue_arn=queue.attributes["Arn"],
                invoke=self.functions[event.function_id].invoke,
                batch_size=event.batch_size,
                report_batch_item_failures=event.report_batch_item_failures,
                region=self.region,
                # As Lambda: no more invocations at once than the mapping's MaximumConcurrency.
                workers=min(self._poller_workers, event.maximum_concurrency or self._poller_workers),
            )
            poller.start()
            self._pollers.append(poller)

    def _start_scheduler(self, application: Application) -> None:
        if not application.schedules:
            return
        # Each schedule follows its rate() times LOCAL_TIME_SCALE; LOCAL_RECONCILE_EVERY_SECONDS overrides.
        raw = self._env.get("LOCAL_RECONCILE_EVERY_SECONDS") or None
        try:
            self._scheduler = Scheduler(
                [(spec, self.functions[spec.function_id].invoke) for spec in application.schedules],
                interval_seconds=float(raw) if raw is not None else None,
                time_scale=self.time_scale,
                region=self.region,
                account_id=self.account_id,
                stack_name=self.stack_name,
            )
        except (ScheduleError, ValueError) as exc:
            detail = f"LOCAL_RECONCILE_EVERY_SECONDS={raw!r}: {exc}" if raw is not None else str(exc)
            raise LocalStackError(detail) from None
        self._scheduler.start()

    # -------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop everything this stack started, in reverse order; safe to call twice."""
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        for poller in self._pollers:
            poller.request_stop()
        for poller in self._pollers:
            poller.stop()
        self._pollers.clear()
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for name, previous in self._saved_environ.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        self._saved_environ.clear()

    # -------------------------------------------------------------------------------- facts
    def first(self, resource_type: str) -> PhysicalResource | None:
        """The first provisioned resource of a type, in template order."""
        return next((r for r in self.resources.values() if r.resource_type == resource_type), None)

    @property
    def event_queue(self) -> PhysicalResource | None:
        """The queue of the first SQS event source in template order (else the first queue): the
        copy queue, which template.yaml puts before the callback buffer's on purpose (the ready
        line's ``queue=``, which tests and the demo send copy requests to)."""
        if self.application is not None:
            for event in self.application.sqs_events:
                return self.resources[event.queue_id]
        return self.first(QUEUE)

    @property
    def dead_letter_queue(self) -> PhysicalResource | None:
        """The dead-letter queue the template's RedrivePolicy gives :attr:`event_queue`, if any."""
        queue = self.event_queue
        if queue is None or self._resolver is None:
            return None
        properties = self._resolver.template.resources[queue.logical_id].get("Properties") or {}
        policy = self._resolver.resolve(properties.get("RedrivePolicy") or {})
        if isinstance(policy, str):
            policy = json.loads(policy)
        target = policy.get("deadLetterTargetArn")
        return next((r for r in self.resources.values() if r.attributes.get("Arn") == target), None)

    @property
    def event_bus(self) -> str:
        """The EventBridge bus the functions put events on (their EVENT_BUS_NAME: the stack's own
        bus, or the one the EventBusName parameter names), "-" if none."""
        return self.environment.get("EVENT_BUS_NAME") or "-"

    def ready_line(self) -> str:
        """``ready: api=... aws=... gateway=... table=... bucket=... topic=... bus=... queue=... dlq=...``."""

        def ref(resource: PhysicalResource | None) -> str:
            return resource.ref if resource is not None else "-"

        return (
            f"ready: api={self.api_url} aws={self.aws_endpoint} gateway={self.gateway_url}"
            f" table={ref(self.first(TABLE))} bucket={ref(self.first(BUCKET))} topic={ref(self.first(TOPIC))}"
            f" bus={self.event_bus} queue={ref(self.event_queue)} dlq={ref(self.dead_letter_queue)}"
        )

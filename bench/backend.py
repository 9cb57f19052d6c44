"""The functions' backend for the cold-start and webhook benchmarks, with nothing of the local
stack's runtime in between: moto server (its own process) holding the resources template.yaml
defines, the gateway simulator (this process), a media origin (its own process), and for each
function the environment template.yaml gives it, pointed at those.

Also a Lambda-like import path: the layer's pinned requirements (the functions ship nothing
else) installed once into ``.venv/bench-lambda/`` with pip, so a
cold start imports what Lambda would, not the development extras of .venv (rich and click pulled
in by httpx's CLI, awscrt, pyOpenSSL) that would pad the floor as much as the function."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import ROOT, dummy_aws_env, moto_process, origin_process

LOG = logging.getLogger("bench")

STACK_NAME = "bench"
MODEL = "pixverse-v6-text-to-video"
OWNER = "arn:aws:iam::123456789012:user/bench"
MEDIA_BYTES = 1024 * 1024
GATEWAY_KEY = "bench-gateway-key"
FUNCTIONS = {
    # logical id -> (directory under functions/, clients it creates, whether it calls out over HTTP)
    "SubmitFunction": ("submit", ("secretsmanager", "s3", "dynamodb"), True),
    "WebhookFunction": ("webhook", ("dynamodb", "sqs", "secretsmanager"), False),
    "MediaCopyFunction": ("media_copy", ("s3", "dynamodb", "sns", "events"), True),
    "ReconcileFunction": ("reconcile", ("secretsmanager", "dynamodb", "sqs"), True),
}
LAMBDA_SITE = ROOT / ".venv" / "bench-lambda"
_REQUIREMENTS = {"layer": ROOT / "layers" / "shared" / "requirements.txt"}


@dataclass(frozen=True)
class LambdaSite:
    """Import paths like Lambda's: the function's directory, the layer's code and packages."""

    layer: Path | None
    note: str

    def pythonpath(self, function_dir: str) -> list[str]:
        paths = [str(ROOT / "functions" / function_dir), str(ROOT / "layers" / "shared" / "python")]
        if self.layer is not None:
            paths.append(str(self.layer))
        return paths

    @property
    def isolated(self) -> bool:
        return self.layer is not None


def lambda_site(*, install: bool = True) -> LambdaSite:
    """The Lambda-like package directories, installed with pip the first time (and again when
    a requirements file changes); the development venv when that is impossible (noted)."""
    paths: dict[str, Path] = {}
    for name, requirements in _REQUIREMENTS.items():
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
        target = LAMBDA_SITE / name
        stamp = target / ".bench-stamp"
        if not (stamp.is_file() and stamp.read_text() == digest):
            if not install:
                return LambdaSite(None, "development venv (Lambda-like packages not installed)")
            LOG.info("installing %s requirements into %s (once)", name, target)
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--upgrade",
                    "--target",
                    str(target),
                    "--requirement",
                    str(requirements),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                return LambdaSite(None, f"development venv (pip failed: {result.stderr.strip()[-300:]})")
            stamp.write_text(digest)
        paths[name] = target
    return LambdaSite(
        paths["layer"],
        "layers/shared/requirements.txt installed with pip "
        f"into {LAMBDA_SITE.relative_to(ROOT)}, run with python -S (no development packages)",
    )


@dataclass
class Backend:
    """What the functions talk to, and the environment each one gets."""

    endpoint: str
    gateway_url: str
    origin: str
    session: Any
    resources: dict[str, Any]
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    memory_mb: dict[str, int] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        return str(self.resources[logical_id].ref)

    def attribute(self, logical_id: str, name: str) -> str:
        return str(self.resources[logical_id].attributes[name])

    @property
    def table(self) -> str:
        return self.ref("JobsTable")

    @property
    def queue_url(self) -> str:
        return self.attribute("CopyQueue", "QueueUrl")

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)

    def signing_secret(self) -> str:
        arn = self.ref("WebhookSigningSecret")
        return str(self.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


@contextlib.contextmanager
def backend(*, overrides: Mapping[str, str] | None = None, processing_seconds: float = 0.6) -> Iterator[Backend]:
    """moto server with the template's resources, the gateway simulator and a media origin.
    ``processing_seconds``: how long the simulator keeps a request PROCESSING."""
    import boto3
    from pixverse_local.aws.provision import provision
    from pixverse_local.aws.template import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, CfnTemplate, Resolver, read_application
    from pixverse_local.gateway_sim import GatewaySimulator

    with moto_process() as endpoint, origin_process() as origin:
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
            region_name=DEFAULT_REGION,
        )
        template = CfnTemplate.load(ROOT / "template.yaml")
        resolver = Resolver(template, stack_name=STACK_NAME, region=DEFAULT_REGION, account_id=DEFAULT_ACCOUNT_ID)
        key_secret = str(template.parameters["GatewayApiKeySecretName"])
        resources = provision(
            template, resolver, session=session, endpoint_url=endpoint, extra_secrets={key_secret: GATEWAY_KEY}
        )
        application = read_application(template, resolver)
        simulator = GatewaySimulator(
            host="127.0.0.1",
            port=0,
            api_key=GATEWAY_KEY,
            allow_http_webhooks_on_loopback=True,
            processing_seconds=processing_seconds,
        )
        gateway_url = str(simulator.start()).rstrip("/")
        try:
            common = {
                **dummy_aws_env(endpoint),
                "PIXAZO_BASE_URL": gateway_url,
                "ALLOWED_MEDIA_HOSTS": origin,
                # Nothing listens there: a callback the simulator might send goes nowhere.
                "WEBHOOK_BASE_URL": "http://127.0.0.1:9",
                **(overrides or {}),
            }
            result = Backend(endpoint, gateway_url, origin, session, dict(resources))
            for logical_id, spec in application.functions.items():
                result.function_env[logical_id] = {
                    **spec.environment,
                    **{k: v for k, v in common.items() if k in spec.environment or k.startswith("AWS_")},
                }
                result.memory_mb[logical_id] = spec.memory_size
            yield result
        finally:
            simulator.stop()


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "events" / f"{name}.json").read_text())
    return loaded


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Jobs:
    """Job records put straight into the table, in the shape JobService writes them."""

    def __init__(self, be: Backend) -> None:
        from boto3.dynamodb.types import TypeSerializer

        self._be = be
        self._dynamodb = be.client("dynamodb")
        self._serializer = TypeSerializer()

    def put(self, status: str, *, request_id: str, created: datetime | None = None, **extra: Any) -> str:
        from pixverse_jobs.store import first_check_at, unfinished_key

        job_id = f"job_{uuid.uuid4().hex}"
        created_at = iso(created or datetime.now(UTC))
        record = {
            "job_id": job_id,
            "owner": OWNER,
            "model": MODEL,
            "input": {"prompt": "A lighthouse at dusk", "duration": 5},
            "gateway_defaults": {},
            "metadata": {"order": "bench"},
            "webhook_mode": "terminal",
            "status": status,
            "request_id": request_id,
            "created_at": created_at,
            "updated_at": created_at,
            "expires_at": int(time.time()) + 86400,
            "unfinished": unfinished_key(job_id),
            # Its first look by the reconciler, as JobStore.create sets it (ReconcileAfterSeconds' default).
            "check_at": first_check_at(created_at, 900),
            **extra,
        }
        item = {k: self._serializer.serialize(v) for k, v in record.items()}
        self._dynamodb.put_item(TableName=self._be.table, Item=item)
        return job_id

    def retire(self, job_id: str) -> None:
        """Off the unfinished index, so later reconciler runs do not see it."""
        self._dynamodb.update_item(
            TableName=self._be.table, Key={"job_id": {"S": job_id}}, UpdateExpression="REMOVE unfinished"
        )


def webhook_event(be: Backend, jobs: Jobs, secret: str, *, status: str = "COMPLETED") -> dict[str, Any]:
    """A QUEUED job in the table and the gateway's signed callback for it (HTTP API payload 2.0)."""
    from pixverse_jobs.signing import sign

    request_id = f"{MODEL}_{uuid.uuid4()}"
    job_id = jobs.put("QUEUED", request_id=request_id)
    event = copy.deepcopy(load_event("webhook_callback"))
    sig = sign(job_id, secret)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhooks/pixazo/{job_id}"
    event["pathParameters"] = {"job_id": job_id}
    event["rawQueryString"] = f"sig={sig}"
    event["queryStringParameters"] = {"sig": sig}
    event["body"] = json.dumps(
        {
            "request_id": request_id,
            "status": status,
            "model_id": MODEL,
            "error": None,
            "output": {"media_url": [f"http://{be.origin}/media/{MEDIA_BYTES}.mp4"], "media_type": "video/mp4"}
            if status == "COMPLETED"
            else None,
        }
    )
    return event

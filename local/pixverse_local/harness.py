"""Drive the local stack from outside, as a user would: start ``python -m pixverse_local``
in its own process, read its ``ready:`` line, subscribe a queue to the events topic (or point
an EventBridge rule at one), talk to the API over HTTP. Used by ``make demo`` and the
integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"DELIVERED", "SUBMIT_FAILED", "FAILED", "ERROR", "DELIVERY_FAILED", "CANCELLED"}


class StackError(RuntimeError):
    """The local stack did not start or answer as it should."""


@dataclass
class ReadyLine:
    """The fields of the stack's ``ready:`` line (``key=value`` pairs)."""

    values: dict[str, str]

    @classmethod
    def parse(cls, line: str) -> ReadyLine:
        if not line.startswith("ready:"):
            raise ValueError(f"not a ready line: {line!r}")
        pairs = (item.split("=", 1) for item in line[len("ready:") :].split() if "=" in item)
        return cls({k: v for k, v in pairs})

    def __getitem__(self, key: str) -> str:
        return self.values[key]


@dataclass
class StackProcess:
    """``python -m pixverse_local`` as a child process; stop() ends it and all it started."""

    env: Mapping[str, str] = field(default_factory=dict)
    # Template parameter values, passed as ``--parameter-overrides Name=Value ...``.
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    log_path: Path | None = None
    process: subprocess.Popen[str] | None = None
    ready: ReadyLine | None = None
    _log_thread: threading.Thread | None = None

    def start(self) -> ReadyLine:
        env = {**os.environ, **self.env}
        env.setdefault("LOCAL_API_PORT", "0")
        env["PYTHONUNBUFFERED"] = "1"
        if self.log_path:
            self.log_path.write_text("")
        # Append mode (O_APPEND) for the child's stderr: the drain thread below appends the child's
        # stdout to the same file, and a plain "w" descriptor would write over those lines at its
        # own offset (function log lines went missing from the log that way).
        log: IO[str] | int = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "pixverse_local", "--template", str(ROOT / "template.yaml")]
        if self.parameter_overrides:
            command += ["--parameter-overrides", *(f"{k}={v}" for k, v in self.parameter_overrides.items())]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("ready:"):
                self.ready = ReadyLine.parse(line.strip())
                self._drain(self.process.stdout)
                return self.ready
            lines.append(line)
        self.stop()
        raise StackError(
            f"local stack did not print ready: within {self.start_timeout}s; stdout: {''.join(lines)[-2000:]}"
        )

    def _drain(self, stream: IO[str]) -> None:
        # Keep reading stdout (the functions' Powertools logs) so a chatty function can never
        # block on a full pipe; keep the lines in the log file when there is one.
        def drain() -> None:
            sink = open(self.log_path, "a") if self.log_path else None  # noqa: SIM115
            try:
                for line in stream:
                    if sink:
                        sink.write(line)
                        sink.flush()
            finally:
                if sink:
                    sink.close()

        self._log_thread = threading.Thread(target=drain, daemon=True)
        self._log_thread.start()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> StackProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalClient:
    """HTTP and AWS access to a running local stack."""

    def __init__(self, ready: ReadyLine) -> None:
        self.ready = ready
        self.api = httpx.Client(base_url=ready["api"], timeout=30.0)
        self.gateway = httpx.Client(base_url=ready["gateway"], timeout=30.0) if "gateway" in ready.values else None
        # Dummy credentials: the emulator accepts anything, and nothing can reach a real account.
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            region_name="us-east-1",
        )
        self.s3 = session.client("s3", endpoint_url=ready["aws"])
        self.sqs = session.client("sqs", endpoint_url=ready["aws"])
        self.sns = session.client("sns", endpoint_url=ready["aws"])
        self.events = session.client("events", endpoint_url=ready["aws"])
        self.dynamodb = session.client("dynamodb", endpoint_url=ready["aws"])

    def submit(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> httpx.Response:
        return self.api.post("/jobs", json=dict(body), headers=dict(headers or {}))

    def get_job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/jobs/{job_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_for(self, job_id: str, statuses: set[str] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Poll GET /jobs/{job_id} until its status is one of ``statuses`` (default: terminal)."""
        wanted = statuses or TERMINAL
        deadline = time.monotonic() + timeout
        job = self.get_job(job_id)
        while job["status"] not in wanted:
            if time.monotonic() > deadline:
                raise StackError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.1)
            job = self.get_job(job_id)
        return job

    def wait_sent(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the submitter has dealt with the job: the gateway's request_id is known, or
        the job ended, or its submit's outcome is unknown (admission: POST answers ACCEPTED)."""
        deadline = time.monotonic() + timeout
        job = self.get_job(job_id)
        while not (job.get("request_id") or job["status"] in TERMINAL or job.get("submit_outcome") == "unknown"):
            if time.monotonic() > deadline:
                raise StackError(f"job {job_id} not sent to the gateway after {timeout}s ({job['status']})")
            time.sleep(0.05)
            job = self.get_job(job_id)
        return job

    def simulated_request(self, request_id: str) -> dict[str, Any]:
        assert self.gateway is not None
        response = self.gateway.get(f"/_sim/requests/{request_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def object_sha256(self, bucket: str, key: str) -> tuple[int, str]:
        """Size and sha256 of an S3 object, streamed."""
        import hashlib

        digest = hashlib.sha256()
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        size = 0
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()

    def close(self) -> None:
        self.api.close()
        if self.gateway:
            self.gateway.close()


class EventInbox:
    """An SQS queue subscribed to the events topic: how a user's consumer would listen."""

    def __init__(self, client: LocalClient) -> None:
        self._sqs = client.sqs
        self._sns = client.sns
        name = f"inbox-{uuid.uuid4().hex[:12]}"
        self.queue_url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.subscription = self._sns.subscribe(TopicArn=client.ready["topic"], Protocol="sqs", Endpoint=arn)[
            "SubscriptionArn"
        ]
        self.events: list[dict[str, Any]] = []

    def collect(self, wait: float = 1.0) -> list[dict[str, Any]]:
        """Everything received so far, waiting up to ``wait`` seconds for stragglers."""
        deadline = time.monotonic() + wait
        while True:
            msgs = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
            ).get("Messages", [])
            for m in msgs:
                envelope = json.loads(m["Body"])
                event = json.loads(envelope["Message"])
                event["_sns_attributes"] = {k: v.get("Value") for k, v in envelope.get("MessageAttributes", {}).items()}
                self.events.append(event)
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            if not msgs:
                if time.monotonic() >= deadline:
                    return list(self.events)
                time.sleep(0.1)

    def for_job(self, job_id: str, wait: float = 1.0) -> list[dict[str, Any]]:
        return [e for e in self.collect(wait) if e.get("subject") == job_id]

    def close(self) -> None:
        self._sns.unsubscribe(SubscriptionArn=self.subscription)
        self._sqs.delete_queue(QueueUrl=self.queue_url)


class BusInbox:
    """An SQS queue that an EventBridge rule on the stack's bus (the ready line's ``bus=``) sends
    matching events to, with the queue policy a consumer needs on AWS (events.amazonaws.com may
    send, for this rule only): how a user's consumer would listen on EventBridge.

    ``pattern`` is the rule's event pattern; what arrives is EventBridge's envelope, the
    CloudEvent in its ``detail``."""

    def __init__(self, client: LocalClient, pattern: Mapping[str, Any]) -> None:
        self._sqs = client.sqs
        self._events = client.events
        self.bus = client.ready["bus"]
        self.rule = f"inbox-{uuid.uuid4().hex[:12]}"
        self.rule_arn = self._events.put_rule(Name=self.rule, EventBusName=self.bus, EventPattern=json.dumps(pattern))[
            "RuleArn"
        ]
        self.queue_url = self._sqs.create_queue(QueueName=self.rule)["QueueUrl"]
        self.queue_arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._sqs.set_queue_attributes(
            QueueUrl=self.queue_url,
            Attributes={"Policy": json.dumps(queue_policy_for_rule(self.queue_arn, self.rule_arn))},
        )
        self._events.put_targets(
            Rule=self.rule, EventBusName=self.bus, Targets=[{"Id": "inbox", "Arn": self.queue_arn}]
        )
        self.envelopes: list[dict[str, Any]] = []

    def collect(self, wait: float = 1.0) -> list[dict[str, Any]]:
        """Every envelope received so far, waiting up to ``wait`` seconds for stragglers."""
        deadline = time.monotonic() + wait
        while True:
            msgs = self._sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
                "Messages", []
            )
            for m in msgs:
                self.envelopes.append(json.loads(m["Body"]))
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            if not msgs:
                if time.monotonic() >= deadline:
                    return list(self.envelopes)
                time.sleep(0.1)

    def for_job(self, job_id: str, wait: float = 1.0) -> list[dict[str, Any]]:
        return [e for e in self.collect(wait) if (e.get("detail") or {}).get("subject") == job_id]

    def close(self) -> None:
        self._events.remove_targets(Rule=self.rule, EventBusName=self.bus, Ids=["inbox"])
        self._events.delete_rule(Name=self.rule, EventBusName=self.bus)
        self._sqs.delete_queue(QueueUrl=self.queue_url)


def queue_policy_for_rule(queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """The SQS queue policy an EventBridge rule's queue target needs: the service may send, only
    on behalf of this rule (EventBridge user guide, "Using resource-based policies", Amazon SQS)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeRuleMaySend",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }

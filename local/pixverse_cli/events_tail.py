"""``pixverse-jobs events tail``: watch a stack's events as a consumer would receive them.

It creates a temporary SQS queue (``pixverse-jobs-tail-<random>``), gives it the queue policy an
SNS subscription needs (the topic may send, and only it), subscribes it to the stack's events
topic, prints each event as it arrives, and removes the subscription and the queue when it stops:
on ``--count``, ``--timeout``, Ctrl-C or an error. The topic is chosen over the EventBridge bus
because a subscription is one call to make and one to undo, and it needs no rule.

The topic ARN is ``--topic-arn``, else ``$PIXVERSE_JOBS_TOPIC_ARN``, else the EventsTopicArn
output of ``--stack-name``. For the local stack, ``--aws-endpoint`` (or
``$PIXVERSE_JOBS_AWS_ENDPOINT``) is the ``aws=`` URL of its ready: line and ``--topic-arn`` its
``topic=``; the emulator gets dummy credentials, never yours.

On a deployed stack the caller needs: ``cloudformation:DescribeStacks`` (with --stack-name),
``sns:Subscribe`` and ``sns:Unsubscribe`` on the topic, and ``sqs:CreateQueue``,
``sqs:GetQueueAttributes``, ``sqs:SetQueueAttributes``, ``sqs:ReceiveMessage``,
``sqs:DeleteMessage`` and ``sqs:DeleteQueue`` on ``arn:aws:sqs:*:*:pixverse-jobs-tail-*``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from types import TracebackType
from typing import Any

from pixverse_cli.client import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
    aws_errors,
    check_api_url,
    is_loopback,
    stack_output,
)

TOPIC_ENV = "PIXVERSE_JOBS_TOPIC_ARN"
AWS_ENDPOINT_ENV = "PIXVERSE_JOBS_AWS_ENDPOINT"
QUEUE_PREFIX = "pixverse-jobs-tail-"


def add_events_commands(commands: Any) -> None:
    events = commands.add_parser("events", help="watch the stack's events (events tail)")
    sub = events.add_subparsers(dest="events_command", required=True)
    tail = sub.add_parser(
        "tail",
        help="print the stack's events as they arrive, through a temporary queue removed on exit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("--topic-arn", help=f"the events topic (default ${TOPIC_ENV}, else --stack-name's output)")
    tail.add_argument(
        "--aws-endpoint", metavar="URL", help=f"AWS endpoint: the local stack's aws= URL (default ${AWS_ENDPOINT_ENV})"
    )
    tail.add_argument("--job", metavar="JOB_ID", help="print only this job's events")
    tail.add_argument("--count", type=int, metavar="N", help="stop after N events")
    tail.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long (exit 5 if --count unmet)")


def events_tail(args: argparse.Namespace) -> int:
    topic_arn = args.topic_arn or os.environ.get(TOPIC_ENV)
    if not topic_arn and args.stack_name:
        topic_arn = stack_output(args.stack_name, args.region, "EventsTopicArn")
    if not topic_arn:
        raise CliError(f"no topic: pass --topic-arn, set {TOPIC_ENV}, or pass --stack-name", EXIT_USAGE)
    arn = topic_arn.split(":")
    if len(arn) != 6 or arn[0] != "arn" or arn[2] != "sns":
        raise CliError(f"topic {topic_arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", EXIT_USAGE)
    endpoint = args.aws_endpoint or os.environ.get(AWS_ENDPOINT_ENV)
    if endpoint:
        endpoint = check_api_url(endpoint, "--aws-endpoint", hint="use the aws= URL of the local stack's ready: line")
    sqs, sns = _clients(endpoint, args.region or arn[3])
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    seen = 0
    with EventTail(sqs, sns, topic_arn) as tail:
        print(f"listening to {topic_arn} through queue {tail.queue_name} (Ctrl-C to stop)", file=sys.stderr)
        try:
            while args.count is None or seen < args.count:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if args.count is not None:
                        print(f"gave up after {args.timeout:g} s with {seen} of {args.count} events", file=sys.stderr)
                        return EXIT_TIMEOUT
                    return EXIT_OK
                for event in tail.receive(wait_seconds=20 if left is None else max(1, min(20, math.ceil(left)))):
                    if args.job and event.get("subject") != args.job:
                        continue
                    print(json.dumps(event) if args.json else event_line(event), flush=True)
                    seen += 1
                    if args.count is not None and seen >= args.count:
                        break
        except KeyboardInterrupt:
            print(f"\ninterrupted after {seen} events", file=sys.stderr)
            return EXIT_INTERRUPTED
    return EXIT_OK


def event_line(event: dict[str, Any]) -> str:
    """One event as a line: time, type, job id, status (and the error code of a failure)."""
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    error = data.get("error")
    error = error if isinstance(error, dict) else {}
    line = (
        f"{event.get('time', '?')}  {event.get('type', '?'):<24} {event.get('subject', '?')}  {data.get('status', '?')}"
    )
    return line + (f"  {error['code']}" if error.get("code") else "")


def _clients(endpoint: str | None, region: str) -> tuple[Any, Any]:
    import boto3

    with aws_errors("events tail"):
        if endpoint and is_loopback(endpoint):
            # The local emulator takes any credentials: never send it real ones.
            session = boto3.session.Session(
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - the emulator's dummy, not a secret
                region_name=region,
            )
        else:
            session = boto3.session.Session(region_name=region)
        return session.client("sqs", endpoint_url=endpoint), session.client("sns", endpoint_url=endpoint)


class EventTail:
    """A temporary queue subscribed to the topic for as long as the ``with`` block lasts."""

    def __init__(self, sqs: Any, sns: Any, topic_arn: str) -> None:
        self._sqs = sqs
        self._sns = sns
        self.topic_arn = topic_arn
        self.queue_name = QUEUE_PREFIX + uuid.uuid4().hex[:12]
        self.queue_url: str | None = None
        self.subscription_arn: str | None = None

    def __enter__(self) -> EventTail:
        try:
            self._create()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._remove()

    def _create(self) -> None:
        with aws_errors(f"creating queue {self.queue_name}", self._sqs.meta.endpoint_url):
            # An hour's retention: a queue left by a killed tail holds nothing for long.
            self.queue_url = self._sqs.create_queue(
                QueueName=self.queue_name, Attributes={"MessageRetentionPeriod": "3600"}
            )["QueueUrl"]
            queue_arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            self._sqs.set_queue_attributes(
                QueueUrl=self.queue_url,
                Attributes={"Policy": json.dumps(queue_policy_for_topic(queue_arn, self.topic_arn))},
            )
        with aws_errors(f"subscribing {self.queue_name} to {self.topic_arn}"):
            self.subscription_arn = self._sns.subscribe(
                TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True
            )["SubscriptionArn"]

    def receive(self, wait_seconds: int) -> list[dict[str, Any]]:
        """The events that arrived (each SNS envelope's Message), deleted from the queue."""
        with aws_errors("receiving events"):
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            ).get("Messages", [])
            events = []
            for message in messages:
                events.append(_event_of(message["Body"]))
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return sorted(events, key=lambda e: str(e.get("time", "")))

    def _remove(self) -> None:
        """Unsubscribe and delete the queue, with Ctrl-C held off so a second one cannot leave
        them behind; a failure here is said, not raised over the error that ended the tail."""
        held = _hold_interrupts()
        try:
            if self.subscription_arn is not None:
                try:
                    self._sns.unsubscribe(SubscriptionArn=self.subscription_arn)
                except Exception as exc:  # cleanup reports and goes on
                    print(f"warning: could not unsubscribe {self.subscription_arn}: {exc}", file=sys.stderr)
            if self.queue_url is not None:
                try:
                    self._sqs.delete_queue(QueueUrl=self.queue_url)
                except Exception as exc:  # cleanup reports and goes on
                    print(f"warning: could not delete queue {self.queue_url}: {exc}", file=sys.stderr)
            self.subscription_arn = self.queue_url = None
        finally:
            held()


def _event_of(body: str) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
        event = json.loads(envelope["Message"]) if isinstance(envelope, dict) and "Message" in envelope else envelope
    except (ValueError, TypeError):
        return {"type": "unreadable", "body": body[:200]}
    return event if isinstance(event, dict) else {"type": "unreadable", "body": body[:200]}


def _hold_interrupts() -> Any:
    """Ignore SIGINT until the returned function is called (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    return lambda: signal.signal(signal.SIGINT, previous)


def queue_policy_for_topic(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """The SQS queue policy an SNS subscription needs: the service may send, only for this topic
    (SNS developer guide, "Subscribing an Amazon SQS queue to an Amazon SNS topic")."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventsTopicMaySend",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }

"""The queues (SQS): the submit queue (one message per job waiting for the gateway, grouped by
caller), the copy queue (one message per job that reached a gateway outcome) and the deadline
queue (one message per job with a deadline, delayed until it)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import boto3

# The longest a sent message may wait before it can be received (SendMessage DelaySeconds,
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
MAX_DELAY_SECONDS = 900
SUBMIT_MESSAGE_VERSION = 1


def caller_group(owner: str) -> str:
    """The submit message's MessageGroupId: a hash of the caller, never the caller itself (an
    IAM ARN can pass the group id's 128 characters, and need not travel in every message).

    On a standard queue a group id makes it a fair queue: SQS keeps the dwell time of other
    groups low while one group has a backlog
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues.html),
    so one caller's burst does not hold back another caller's jobs."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


class SubmitQueue:
    """Jobs waiting to be sent to the gateway (ACCEPTED): what POST /jobs and the reconciler
    send, what the submitter receives."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._url = queue_url
        self._client = client or boto3.client("sqs")

    def enqueue(self, job_id: str, owner: str, *, delay_seconds: int = 0, deferrals: int = 0) -> None:
        """Queue ``job_id`` for the submitter, visible after ``delay_seconds`` (at most 900).
        ``deferrals`` counts the times the submitter put it back for its own pace."""
        body = {"v": SUBMIT_MESSAGE_VERSION, "job_id": job_id, "owner": owner, "deferrals": deferrals}
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=json.dumps(body, separators=(",", ":")),
            MessageGroupId=caller_group(owner),
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, int(delay_seconds))),
        )


class SubmitMessage:
    """A parsed submit-queue message."""

    __slots__ = ("deferrals", "job_id", "owner")

    def __init__(self, job_id: str, owner: str, deferrals: int) -> None:
        self.job_id = job_id
        self.owner = owner
        self.deferrals = deferrals

    @classmethod
    def parse(cls, body: str) -> SubmitMessage:
        """ValueError if ``body`` is not a submit message this version writes."""
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("v") != SUBMIT_MESSAGE_VERSION:
            raise ValueError("not a submit message of a known version")
        job_id, owner, deferrals = data.get("job_id"), data.get("owner"), data.get("deferrals", 0)
        if not isinstance(job_id, str) or not job_id or not isinstance(owner, str):
            raise ValueError("submit message has no job_id or owner")
        if not isinstance(deferrals, int) or deferrals < 0:
            raise ValueError("submit message has a bad deferral count")
        return cls(job_id, owner, deferrals)


class CopyQueue:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._url = queue_url
        self._client = client or boto3.client("sqs")

    def request_delivery(self, job_id: str) -> None:
        """Ask the copier to deliver the job (copy media or publish its failure)."""
        self._client.send_message(QueueUrl=self._url, MessageBody=json.dumps({"job_id": job_id}))


class DeadlineQueue:
    """Jobs with a ``deadline_seconds``: one message each, delayed until the deadline so that the
    deadline function ends the job within seconds of it, not at the reconciler's next run. SQS
    delays a message by at most MAX_DELAY_SECONDS, so a later deadline takes several hops: the
    function sends the message again, delayed by what is left."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._url = queue_url
        self._client = client or boto3.client("sqs")

    def watch(self, job_id: str, deadline_at: float, *, now: float) -> int:
        """Send ``job_id``'s deadline message, due at ``deadline_at`` (epoch seconds, ``now``
        being the present); returns its delay in seconds. Rounded down to SQS's whole seconds: the
        message comes up to a second early and the deadline function waits the rest, where
        rounding up would make every cancel up to a second late."""
        delay = max(0, min(MAX_DELAY_SECONDS, math.floor(deadline_at - now)))
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=json.dumps({"job_id": job_id}, separators=(",", ":")),
            DelaySeconds=delay,
        )
        return delay


class MessageVisibility:
    """When a received message comes back (SQS ChangeMessageVisibility). The client is made on
    first use: only a failed copy needs it, so a cold start does not pay for it."""

    def __init__(self, client: Any = None) -> None:
        self._given = client
        self._made: Any = None

    @property
    def _client(self) -> Any:
        if self._given is not None:
            return self._given
        if self._made is None:
            self._made = boto3.client("sqs")
        return self._made

    def postpone(self, queue_url: str, receipt_handle: str, seconds: int) -> None:
        """Make the received message visible again ``seconds`` from now. The time counts from
        this call, and a message may stay invisible at most 12 hours after its receive
        (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html)."""
        self._client.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=int(seconds)
        )


def job_id_from_message(body: str) -> str:
    """The job id of a copy-queue message body; ValueError if it is not one."""
    data = json.loads(body)
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("copy message has no job_id")
    return job_id

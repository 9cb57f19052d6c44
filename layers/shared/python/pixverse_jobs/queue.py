"""The copy queue (SQS): one message per job that reached a gateway outcome."""

from __future__ import annotations

import json
from typing import Any

import boto3


class CopyQueue:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._url = queue_url
        self._client = client or boto3.client("sqs")

    def request_delivery(self, job_id: str) -> None:
        """Ask the copier to deliver the job (copy media or publish its failure)."""
        self._client.send_message(QueueUrl=self._url, MessageBody=json.dumps({"job_id": job_id}))


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

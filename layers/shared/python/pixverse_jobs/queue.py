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


def job_id_from_message(body: str) -> str:
    """The job id of a copy-queue message body; ValueError if it is not one."""
    data = json.loads(body)
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("copy message has no job_id")
    return job_id

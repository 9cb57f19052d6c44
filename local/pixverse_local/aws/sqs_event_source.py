"""Local SQS event source mapping: long-poll a queue, invoke the function, settle the batch.

It behaves as Lambda's SQS event source mapping does: a few concurrent pollers receive up to
``BatchSize`` messages with every attribute, invoke the function with an ``aws:sqs`` event, delete
what succeeded and leave the rest for a retry. With ``ReportBatchItemFailures`` only the
``batchItemFailures`` are retried (an identifier that is missing or not in the batch fails the whole
batch, as in Lambda); a raised exception fails the whole batch.

A failed message is left alone, as Lambda leaves it: it becomes visible again when its visibility
timeout ends, which is the queue's ``VisibilityTimeout`` (template.yaml's copy queue: 5400 s) unless
the function changed it with ``ChangeMessageVisibility`` (a backoff), and then what the function set.
("By default, if Lambda encounters an error at any point while processing a batch, all messages in
that batch return to the queue. After the visibility timeout, the messages become visible to Lambda
again", Lambda developer guide, "Creating and configuring an Amazon SQS event source mapping".) To watch retries in
seconds, shrink every emulated delay with ``LOCAL_TIME_SCALE`` (timescale.py), which moto server
applies to the visibility timeouts themselves.

Redrive to the dead-letter queue is the endpoint's job, as in AWS: moto server moves a message whose
receive count reached the queue's ``maxReceiveCount`` to the DLQ on the next receive.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]

DEFAULT_WORKERS = 4
_MAX_RECEIVE = 10  # SQS returns at most 10 messages per receive


@dataclass(frozen=True)
class BatchOutcome:
    """Message ids the batch settled: deleted, and left to reappear after their visibility timeout."""

    succeeded: tuple[str, ...]
    failed: tuple[str, ...]


def build_sqs_event(messages: Sequence[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda SQS event for messages as ``ReceiveMessage`` returned them.

    A record's ``attributes`` are the message's system attributes as received, so ``MessageGroupId``
    is there for a FIFO queue's messages and for a fair queue's (a standard queue's messages sent with
    a group, moto_server.py); absent for a message sent without one, as Powertools' SQS record model
    has it optional.
    """
    records = []
    for message in messages:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": {
                name: _message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [base64.b64encode(v).decode() for v in value.get("BinaryListValues") or []],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return converted


def failed_message_ids(result: Any, message_ids: Sequence[str], *, report_batch_item_failures: bool) -> set[str]:
    """Which messages of a batch failed, judged from the function's result as Lambda judges it."""
    if not report_batch_item_failures or result is None:
        return set()
    if not isinstance(result, dict):
        LOG.warning("the function's response is not a batch response: the whole batch fails")
        return set(message_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in message_ids:
            LOG.warning("batchItemFailures names %r, which is not in the batch: the whole batch fails", identifier)
            return set(message_ids)
        failed.add(str(identifier))
    return failed


class SqsPoller:
    """Pollers for one queue -> function mapping; :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        name: str,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        invoke: Invoke,
        batch_size: int = 10,
        report_batch_item_failures: bool = False,
        region: str = "us-east-1",
        workers: int = DEFAULT_WORKERS,
        wait_time_seconds: int = 1,
    ) -> None:
        self.name = name
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._invoke = invoke
        self.batch_size = max(1, min(batch_size, _MAX_RECEIVE))
        self.report_batch_item_failures = report_batch_item_failures
        self.region = region
        self.workers = max(1, workers)
        self.wait_time_seconds = wait_time_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker threads."""
        self._stop.clear()
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"sqs-{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        LOG.info("polling %s for %s with %d workers", self.queue_url, self.name, self.workers)

    def request_stop(self) -> None:
        """Ask the workers to stop after their current receive or batch."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the workers to stop and wait for them (each finishes its current batch)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                # A broken endpoint must not kill the poller; back off and try again.
                LOG.exception("polling %s failed", self.queue_url)
                self._stop.wait(1.0)

    def poll_once(self) -> BatchOutcome | None:
        """Receive one batch and process it; None when the queue had nothing."""
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_time_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages") or []
        if not messages:
            return None
        return self.process(messages)

    def process(self, messages: Sequence[dict[str, Any]]) -> BatchOutcome:
        """Invoke the function with one batch, then delete the successes.

        The failures are not touched: they reappear when their visibility timeout ends, the queue's
        or the one the function set (changing it here would overwrite a function's backoff).
        """
        event = build_sqs_event(messages, queue_arn=self.queue_arn, region=self.region)
        ids = [m["MessageId"] for m in messages]
        try:
            result = self._invoke(event)
        except Exception:
            LOG.exception("%s failed a batch of %d message(s); all will be retried", self.name, len(ids))
            failed = set(ids)
        else:
            failed = failed_message_ids(result, ids, report_batch_item_failures=self.report_batch_item_failures)
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        retried = [m for m in messages if m["MessageId"] in failed]
        if succeeded:
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(succeeded)],
            )
        if retried:
            LOG.info("%s: %d message(s) will be retried after their visibility timeout", self.name, len(retried))
        return BatchOutcome(
            succeeded=tuple(m["MessageId"] for m in succeeded),
            failed=tuple(m["MessageId"] for m in retried),
        )

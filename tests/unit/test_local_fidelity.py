"""The local stack's restored AWS guarantees (pixverse_local.fidelity)."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from lambda_support import create_jobs_table, load_event
from moto import mock_aws
from pixverse_local.fidelity import atomic_dynamodb_writes, event_per_resolver


def test_moto_dynamodb_writes_are_serialized() -> None:
    # In-process the race rarely shows (the reliability suite measured it against moto server:
    # 328 transitions for 320 jobs); here: the writes are wrapped, and still right under contention.
    from moto.dynamodb.models import DynamoDBBackend

    atomic_dynamodb_writes()
    assert all(getattr(getattr(DynamoDBBackend, name), "_serialized", False) for name in ("put_item", "update_item"))
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        table = create_jobs_table(ddb)
        ddb.put_item(TableName=table, Item={"job_id": {"S": "j"}, "status": {"S": "QUEUED"}})
        applied: list[bool] = []
        start = threading.Barrier(16)

        def move() -> None:
            start.wait()
            try:
                ddb.update_item(
                    TableName=table,
                    Key={"job_id": {"S": "j"}},
                    UpdateExpression="SET #s = :done",
                    ConditionExpression="#s = :queued",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":done": {"S": "COMPLETED"}, ":queued": {"S": "QUEUED"}},
                )
                applied.append(True)
            except ddb.exceptions.ConditionalCheckFailedException:
                applied.append(False)

        threads = [threading.Thread(target=move) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(applied) == [False] * 15 + [True]


def test_each_resolver_keeps_its_own_event() -> None:
    event_per_resolver()
    first, second = APIGatewayHttpResolver(), APIGatewayHttpResolver()
    seen: dict[str, Any] = {}

    @first.get("/jobs/<job_id>")
    def first_route(job_id: str) -> dict[str, Any]:
        # Another container resolves its own request in between.
        other = load_event("get_job")
        other["rawPath"] = other["requestContext"]["http"]["path"] = "/jobs/job_other"
        other["pathParameters"] = {"job_id": "job_other"}
        second.resolve(other, None)
        seen["path"] = first.current_event.path
        return {}

    @second.get("/jobs/<job_id>")
    def second_route(job_id: str) -> dict[str, Any]:
        return {}

    first.resolve(load_event("get_job"), None)

    assert seen["path"] == load_event("get_job")["rawPath"]

"""Give the jobs written before the sharded indexes their shard keys: one step of the upgrade from
by_owner / unfinished_by_age to by_owner_shard / unfinished_shard.

Upgrading a deployed stack. A GSI's key schema cannot change, so the sharded indexes are new
indexes, and DynamoDB creates or deletes only one GSI per UpdateTable ("You can create or delete
only one global secondary index per UpdateTable operation", API UpdateTable,
GlobalSecondaryIndexUpdates), which is what CloudFormation runs for a change of the table's
GlobalSecondaryIndexes. Going straight to this template (two creates, two deletes) fails the
update, so:

1. deploy the current code with the old template plus ``owner_shard`` in AttributeDefinitions and
   the ``unfinished_shard`` index (one create); wait until DescribeTable shows it ACTIVE;
2. the same plus the ``by_owner_shard`` index (one create); wait until ACTIVE;
3. deploy this version (the new code; the template without ``unfinished_by_age``: one delete), then
   run this script: until it ends, GET /jobs lists only the jobs created since step 3, and the
   reconciler reads the old jobs at the legacy key ``"1"``;
4. deploy this version's template as it is (without ``by_owner``: one delete).

A new stack creates both indexes at once (CreateTable has no such limit).

A job written by the old code has ``owner`` but no ``owner_shard``, so the by_owner_shard index
does not hold it and GET /jobs does not list it; an unfinished one has ``unfinished = "1"``, which
the reconciler still reads (``store.UNFINISHED_LEGACY``) but which sits on one key. This scans the
jobs table once (Scan pages of 1 MB, "Paginating table query results"), and sets each missing key
with a conditional UpdateItem, so it can run while the new code runs, be interrupted and run again:

* ``owner_shard`` only where it is still missing (the new code writes it at creation);
* ``unfinished`` from ``"1"`` to the job's ``u#NN`` only while it is still ``"1"`` (a job whose final
  event went out meanwhile has lost it, and must not get it back).

    python scripts/backfill_index_shards.py --table <JobsTableName> [--region us-east-1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "shared" / "python"))

from pixverse_jobs.store import (  # after the layer is on the path
    OWNER_SHARD,
    OWNER_SHARDS,
    UNFINISHED,
    UNFINISHED_LEGACY,
    owner_shard_key,
    shard_of,
    unfinished_key,
)


def backfill(client: Any, table: str) -> dict[str, int]:
    """Set the missing shard keys of every job in ``table``; returns the counts of what it did."""
    counts = {"scanned": 0, "owner_shard": 0, "unfinished": 0, "skipped": 0}
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "(attribute_exists(#owner) AND attribute_not_exists(#os)) OR #u = :legacy",
        "ProjectionExpression": "job_id, #owner, #os, #u",
        "ExpressionAttributeNames": {"#owner": "owner", "#os": OWNER_SHARD, "#u": UNFINISHED},
        "ExpressionAttributeValues": {":legacy": {"S": UNFINISHED_LEGACY}},
    }
    while True:
        page = client.scan(**kwargs)
        counts["scanned"] += page.get("ScannedCount", 0)
        for item in page.get("Items", []):
            job_id = item["job_id"]["S"]
            if "owner" in item and OWNER_SHARD not in item:
                shard = owner_shard_key(item["owner"]["S"], shard_of(job_id, OWNER_SHARDS))
                done = _update(client, table, job_id, "SET #a = :v", "attribute_not_exists(#a)", OWNER_SHARD, shard)
                counts["owner_shard" if done else "skipped"] += 1
            if item.get(UNFINISHED, {}).get("S") == UNFINISHED_LEGACY:
                done = _update(client, table, job_id, "SET #a = :v", "#a = :legacy", UNFINISHED, unfinished_key(job_id))
                counts["unfinished" if done else "skipped"] += 1
        if "LastEvaluatedKey" not in page:
            return counts
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _update(client: Any, table: str, job_id: str, expression: str, condition: str, name: str, value: str) -> bool:
    values = {":v": {"S": value}}
    if ":legacy" in condition:
        values[":legacy"] = {"S": UNFINISHED_LEGACY}
    try:
        client.update_item(
            TableName=table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression=expression,
            ConditionExpression=f"attribute_exists(job_id) AND {condition}",
            ExpressionAttributeNames={"#a": name},
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False  # the new code (or the final event) got there first
        raise
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="the jobs table (the stack's JobsTableName output)")
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    counts = backfill(boto3.client("dynamodb", region_name=args.region), args.table)
    print(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

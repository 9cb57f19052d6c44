"""Give the jobs written before the current indexes their keys: one step of the upgrade from
by_owner / unfinished_by_age (or unfinished_shard) to by_owner_shard / unfinished_by_check.

Upgrading a deployed stack. A GSI's key schema cannot change, so the sharded indexes are new
indexes, and DynamoDB creates or deletes only one GSI per UpdateTable ("You can create or delete
only one global secondary index per UpdateTable operation", API UpdateTable,
GlobalSecondaryIndexUpdates), which is what CloudFormation runs for a change of the table's
GlobalSecondaryIndexes. Going straight to this template (two creates, two deletes) fails the
update, so, from a stack with by_owner and unfinished_by_age:

1. deploy the current code with the old template plus ``owner_shard`` and ``check_at`` (type N)
   in AttributeDefinitions and the ``unfinished_by_check`` index (one create); wait until
   DescribeTable shows it ACTIVE;
2. the same plus the ``by_owner_shard`` index (one create); wait until ACTIVE;
3. deploy this version (the new code; the template without ``unfinished_by_age``: one delete),
   then run this script: until it ends, GET /jobs lists only the jobs created since step 3, and
   the reconciler does not see the jobs created before it (they have no ``check_at`` yet);
4. deploy this version's template as it is (without ``by_owner``: one delete).

From a stack that already has by_owner_shard and unfinished_shard (the index sorted by
created_at): (1) the code it runs, with ``check_at`` in AttributeDefinitions and the
``unfinished_by_check`` index added (one create); wait until ACTIVE; (2) this version, whose
template drops ``unfinished_shard`` (one delete), then run this script.

A new stack creates both indexes at once (CreateTable has no such limit).

A job written by the old code has ``owner`` but no ``owner_shard``, so the by_owner_shard index
does not hold it and GET /jobs does not list it; an unfinished one has ``unfinished = "1"``,
which sits on one key, and no ``check_at``, without which unfinished_by_check does not hold it.
This scans the jobs table once (Scan pages of 1 MB, "Paginating table query results"), and sets
each missing key with a conditional UpdateItem, so it can run while the new code runs, be
interrupted and run again:

* ``owner_shard`` only where it is still missing (the new code writes it at creation);
* ``unfinished`` from ``"1"`` to the job's ``u#NN`` only while it is still ``"1"`` (a job whose final
  event went out meanwhile has lost it, and must not get it back);
* ``check_at`` (its first look: created_at + ``--reconcile-after-seconds``, the stack's
  ReconcileAfterSeconds) only where an unfinished job has none (the new code may have set one).

    python scripts/backfill_index_shards.py --table <JobsTableName> [--reconcile-after-seconds 900] [--region us-east-1]
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
    CHECK_AT,
    OWNER_SHARD,
    OWNER_SHARDS,
    UNFINISHED,
    UNFINISHED_LEGACY,
    first_check_at,
    owner_shard_key,
    shard_of,
    unfinished_key,
)


def backfill(client: Any, table: str, *, reconcile_after_seconds: int = 900) -> dict[str, int]:
    """Set the missing index keys of every job in ``table``; returns the counts of what it did."""
    counts = {"scanned": 0, "owner_shard": 0, "unfinished": 0, "check_at": 0, "skipped": 0}
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": (
            "(attribute_exists(#owner) AND attribute_not_exists(#os)) OR #u = :legacy "
            "OR (attribute_exists(#u) AND attribute_not_exists(#c))"
        ),
        "ProjectionExpression": "job_id, #owner, #os, #u, #c, created_at",
        "ExpressionAttributeNames": {"#owner": "owner", "#os": OWNER_SHARD, "#u": UNFINISHED, "#c": CHECK_AT},
        "ExpressionAttributeValues": {":legacy": {"S": UNFINISHED_LEGACY}},
    }
    while True:
        page = client.scan(**kwargs)
        counts["scanned"] += page.get("ScannedCount", 0)
        for item in page.get("Items", []):
            job_id = item["job_id"]["S"]
            if "owner" in item and OWNER_SHARD not in item:
                shard = owner_shard_key(item["owner"]["S"], shard_of(job_id, OWNER_SHARDS))
                done = _update(client, table, job_id, {OWNER_SHARD: {"S": shard}}, "attribute_not_exists(#a0)")
                counts["owner_shard" if done else "skipped"] += 1
            if item.get(UNFINISHED, {}).get("S") == UNFINISHED_LEGACY:
                done = _update(
                    client, table, job_id, {UNFINISHED: {"S": unfinished_key(job_id)}}, "#a0 = :legacy", legacy=True
                )
                counts["unfinished" if done else "skipped"] += 1
            if UNFINISHED in item and CHECK_AT not in item:
                created = item.get("created_at", {}).get("S")
                check_at = {"N": str(first_check_at(created, reconcile_after_seconds))}
                done = _update(
                    client, table, job_id, {CHECK_AT: check_at}, "attribute_exists(#u) AND attribute_not_exists(#a0)"
                )
                counts["check_at" if done else "skipped"] += 1
        if "LastEvaluatedKey" not in page:
            return counts
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _update(
    client: Any, table: str, job_id: str, sets: dict[str, dict[str, str]], condition: str, *, legacy: bool = False
) -> bool:
    names = {f"#a{i}": name for i, name in enumerate(sets)}
    values = {f":v{i}": value for i, value in enumerate(sets.values())}
    if "#u" in condition:
        names["#u"] = UNFINISHED
    if legacy:
        values[":legacy"] = {"S": UNFINISHED_LEGACY}
    try:
        client.update_item(
            TableName=table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(sets))),
            ConditionExpression=f"attribute_exists(job_id) AND {condition}",
            ExpressionAttributeNames=names,
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
    parser.add_argument(
        "--reconcile-after-seconds",
        type=int,
        default=900,
        help="the stack's ReconcileAfterSeconds: an old unfinished job's first look is this long after its creation",
    )
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    if args.reconcile_after_seconds < 1:
        parser.error(f"--reconcile-after-seconds: must be at least 1, got {args.reconcile_after_seconds}")
    client = boto3.client("dynamodb", region_name=args.region)
    counts = backfill(client, args.table, reconcile_after_seconds=args.reconcile_after_seconds)
    print(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

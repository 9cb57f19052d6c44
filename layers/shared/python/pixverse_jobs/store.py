"""DynamoDB adapter for job records. Every status change is one conditional UpdateItem whose
condition comes from the state machine (``states.sources_of``), so the database, not the
caller, decides which of two racing writers wins."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from pixverse_jobs import config
from pixverse_jobs.clock import epoch_seconds, from_iso, utc_now_iso
from pixverse_jobs.errors import JobAlreadyExists, JobNotFound
from pixverse_jobs.states import JobStatus, sources_of

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

Job = dict[str, Any]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_for_dynamo(v)) for k, v in values.items() if v is not None}


def _for_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _for_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_for_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def _from_item(item: Mapping[str, Any]) -> Job:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def _entry(item: Mapping[str, Any]) -> IndexEntry:
    """An index item (keys, maybe status) as an ``IndexEntry``."""
    status = (item.get("status") or {}).get("S")
    return IndexEntry(job_id=item["job_id"]["S"], created_at=item["created_at"]["S"], status=status)


def _status_of(item: Mapping[str, Any]) -> JobStatus | None:
    """The status of a raw (DynamoDB-typed) item, None if it has none we know."""
    raw = (item.get("status") or {}).get("S")
    return JobStatus(raw) if isinstance(raw, str) and raw in JobStatus.__members__ else None


def _transaction_condition_failed(exc: ClientError) -> bool:
    reasons = exc.response.get("CancellationReasons") or []
    return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)


# The per-caller cap of unfinished jobs (MAX_JOBS_PER_CALLER): counters in the jobs table.
QUOTA_KEY = "quota_key"
# A job whose submit message could not be sent at POST carries this (epoch seconds): the reconciler
# queues it at its next run. The job is recorded, so the caller is answered 202 all the same.
ENQUEUE_PENDING = "enqueue_pending"
QUOTA_SHARDS = 16


def quota_key(owner: str, shard: int) -> str:
    return f"quota#{hashlib.sha256(owner.encode()).hexdigest()[:32]}#{shard:02d}"


def quota_limits(cap: int) -> list[int]:
    """Each counter's share of ``cap``: as even as whole numbers allow, adding up to ``cap``."""
    return [cap // QUOTA_SHARDS + (1 if n < cap % QUOTA_SHARDS else 0) for n in range(QUOTA_SHARDS)]


def _applied(write: Callable[[], Any]) -> bool:
    """Run one conditional write: True if it applied, False if its condition refused it."""
    try:
        write()
    except ClientError as exc:
        if _is_conditional_failure(exc):
            return False
        raise
    return True


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class IdempotencyClaim:
    """Who holds an Idempotency-Key: ``claimed`` if this call took it for ``job_id``."""

    claimed: bool
    job_id: str
    body_hash: str
    claimed_at: int = 0  # epoch seconds when the holder took the key


IDEMPOTENCY_PREFIX = "idem#"
# No index key takes every write of a caller or of the deployment: a partition takes at most
# 1,000 write units per second ("each individual partition is limited to 1000 write units per
# second", DynamoDB developer guide, "Understanding DynamoDB warm throughput in different
# scenarios"), and a GSI entry's partition key value is one partition unless DynamoDB splits it,
# which a key whose sort key (created_at) only grows defeats. So both indexes spread a key over
# shards chosen by a hash of the job_id (``shard_of``): "Using write sharding to distribute
# workloads evenly" (DynamoDB developer guide, bp-partition-key-sharding.html).
#
# A caller's jobs, newest first: HASH ``owner_shard`` = ``<owner>#<NN>``, RANGE created_at,
# projecting only ``status`` (the listing's filter); the page is filled by BatchGetItem. A status
# change writes the index (a projected attribute changed); every other update (progress, leases,
# media, the outbox flag) does not ("Provisioned throughput considerations for global secondary
# indexes": an update that changes no key or projected attribute writes no index entry).
OWNER_INDEX = "by_owner_shard"
OWNER_SHARD = "owner_shard"
OWNER_SHARDS = 16
# Sparse index of the jobs that have not ended and been announced, by when each next needs the
# reconciler: a job carries UNFINISHED from its creation until its final event is published (or
# its submit failed in front of the caller). Its value is the job's shard ``u#NN``; the sort key
# is CHECK_AT, so the reconciler queries ``check_at <= now`` on each shard and finds exactly the
# jobs due, most overdue first, never a scan. KEYS_ONLY: a job is written there when it is
# created, when its next look moves (a key change: a delete and a put) and when it leaves; a
# status change alone writes nothing there. The reconciler fills its candidates by BatchGetItem.
UNFINISHED_INDEX = "unfinished_by_check"
UNFINISHED = "unfinished"
UNFINISHED_SHARDS = 16
# When the reconciler next needs to look at the job, in epoch seconds (a Number, as the copy
# leases and retries it is computed from): created_at + RECONCILE_AFTER_SECONDS at creation, then
# pushed forward by each look that leaves the job unfinished and by a callback that shows the job
# alive at the gateway. Only ever moved forward (``push_check_at``).
CHECK_AT = "check_at"
# Jobs written before the sharded index carry ``unfinished = "1"``: the reconciler reads that key
# too, so one that gains a check_at before the backfill converts it is still seen.
UNFINISHED_LEGACY = "1"
# BatchGetItem reads at most 100 items per call and returns the keys it left (throttling, 16 MB)
# in UnprocessedKeys, to be asked again "with exponential backoff"
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
BATCH_GET_MAX_KEYS = 100
# Entries per Query page of the unfinished index: keys only, about 100 bytes each, so a page of
# 1,000 is ~100 KB, far under a Query's 1 MB. Large pages keep the queries few (17 for a backlog of
# 17,000 jobs), which matters to the local emulator, whose index queries cost in proportion to the
# table.
DUE_PAGE_KEYS = 1000
BATCH_GET_ATTEMPTS = 8
BATCH_GET_BACKOFF_SECONDS = 0.05
# Leases on a job record: the copier's hold on a copy, and a delivery's hold on publishing its event.
COPY_LEASE = "copy_lease_until"
PUBLISH_LEASE = "publish_lease_until"
# A copy's retries, kept on the job so that neither a duplicate message nor a re-drive restarts
# them: the copy attempts started so far, when the failed copy's message is due back, and which
# message that is (the one request in flight for the job's copy).
COPY_ATTEMPTS = "copy_attempts"
COPY_RETRY_AT = "copy_retry_at"
COPY_RETRY_MESSAGE = "copy_retry_message"
# Run leases (one holder at a time for a periodic task) live in the jobs table under
# ``lease#<name>`` keys. They carry no owner and no ``unfinished`` attribute, so neither index
# ever holds them, and no TTL: a released lease is a two-attribute item reused by the next run.
RUN_LEASE_PREFIX = "lease#"
LEASE_HOLDER = "lease_holder"
LEASE_UNTIL = "lease_until"


def shard_of(job_id: str, shards: int) -> int:
    """The job's shard, 0 <= shard < ``shards``: stable (from the job_id alone) and uniform (a
    hash, so ids that share a prefix or a pattern still spread)."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") % shards


def owner_shard_key(owner: str, shard: int) -> str:
    """The by_owner_shard partition key of ``owner``'s jobs in ``shard``."""
    return f"{owner}#{shard:02d}"


def unfinished_key(job_id: str) -> str:
    """The unfinished index's partition key of a job: ``u#NN``."""
    return f"u#{shard_of(job_id, UNFINISHED_SHARDS):02d}"


def unfinished_keys() -> list[str]:
    """Every partition key of the unfinished index, the pre-shard one included."""
    return [f"u#{n:02d}" for n in range(UNFINISHED_SHARDS)] + [UNFINISHED_LEGACY]


@dataclass(frozen=True)
class IndexEntry:
    """One entry of a keys-only (or status-only) index: the job's key, where it sorts, and the
    projected status if the index holds it."""

    job_id: str
    created_at: str
    status: str | None = None


def first_check_at(created_at: str | None, after_seconds: int) -> int:
    """A new job's CHECK_AT: ``after_seconds`` after ``created_at`` (ISO 8601; now if absent)."""
    created = int(from_iso(created_at).timestamp()) if created_at else epoch_seconds()
    return created + after_seconds


@dataclass(frozen=True)
class DueEntry:
    """One entry of the unfinished index: a job and when it next needs a look."""

    job_id: str
    check_at: int


def _once_each(entries: Iterable[DueEntry]) -> Iterator[DueEntry]:
    """Each job once: where a page boundary falls among entries of equal check_at, the local
    emulator's pagination (not DynamoDB's exact, key-ordered one) repeated some, and a job must
    not be looked at twice in one pass."""
    seen: set[str] = set()
    for entry in entries:
        if entry.job_id not in seen:
            seen.add(entry.job_id)
            yield entry


@dataclass(frozen=True)
class IndexPage:
    """One Query page of one index key: its entries in index order, and the created_at of the last
    entry DynamoDB evaluated (``LastEvaluatedKey``; None when the key has no more). With a filter,
    entries evaluated but filtered out are not in ``entries``, yet the position passed them."""

    entries: list[IndexEntry]
    last_key: dict[str, Any] | None

    @property
    def frontier(self) -> str | None:
        value = (self.last_key or {}).get("created_at", {}).get("S")
        return str(value) if value is not None else None


def _idempotency_record_id(owner: str, key: str) -> str:
    return IDEMPOTENCY_PREFIX + hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()


def _idempotency_item(owner: str, key: str, job_id: str, body_hash: str, now: int, ttl_seconds: int) -> dict[str, Any]:
    return _to_item(
        {
            "job_id": _idempotency_record_id(owner, key),
            "target_job_id": job_id,
            "body_hash": body_hash,
            "created_at_epoch": now,
            "expires_at": now + ttl_seconds,
        }
    )


@dataclass(frozen=True)
class Transition:
    """The result of ``JobStore.advance``: ``applied`` tells whether this write moved the job;
    ``job`` is the record after the write, or as it stood when the condition refused it;
    ``previous_status`` is the status the write found (so a caller can tell a real change from
    a same-status refresh such as a repeated sync-mode PROCESSING)."""

    applied: bool
    job: Job
    previous_status: JobStatus | None = None

    @property
    def changed_status(self) -> bool:
        """Whether this write moved the job to another status (not a refresh, not a refusal)."""
        return self.applied and self.previous_status is not None and self.previous_status != self.job.get("status")


class JobStore:
    """Job records in the table named by JOBS_TABLE (key ``job_id``).

    ``first_check_after_seconds`` sets a new job's first look by the reconciler (CHECK_AT); by
    default RECONCILE_AFTER_SECONDS, which every function reads (template.yaml's Globals), so
    that no function that creates jobs has to pass it."""

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        ttl_days: int = 90,
        first_check_after_seconds: int | None = None,
    ) -> None:
        self._table = table_name
        self._client = client or boto3.client("dynamodb")
        self._ttl_seconds = ttl_days * 86400
        self.first_check_after_seconds = (
            config.first_check_after_seconds() if first_check_after_seconds is None else first_check_after_seconds
        )

    # ------------------------------------------------------------------ reads
    def get(self, job_id: str) -> Job | None:
        """The job, read strongly consistent, or None."""
        resp = self._client.get_item(TableName=self._table, Key=self._key(job_id), ConsistentRead=True)
        item = resp.get("Item")
        return _from_item(item) if item else None

    def query_owner_shard(
        self,
        owner: str,
        shard: int,
        *,
        status: str | None = None,
        created_at_or_before: str | None = None,
        limit: int = 20,
        start_key: Mapping[str, Any] | None = None,
    ) -> IndexPage:
        """One page of one shard of ``owner``'s jobs, newest first (the by_owner_shard index,
        never a scan): entries only (keys and status), created at or before
        ``created_at_or_before`` if given, of ``status`` if given (filtered after the read, so
        the page may hold fewer than ``limit`` while the key still has more)."""
        names = {"#k": OWNER_SHARD}
        values: dict[str, Any] = {":k": owner_shard_key(owner, shard)}
        condition = "#k = :k"
        if created_at_or_before is not None:
            names["#c"] = "created_at"
            values[":c"] = created_at_or_before
            condition += " AND #c <= :c"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if status:
            names["#status"] = "status"
            values[":status"] = status
            kwargs["FilterExpression"] = "#status = :status"
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = _to_item(values)
        if start_key:
            kwargs["ExclusiveStartKey"] = dict(start_key)
        resp = self._client.query(**kwargs)
        return IndexPage([_entry(i) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey"))

    def iter_due(self, *, due_by: int, page_size: int = DUE_PAGE_KEYS) -> Generator[Job]:
        """Every job whose next look is due (CHECK_AT <= ``due_by``, epoch seconds), most overdue
        first across every shard of the sparse unfinished index, the legacy key included (never a
        scan), each read whole by BatchGetItem (strongly consistent), with no limit: the caller
        stops when it has had enough.

        The shards are read in parallel, each a page ahead of the merge, and the next
        ``BATCH_GET_MAX_KEYS`` jobs are read while the caller works on the ones it has, so a
        caller that polls 100 jobs a second never waits for DynamoDB. A job that left the index
        since (the index lags the table), or whose next look was pushed past ``due_by`` meanwhile
        (a callback showed it alive), is left out."""
        # Imported here: only the reconciler reads the index, and the other functions' cold
        # starts need no thread pool.
        from concurrent.futures import ThreadPoolExecutor

        keys = unfinished_keys()
        pool = ThreadPoolExecutor(max_workers=len(keys) + 1, thread_name_prefix="unfinished-index")
        try:
            streams = [self._due_stream(pool, key, due_by, max(1, page_size)) for key in keys]
            merged = _once_each(heapq.merge(*streams, key=lambda entry: (entry.check_at, entry.job_id)))
            chunk = list(itertools.islice(merged, BATCH_GET_MAX_KEYS))
            reading: Future[list[Job]] | None = pool.submit(self._due_jobs, chunk, due_by) if chunk else None
            while reading is not None:
                # The merge runs here, on the caller's thread only; the reads run on the pool.
                chunk = list(itertools.islice(merged, BATCH_GET_MAX_KEYS))
                following = pool.submit(self._due_jobs, chunk, due_by) if chunk else None
                yield from reading.result()
                reading = following
        finally:
            # A caller that stops early (out of time) leaves the reads ahead unfinished.
            pool.shutdown(wait=False, cancel_futures=True)

    def _due_stream(self, pool: ThreadPoolExecutor, key: str, due_by: int, page_size: int) -> Iterator[DueEntry]:
        """One key of the unfinished index in CHECK_AT order: its first page asked for now, each
        next page as soon as the one before arrives."""
        first = pool.submit(self.query_due, key, due_by=due_by, limit=page_size)

        def entries() -> Iterator[DueEntry]:
            page = first
            while True:
                found, last_key = page.result()
                if last_key:
                    page = pool.submit(self.query_due, key, due_by=due_by, limit=page_size, start_key=last_key)
                yield from found
                if not last_key:
                    return

        return entries()

    def query_due(
        self, key: str, *, due_by: int, limit: int = DUE_PAGE_KEYS, start_key: Mapping[str, Any] | None = None
    ) -> tuple[list[DueEntry], dict[str, Any] | None]:
        """One page of one key of the unfinished index: the jobs due by ``due_by``, most overdue
        first, and the LastEvaluatedKey to go on from (None when the key has no more)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": UNFINISHED_INDEX,
            "KeyConditionExpression": "#u = :u AND #c <= :due",
            "ExpressionAttributeNames": {"#u": UNFINISHED, "#c": CHECK_AT},
            "ExpressionAttributeValues": _to_item({":u": key, ":due": due_by}),
            "ScanIndexForward": True,
            "Limit": limit,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = dict(start_key)
        resp = self._client.query(**kwargs)
        entries = [DueEntry(item["job_id"]["S"], int(item[CHECK_AT]["N"])) for item in resp.get("Items", [])]
        return entries, resp.get("LastEvaluatedKey")

    def _due_jobs(self, entries: list[DueEntry], due_by: int) -> list[Job]:
        found = self.batch_get([entry.job_id for entry in entries])
        due = []
        for entry in entries:
            job = found.get(entry.job_id)
            if job is not None and UNFINISHED in job and int(job.get(CHECK_AT, due_by + 1)) <= due_by:
                due.append(job)
        return due

    def batch_get(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """The jobs of ``job_ids`` that exist, by id, read strongly consistent with BatchGetItem
        (100 keys per call; the keys it leaves unprocessed asked again with a doubling pause).
        Raises if keys are still unprocessed after BATCH_GET_ATTEMPTS calls."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for offset in range(0, len(ids), BATCH_GET_MAX_KEYS):
            keys = [self._key(job_id) for job_id in ids[offset : offset + BATCH_GET_MAX_KEYS]]
            for attempt in range(BATCH_GET_ATTEMPTS):
                resp = self._client.batch_get_item(RequestItems={self._table: {"Keys": keys, "ConsistentRead": True}})
                for item in resp.get("Responses", {}).get(self._table, []):
                    job = _from_item(item)
                    found[str(job["job_id"])] = job
                keys = resp.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
                if not keys:
                    break
                time.sleep(BATCH_GET_BACKOFF_SECONDS * 2**attempt)
            else:
                raise RuntimeError(f"BatchGetItem left {len(keys)} keys unprocessed after {BATCH_GET_ATTEMPTS} calls")
        return found

    # ------------------------------------------------------------------ writes
    def _new_record(self, job: Mapping[str, Any]) -> dict[str, Any]:
        record = dict(job)
        record.setdefault("expires_at", epoch_seconds() + self._ttl_seconds)
        job_id = str(record["job_id"])
        record.setdefault(UNFINISHED, unfinished_key(job_id))
        record.setdefault(CHECK_AT, first_check_at(record.get("created_at"), self.first_check_after_seconds))
        if record.get("owner") is not None:
            record.setdefault(OWNER_SHARD, owner_shard_key(str(record["owner"]), shard_of(job_id, OWNER_SHARDS)))
        return record

    def create_within_quota(self, job: Mapping[str, Any], *, owner: str, cap: int) -> bool:
        """Write a new job and count it against its caller's cap of unfinished jobs, in one
        transaction; False (nothing written) when the caller is at its cap.

        The count is spread over QUOTA_SHARDS counter records per caller (``quota#<hash>#NN``),
        each allowed its share of ``cap``: one counter would take every write of a caller's burst
        (two per job) on one key. A full counter sends the job to the next, in random order, so
        the caller is refused only when every share is taken. The copier gives the unit back
        when it announces the job's end (``mark_event_published``), in the same transaction."""
        limits = quota_limits(cap)
        for shard in random.sample(range(QUOTA_SHARDS), QUOTA_SHARDS):
            if limits[shard] == 0:
                continue
            key = quota_key(owner, shard)
            record = self._new_record({**job, QUOTA_KEY: key})
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": _to_item(record),
                                "ConditionExpression": "attribute_not_exists(job_id)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": self._key(key),
                                "UpdateExpression": "ADD unfinished_jobs :one",
                                "ConditionExpression": (
                                    "attribute_not_exists(unfinished_jobs) OR unfinished_jobs < :limit"
                                ),
                                "ExpressionAttributeValues": _to_item({":one": 1, ":limit": limits[shard]}),
                            }
                        },
                    ]
                )
                return True
            except ClientError as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException" or not reasons:
                    raise
                if reasons[0] == "ConditionalCheckFailed":
                    raise JobAlreadyExists(f"job {record['job_id']} already exists") from exc
                if reasons[1] != "ConditionalCheckFailed":
                    raise
        return False

    def create(self, job: Mapping[str, Any]) -> None:
        """Write a new record; never overwrites an existing one."""
        record = self._new_record(job)
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_to_item(record),
                ConditionExpression="attribute_not_exists(job_id)",
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                raise JobAlreadyExists(f"job {record['job_id']} already exists") from exc
            raise

    def claim_idempotency_key(
        self, owner: str, key: str, *, body_hash: str, job_id: str, ttl_seconds: int
    ) -> IdempotencyClaim:
        """Take ``key`` for ``job_id`` in one conditional put; if another request holds it,
        return that holder. Records live in the jobs table under ``idem#<hash>`` keys (no
        owner attribute, so never in the by_owner index) and expire through its TTL."""
        now = epoch_seconds()
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_idempotency_item(owner, key, job_id, body_hash, now, ttl_seconds),
                ConditionExpression="attribute_not_exists(job_id) OR expires_at < :now",
                ExpressionAttributeValues=_to_item({":now": now}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            old: Any = exc.response.get("Item")
            held = _from_item(old) if old else {}
            return IdempotencyClaim(
                claimed=False,
                job_id=str(held.get("target_job_id", "")),
                body_hash=str(held.get("body_hash", "")),
                claimed_at=int(held.get("created_at_epoch", 0)),
            )
        return IdempotencyClaim(claimed=True, job_id=job_id, body_hash=body_hash, claimed_at=now)

    def take_over_idempotency_key(
        self, owner: str, key: str, *, held_by: str, job_id: str, body_hash: str, ttl_seconds: int
    ) -> bool:
        """Move a key from ``held_by`` (a request that died before writing its job, so before
        any gateway call) to ``job_id``. Conditional on the holder, so of two concurrent
        takeovers exactly one wins."""
        return _applied(
            lambda: self._client.put_item(
                TableName=self._table,
                Item=_idempotency_item(owner, key, job_id, body_hash, epoch_seconds(), ttl_seconds),
                ConditionExpression="target_job_id = :held_by",
                ExpressionAttributeValues=_to_item({":held_by": held_by}),
            )
        )

    def release_idempotency_key(self, owner: str, key: str, *, job_id: str) -> bool:
        """Free a key whose job the gateway refused, so the caller's retry can submit again
        (a refused submit cannot have been billed). Only the job that holds it frees it."""
        return _applied(
            lambda: self._client.delete_item(
                TableName=self._table,
                Key=self._key(_idempotency_record_id(owner, key)),
                ConditionExpression="target_job_id = :job",
                ExpressionAttributeValues=_to_item({":job": job_id}),
            )
        )

    def advance(
        self,
        job_id: str,
        target: JobStatus,
        *,
        request_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        from_statuses: Iterable[JobStatus] | None = None,
        extra_condition: str | None = None,
        extra_values: Mapping[str, Any] | None = None,
        extra_names: Mapping[str, str] | None = None,
    ) -> Transition:
        """Move a job to ``target`` in one conditional write.

        The write applies only if the job's status is one the state machine allows to reach
        ``target`` (or ``from_statuses``, a subset) and, when ``request_id`` is given, only if
        the job has no request_id yet or the same one (it is then stored). A refused write
        changes nothing and returns the record as it stood; a missing job raises JobNotFound.
        """
        sources = sorted(from_statuses if from_statuses is not None else sources_of(target))
        names = {"#status": "status"}
        values: dict[str, Any] = {f":src{i}": str(status) for i, status in enumerate(sources)}
        condition = f"#status IN ({', '.join(values)})"
        sets: dict[str, Any] = {"status": str(target), "updated_at": utc_now_iso()}
        if request_id is not None:
            names["#rid"] = "request_id"
            values[":rid"] = request_id
            condition += " AND (attribute_not_exists(#rid) OR #rid = :rid)"
            sets["request_id"] = request_id
        sets.update(attributes or {})
        if extra_condition:
            condition = f"({condition}) AND ({extra_condition})"
            values.update(extra_values or {})
            names.update(extra_names or {})
        return self._conditional_update(
            job_id, sets=sets, remove=remove, condition=condition, names=names, values=values
        )

    def set_request_id(self, job_id: str, request_id: str) -> Transition:
        """Store the gateway's request_id on a job a callback already moved past SUBMITTING."""
        return self._conditional_update(
            job_id,
            sets={"request_id": request_id},
            condition="attribute_exists(job_id) AND (attribute_not_exists(#rid) OR #rid = :rid)",
            names={"#rid": "request_id"},
            values={":rid": request_id},
        )

    def _conditional_update(
        self,
        job_id: str,
        *,
        sets: Mapping[str, Any],
        condition: str,
        names: Mapping[str, str],
        values: Mapping[str, Any],
        remove: Iterable[str] = (),
    ) -> Transition:
        """One UpdateItem of plain ``SET name = value`` / ``REMOVE name`` actions.

        It asks for the item as it was *before* the write (``ALL_OLD``) and applies ``sets`` and
        ``remove`` to it, which for these actions is exactly DynamoDB's ``ALL_NEW``: one call
        tells both the new record and the status the write replaced. A refused condition
        returns the record as it stood (no extra read)."""
        expr_names = dict(names)
        expr_values = dict(values)
        actions = []
        for i, (name, value) in enumerate(sets.items()):
            expr_names[f"#s{i}"] = name
            expr_values[f":s{i}"] = value
            actions.append(f"#s{i} = :s{i}")
        expression = "SET " + ", ".join(actions)
        removals = list(remove)
        if removals:
            for i, name in enumerate(removals):
                expr_names[f"#r{i}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removals)))
        try:
            resp = self._client.update_item(
                TableName=self._table,
                Key=self._key(job_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=expr_names,
                ExpressionAttributeValues=_to_item(expr_values),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                raise
            old: Any = exc.response.get("Item")
            if not old:
                raise JobNotFound(job_id) from exc
            return Transition(applied=False, job=_from_item(old), previous_status=_status_of(old))
        before: Mapping[str, Any] = resp.get("Attributes") or {}
        # The values as DynamoDB stores them (floats become Decimal, then come back as numbers).
        after = {**before, **_to_item(sets)}
        for name in removals:
            after.pop(name, None)
        return Transition(applied=True, job=_from_item(after), previous_status=_status_of(before))

    def annotate(
        self,
        job_id: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        condition: str | None = None,
        values: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
    ) -> bool:
        """Set or remove attributes that are not a status change (reasons, outbox and retry
        flags). Applies only to an existing job and, if given, when ``condition`` holds;
        returns whether it applied."""
        expr_names: dict[str, str] = dict(names or {})
        expr_values: dict[str, Any] = dict(values or {})
        clauses = []
        sets = []
        for i, (name, value) in enumerate((attributes or {}).items()):
            expr_names[f"#a{i}"] = name
            expr_values[f":a{i}"] = value
            sets.append(f"#a{i} = :a{i}")
        if sets:
            clauses.append("SET " + ", ".join(sets))
        removals = list(remove)
        for i, name in enumerate(removals):
            expr_names[f"#r{i}"] = name
        if removals:
            clauses.append("REMOVE " + ", ".join(f"#r{i}" for i in range(len(removals))))
        full_condition = "attribute_exists(job_id)" + (f" AND ({condition})" if condition else "")
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(job_id),
            "UpdateExpression": " ".join(clauses),
            "ConditionExpression": full_condition,
        }
        if expr_names:
            kwargs["ExpressionAttributeNames"] = expr_names
        if expr_values:
            kwargs["ExpressionAttributeValues"] = _to_item(expr_values)
        try:
            self._client.update_item(**kwargs)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def push_check_at(self, job_id: str, check_at: int) -> bool:
        """Move the job's next look by the reconciler forward to ``check_at`` (epoch seconds).

        Only forward (a later look set meanwhile stays: whoever set it knew the job was alive),
        and only while the job is unfinished (an ended, announced job must not come back to the
        index). One conditional UpdateItem: the table's write plus, in the keys-only unfinished
        index, a delete and a put (its sort key changes). Returns whether it applied."""
        return _applied(
            lambda: self._client.update_item(
                TableName=self._table,
                Key=self._key(job_id),
                UpdateExpression="SET #c = :c",
                ConditionExpression="attribute_exists(#u) AND (attribute_not_exists(#c) OR #c < :c)",
                ExpressionAttributeNames={"#c": CHECK_AT, "#u": UNFINISHED},
                ExpressionAttributeValues=_to_item({":c": check_at}),
            )
        )

    def acquire_run_lease(self, name: str, holder: str, *, seconds: int) -> bool:
        """Take the run lease ``name`` for ``holder`` for ``seconds``, unless another holder has
        it and it has not expired; returns whether this call took it.

        One conditional UpdateItem, which creates the item when it does not exist yet
        (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html), so
        of two runs starting together exactly one wins, and a holder that died frees it when
        ``seconds`` have passed."""
        now = epoch_seconds()
        return _applied(
            lambda: self._client.update_item(
                TableName=self._table,
                Key=self._key(RUN_LEASE_PREFIX + name),
                UpdateExpression="SET #holder = :holder, #until = :until",
                ConditionExpression="attribute_not_exists(#until) OR #until < :now",
                ExpressionAttributeNames={"#holder": LEASE_HOLDER, "#until": LEASE_UNTIL},
                ExpressionAttributeValues=_to_item({":holder": holder, ":until": now + seconds, ":now": now}),
            )
        )

    def release_run_lease(self, name: str, holder: str) -> bool:
        """Give the run lease ``name`` back, if ``holder`` still holds it (a run that outlived its
        lease must not free the lease of the run that took it over)."""
        return _applied(
            lambda: self._client.update_item(
                TableName=self._table,
                Key=self._key(RUN_LEASE_PREFIX + name),
                UpdateExpression="REMOVE #holder, #until",
                ConditionExpression="#holder = :holder",
                ExpressionAttributeNames={"#holder": LEASE_HOLDER, "#until": LEASE_UNTIL},
                ExpressionAttributeValues=_to_item({":holder": holder}),
            )
        )

    def take_slot(self, key: str, job_id: str, *, replacing: str | None) -> bool:
        """Make ``job_id`` the holder of the gateway slot ``key`` (``admission.GatewaySlots``):
        a free slot (``replacing`` None), or one whose holder is ``replacing``. False if taken."""
        if replacing is None:
            condition = "attribute_not_exists(holder) OR holder = :me"
            values: dict[str, Any] = {":me": job_id}
        else:
            condition = "holder = :old"
            values = {":old": replacing}
        return _applied(
            lambda: self._client.put_item(
                TableName=self._table,
                Item=_to_item({"job_id": key, "holder": job_id, "taken_at": epoch_seconds()}),
                ConditionExpression=condition,
                ExpressionAttributeValues=_to_item(values),
            )
        )

    def release_slot(self, key: str, job_id: str) -> bool:
        """Free the gateway slot ``key`` if ``job_id`` still holds it."""
        return _applied(
            lambda: self._client.update_item(
                TableName=self._table,
                Key=self._key(key),
                UpdateExpression="REMOVE holder",
                ConditionExpression="holder = :me",
                ExpressionAttributeValues=_to_item({":me": job_id}),
            )
        )

    def mark_event_published(self, job_id: str, event_id: str, *, quota: str | None = None) -> bool:
        """Record that the job's final event went out (the outbox flag). False if already set.
        A job counted against its caller's cap (``quota``: its QUOTA_KEY) gives its unit back in
        the same transaction, so the count can neither leak nor be given back twice."""
        update = {
            "TableName": self._table,
            "Key": self._key(job_id),
            "UpdateExpression": f"SET event_id = :eid, event_published_at = :now REMOVE {UNFINISHED}, {PUBLISH_LEASE}",
            "ConditionExpression": "attribute_exists(job_id) AND attribute_not_exists(event_published_at)",
            "ExpressionAttributeValues": _to_item({":eid": event_id, ":now": utc_now_iso()}),
        }
        try:
            if quota is None:
                self._client.update_item(**update)
            else:
                give_back = {
                    "TableName": self._table,
                    "Key": self._key(quota),
                    "UpdateExpression": "ADD unfinished_jobs :minus",
                    "ExpressionAttributeValues": _to_item({":minus": -1}),
                }
                self._client.transact_write_items(TransactItems=[{"Update": update}, {"Update": give_back}])
        except ClientError as exc:
            if _is_conditional_failure(exc) or _transaction_condition_failed(exc):
                return False
            raise
        return True

    @staticmethod
    def _key(job_id: str) -> dict[str, Any]:
        return {"job_id": {"S": job_id}}

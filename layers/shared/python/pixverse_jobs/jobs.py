"""Admitting and reading jobs: validate, record the job ACCEPTED, queue it for the submitter
(``pixverse_jobs.admission``, which calls the gateway), and answer at once; list and read a
caller's jobs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from pixverse_jobs.cancel import DEADLINE_AT, DEADLINE_GRACE_SECONDS
from pixverse_jobs.catalog import MODELS, get_model
from pixverse_jobs.clock import epoch_seconds, to_iso
from pixverse_jobs.config import WEBHOOK_MODES
from pixverse_jobs.deadline import Deadline
from pixverse_jobs.errors import (
    ConfigurationError,
    FieldError,
    IdempotencyConflict,
    JobNotFound,
    JobRecordFailed,
    QuotaExceeded,
    RequestRejected,
)
from pixverse_jobs.nesting import STORED_DEPTH, deeper_than
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.proxy import lambda_payload_bytes
from pixverse_jobs.queue import DeadlineQueue, SubmitQueue
from pixverse_jobs.states import JobStatus
from pixverse_jobs.store import (
    CHECK_AT,
    ENQUEUE_PENDING,
    OWNER_SHARDS,
    IndexEntry,
    IndexPage,
    Job,
    JobStore,
    first_check_at,
)
from pixverse_jobs.views import job_view

MAX_METADATA_BYTES = 2048
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[!-~]{1,255}")
IDEMPOTENT_WAIT_SECONDS = 5.0  # and never past the request's deadline
IDEMPOTENT_POLL_SECONDS = 0.05
# A key held this long by a request whose job record never appeared belongs to a request that
# died between the two writes (the API's timeout is 29 s), before it could call the gateway.
STALE_CLAIM_SECONDS = 60
REQUEST_FIELDS = ("model", "input", "webhook_mode", "metadata", "deadline_seconds")
# The longest deadline_seconds when the stack's maximum job age is not given (its default).
DEFAULT_MAX_DEADLINE_SECONDS = 86400
# The job attribute holding the base URL of the gateway's callbacks (internal, never shown).
WEBHOOK_BASE = "webhook_base_url"
METRIC_ENQUEUE_FAILED = "SubmitEnqueueFailed"
METRIC_DEADLINE_WATCH_FAILED = "DeadlineWatchFailed"


@dataclass(frozen=True)
class SubmitRequest:
    model: str
    input: dict[str, Any]
    webhook_mode: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    deadline_seconds: int | None = None

    def fingerprint(self) -> str:
        """A hash of the request as parsed (key order and spacing do not matter)."""
        fields: dict[str, Any] = {
            "model": self.model,
            "input": self.input,
            "webhook_mode": self.webhook_mode,
            "metadata": self.metadata,
        }
        if self.deadline_seconds is not None:
            # Only when given: a request without one hashes as it did before deadlines existed.
            fields["deadline_seconds"] = self.deadline_seconds
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def parse_submit_request(body: Any, *, max_deadline_seconds: int = DEFAULT_MAX_DEADLINE_SECONDS) -> SubmitRequest:
    """Validate a POST /jobs body; RequestRejected names every bad field at once.
    ``max_deadline_seconds`` is the stack's maximum job age: a longer deadline could never fire."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    errors: list[FieldError] = []
    for name in body:
        if name not in REQUEST_FIELDS:
            errors.append(FieldError(name, f"unknown field; allowed: {', '.join(REQUEST_FIELDS)}"))
    model_id = body.get("model")
    model = get_model(model_id) if isinstance(model_id, str) else None
    if model is None:
        shown = "missing" if model_id is None else repr(model_id)
        errors.append(FieldError("model", f"must be one of {', '.join(MODELS)}, got {shown}"))
    params = body.get("input")
    if not isinstance(params, dict):
        errors.append(FieldError("input", "is required and must be a JSON object of the model's parameters"))
    elif model is not None:
        errors.extend(model.validate(params))
    mode = body.get("webhook_mode")
    if mode is not None and mode not in WEBHOOK_MODES:
        errors.append(FieldError("webhook_mode", f"must be one of {', '.join(WEBHOOK_MODES)}, got {mode!r}"))
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        errors.append(FieldError("metadata", "must be a JSON object"))
    elif len(json.dumps(metadata, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        errors.append(FieldError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON"))
    for name in ("input", "metadata"):
        # The job's attribute is itself a level of DynamoDB's nesting. Checked before _unstorable,
        # which walks the value recursively.
        if deeper_than(body.get(name), STORED_DEPTH - 1):
            errors.append(
                FieldError(
                    name, f"must not nest deeper than {STORED_DEPTH - 1} levels (DynamoDB stores {STORED_DEPTH})"
                )
            )
        else:
            errors.extend(_unstorable(body.get(name), name))
    deadline = body.get("deadline_seconds")
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, int) or not 1 <= deadline <= max_deadline_seconds
    ):
        errors.append(
            FieldError(
                "deadline_seconds",
                f"must be a whole number of seconds from 1 to {max_deadline_seconds} "
                f"(the stack's maximum job age), got {deadline!r}",
            )
        )
    if errors:
        raise RequestRejected("request is invalid", errors)
    assert isinstance(model_id, str) and isinstance(params, dict) and isinstance(metadata, dict)
    return SubmitRequest(model=model_id, input=params, webhook_mode=mode, metadata=metadata, deadline_seconds=deadline)


# DynamoDB numbers: at most 38 significant digits, magnitude from 1e-130 to below 1e126.
_DYNAMO_MAX_DIGITS = 38
_DYNAMO_MAX_MAGNITUDE = 9.9999999999999999999999999999999999999e125
_DYNAMO_MIN_MAGNITUDE = 1e-130


def _unstorable(value: Any, path: str) -> list[FieldError]:
    """Values JSON allows but the job record cannot hold: NaN / Infinity, numbers outside
    DynamoDB's range or precision, and strings with lone surrogates (not encodable as UTF-8)."""
    if isinstance(value, dict):
        found: list[FieldError] = []
        for key, item in value.items():
            if key == "":
                found.append(FieldError(path, "must not have an empty key (DynamoDB map keys are not empty)"))
                continue
            found.extend(_unstorable(key, f"{path} (a key)") if isinstance(key, str) else [])
            found.extend(_unstorable(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        return [error for n, item in enumerate(value) for error in _unstorable(item, f"{path}[{n}]")]
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [FieldError(path, "must be valid Unicode text (it holds a lone surrogate escape)")]
        return []
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        # An integer is stored with all its digits: more than 38 would be rounded, which DynamoDB refuses.
        if len(str(abs(value))) > _DYNAMO_MAX_DIGITS:
            return [FieldError(path, f"must be an integer of at most {_DYNAMO_MAX_DIGITS} digits")]
        return []
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or abs(value) > _DYNAMO_MAX_MAGNITUDE:
            return [FieldError(path, "must be a finite number below 1e126")]
        if value and abs(value) < _DYNAMO_MIN_MAGNITUDE:
            return [FieldError(path, "is too small a number (DynamoDB stores down to 1e-130)")]
    return []


def new_job_id() -> str:
    """Opaque, URL-safe, unguessable."""
    return f"job_{uuid.uuid4().hex}"


class JobService:
    def __init__(
        self,
        store: JobStore,
        queue: SubmitQueue,
        *,
        default_webhook_mode: str = "terminal",
        idempotency_ttl_seconds: int = 24 * 3600,
        max_jobs_per_caller: int = 0,
        deadline_queue: DeadlineQueue | None = None,
    ) -> None:
        self._deadline_queue = deadline_queue
        self._idempotency_ttl = idempotency_ttl_seconds
        self._max_jobs_per_caller = max_jobs_per_caller
        self._store = store
        self._queue = queue
        self._default_mode = default_webhook_mode

    def submit(
        self,
        request: SubmitRequest,
        *,
        owner: str,
        webhook_base_url: str,
        idempotency_key: str | None = None,
        deadline: Deadline | None = None,
    ) -> Job:
        """Admit the job: record it ACCEPTED and queue it for the submitter, which sends it to the
        gateway at the gateway's own pace (``pixverse_jobs.admission``). Nothing here waits for
        the gateway, so a burst is answered as fast as DynamoDB and SQS take it.

        With an ``idempotency_key``, the same key and body return the first request's job and
        queue nothing new; another body raises IdempotencyConflict. ``deadline`` bounds the wait
        for a concurrent first request's record."""
        deadline = deadline or Deadline.never()
        job_id = new_job_id()
        if idempotency_key is None:
            return self._admit(request, owner=owner, webhook_base_url=webhook_base_url, job_id=job_id)
        existing = self._claim_key(request, owner, idempotency_key, job_id, deadline)
        if existing is not None:
            return existing
        try:
            return self._admit(request, owner=owner, webhook_base_url=webhook_base_url, job_id=job_id)
        except (JobRecordFailed, QuotaExceeded):
            # Nothing was recorded: free the key so the caller's retry submits. If the release
            # fails too, the stale-claim takeover frees it after STALE_CLAIM_SECONDS.
            with contextlib.suppress(Exception):
                self._store.release_idempotency_key(owner, idempotency_key, job_id=job_id)
            raise

    def _claim_key(self, request: SubmitRequest, owner: str, key: str, job_id: str, deadline: Deadline) -> Job | None:
        if not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
            raise RequestRejected(
                "invalid Idempotency-Key",
                [FieldError("Idempotency-Key", "must be 1-255 printable ASCII characters without spaces")],
            )
        body_hash = request.fingerprint()
        claim = self._store.claim_idempotency_key(
            owner, key, body_hash=body_hash, job_id=job_id, ttl_seconds=self._idempotency_ttl
        )
        if claim.claimed:
            return None
        if claim.body_hash != body_hash:
            raise IdempotencyConflict("Idempotency-Key was already used with a different request body")
        # The first request writes its job right after taking the key; wait for that write, but
        # not past the request's own deadline (the API would answer 503 for us).
        wait = Deadline.after(min(IDEMPOTENT_WAIT_SECONDS, deadline.remaining()))
        while True:
            job = self._store.get(claim.job_id)
            if job is not None:
                logger.info("idempotent repeat", extra={"job_id": claim.job_id})
                return job
            if epoch_seconds() - claim.claimed_at > STALE_CLAIM_SECONDS and self._store.take_over_idempotency_key(
                owner, key, held_by=claim.job_id, job_id=job_id, body_hash=body_hash, ttl_seconds=self._idempotency_ttl
            ):
                logger.warning("stale Idempotency-Key claim taken over", extra={"job_id": job_id})
                return None
            if wait.expired():
                raise IdempotencyConflict("a request with this Idempotency-Key is still in progress; retry later")
            time.sleep(min(IDEMPOTENT_POLL_SECONDS, wait.remaining()))

    def _admit(self, request: SubmitRequest, *, owner: str, webhook_base_url: str, job_id: str) -> Job:
        model = get_model(request.model)
        assert model is not None
        if request.deadline_seconds is not None and self._deadline_queue is None:
            # Refused before anything is written: a job recorded and queued but answered 500 would
            # invite a retry, and with it a second paid job.
            raise ConfigurationError("a job with deadline_seconds needs the deadline queue (DEADLINE_QUEUE_URL)")
        now_epoch = time.time()
        now = to_iso(datetime.fromtimestamp(now_epoch, UTC))
        record: Job = {
            "job_id": job_id,
            "owner": owner,
            "model": request.model,
            "input": request.input,
            # What the gateway will apply to the parameters left out; never injected.
            "gateway_defaults": {k: v for k, v in model.defaults().items() if k not in request.input},
            "metadata": request.metadata,
            "webhook_mode": request.webhook_mode or self._default_mode,
            # Where the gateway's callbacks must go; the submitter signs the URL when it sends.
            WEBHOOK_BASE: webhook_base_url,
            "status": str(JobStatus.ACCEPTED),
            "created_at": now,
            "updated_at": now,
        }
        if request.deadline_seconds is not None:
            # To the millisecond, as created_at: the deadline is exactly deadline_seconds after it.
            deadline_at = round(now_epoch + request.deadline_seconds, 3)
            record["deadline_seconds"] = request.deadline_seconds
            record[DEADLINE_AT] = deadline_at
            # The reconciler looks no later than just past the deadline: if the deadline message is
            # lost, the job still ends then (at the reconciler's next run rather than within seconds).
            record[CHECK_AT] = min(
                first_check_at(now, self._store.first_check_after_seconds),
                math.ceil(deadline_at) + DEADLINE_GRACE_SECONDS,
            )
        try:
            if not self._max_jobs_per_caller:
                self._store.create(record)
            elif not self._store.create_within_quota(record, owner=owner, cap=self._max_jobs_per_caller):
                raise QuotaExceeded(self._max_jobs_per_caller)
        except QuotaExceeded:
            logger.info("caller at its cap of unfinished jobs", extra={"cap": self._max_jobs_per_caller})
            raise
        except Exception as exc:
            logger.exception("job could not be recorded; nothing queued")
            raise JobRecordFailed(f"job {job_id} could not be recorded") from exc
        logger.append_keys(job_id=job_id)
        try:
            self._queue.enqueue(job_id, owner)
        except Exception:
            # The job is recorded, so it is not lost: flagged, the reconciler queues it at its next
            # run. Answering an error would invite a retry, and with it a second paid job.
            logger.exception("job recorded but not queued; the reconciler will queue it")
            metrics.add_metric(name=METRIC_ENQUEUE_FAILED, unit=MetricUnit.Count, value=1)
            with contextlib.suppress(Exception):
                self._store.annotate(job_id, attributes={ENQUEUE_PENDING: epoch_seconds()})
                record[ENQUEUE_PENDING] = epoch_seconds()
        if request.deadline_seconds is not None:
            self._watch_deadline(job_id, float(record[DEADLINE_AT]), now_epoch)
        return record

    def _watch_deadline(self, job_id: str, deadline_at: float, now: float) -> None:
        """Send the job's deadline message; if that fails, the reconciler ends the job at its look
        just past the deadline (the job's check_at), later but surely."""
        assert self._deadline_queue is not None  # checked by _admit before the job was written
        try:
            self._deadline_queue.watch(job_id, deadline_at, now=now)
        except Exception:
            logger.exception("deadline message not sent; the reconciler will end the job past its deadline")
            metrics.add_metric(name=METRIC_DEADLINE_WATCH_FAILED, unit=MetricUnit.Count, value=1)

    def list_jobs(
        self,
        query: ListQuery,
        *,
        owner: str,
        max_bytes: int | None = None,
        size_of: Callable[[Job], int] | None = None,
    ) -> tuple[list[Job], str | None]:
        """A page of the caller's jobs, newest first (created_at, then job_id, descending), and
        the token of the next page.

        The caller's jobs are spread over OWNER_SHARDS keys of the by_owner_shard index
        (``OwnerListing`` merges them); the index holds keys and status only, so the page's jobs
        are then read whole by BatchGetItem. A token is the (created_at, job_id) of the last job
        handed out (or, when the page ran out of reads first, the point down to which every job
        was looked at): the next page is the jobs strictly after it in that order, so no job comes
        twice and none is skipped, whatever the shards.

        The page also stops before its jobs pass ``max_bytes`` (default PAGE_BUDGET_BYTES) as
        ``size_of`` counts them (default: what the job's view adds to the Lambda response), and
        always holds at least one job, so paging always moves on."""
        budget = PAGE_BUDGET_BYTES if max_bytes is None else max_bytes
        measure = size_of or _view_payload_bytes
        listing = OwnerListing(self._store, owner, status=query.status, limit=query.limit, after=query.start_key)
        entries, position = listing.page()
        found = self._store.batch_get(entry.job_id for entry in entries)
        # The index lags the table: a job whose status moved off the filter since is left out (its
        # position still counts), and one deleted since (TTL) is gone.
        jobs = [
            found[entry.job_id]
            for entry in entries
            if entry.job_id in found and (not query.status or found[entry.job_id].get("status") == query.status)
        ]
        kept = _within_budget(jobs, budget, measure)
        if len(kept) < len(jobs):
            position = _index_position(kept[-1])
        return kept, encode_page_token(position) if position else None

    def get(self, job_id: str, *, owner: str) -> Job:
        """The caller's job; another caller's job is indistinguishable from a missing one."""
        if not JOB_ID_PATTERN.fullmatch(job_id):
            # Not an id this API hands out (and maybe over DynamoDB's key limit): not found, no read.
            raise JobNotFound(job_id[:80])
        job = self._store.get(job_id)
        if job is None or job.get("owner") != owner:
            raise JobNotFound(job_id)
        return job


MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
LIST_READS_PER_PAGE = 5
# Lambda's synchronous response payload is at most 6 MB (Lambda quotas; Invoke API:
# https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html); a larger one fails the
# invocation and API Gateway answers 500. A page's jobs stay within 5 MiB of it, leaving room for
# the envelope, the next_token and the headers. (A status-filtered page reads up to 5 DynamoDB
# pages of 1 MB; jobs of the widest prompts measured 17 MB as one page before this bound.)
PAGE_BUDGET_BYTES = 5 * 1024 * 1024


def _view_payload_bytes(job: Job) -> int:
    return lambda_payload_bytes(job_view(job)) + 1  # the comma between jobs


def _within_budget(jobs: list[Job], budget: int, size_of: Callable[[Job], int]) -> list[Job]:
    """The leading jobs whose sizes add up to at most ``budget`` (never fewer than one)."""
    total = 0
    for n, job in enumerate(jobs):
        total += size_of(job)
        if total > budget and n > 0:
            return jobs[:n]
    return jobs


def _index_position(job: Job) -> dict[str, Any]:
    """The listing position of ``job``: a next_token that resumes just after it."""
    return {
        "job_id": {"S": job["job_id"]},
        "owner": {"S": job["owner"]},
        "created_at": {"S": job["created_at"]},
    }


# A position's job_id when a page ran out of reads before it filled: "after every job created at
# this created_at" ('~' sorts after every job id, job_ + lowercase hex), so the next page starts
# with the jobs created at that very time, which were not all looked at.
AFTER_ALL_AT = "~"


def _sort_key(entry: IndexEntry) -> tuple[str, str]:
    return (entry.created_at, entry.job_id)


class OwnerListing:
    """One page of an owner's jobs over every shard of the by_owner_shard index, newest first.

    Each shard is one index key, in created_at order; the merge takes from all of them. An entry
    may be handed out only once no shard can still hold a newer one: a shard that has more
    (LastEvaluatedKey) may still hold entries created at or before its frontier, the created_at
    of the last entry it evaluated (job_ids among equal created_at come in no set order), so an
    entry is *settled* when it is newer than every open shard's frontier. While fewer than
    ``limit`` entries are settled, the open shard with the newest frontier (the one holding the
    others back) is read further. Reads stop at LIST_READS_PER_PAGE per shard (a rare status
    filters most entries out); the position then is "after every job created at the newest
    frontier", below which nothing settled is left."""

    def __init__(
        self,
        store: JobStore,
        owner: str,
        *,
        status: str | None,
        limit: int,
        after: Mapping[str, Any] | None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._status = status
        self._limit = limit
        self._after: tuple[str, str] | None = None
        if after:
            self._after = (after["created_at"]["S"], after["job_id"]["S"])

    def page(self) -> tuple[list[IndexEntry], dict[str, Any] | None]:
        """The page's entries, newest first, and the position of the next page (None: no more)."""
        pending: list[IndexEntry] = []
        open_keys: dict[int, dict[str, Any]] = {}  # shard -> its next ExclusiveStartKey
        frontiers: dict[int, str] = {}
        # The first read of every shard at once: a page's latency is one Query, not sixteen.
        with ThreadPoolExecutor(max_workers=OWNER_SHARDS, thread_name_prefix="list") as pool:
            first = list(pool.map(lambda shard: self._query(shard, None), range(OWNER_SHARDS)))
        for shard, index_page in enumerate(first):
            self._absorb(shard, index_page, pending, open_keys, frontiers)
        reads = OWNER_SHARDS
        while True:
            pending.sort(key=_sort_key, reverse=True)
            newest_open = max(frontiers.values(), default=None)
            settled = [e for e in pending if newest_open is None or e.created_at > newest_open]
            if len(settled) >= self._limit:
                last = settled[self._limit - 1]
                more = newest_open is not None or len(pending) > self._limit
                return settled[: self._limit], self._position(last.created_at, last.job_id) if more else None
            if newest_open is None:
                return settled, None
            if reads >= LIST_READS_PER_PAGE * OWNER_SHARDS:
                # Out of reads: everything newer than the newest frontier was looked at.
                return settled, self._position(newest_open, AFTER_ALL_AT)
            for shard in [s for s, f in frontiers.items() if f == newest_open]:
                self._absorb(shard, self._query(shard, open_keys[shard]), pending, open_keys, frontiers)
                reads += 1

    def _query(self, shard: int, start_key: dict[str, Any] | None) -> IndexPage:
        """One page of ``shard`` after ``start_key``, at or before the token's created_at."""
        return self._store.query_owner_shard(
            self._owner,
            shard,
            status=self._status,
            created_at_or_before=self._after[0] if self._after else None,
            limit=self._limit,
            start_key=start_key,
        )

    def _absorb(
        self,
        shard: int,
        index_page: IndexPage,
        pending: list[IndexEntry],
        open_keys: dict[int, dict[str, Any]],
        frontiers: dict[int, str],
    ) -> None:
        """Add a shard's page to ``pending`` (the entries after the token) and move its frontier."""
        after = self._after
        pending.extend(e for e in index_page.entries if after is None or _sort_key(e) < after)
        frontier = index_page.frontier
        if index_page.last_key and frontier is not None:
            open_keys[shard] = index_page.last_key
            frontiers[shard] = frontier
        else:
            open_keys.pop(shard, None)
            frontiers.pop(shard, None)

    def _position(self, created_at: str, job_id: str) -> dict[str, Any]:
        return {"job_id": {"S": job_id}, "owner": {"S": self._owner}, "created_at": {"S": created_at}}


@dataclass(frozen=True)
class ListQuery:
    status: str | None
    limit: int
    start_key: dict[str, Any] | None


def parse_list_query(params: Mapping[str, str], *, owner: str) -> ListQuery:
    """Validate GET /jobs query parameters (status, limit, next_token), all errors at once."""
    errors: list[FieldError] = []
    for name in params:
        if name not in ("status", "limit", "next_token"):
            errors.append(FieldError(name, "unknown query parameter; allowed: status, limit, next_token"))
    status = params.get("status")
    if status is not None and status not in JobStatus.__members__:  # "" too: not a status
        errors.append(FieldError("status", f"must be one of {', '.join(JobStatus)}, got {status!r}"))
    raw_limit = params.get("limit") or str(DEFAULT_PAGE_SIZE)
    # ASCII digits only: str.isdigit() also accepts other scripts' digits and superscripts. Sized
    # as text before int(), which refuses over 4,300 digits with a ValueError (Python's integer
    # string conversion limit, sys.int_info.default_max_str_digits): that was a 500.
    significant = raw_limit.lstrip("0")
    digits_ok = raw_limit.isascii() and raw_limit.isdigit() and len(significant) <= len(str(MAX_PAGE_SIZE))
    limit = int(significant or "0") if digits_ok else 0
    if not 1 <= limit <= MAX_PAGE_SIZE:
        shown = raw_limit if len(raw_limit) <= 20 else f"{raw_limit[:20]}... ({len(raw_limit)} characters)"
        errors.append(FieldError("limit", f"must be a whole number from 1 to {MAX_PAGE_SIZE}, got {shown!r}"))
    start_key = None
    token = params.get("next_token")
    if token:
        start_key = decode_page_token(token)
        owner_value = (start_key or {}).get("owner", {}).get("S")
        if start_key is None or owner_value != owner:
            errors.append(FieldError("next_token", "is not a token this API returned to you"))
    if errors:
        raise RequestRejected("invalid query", errors)
    return ListQuery(status=status, limit=limit, start_key=start_key)


def encode_page_token(last_key: Mapping[str, Any]) -> str:
    """An opaque next_token: the listing position (owner, created_at, job_id), base64url-encoded."""
    return base64.urlsafe_b64encode(json.dumps(last_key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    expected = {"job_id", "owner", "created_at"}
    if not isinstance(data, dict) or set(data) != expected:
        return None
    if not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in data.values()):
        return None
    # The token is the index position we handed out: anything else (a crafted key DynamoDB would
    # refuse, e.g. over its 2048-byte key limit) is not ours.
    job_id = data["job_id"]["S"]
    if not (JOB_ID_PATTERN.fullmatch(job_id) or job_id == AFTER_ALL_AT):
        return None
    if not TIMESTAMP_PATTERN.fullmatch(data["created_at"]["S"]):
        return None
    if len(data["owner"]["S"].encode()) > MAX_OWNER_BYTES:
        return None
    return data


JOB_ID_PATTERN = re.compile(r"job_[0-9a-f]{32}")
TIMESTAMP_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
MAX_OWNER_BYTES = 1024


def caller_of(request_context: Mapping[str, Any]) -> str | None:
    """The owner of an HTTP API request's jobs: the caller's stable IAM principal
    (``principal_owner``) or the JWT sub."""
    authorizer = request_context.get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    if iam.get("userArn"):
        return principal_owner(str(iam["userArn"]))
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    if claims.get("sub"):
        return str(claims["sub"])
    return None


# arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION, as STS and API Gateway's authorizer.iam.userArn
# give a role session (IAM User Guide, "IAM identifiers", ARNs:
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns).
# Partitions: aws, aws-cn, aws-us-gov and the isolated ones (aws-iso, aws-iso-b, ...). Role and
# session names are [\w+=,.@-] (IAM CreateRole, STS AssumeRole); path segments printable ASCII.
_ASSUMED_ROLE_ARN = re.compile(
    r"arn:(?P<partition>aws(?:-[a-z]+)*):sts::(?P<account>[0-9]{12}):assumed-role/"
    r"(?P<role>(?:[!-.0-~]+/)*[\w+=,.@-]+)/[\w+=,.@-]+",
    re.ASCII,
)


def principal_owner(user_arn: str) -> str:
    """The stable owner for an IAM caller's ARN.

    A role session (``arn:aws:sts::ACCT:assumed-role/ROLE/SESSION``) is owned by its role,
    ``arn:aws:iam::ACCT:role/ROLE``: the session name changes per ECS task, EC2 instance, EKS or
    CLI session, and owning by it would hide a client's jobs from the client's next session.
    STS leaves the role's path out of the session ARN; a path given before the role name is kept.
    Every other principal is already stable and owns by its own ARN: an IAM user
    (``arn:aws:iam::ACCT:user/PATH/NAME``), the account root (``arn:aws:iam::ACCT:root``), a
    federated user (``arn:aws:sts::ACCT:federated-user/NAME``, named by whoever called
    GetFederationToken). Anything unrecognised is kept as API Gateway gave it."""
    match = _ASSUMED_ROLE_ARN.fullmatch(user_arn)
    if match is None:
        return user_arn
    return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"

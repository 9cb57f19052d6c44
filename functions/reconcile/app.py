"""ReconcileFunction (schedule): ends the jobs whose callback never came. See
``pixverse_jobs.reconcile``; this module only wires the adapters and reports metrics."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import httpx
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pixverse_jobs import config
from pixverse_jobs.callbacks import CallbackProcessor
from pixverse_jobs.gateway import DEFAULT_TIMEOUT, GatewayClient
from pixverse_jobs.observability import logger, metrics
from pixverse_jobs.queue import CopyQueue, SubmitQueue
from pixverse_jobs.reconcile import Reconciler
from pixverse_jobs.secrets import SecretReader
from pixverse_jobs.store import JobStore, unfinished_keys

_settings = config.reconcile_settings()
_gateway_settings = config.gateway_settings()
_secrets = SecretReader(boto3.client("secretsmanager"))
# A connection for every worker and every reader of the index: botocore keeps 10 per client by
# default and, past them, opens a connection per call and throws it away (a TLS handshake each).
_connections = _settings.concurrency + len(unfinished_keys()) + 1
_aws_config = Config(max_pool_connections=_connections)
_store = JobStore(config.store_settings().table_name, boto3.client("dynamodb", config=_aws_config))
_sqs = boto3.client("sqs", config=_aws_config)
_queue = CopyQueue(config.queue_settings().copy_queue_url, _sqs)
_key_lock = threading.Lock()


def _gateway_key() -> str:
    # One Secrets Manager read when the cached key expires, not one per worker at that moment.
    with _key_lock:
        return _secrets.get(_gateway_settings.api_key_secret)


reconciler = Reconciler(
    _store,
    GatewayClient(
        _gateway_settings.base_url,
        _gateway_key,
        # Every worker keeps its connection between polls (httpx keeps 20 idle by default).
        httpx.Client(
            timeout=DEFAULT_TIMEOUT,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=_settings.concurrency, max_keepalive_connections=_settings.concurrency),
        ),
    ),
    CallbackProcessor(_store, _queue),
    _queue,
    _settings,
    submit_queue=SubmitQueue(config.admission_settings().submit_queue_url, _sqs),
)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconciler.run(
        time_left=lambda: context.get_remaining_time_in_millis() / 1000, run_id=context.aws_request_id
    )
    # JobsReconciled > 0 means callbacks went missing: the alarm in template.yaml watches it.
    metrics.add_metric(name="JobsReconciled", unit=MetricUnit.Count, value=report.reconciled)
    metrics.add_metric(name="ReconcilerRateLimited", unit=MetricUnit.Count, value=int(report.rate_limited))
    # A run that found another one running; jobs a run had no time for (the next run takes them).
    metrics.add_metric(name="ReconcilerRunsSkipped", unit=MetricUnit.Count, value=int(report.lease_held))
    metrics.add_metric(name="ReconcilerJobsDeferred", unit=MetricUnit.Count, value=report.deferred + report.in_flight)
    return {
        "examined": report.examined,
        "reconciled": report.reconciled,
        "actions": report.actions,
        "deferred": report.deferred,
        "in_flight": report.in_flight,
        "lease_held": report.lease_held,
    }
